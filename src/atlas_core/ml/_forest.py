"""A compiled form of XGBoost tree ensembles for small online batches.

XGBoost pays a large fixed cost per ``predict`` call (config JSON, a proxy DMatrix, cgroup
CPU-quota reads, buffer allocations), which dominates single-row requests. Here the trees
are laid out once as padded perfect binary trees in flat numpy arrays, and a batch is
evaluated level by level with a handful of vectorised operations (``compile_estimator``
uses it for XGBoost models).

Split semantics are XGBoost's: features are compared as float32 (``x < threshold`` goes
left), a missing value (NaN) follows the node's default direction. The margin offset (base
score) is calibrated against the booster itself. Serving uses a forest only after it
reproduced the model's own answers on a verification set; anything unsupported
(categorical splits, other boosters, custom ``missing``, very deep trees) returns None and
the model is called as before.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

MAX_DEPTH = 12
MAX_PADDED_NODES = 4_000_000  # trees x 2**depth: bounds the memory of deep, sparse trees

_CLASSIFIER_OBJECTIVES = ("binary:logistic", "multi:softprob", "multi:softmax")
_REGRESSION_LINKS = {
    "reg:squarederror": "identity",
    "reg:absoluteerror": "identity",
    "reg:pseudohubererror": "identity",
    "reg:logistic": "sigmoid",
    "count:poisson": "exp",
    "reg:gamma": "exp",
    "reg:tweedie": "exp",
}


class Forest:
    """Scores of an XGBoost gbtree model: ``predict_proba`` (classifiers) or ``predict``
    (regressors) for a float matrix whose columns are the model's features in order."""

    def __init__(
        self, trees: list[dict[str, Any]], groups: list[int], n_groups: int, link: str
    ) -> None:
        depth = max(1, max(_depth(t) for t in trees))
        n_trees = len(trees)
        size = 2 ** (depth + 1) - 1  # a perfect tree: inner nodes, then the leaves
        inner = 2**depth - 1
        feat = np.zeros((n_trees, size), np.intp)
        thr = np.full((n_trees, size), np.inf, np.float32)
        left = np.ones((n_trees, size), bool)
        value = np.zeros((n_trees, size), np.float64)
        for i, tree in enumerate(trees):
            _fill(tree, depth, inner, feat[i], thr[i], left[i], value[i, inner:])
        base = (np.arange(n_trees, dtype=np.intp) * size)[:, None]
        pos = np.arange(size, dtype=np.intp)[None, :]
        self.depth = depth
        self.n_trees = n_trees
        self.feat, self.thr, self.left = feat.ravel(), thr.ravel(), left.ravel()
        self.value = value.ravel()
        # global index of each node's right child (the left one is right - 1)
        self.right = (base + np.minimum(2 * pos + 2, size - 1)).ravel()
        self.roots = base[:, 0].copy()
        self.n_groups = n_groups
        self.single_group = n_groups == 1
        # trees x groups: sums the leaves of each output group in one matrix product
        self.group_matrix = np.zeros((n_trees, n_groups), np.float64)
        self.group_matrix[np.arange(n_trees), np.asarray(groups, dtype=np.intp)] = 1.0
        self.link = link
        self.offset = np.zeros(n_groups, np.float64)

    @classmethod
    def from_model(cls, model: Any, n_features: int) -> Forest | None:
        """A forest for an XGBClassifier / XGBRegressor, or None when not supported."""
        try:
            import xgboost
        except ImportError:
            return None
        if not isinstance(model, xgboost.XGBModel):
            return None
        missing = getattr(model, "missing", math.nan)
        if missing is not None and not (isinstance(missing, float) and math.isnan(missing)):
            return None
        booster = model.get_booster()
        raw = json.loads(booster.save_raw("json"))
        learner = raw["learner"]
        gbm = learner["gradient_booster"]
        if gbm.get("name") != "gbtree":
            return None
        objective = learner["objective"]["name"]
        classifier = isinstance(model, xgboost.XGBClassifier)
        if classifier and objective not in _CLASSIFIER_OBJECTIVES:
            return None
        if not classifier and objective not in _REGRESSION_LINKS:
            return None
        trees = gbm["model"]["trees"]
        groups = [int(g) for g in gbm["model"]["tree_info"]]
        if not trees or any(t.get("categories_nodes") for t in trees):
            return None
        if int(learner["learner_model_param"].get("num_feature", n_features)) != n_features:
            return None
        begin, end = _iteration_range(model)
        if end:
            per_round = len(trees) // max(1, booster.num_boosted_rounds())
            trees, groups = (
                trees[begin * per_round : end * per_round],
                groups[begin * per_round : end * per_round],
            )
        n_groups = max(groups) + 1
        if (
            max(_depth(t) for t in trees) > MAX_DEPTH
            or len(trees) * 2 ** max(_depth(t) for t in trees) > MAX_PADDED_NODES
        ):
            return None
        if classifier:
            link = "sigmoid2" if objective == "binary:logistic" else "softmax"
        else:
            link = _REGRESSION_LINKS[objective]
        forest = cls(trees, groups, n_groups, link)
        # the base score, in margin units, as the booster itself applies it
        probe = np.zeros((1, n_features), np.float64)
        margin = np.asarray(
            booster.inplace_predict(probe, predict_type="margin", iteration_range=(begin, end)),
            dtype=np.float64,
        )
        forest.offset = margin.reshape(1, -1)[0] - forest.margin(probe)[0]
        return forest

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """``[n, groups]`` raw sums (plus the calibrated offset)."""
        x = np.asarray(matrix, dtype=np.float32)
        n, width = x.shape
        feat, thr, right = self.feat, self.thr, self.right
        missing = bool(np.isnan(x).any())
        offset: Any
        if n == 1:
            flat, node, offset = x[0], self.roots, 0
        else:
            flat = x.ravel()
            offset = (np.arange(n, dtype=np.intp) * width)[:, None]
            node = np.broadcast_to(self.roots, (n, self.n_trees))
        for _ in range(self.depth):
            v = flat[feat[node] + offset]
            go_left = v < thr[node]
            if missing:
                go_left |= np.isnan(v) & self.left[node]
            node = right[node] - go_left
        leaves = self.value[node].reshape(n, self.n_trees)
        if self.single_group:
            return leaves.sum(axis=1, keepdims=True) + self.offset
        return leaves @ self.group_matrix + self.offset

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        margin = self.margin(matrix)
        if self.link == "sigmoid2":
            out = np.empty((margin.shape[0], 2), np.float64)
            p = out[:, 1]
            np.negative(margin[:, 0], out=p)
            np.exp(p, out=p)
            p += 1.0
            np.reciprocal(p, out=p)
            np.subtract(1.0, p, out=out[:, 0])
            return out
        if self.link == "softmax":
            e = np.exp(margin - margin.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        out = margin[:, 0]
        if self.link == "sigmoid":
            return 1.0 / (1.0 + np.exp(-out))
        if self.link == "exp":
            return np.exp(out)
        return out


def _iteration_range(model: Any) -> tuple[int, int]:
    """The trees ``predict`` uses (early stopping keeps the best iteration's)."""
    try:
        begin, end = model._get_iteration_range(None)
        return int(begin), int(end)
    except Exception:  # noqa: BLE001 - older/newer wrappers: every tree
        return 0, 0


def _depth(tree: dict[str, Any]) -> int:
    lefts, rights = tree["left_children"], tree["right_children"]
    best, stack = 0, [(0, 0)]
    while stack:
        node, depth = stack.pop()
        if lefts[node] == -1:
            best = max(best, depth)
        else:
            stack.append((lefts[node], depth + 1))
            stack.append((rights[node], depth + 1))
    return best


def _fill(
    tree: dict[str, Any],
    depth: int,
    inner: int,
    feat: np.ndarray,
    thr: np.ndarray,
    left: np.ndarray,
    value: np.ndarray,
) -> None:
    """Lay one tree out as a perfect tree of ``depth``: a leaf above the last level is
    replicated under a pass-through node (threshold +inf, both children the same leaf)."""
    lefts, rights = tree["left_children"], tree["right_children"]
    split_feature, split_value = tree["split_indices"], tree["split_conditions"]
    default_left = tree["default_left"]
    stack = [(0, 0, 0)]  # (tree node, position in the perfect tree, level)
    while stack:
        node, pos, level = stack.pop()
        if lefts[node] == -1:
            first, span = pos, 1
            for _ in range(depth - level):
                first, span = 2 * first + 1, span * 2
            value[first - inner : first - inner + span] = split_value[node]
            continue
        feat[pos] = split_feature[node]
        thr[pos] = np.float32(split_value[node])
        left[pos] = bool(default_left[node])
        stack.append((lefts[node], 2 * pos + 1, level + 1))
        stack.append((rights[node], 2 * pos + 2, level + 1))
