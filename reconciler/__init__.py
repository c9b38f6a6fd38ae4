"""drctl: a GitOps reconciler for disaster recovery of VMs replicated between two sites."""

__version__ = "0.1.0"
