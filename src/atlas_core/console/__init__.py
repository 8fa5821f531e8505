"""The ATLAS web console: read-only pages over the data, trainer and serving services
(datasets, training jobs, models, endpoints), signed in with a bearer token. A gRPC client of
the services through atlas_core.clients, built on the shared web kit (atlas_core.web)."""

from atlas_core.console.app import create_app
from atlas_core.console.config import ConsoleSettings, ServiceTarget

__all__ = ["ConsoleSettings", "ServiceTarget", "create_app"]
