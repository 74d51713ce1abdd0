"""zwmd: an open workload manager daemon for ZenML workspace servers.

The daemon turns ZenML's run requests into Kubernetes Jobs, follows them with one
list+watch per kind, drives one state machine per workload and keeps every log line.
"""

__version__ = "0.1.0"
