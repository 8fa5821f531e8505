"""Consensus for categorical answers: majority vote and Dawid–Skene.

Both break ties the same way: towards the lexicographically smallest label, so the result
does not depend on the order in which annotations were read from storage.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

# Added to every confusion-matrix cell and class count in the M-step. Without it one
# annotator who never used a label gets log(0) for it and a single answer can veto a class.
_SMOOTHING = 0.01


def majority_vote(
    labels_by_item: Mapping[str, Sequence[tuple[str, str]]],
    weights: Mapping[str, float] | None = None,
) -> dict[str, tuple[str, float]]:
    """Most voted label per item.

    Args:
        labels_by_item: item -> [(annotator, label)]. If an annotator appears more than once
            for an item, only their last answer counts (a relabel replaces the earlier one).
        weights: optional vote weight per annotator (e.g. gold accuracy); missing -> 1.0.
            Weights must be >= 0.

    Returns:
        item -> (label, confidence) where confidence is the winning label's share of the
        (weighted) votes. Items without any vote, or whose votes all weigh 0, are left out.
        Ties go to the lexicographically smallest label.
    """
    out: dict[str, tuple[str, float]] = {}
    for item, votes in labels_by_item.items():
        latest = dict(votes)  # annotator -> last label given
        tally: dict[str, float] = {}
        for annotator, label in latest.items():
            w = 1.0 if weights is None else float(weights.get(annotator, 1.0))
            if w < 0:
                raise ValueError(f"weights[{annotator!r}] is negative: {w}")
            tally[label] = tally.get(label, 0.0) + w
        total = sum(tally.values())
        if total <= 0:
            continue
        label = min(tally, key=lambda lab: (-tally[lab], lab))
        out[item] = (label, tally[label] / total)
    return out


def multilabel_vote(
    labels_by_item: Mapping[str, Sequence[tuple[str, Collection[str]]]],
    threshold: float = 0.5,
) -> dict[str, tuple[frozenset[str], dict[str, float]]]:
    """Consensus for multi-label classification: a label is kept when more than `threshold`
    of the item's annotators chose it (default: a strict majority).

    Args:
        labels_by_item: item -> [(annotator, the set of labels they chose)]; an annotator's
            last answer counts. An empty set is a valid answer ("none apply").
        threshold: the share of annotators a label must exceed, in [0, 1).

    Returns:
        item -> (kept labels, share of annotators per label chosen by anyone). Items without
        answers are left out.
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    out: dict[str, tuple[frozenset[str], dict[str, float]]] = {}
    for item, answers in labels_by_item.items():
        latest = {annotator: frozenset(chosen) for annotator, chosen in answers}
        if not latest:
            continue
        tally: dict[str, int] = {}
        for chosen in latest.values():
            for label in chosen:
                tally[label] = tally.get(label, 0) + 1
        share = {label: tally[label] / len(latest) for label in sorted(tally)}
        out[item] = (frozenset(lab for lab, v in share.items() if v > threshold), share)
    return out


@dataclass(frozen=True)
class DawidSkeneResult:
    """A fitted Dawid–Skene model.

    Attributes:
        items: item ids, the row order of `posteriors`.
        classes: sorted labels, the column order of `posteriors` and of each confusion matrix.
        annotators: sorted annotator ids.
        posteriors: items x classes, P(true class | all answers).
        priors: estimated class prevalence.
        confusion: annotator -> classes x classes matrix, row = true class, column = the
            label the annotator gave; rows sum to 1.
        iterations: EM iterations run.
        converged: whether the log-likelihood per answer improved by less than `tol`
            before `max_iter`.
        log_likelihood: marginal log-likelihood of the answers at the last iteration.
    """

    items: tuple[str, ...]
    classes: tuple[str, ...]
    annotators: tuple[str, ...]
    posteriors: np.ndarray
    priors: np.ndarray
    confusion: dict[str, np.ndarray]
    iterations: int
    converged: bool
    log_likelihood: float

    def consensus(self) -> dict[str, tuple[str, float]]:
        """item -> (most probable label, its posterior); ties go to the smallest label."""
        best = np.argmax(self.posteriors, axis=1)  # first maximum = smallest label
        return {
            item: (self.classes[k], float(self.posteriors[i, k]))
            for i, (item, k) in enumerate(zip(self.items, best))
        }

    def annotator_accuracy(self) -> dict[str, float]:
        """Estimated accuracy per annotator: the confusion diagonal weighted by the priors."""
        return {a: float(self.priors @ np.diag(m)) for a, m in self.confusion.items()}


