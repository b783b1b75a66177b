"""A Proxmox VE API simulator, served over TLS, for tests, the demo and benchmarks.

It shares no code with the operator's Proxmox client: it is written from the Proxmox VE
sources' behaviour (docs/simulator.md names the upstream code behind each behaviour and every
known divergence), so tests of the client are tests against an independent implementation.
"""

from .api import RecordedRequest
from .control import ControlError, SimulatorControl
from .faults import Unreachable
from .server import Simulator
from .state import GuestBehaviour, Timings

__all__ = [
    "ControlError",
    "GuestBehaviour",
    "RecordedRequest",
    "Simulator",
    "SimulatorControl",
    "Timings",
    "Unreachable",
]
