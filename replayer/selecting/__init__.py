"""Which records a replay sends: filters, sampling, methods and the original-host safety check."""
