"""Files other tools read and write: HAR 1.2, pcap and GoReplay `.gor`, to and from events.

Each format is one module of readers and writers on `schemas.records.HttpExchange`:
`har` (both ways), `gor` (both ways), `pcap` (export only: a capture of
synthetic TCP streams carrying the exchanges as HTTP/1.1). `http1` rebuilds and
parses HTTP/1.x messages for `gor` and `pcap`; `exchange` builds the events an
import writes (ids, times, where they came from). Nothing here touches Kafka:
the CLI (`trafficmirror export` / `import`) reads a topic range or produces the
events, and applies the recorder's redaction on import. A file that cannot be
read raises `MalformedFile` (one line naming the entry or line, exit code 2)
before any event is written.
"""
