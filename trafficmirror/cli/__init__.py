"""The command line: `trafficmirror` and its commands, on top of everything else.

`main.py` holds the click group; each command lives in its own module and
imports the library code it runs only when it runs, so `trafficmirror --help`
stays fast and never loads mitmproxy. Option groups shared by several commands
(Kafka, selection, pacing, comparison, guardrails, safety) have their own modules.
"""
