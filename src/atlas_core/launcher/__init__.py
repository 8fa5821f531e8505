"""The local launcher: `atlas up`, `atlas status`, `atlas down`."""

from atlas_core.launcher._launcher import Credentials, Launcher, RunState, ensure_credentials
from atlas_core.launcher._services import KNOWN_SERVICES, ServiceSpec, implemented_services

__all__ = [
    "KNOWN_SERVICES",
    "Credentials",
    "Launcher",
    "RunState",
    "ServiceSpec",
    "ensure_credentials",
    "implemented_services",
]
