"""Multi-layer stack ensembles (AutoGluon-style stacking) as one fitted predictor.

A stack has layers: layer 1 are fold-bagged models of the input features; every model of
layer k > 1 reads the input features *plus* the scores of every model of layer k - 1 (as
columns named by :func:`stack_columns`). The final answer is a weighted mean of any of the
stack's models (greedy ensemble selection picks them across layers) and optionally of
models outside the stack (a layer-1 trial refitted on all rows). The trainer builds the
stack features with the same :func:`stack_columns` from out-of-fold predictions, so what a
layer-2 model saw in training and what it sees here are the same columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.ml._model import EstimatorCompiler, MatrixScorer, _labels

STACK_PREFIX = "__stack__"


def stack_columns(key: str, scores: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """The feature columns one model's scores become for the next layer: the positive
    class's probability (binary), every class's (multiclass) or the value (regression)."""
    name = f"{STACK_PREFIX}.{key}"
    if task == "regression":
        return {name: np.asarray(scores, dtype=np.float64).reshape(-1)}
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[1] == 2:
        return {name: scores[:, 1]}
    return {f"{name}.c{k}": scores[:, k] for k in range(scores.shape[1])}


def with_stack_columns(
    X: pd.DataFrame, outputs: Mapping[str, np.ndarray], task: str
) -> pd.DataFrame:
    """``X`` plus the stack columns of ``outputs`` (key -> scores), in ``outputs``' order."""
    cols: dict[str, np.ndarray] = {}
    for key, scores in outputs.items():
        cols.update(stack_columns(key, scores, task))
    extra = pd.DataFrame(cols, index=X.index)
    return pd.concat([X, extra], axis=1)


class StackEnsemble:
    """A fitted stack: ``layers[i]`` maps model key -> fitted model (layer ``i + 1``);
    ``weights`` maps member key -> weight, where a key is a stack model's or one of
    ``outside``'s (models of the input features kept apart from the stack). Same interface
    as the other ATLAS predictors."""

    def __init__(
        self,
        layers: Sequence[Mapping[str, Any]],
        weights: Mapping[str, float],
        *,
        outside: Mapping[str, Any] | None = None,
        task: str,
        classes: Sequence[Any] | np.ndarray | None,
    ) -> None:
        self.layers = [dict(layer) for layer in layers]
        self.outside = dict(outside or {})
        self.weights = {k: float(w) for k, w in weights.items() if w > 0}
        known = set(self.outside).union(*(set(layer) for layer in self.layers))
        missing = sorted(set(self.weights) - known)
        if not self.layers or not self.layers[0] or not self.weights or missing:
            raise ValueError(
                f"a stack needs layers and weighted members it holds (missing {missing})"
            )
        self.task = task
        self.classes_ = None if classes is None else np.asarray(classes)
        self.family = "stack"
        # only the layers up to the highest weighted member need to run
        self.depth = max(
            (i + 1 for i, layer in enumerate(self.layers) if set(layer) & set(self.weights)),
            default=0,
        )
        parts = [f"{w:.2f}*{k}" for k, w in sorted(self.weights.items(), key=lambda kv: -kv[1])]
        sizes = "+".join(str(len(layer)) for layer in self.layers)
        self.description = f"stack[{len(self.layers)} layers: {sizes} models]({' + '.join(parts)})"

    @property
    def member_ids(self) -> list[str]:
        return list(self.weights)

    def layer_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """Scores of every stack model that the weighted members need, by key."""
        out: dict[str, np.ndarray] = {}
        previous: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.layers[: self.depth]):
            frame = X if i == 0 else with_stack_columns(X, previous, self.task)
            previous = {k: np.asarray(m.predict_scores(frame)) for k, m in layer.items()}
            out.update(previous)
        return out

    def predict_scores(self, X: pd.DataFrame) -> np.ndarray:
        out = self.layer_outputs(X)
        total: np.ndarray | None = None
        for key, w in self.weights.items():
            scores = out[key] if key in out else np.asarray(self.outside[key].predict_scores(X))
            total = w * scores if total is None else total + w * scores
        assert total is not None
        return total / float(sum(self.weights.values()))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            raise AttributeError("predict_proba is only defined for classification models")
        return self.predict_scores(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return _labels(self, self.predict_scores(X))

    def contributions(self, X: pd.DataFrame) -> None:
        """None: a stacked model's output is not a sum over the input features."""
        return None

    def matrix_scorer(
        self, columns: Sequence[str], compile_estimator: EstimatorCompiler | None = None
    ) -> MatrixScorer | None:
        """``predict_scores`` for an all-numeric float matrix (columns ``columns``): each
        layer's matrix scorers over the input columns plus the previous layer's stack
        columns; None when any model needs a frame."""
        scorers: list[dict[str, MatrixScorer]] = []
        names = list(columns)
        for i, layer in enumerate(self.layers[: self.depth]):
            if i > 0:
                probe = self._probe()
                names = list(columns) + [
                    c for k in self.layers[i - 1] for c in stack_columns(k, probe, self.task)
                ]
            found: dict[str, MatrixScorer] = {}
            for key, model in layer.items():
                scorer = getattr(model, "matrix_scorer", lambda *a: None)(names, compile_estimator)
                if scorer is None:
                    return None
                found[key] = scorer
            scorers.append(found)
        outside: dict[str, MatrixScorer] = {}
        for key, model in self.outside.items():
            if key in self.weights:
                scorer = getattr(model, "matrix_scorer", lambda *a: None)(
                    list(columns), compile_estimator
                )
                if scorer is None:
                    return None
                outside[key] = scorer
        weights, task, total = self.weights, self.task, float(sum(self.weights.values()))

        def scores(M: np.ndarray) -> np.ndarray:
            out: dict[str, np.ndarray] = {}
            previous: dict[str, np.ndarray] = {}
            for i, found in enumerate(scorers):
                if i == 0:
                    Mi = M
                else:
                    cols = [
                        c for k, s in previous.items() for c in stack_columns(k, s, task).values()
                    ]
                    Mi = np.column_stack([M, *cols])
                previous = {k: np.asarray(s(Mi)) for k, s in found.items()}
                out.update(previous)
            acc = sum(w * (out[k] if k in out else outside[k](M)) for k, w in weights.items())
            return np.asarray(acc) / total

        return scores

    def _probe(self) -> np.ndarray:
        """Scores of the model output's shape, to name its stack columns."""
        if self.task == "regression":
            return np.zeros(1)
        n = len(self.classes_) if self.classes_ is not None else 2
        return np.zeros((1, n))
