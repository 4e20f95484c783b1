"""The recorder: a mitmproxy addon that writes every live HTTP exchange to Kafka.

`event` turns a flow into an `HttpExchange` event, `sink` hands it to Kafka
without ever blocking, `addon` is the mitmproxy addon that ties them together,
and `run` runs mitmproxy embedded with only what a reverse-proxy recorder needs
(the `trafficmirror record` command).
"""
