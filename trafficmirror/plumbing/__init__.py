"""Shared plumbing below everything else: Kafka settings and clients, errors, health, logs.

Nothing here imports from the CLI, the recorder, the replayer or the schemas
(`lint-imports` checks it), so every other package can use it.
"""
