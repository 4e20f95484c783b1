"""`trafficmirror monitor`: security monitoring of the recorded traffic, live.

A consumer-group member (`monitor.run`) follows the traffic topic and looks at
every exchange twice: once for signatures of attacks in that one request
(`monitor.signatures`: SQL injection and XSS by libinjection, path traversal,
scanner user agents), and once as a count in sliding windows per client and
per endpoint template, compared with a learned baseline (`monitor.windows`,
`monitor.anomalies`). Findings become `schemas.records.Alert` records
(`monitor.alerts`) written to `<topic>.alerts`, logged (rate-limited) and
counted in Prometheus metrics. It sits above the replayer in the layers: it
reuses the replayer's endpoint templating (`replayer.comparing.endpoints`).
"""
