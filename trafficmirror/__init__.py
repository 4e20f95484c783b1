"""trafficmirror: record live HTTP traffic into Kafka and replay it to shadow services.

This package holds the CLI and demo on top, and the plumbing every side shares at
the bottom (Kafka settings, the in-memory dev broker, logging, the health/metrics
server). It imports nothing at package level so `trafficmirror --help` stays fast.
"""

__version__ = "0.1.0"
