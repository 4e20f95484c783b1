"""Where records come from: the group worker, an offset range, and the bookkeeping of offsets.

`worker` (a consumer-group member: its loop, with `groupconsumer` for the
consumer's thread, `book` for what it holds per partition and `backpressure`)
and `offset_range` (`replay range`) feed records to the pipeline; `offsets`,
`merge`, `spans`, `timeindex` and `window` track which offsets are done, merge
partitions into recorded-time order and turn times and ranges into offsets;
`inspection` prints events (`inspect`).
"""
