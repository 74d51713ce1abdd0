"""zwmd.engine: one state machine per workload, with Kubernetes as its database.

- :mod:`zwmd.engine.states`, :mod:`zwmd.engine.workload` -- states, the transition table,
  failure reasons, and the workload record kept in a Job's annotations.
- :mod:`zwmd.engine.reasons` (with :mod:`zwmd.engine.kubereading`) -- what a Job, its
  pods and Events say: a pure function.
- :mod:`zwmd.engine.reactor` -- watch events in, per-workload workers, Kubernetes writes
  out; :mod:`zwmd.engine.queueing` -- who may start; :mod:`zwmd.engine.submitting` --
  a run request becomes a suspended Job.
- :mod:`zwmd.engine.building`, :mod:`zwmd.engine.buildlogs`,
  :mod:`zwmd.engine.pullsecrets` -- runner images as build workloads.
"""
