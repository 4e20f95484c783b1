"""The replay side: read recorded exchanges from Kafka and re-send them to a shadow.

The path of one record, top-down:

* `worker` (consumer group) or `range` (explicit offsets) reads Kafka records;
* `pipeline` decodes each one (`schemas.codec`), turns it into a request
  (`request`) and hands it to the `sender`, which keeps each recorded
  connection's requests in order while different connections run concurrently;
* `offsets` tracks which records have finished so that only safe positions are
  committed (at least once).

`inspect` prints records as JSON without sending anything.
"""
