"""The command line: `trafficmirror` and its commands, on top of everything else.

`main.py` holds the click group and the entry point; each command (or family:
`replay`, the dev tools) lives in its own `cmd_*` module, the `session` family
in `session.py`, and imports the library code it runs only when it runs, so
`trafficmirror --help` stays fast and never loads mitmproxy. `common.py` holds
the options and checks several commands share (Kafka, metrics, senders); the
option groups of the replaying and recording commands (comparison, guard,
kafka, pace, recording, safety, selection) have a module each.
"""
