"""The local launcher: `atlas up`, `atlas status`, `atlas down`."""

from atlas_core.launcher._launcher import Credentials, Launcher, RunState, ensure_credentials
from atlas_core.launcher._objectstore import SeaweedS3Server, pick_free_ports
from atlas_core.launcher._services import KNOWN_SERVICES, ServiceSpec, implemented_services

__all__ = [
    "KNOWN_SERVICES",
    "Credentials",
    "Launcher",
    "RunState",
    "SeaweedS3Server",
    "ServiceSpec",
    "ensure_credentials",
    "implemented_services",
    "pick_free_ports",
]