def fit_dawid_skene(
    annotations: Sequence[tuple[str, str, str]],
    max_iter: int = 50,
    tol: float = 1e-6,
    classes: Sequence[str] | None = None,
) -> DawidSkeneResult:
    """Fit Dawid & Skene (1979): EM over one confusion matrix per annotator.

    Initialised from the per-item vote shares (so class k keeps meaning label k even with an
    adversarial annotator, as long as honest answers are the majority overall). The caller
    decides where it applies; the labeling service uses it for items with 3+ annotations
    and majority vote below that, since with one or two answers the posterior is mostly
    the estimated reliability of those one or two annotators.

    Args:
        annotations: (item, annotator, label) triples; a repeated (item, annotator) pair
            keeps its last label.
        max_iter: EM iterations at most (>= 1).
        tol: stop when the log-likelihood per answer improves by less than this (per
            answer, so the same tol suits 100 and 1,000,000 answers).
        classes: the label schema; labels nobody used get a small prior. Default: the labels
            seen. Every label seen must be in it.

    Raises:
        ValueError: no annotations, a label outside `classes`, or bad max_iter/tol.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    latest: dict[tuple[str, str], str] = {}
    for item, annotator, label in annotations:
        latest[(item, annotator)] = label
    if not latest:
        raise ValueError("no annotations")
    seen = sorted({label for label in latest.values()})
    class_list = sorted(set(classes)) if classes is not None else seen
    unknown = set(seen) - set(class_list)
    if unknown:
        raise ValueError(f"labels not in classes: {sorted(unknown)}")

    items = tuple(dict.fromkeys(item for item, _ in latest))
    annotators = tuple(sorted({a for _, a in latest}))
    item_ix = {v: i for i, v in enumerate(items)}
    ann_ix = {v: i for i, v in enumerate(annotators)}
    cls_ix = {v: i for i, v in enumerate(class_list)}
    it = np.fromiter((item_ix[i] for i, _ in latest), dtype=np.int64, count=len(latest))
    an = np.fromiter((ann_ix[a] for _, a in latest), dtype=np.int64, count=len(latest))
    lab = np.fromiter((cls_ix[v] for v in latest.values()), dtype=np.int64, count=len(latest))
    n_items, n_ann, n_cls = len(items), len(annotators), len(class_list)
    # cells_by_item[i, j * K + l] = 1 when annotator j answered l on item i: every EM step
    # is then one sparse product over the answers
    cells_by_item = sparse.csr_matrix(
        (np.ones(len(it)), (it, an * n_cls + lab)), shape=(n_items, n_ann * n_cls)
    )
    cells_by_item_t = cells_by_item.T.tocsr()

    posteriors = np.zeros((n_items, n_cls))
    np.add.at(posteriors, (it, lab), 1.0)
    posteriors /= posteriors.sum(axis=1, keepdims=True)

    previous = -np.inf
    log_likelihood = -np.inf
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        priors, confusion = _m_step(posteriors, cells_by_item_t, n_ann, n_cls)
        posteriors, log_likelihood = _e_step(priors, confusion, cells_by_item)
        if (log_likelihood - previous) / len(lab) < tol:
            converged = True
            break
        previous = log_likelihood
    priors, confusion = _m_step(posteriors, cells_by_item_t, n_ann, n_cls)
    return DawidSkeneResult(
        items=items,
        classes=tuple(class_list),
        annotators=annotators,
        posteriors=posteriors,
        priors=priors,
        confusion={a: confusion[j] for j, a in enumerate(annotators)},
        iterations=iterations,
        converged=converged,
        log_likelihood=float(log_likelihood),
    )


def dawid_skene(
    annotations: Sequence[tuple[str, str, str]],
    max_iter: int = 50,
    tol: float = 1e-6,
) -> dict[str, tuple[str, float]]:
    """item -> (label, posterior) by Dawid–Skene; see `fit_dawid_skene` for the details."""
    return fit_dawid_skene(annotations, max_iter=max_iter, tol=tol).consensus()


def consensus_by_count(
    annotations: Sequence[tuple[str, str, str]],
    min_annotations: int = 3,
    max_iter: int = 50,
    tol: float = 1e-6,
) -> dict[str, tuple[str, float, str]]:
    """Dawid–Skene where an item has `min_annotations`+ answers, majority vote elsewhere.

    Dawid–Skene is fitted on every annotation (all of them inform the confusion matrices)
    but only decides items with enough answers.

    Returns:
        item -> (label, confidence, method) with method "dawid_skene" or "majority".
    """
    by_item: dict[str, dict[str, str]] = {}
    for item, annotator, label in annotations:
        by_item.setdefault(item, {})[annotator] = label
    majority = majority_vote({i: list(v.items()) for i, v in by_item.items()})
    out = {item: (label, conf, "majority") for item, (label, conf) in majority.items()}
    if any(len(v) >= min_annotations for v in by_item.values()):
        fitted = dawid_skene(annotations, max_iter=max_iter, tol=tol)
        for item, (label, posterior) in fitted.items():
            if len(by_item[item]) >= min_annotations:
                out[item] = (label, posterior, "dawid_skene")
    return out


def _m_step(
    posteriors: np.ndarray, cells_by_item_t: sparse.csr_matrix, n_ann: int, n_cls: int
) -> tuple[np.ndarray, np.ndarray]:
    priors = posteriors.sum(axis=0) + _SMOOTHING
    priors /= priors.sum()
    # counts[j * K + l, k] = sum over j's answers l of P(item's true class = k)
    counts = np.asarray(cells_by_item_t @ posteriors)
    confusion = counts.reshape(n_ann, n_cls, n_cls).transpose(0, 2, 1) + _SMOOTHING
    confusion /= confusion.sum(axis=2, keepdims=True)
    return priors, confusion


def _e_step(
    priors: np.ndarray, confusion: np.ndarray, cells_by_item: sparse.csr_matrix
) -> tuple[np.ndarray, float]:
    n_cls = priors.shape[0]
    # rows (annotator j, given l), columns true class k: log P(j answers l | k)
    log_conf = np.log(confusion).transpose(0, 2, 1).reshape(-1, n_cls)
    log_post = np.log(priors)[None, :] + np.asarray(cells_by_item @ log_conf)
    top = log_post.max(axis=1, keepdims=True)
    norm = top[:, 0] + np.log(np.exp(log_post - top).sum(axis=1))
    return np.exp(log_post - norm[:, None]), float(norm.sum())
