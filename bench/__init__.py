"""``make bench``: the operator as a process against the Proxmox VE simulator (fixed task times)
and the Kubernetes API emulator, each in a process of its own, driven with kubectl; every figure
a ratio against a floor from the same run. See docs/benchmarks.md.
"""
