"""The pure core: the resource model, the destroy state machine and reconcile decisions.

Nothing in here knows kopf, Kubernetes clients or HTTP: handlers translate events into calls
to this package, and the Proxmox client translates its answers into the observations it takes.
"""
