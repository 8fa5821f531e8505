"""The control plane: the model registry (versions, aliases), endpoint state in the metadata
DB, and deployments (rollout plans and the driver that steps them, watching alarms).

Blocking code, run in threads by the service; every replica converges to what is stored here.
"""

from atlas_serving.control.endpoints import EndpointStore
from atlas_serving.control.operations import Control
from atlas_serving.control.registry import Registry
from atlas_serving.control.rollout import TERMINAL, DeploymentStore, Driver
from atlas_serving.control.rollout_plan import Plan, plan_for

__all__ = [
    "TERMINAL",
    "Control",
    "DeploymentStore",
    "Driver",
    "EndpointStore",
    "Plan",
    "Registry",
    "plan_for",
]
