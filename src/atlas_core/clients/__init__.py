"""Typed clients of the ATLAS services (the Python SDK). They depend only on the generated
contracts and atlas_core, never on a service package."""

from atlas_core.clients._base import ServiceClient
from atlas_core.clients.data import DataClient, Features
from atlas_core.clients.graph import GraphClient, Translation
from atlas_core.clients.labeling import LabelingClient
from atlas_core.clients.lineage import LineageClient
from atlas_core.clients.trainer import TrainerClient, automl_spec

__all__ = [
    "DataClient",
    "Features",
    "GraphClient",
    "LabelingClient",
    "LineageClient",
    "ServiceClient",
    "TrainerClient",
    "Translation",
    "automl_spec",
]
