"""Model quality from labeled predictions: AUC, accuracy and log loss (classification), RMSE
and MAE (regression), with percentile-bootstrap 95% intervals (fixed seed, so a report is
reproducible), and challenger-vs-baseline differences: paired on the same requests (shadows)
or unpaired (canary traffic). Point estimates are scikit-learn's."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from atlas_core.errors import InvalidArgument
from atlas_serving.domain import MetricEstimate, PairedComparison

HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "log_loss": False, "rmse": False, "mae": False}
TASK_METRICS = {
    "binary": ("auc", "accuracy", "log_loss"),
    "multiclass": ("auc", "accuracy", "log_loss"),
    "regression": ("rmse", "mae"),
}
DEFAULT_METRIC = {"binary": "auc", "multiclass": "accuracy", "regression": "rmse"}
RESAMPLES = 400
# Resample cells (resamples x rows) handled at once. Each bootstrap step holds a few arrays
# of this many cells (indices, scores, ranks): 2 MB each. Larger chunks are no faster, and
# arrays of tens of MB freed by a worker thread stay in glibc's arena as fragmented heap:
# at 2,000,000 cells serving's RSS rose by ~5 KB per labelled prediction
# (docs/experiments/chaos.md, soak).
_MAX_CELLS = 250_000
SEED = 0
LEVEL = 0.95
_EPS = 1e-15


def default_metric(task: str) -> str:
    return DEFAULT_METRIC.get(task, "accuracy")


def check_metric(task: str, metric: str) -> str:
    """The metric to use (the task's default when empty); INVALID_ARGUMENT when unknown."""
    if not metric:
        return default_metric(task)
    if metric not in TASK_METRICS.get(task, ()):
        raise InvalidArgument(
            f"metric {metric!r} is not one of {', '.join(TASK_METRICS.get(task, ()))} "
            f"({task} models)",
            reason="UNKNOWN_METRIC",
            metadata={"metric": metric},
        )
    return metric


@dataclass
class Labeled:
    """A variant's labeled predictions. ``keys`` identify the request (prediction id, row);
    ``y`` holds true labels (text) or values; ``probs`` class probabilities (n x k, the
    model's class order) for classification; ``pred`` the predicted labels or values."""

    task: str
    classes: list[str]
    keys: list[tuple[str, int]]
    y: np.ndarray
    pred: np.ndarray
    probs: np.ndarray | None

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, idx: np.ndarray) -> Labeled:
        return Labeled(
            self.task,
            self.classes,
            [self.keys[i] for i in idx],
            self.y[idx],
            self.pred[idx],
            None if self.probs is None else self.probs[idx],
        )


def labeled_from_rows(task: str, classes: Sequence[str], rows: Sequence[Any]) -> Labeled:
    """Rows (attribute access: database rows) with prediction_id, row, label, value, probs
    (JSON), outcome, outcome_value."""
    keys = [(str(r.prediction_id), int(r.row)) for r in rows]
    if task == "regression":
        y = np.array([float(r.outcome_value) for r in rows], dtype=np.float64)
        pred = np.array([float(r.value) for r in rows], dtype=np.float64)
        return Labeled(task, list(classes), keys, y, pred, None)
    y = np.array([str(r.outcome) for r in rows], dtype=object)
    pred = np.array([str(r.label) for r in rows], dtype=object)
    k = len(classes)
    probs = np.full((len(rows), k), np.nan)
    for i, r in enumerate(rows):
        line = json.loads(str(r.probs)) if r.probs else []
        if len(line) == k:
            probs[i] = line
    return Labeled(task, list(classes), keys, y, pred, probs if k else None)


def concat(task: str, classes: Sequence[str], parts: Sequence[Labeled]) -> Labeled:
    """One Labeled of parts read in batches (same task and classes)."""
    if not parts:
        return labeled_from_rows(task, classes, [])
    if len(parts) == 1:
        return parts[0]
    keys = [k for part in parts for k in part.keys]
    y = np.concatenate([part.y for part in parts])
    pred = np.concatenate([part.pred for part in parts])
    probs = [part.probs for part in parts if part.probs is not None]
    both = np.concatenate(probs) if len(probs) == len(parts) else None
    return Labeled(task, list(classes), keys, y, pred, both)


