"""Application services: observe Proxmox and Kubernetes, ask the domain, act.

Nothing here imports kopf: the handlers in ``handlers.py`` translate kopf's events into calls
to these functions and their results back into patches, events and retries.
"""
