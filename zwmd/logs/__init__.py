"""zwmd.logs: the storage half of the log pipeline.

- :mod:`zwmd.logs.records` -- :class:`~zwmd.logs.records.LogRecord`, byte framing
  (bounded lines, any bytes accepted), kubelet timestamps, ZenML output shapes.
- :mod:`zwmd.logs.store` -- the :class:`~zwmd.logs.store.LogStore` protocol, keys and
  checkpoints.
- :mod:`zwmd.logs.filestore` -- the builtin ``file`` store (crash-safe NDJSON files).
- :mod:`zwmd.logs.merging` -- time ordering across sources and exactly-once resume.
"""