# -- metrics ----------------------------------------------------------------------------------


def metric_value(metric: str, data: Labeled) -> float | None:
    """scikit-learn's value of ``metric`` on ``data``; None when it is undefined there (AUC
    with one class only, no probabilities, no rows)."""
    from sklearn import metrics as skm

    if not len(data):
        return None
    if metric == "rmse":
        return float(np.sqrt(skm.mean_squared_error(data.y, data.pred)))
    if metric == "mae":
        return float(skm.mean_absolute_error(data.y, data.pred))
    if metric == "accuracy":
        return float(skm.accuracy_score(data.y.astype(str), data.pred.astype(str)))
    probs = data.probs
    if probs is None or np.isnan(probs).any():
        return None
    if metric == "log_loss":
        return float(skm.log_loss(data.y.astype(str), _normalised(probs), labels=data.classes))
    if metric == "auc":
        present = set(data.y.tolist())
        if len(present) < 2:
            return None
        if data.task == "binary" and len(data.classes) == 2:
            return float(skm.roc_auc_score(data.y == data.classes[1], probs[:, 1]))
        if present != set(data.classes):
            return None
        return float(
            skm.roc_auc_score(
                data.y.astype(str), _normalised(probs), multi_class="ovr", labels=data.classes
            )
        )
    raise InvalidArgument(f"unknown metric {metric!r}", reason="UNKNOWN_METRIC")


def _normalised(probs: np.ndarray) -> np.ndarray:
    sums = probs.sum(axis=1, keepdims=True)
    return probs / np.where(sums > 0, sums, 1.0)


def _row_terms(metric: str, data: Labeled) -> np.ndarray | None:
    """Per-row terms whose mean (square-rooted for RMSE) is the metric; None for AUC."""
    if metric == "rmse":
        return np.asarray((data.y - data.pred) ** 2, dtype=np.float64)
    if metric == "mae":
        return np.asarray(np.abs(data.y - data.pred), dtype=np.float64)
    if metric == "accuracy":
        return (data.y.astype(str) == data.pred.astype(str)).astype(np.float64)
    if metric == "log_loss" and data.probs is not None:
        index = {c: i for i, c in enumerate(data.classes)}
        cols = np.array([index.get(str(v), 0) for v in data.y])
        p = _normalised(data.probs)[np.arange(len(cols)), cols]
        return -np.log(np.clip(p, _EPS, 1.0))
    return None


def _resampled(metric: str, data: Labeled, idx: np.ndarray) -> np.ndarray:
    """The metric on each resample (rows of ``idx``); NaN where undefined."""
    terms = _row_terms(metric, data)
    if terms is not None:
        means = terms[idx].mean(axis=1)
        return np.sqrt(means) if metric == "rmse" else means
    if metric != "auc" or data.probs is None or np.isnan(data.probs).any():
        return np.full(len(idx), np.nan)
    if data.task == "binary" and len(data.classes) == 2:
        return _auc_resampled(data.y == data.classes[1], data.probs[:, 1], idx)
    # one-vs-rest, macro-averaged over the classes: as scikit-learn's multi_class="ovr"
    probs = _normalised(data.probs)
    per_class = [
        _auc_resampled(data.y.astype(str) == c, probs[:, k], idx)
        for k, c in enumerate(data.classes)
    ]
    return np.mean(per_class, axis=0)


