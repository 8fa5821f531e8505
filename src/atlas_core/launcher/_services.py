"""Which services the launcher knows and which of them are implemented in this install."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # short name: env prefix ATLAS_<NAME>_, CLI group, scope prefix
    module: str  # `python -m <module>` runs it
    full_name: str  # gRPC service name, reported SERVING by health
    port_offset: int  # port = base_port + offset
    # Services it calls: the launcher passes ATLAS_<NAME>_<DEP>__TARGET and __TOKEN for each.
    needs: tuple[str, ...] = ()
    # A second, read-only endpoint the service may start (the data service's native online
    # reader): the gRPC service it serves (checked by health), at port = base_port +
    # read_port_offset, passed as ATLAS_<NAME>_NATIVE_READER__PORT.
    read_service: str = ""
    read_port_offset: int = 0
    # Whether it reads through its peers' read endpoints: the launcher then passes
    # ATLAS_<NAME>_<DEP>__READ_TARGET for each one that answers health.
    uses_read_endpoints: bool = False


KNOWN_SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "data",
        "atlas_data",
        "atlas.data.v1.DataService",
        1,
        read_service="atlas.data.v1.OnlineFeatureService",
        read_port_offset=11,
    ),
    ServiceSpec(
        "serving",
        "atlas_serving",
        "atlas.serving.v1.ServingService",
        3,
        # Bad cases go to labeling (it starts later: the launcher chose its port already).
        ("data", "labeling"),
        uses_read_endpoints=True,
    ),
    # Started after serving: a job resolves the model it replaces and registers its bundle.
    ServiceSpec(
        "trainer", "atlas_trainer", "atlas.trainer.v1.TrainerService", 2, ("data", "serving")
    ),
    # Exports are registered with the data service; pre-labels come from serving.
    ServiceSpec(
        "labeling", "atlas_labeling", "atlas.labeling.v1.LabelingService", 4, ("data", "serving")
    ),
    # Node embeddings go into the data service's feature groups.
    ServiceSpec("graph", "atlas_graph", "atlas.graph.v1.GraphService", 5, ("data",)),
)


@dataclass(frozen=True)
class WebAppSpec:
    """A web app (HTTP) that is a client of one service and runs beside it."""

    name: str  # env prefix ATLAS_<NAME>_ with "-" as "_", e.g. ATLAS_LABELING_WEB_
    module: str  # `python -m <module>` runs it
    serves: str  # the service it calls: started only when that service is started
    port_offset: int  # port = base_port + offset

    @property
    def env_prefix(self) -> str:
        return "ATLAS_" + self.name.upper().replace("-", "_") + "_"


KNOWN_WEB_APPS: tuple[WebAppSpec, ...] = (
    # The annotator UI; launchable exactly when the labeling service is.
    WebAppSpec("labeling-web", "atlas_labeling.web", "labeling", 80),
)


def implemented_services() -> list[ServiceSpec]:
    """Services whose runnable package is installed; the others are never started."""
    found = []
    for spec in KNOWN_SERVICES:
        try:
            if importlib.util.find_spec(f"{spec.module}.__main__") is not None:
                found.append(spec)
        except ModuleNotFoundError:
            pass
    return found


def implemented_web_apps(services: list[ServiceSpec] | None = None) -> list[WebAppSpec]:
    """Web apps whose package is installed and whose service is among ``services`` (by
    default the services `atlas up` starts)."""
    started = {s.name for s in (implemented_services() if services is None else services)}
    found = []
    for app in KNOWN_WEB_APPS:
        if app.serves not in started:
            continue
        try:
            if importlib.util.find_spec(f"{app.module}.__main__") is not None:
                found.append(app)
        except ModuleNotFoundError:
            pass
    return found
