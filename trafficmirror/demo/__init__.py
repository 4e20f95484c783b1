"""`trafficmirror demo`: the whole pipeline on the in-memory broker, and its sample apps.

`run.py` drives the demo; `apps.py` holds the sample app, the recording shadow
and a small shop API (also started by the tests and benchmarks); `traffic.py`
plans and sends the demo traffic and checks it arrived intact.
"""
