"""The replay side: read recorded exchanges from Kafka and re-send them to a shadow.

Subpackages by stage, in the order a record meets them:

* `consuming`: the group `worker` or `offset_range` (`replay range`) reads records;
* `pipeline` (this package) takes each one through the stages below;
* `selecting`: filter, sample, methods, and the original-host safety check;
* `pacing`: the virtual clock (time warp) and the rate limit decide when it goes;
* `sending`: build the request, send it with bounded concurrency, guard the shadow;
* `comparing`: diff the shadow's answer with production under noise rules;
* `results`: the result record, its sink, the dead letters, and the report.

`models` holds the record types the stages share; `assembly` builds the parts a
replay needs (senders, scheduler, pipeline, comparison, dead letters) once for
both the worker and `replay range`; `sessions` shares one pace across a group.
"""