def _auc_resampled(positive: np.ndarray, score: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Binary AUC of each resample by the rank-sum (Mann-Whitney) identity, ties averaged:
    the value roc_auc_score gives, vectorised over resamples (chunked to bound memory)."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n = idx.shape[1]
    out = np.empty(len(idx))
    step = max(1, _MAX_CELLS // max(n, 1))
    for start in range(0, len(idx), step):
        rows = idx[start : start + step]
        ys = positive[rows]
        ranks = rankdata(score[rows], axis=1)
        npos = ys.sum(axis=1).astype(np.float64)
        nneg = n - npos
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = (np.where(ys, ranks, 0.0).sum(axis=1) - npos * (npos + 1) / 2) / (npos * nneg)
        auc[(npos == 0) | (nneg == 0)] = np.nan
        out[start : start + len(rows)] = auc
    return out


def _interval(samples: np.ndarray) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def _index_chunks(n: int, rng: np.random.Generator, resamples: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n rows as index matrices of at most _MAX_CELLS entries."""
    step = max(1, _MAX_CELLS // max(n, 1))
    for start in range(0, resamples, step):
        yield rng.integers(0, n, size=(min(step, resamples - start), n))


def _bootstrap(metric: str, data: Labeled, rng: np.random.Generator, resamples: int) -> np.ndarray:
    return np.concatenate(
        [_resampled(metric, data, idx) for idx in _index_chunks(len(data), rng, resamples)]
    )


def estimate(metric: str, data: Labeled, resamples: int = RESAMPLES) -> MetricEstimate | None:
    """The metric with its percentile-bootstrap interval; None when undefined."""
    value = metric_value(metric, data)
    if value is None:
        return None
    lo, hi = _interval(_bootstrap(metric, data, np.random.default_rng(SEED), resamples))
    return MetricEstimate(metric, value, lo, hi, HIGHER_IS_BETTER[metric])


def estimates(data: Labeled, resamples: int = RESAMPLES) -> list[MetricEstimate]:
    out = []
    for metric in TASK_METRICS.get(data.task, ()):
        found = estimate(metric, data, resamples)
        if found is not None:
            out.append(found)
    return out


@dataclass(frozen=True)
class Difference:
    """Challenger minus baseline on a metric, with its interval."""

    metric: str
    n: int
    difference: float
    lower: float
    upper: float

    @property
    def significant(self) -> bool:
        return self.lower > 0 or self.upper < 0

    @property
    def challenger_better(self) -> bool:
        if HIGHER_IS_BETTER[self.metric]:
            return self.lower > 0
        return self.upper < 0

    def drop(self) -> tuple[float, float, float]:
        """How much worse the challenger is (positive: worse), with the interval."""
        if HIGHER_IS_BETTER[self.metric]:
            return -self.difference, -self.upper, -self.lower
        return self.difference, self.lower, self.upper


def paired_difference(
    metric: str, challenger: Labeled, baseline: Labeled, resamples: int = RESAMPLES
) -> Difference | None:
    """On the requests both answered (matched by key), one resample for both sides."""
    mine = {k: i for i, k in enumerate(challenger.keys)}
    pairs = [(mine[k], j) for j, k in enumerate(baseline.keys) if k in mine]
    if not pairs:
        return None
    a = challenger.take(np.array([p[0] for p in pairs]))
    b = baseline.take(np.array([p[1] for p in pairs]))
    va, vb = metric_value(metric, a), metric_value(metric, b)
    if va is None or vb is None:
        return None
    rng = np.random.default_rng(SEED)
    diffs = [  # the same resamples on both sides: the pairing
        _resampled(metric, a, idx) - _resampled(metric, b, idx)
        for idx in _index_chunks(len(pairs), rng, resamples)
    ]
    lo, hi = _interval(np.concatenate(diffs))
    return Difference(metric, len(pairs), va - vb, lo, hi)


def unpaired_difference(
    metric: str, challenger: Labeled, baseline: Labeled, resamples: int = RESAMPLES
) -> Difference | None:
    """Different requests on each side (canary traffic): independent resamples."""
    va, vb = metric_value(metric, challenger), metric_value(metric, baseline)
    if va is None or vb is None:
        return None
    rng = np.random.default_rng(SEED)
    sa = _bootstrap(metric, challenger, rng, resamples)
    sb = _bootstrap(metric, baseline, rng, resamples)
    lo, hi = _interval(sa - sb)
    return Difference(metric, min(len(challenger), len(baseline)), va - vb, lo, hi)


def comparison(baseline_variant: str, diff: Difference) -> PairedComparison:
    return PairedComparison(
        baseline_variant=baseline_variant,
        metric=diff.metric,
        pairs=diff.n,
        difference=diff.difference,
        lower=diff.lower,
        upper=diff.upper,
        significant=diff.significant,
        challenger_better=diff.challenger_better,
    )


def worse_than(metric: str, value: float, threshold: float) -> bool:
    """Whether ``value`` is worse than an alert threshold on ``metric``."""
    return value < threshold if HIGHER_IS_BETTER[metric] else value > threshold
