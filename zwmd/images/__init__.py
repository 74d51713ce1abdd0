"""zwmd.images: runner images, without the engine.

- :mod:`zwmd.images.modes` -- which of the three ways (pre-built, build on demand, reuse
  the snapshot's image) answers a request, from configuration alone.
- :mod:`zwmd.images.credentials` -- docker config auths for a registry host.
- :mod:`zwmd.images.registry` -- does an image exist: the OCI distribution API.
- :mod:`zwmd.images.builder` -- the builder Job, its ConfigMap and Secrets.

The coordinator that runs builds as workloads is :mod:`zwmd.engine.imagebuilds`.
"""
