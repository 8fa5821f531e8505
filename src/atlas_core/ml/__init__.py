"""Estimators and transformers that fitted ATLAS models are made of.

Everything a pickled model bundle can contain lives here (not in the trainer), so serving
unpickles models with only atlas_core installed. Heavy libraries (torch, xgboost, lightgbm)
are imported lazily.
"""

from __future__ import annotations

from atlas_core.ml._compiled import compile_estimator
from atlas_core.ml._crosses import PairwiseCrosses
from atlas_core.ml._encoding import CardinalityEncoder
from atlas_core.ml._mlp import TorchMLP, pick_device
from atlas_core.ml._model import (
    FoldBag,
    MatrixScorer,
    TabularModel,
    WeightedEnsemble,
    booster_contributions,
)
from atlas_core.ml._node_lookup import NODE_ID, NodeLookup
from atlas_core.ml._preprocess import TabularPreprocessor
from atlas_core.ml._roles import ROLES, ColumnRole, ColumnRoleFeatures, ColumnRoleModel
from atlas_core.ml._sanitize import ColumnSanitizer, is_categorical
from atlas_core.ml._stack import StackEnsemble, stack_columns, with_stack_columns
from atlas_core.ml._torch_net import TorchNetModel, text_token_ids, tokenize

__all__ = [
    "CardinalityEncoder",
    "ColumnRole",
    "ColumnRoleFeatures",
    "ColumnRoleModel",
    "ColumnSanitizer",
    "FoldBag",
    "MatrixScorer",
    "NODE_ID",
    "NodeLookup",
    "PairwiseCrosses",
    "ROLES",
    "StackEnsemble",
    "TabularModel",
    "TabularPreprocessor",
    "TorchMLP",
    "TorchNetModel",
    "WeightedEnsemble",
    "booster_contributions",
    "compile_estimator",
    "is_categorical",
    "pick_device",
    "stack_columns",
    "text_token_ids",
    "tokenize",
    "with_stack_columns",
]
