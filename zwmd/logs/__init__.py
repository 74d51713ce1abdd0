"""zwmd.logs: every log line of every workload, stored once and in order.

- :mod:`zwmd.logs.records` -- :class:`~zwmd.logs.records.LogRecord`, byte framing
  (bounded lines, any bytes accepted), kubelet timestamps, ZenML output shapes.
- :mod:`zwmd.logs.store` -- the :class:`~zwmd.logs.store.LogStore` protocol, keys and
  checkpoints.
- :mod:`zwmd.logs.batches` -- the batch format every byte store keeps logs in: records,
  each batch ended by a commit line with the checkpoint (encode, decode).
- :mod:`zwmd.logs.batchstore` -- ``read`` and ``follow`` shared by the two stores below.
- :mod:`zwmd.logs.filestore` -- the builtin ``file`` store (crash-safe NDJSON files).
- :mod:`zwmd.logs.objectstore`, :mod:`zwmd.logs.spooling` -- a store on any object
  store (S3, GCS: the plugins supply only the backend), with a local spool for outages.
- :mod:`zwmd.logs.merging` -- time ordering across sources and exactly-once resume.
- :mod:`zwmd.logs.following`, :mod:`zwmd.logs.pipeline` -- following containers' logs
  into the store, and knowing when a workload's logs are complete.
"""
