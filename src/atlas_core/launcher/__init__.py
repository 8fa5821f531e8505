"""The local launcher: `atlas up`, `atlas status`, `atlas down`."""

from atlas_core.launcher._launcher import Credentials, Launcher, RunState, ensure_credentials
from atlas_core.launcher._objectstore import SeaweedS3Server, pick_free_ports
from atlas_core.launcher._services import (
    KNOWN_SERVICES,
    KNOWN_WEB_APPS,
    ServiceSpec,
    WebAppSpec,
    implemented_services,
    implemented_web_apps,
)

__all__ = [
    "KNOWN_SERVICES",
    "KNOWN_WEB_APPS",
    "Credentials",
    "Launcher",
    "RunState",
    "SeaweedS3Server",
    "ServiceSpec",
    "WebAppSpec",
    "ensure_credentials",
    "implemented_services",
    "implemented_web_apps",
    "pick_free_ports",
]
