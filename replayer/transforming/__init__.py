"""Transforming: what the replayer changes in a request before it goes to the shadow.

Applied by `worker` and `replay range` after selection and before sending (see
`replayer.pipeline`): rewrite rules, replay-time credentials, value
correlation and a user's Python hook. Each change is a `Step`; the names of the
steps applied travel with the result, never their values.
"""
