"""zwmd.engine: one state machine per workload, with Kubernetes as its database.

- :mod:`zwmd.engine.workload` -- the workload record kept in a Job's annotations (the
  states and failure reasons themselves are :mod:`zwmd.states`).
- :mod:`zwmd.engine.reasons` (with :mod:`zwmd.engine.kubereading`) -- what a Job, its
  pods and Events say: a pure function.
- :mod:`zwmd.engine.reconciling` -- per-key work queues and one timer, fed by the
  informer (:mod:`zwmd.kube.informer`); :mod:`zwmd.engine.registry` -- every workload of
  every kind by id, evicted once finished and stored; :mod:`zwmd.engine.queueing` -- who
  may start; :mod:`zwmd.engine.attempts` -- which attempt a request or message joins.
- The kinds: :mod:`zwmd.engine.runners` (a run request becomes a suspended Job,
  followed to its end) and :mod:`zwmd.engine.imagebuilds` (runner images built by shared
  builder Jobs), with :mod:`zwmd.engine.imagehooks` (the plugins' image hooks),
  :mod:`zwmd.engine.buildlogs` and :mod:`zwmd.engine.pullsecrets`.
"""
