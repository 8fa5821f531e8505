"""The trainer's AutoML engine: whole-pipeline search with Optuna (grpc-free domain code).

Entry point: :func:`run_automl` of an :class:`AutoMLRequest`. Fitted models are atlas_core.ml
objects, so they unpickle without this package.
"""

from __future__ import annotations

from atlas_trainer.automl.engine import AutoMLRequest, AutoMLResult, run_automl
from atlas_trainer.automl.finalize import ENSEMBLE_NUMBER, LeaderboardRow
from atlas_trainer.automl.meta import (
    MIGRATIONS,
    InMemoryMetaStore,
    MetaEntry,
    MetaStore,
    Prior,
    SqlMetaStore,
    find_priors,
)
from atlas_trainer.automl.space import FAMILIES
from atlas_trainer.automl.task import METRICS, detect_task, prepare_target, target_column

__all__ = [
    "ENSEMBLE_NUMBER",
    "FAMILIES",
    "METRICS",
    "MIGRATIONS",
    "AutoMLRequest",
    "AutoMLResult",
    "InMemoryMetaStore",
    "LeaderboardRow",
    "MetaEntry",
    "MetaStore",
    "Prior",
    "SqlMetaStore",
    "detect_task",
    "find_priors",
    "prepare_target",
    "run_automl",
    "target_column",
]
