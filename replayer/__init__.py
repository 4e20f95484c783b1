"""The replay side: read recorded exchanges from Kafka and re-send them to a shadow.

The path of one record, top-down:

* `worker` (consumer group) or `range` (explicit offsets) reads Kafka records;
* `pipeline` decodes each one (`schemas.codec`), turns it into a request
  (`request`) and hands it to the `sender`, which keeps each recorded
  connection's requests in order while different connections run concurrently;
* `comparison` compares each shadow response with the recorded one (`compare`,
  `diff`, `noise`; a `--baseline` turns shared differences into noise) and
  writes a `results` record to `<topic>.results` (`results_sink`);
* `offsets` tracks which records have finished so that only safe positions are
  committed (at least once).

`report` reads the results back, aggregated per endpoint (`endpoints`), as a
terminal table or a self-contained HTML page (`report_html`).

`inspect` prints records as JSON without sending anything.
"""
