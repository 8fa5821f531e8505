"""Inter-annotator agreement: Cohen's kappa, Fleiss' kappa, Krippendorff's alpha.

Statistics that are undefined for the data (e.g. every answer the same, so there is no
disagreement to expect) return NaN rather than a made-up 0 or 1. Builders turn the
service's (item, annotator, label) triples into each statistic's input; a repeated
(item, annotator) pair keeps its last label everywhere.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import cohen_kappa_score

Level = Literal["nominal", "ordinal", "interval", "ratio"]
Triple = tuple[str, str, str]


def cohen_kappa(
    a: Sequence[str],
    b: Sequence[str],
    weights: Literal["linear", "quadratic"] | None = None,
) -> float:
    """Cohen's kappa of two annotators over the same items (scikit-learn's implementation).

    NaN when chance agreement is 1 (both used one and the same label throughout).

    Raises:
        ValueError: lengths differ or the sequences are empty.
    """
    if len(a) != len(b):
        raise ValueError(f"sequences differ in length: {len(a)} vs {len(b)}")
    if not a:
        raise ValueError("no items")
    if len(set(a) | set(b)) == 1:
        return math.nan
    return float(cohen_kappa_score(list(a), list(b), weights=weights))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa (1971) from a subjects x categories matrix of rating counts.

    Every subject must have the same number of ratings n >= 2 (Fleiss' assumption; use
    `krippendorff_alpha` for uneven or missing ratings). NaN when chance agreement is 1.

    Raises:
        ValueError: not 2-D, negative counts, unequal or < 2 ratings per subject, no subjects.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ValueError(f"counts must be a non-empty 2-D array, got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("counts must be >= 0")
    per_subject = counts.sum(axis=1)
    n = per_subject[0]
    if not np.allclose(per_subject, n):
        raise ValueError("every subject needs the same number of ratings")
    if n < 2:
        raise ValueError(f"need at least 2 ratings per subject, got {n:g}")
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    expected = float((p_j**2).sum())
    if math.isclose(expected, 1.0):
        return math.nan
    return (float(p_i.mean()) - expected) / (1.0 - expected)


def krippendorff_alpha(reliability: np.ndarray, level: Level = "nominal") -> float:
    """Krippendorff's alpha from a units x coders matrix, NaN where a coder gave no value.

    Values are numbers: category codes for "nominal", ranks for "ordinal", quantities for
    "interval" and "ratio". Units with fewer than two values are not pairable and are left
    out, as Krippendorff (2011) prescribes. NaN when fewer than two pairable values remain
    or there is no expected disagreement (one value throughout). Memory grows with the
    square of the number of distinct values (the coincidence matrix): fine for ratings and
    categories, not for thousands of distinct measurements.

    Raises:
        ValueError: not 2-D, or an unknown level.
    """
    data = np.asarray(reliability, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"reliability must be 2-D (units x coders), got shape {data.shape}")
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"unknown level {level!r}")
    present = ~np.isnan(data)
    pairable = present.sum(axis=1) >= 2
    data, present = data[pairable], present[pairable]
    values = np.unique(data[present])
    if values.size == 0:
        return math.nan
    # counts[u, c]: how many coders gave value c to unit u
    codes = np.searchsorted(values, np.where(present, data, values[0]))
    counts = np.zeros((data.shape[0], values.size))
    rows = np.broadcast_to(np.arange(data.shape[0])[:, None], data.shape)
    np.add.at(counts, (rows[present], codes[present]), 1.0)
    weight = 1.0 / (counts.sum(axis=1) - 1.0)
    coincidence = counts.T @ (counts * weight[:, None]) - np.diag(weight @ counts)
    marginals = coincidence.sum(axis=1)
    total = marginals.sum()
    if total < 2:
        return math.nan
    delta = _squared_distance(values, marginals, level)
    expected = float(marginals @ delta @ marginals)
    if expected <= 0:
        return math.nan
    observed = float((coincidence * delta).sum())
    return 1.0 - (total - 1.0) * observed / expected


def _squared_distance(values: np.ndarray, marginals: np.ndarray, level: Level) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(values.size)
    if level == "interval":
        return (values[:, None] - values[None, :]) ** 2
    if level == "ratio":
        total = values[:, None] + values[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            d = ((values[:, None] - values[None, :]) / total) ** 2
        return np.where(total == 0, 0.0, d)
    # ordinal: the marginal mass between two ranks, half of each end counted
    cum = np.cumsum(marginals)
    lo = np.minimum.outer(np.arange(values.size), np.arange(values.size))
    hi = np.maximum.outer(np.arange(values.size), np.arange(values.size))
    between = cum[hi] - cum[lo] + marginals[lo]
    return (between - (marginals[:, None] + marginals[None, :]) / 2.0) ** 2


# ---- builders from (item, annotator, label) triples ----------------------------------------


@dataclass(frozen=True)
class ReliabilityData:
    """A units x coders matrix (NaN = missing) and what its rows, columns and codes mean.

    For nominal data the matrix holds indices into `categories`; for numeric data the
    labels themselves (and `categories` is empty).
    """

    matrix: np.ndarray
    items: tuple[str, ...]
    coders: tuple[str, ...]
    categories: tuple[str, ...]


def latest_labels(triples: Sequence[Triple]) -> dict[str, dict[str, str]]:
    """item -> annotator -> label, the last triple of a repeated (item, annotator) winning."""
    out: dict[str, dict[str, str]] = {}
    for item, annotator, label in triples:
        out.setdefault(item, {})[annotator] = label
    return out


def reliability_matrix(triples: Sequence[Triple], numeric: bool = False) -> ReliabilityData:
    """The input of `krippendorff_alpha`; `numeric` parses labels as numbers (interval/ratio).

    Raises:
        ValueError: `numeric` and a label is not a finite number.
    """
    by_item = latest_labels(triples)
    items = tuple(by_item)
    coders = tuple(sorted({a for answers in by_item.values() for a in answers}))
    coder_ix = {c: j for j, c in enumerate(coders)}
    categories: tuple[str, ...] = ()
    if not numeric:
        categories = tuple(
            sorted({lab for answers in by_item.values() for lab in answers.values()})
        )
    cat_ix = {c: k for k, c in enumerate(categories)}
    matrix = np.full((len(items), len(coders)), np.nan)
    for i, item in enumerate(items):
        for annotator, label in by_item[item].items():
            matrix[i, coder_ix[annotator]] = _number(label) if numeric else cat_ix[label]
    return ReliabilityData(matrix, items, coders, categories)


def fleiss_counts(
    triples: Sequence[Triple], raters_per_item: int | None = None
) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """The input of `fleiss_kappa`: (counts, items, categories).

    Only items with exactly `raters_per_item` answers are kept (default: the most common
    number of answers among items with 2+, ties to the larger), since Fleiss' kappa needs
    the same number everywhere. Categories are every label seen, sorted.
    """
    by_item = latest_labels(triples)
    categories = tuple(sorted({lab for answers in by_item.values() for lab in answers.values()}))
    sizes = [len(a) for a in by_item.values() if len(a) >= 2]
    if raters_per_item is None:
        if not sizes:
            return np.zeros((0, len(categories))), (), categories
        raters_per_item = max(set(sizes), key=lambda s: (sizes.count(s), s))
    cat_ix = {c: k for k, c in enumerate(categories)}
    items = tuple(i for i, a in by_item.items() if len(a) == raters_per_item)
    counts = np.zeros((len(items), len(categories)))
    for row, item in enumerate(items):
        for label in by_item[item].values():
            counts[row, cat_ix[label]] += 1
    return counts, items, categories


@dataclass(frozen=True)
class PairAgreement:
    """Two annotators on the items they both labeled."""

    n_items: int
    percent_agreement: float
    kappa: float


def pairwise_agreement(
    triples: Sequence[Triple], min_overlap: int = 1
) -> dict[tuple[str, str], PairAgreement]:
    """(annotator a, annotator b) with a < b -> agreement on their common items.

    Pairs sharing fewer than `min_overlap` items are left out.
    """
    by_item = latest_labels(triples)
    shared: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for answers in by_item.values():
        for a, b in itertools.combinations(sorted(answers), 2):
            left, right = shared.setdefault((a, b), ([], []))
            left.append(answers[a])
            right.append(answers[b])
    return {
        pair: _pair(left, right)
        for pair, (left, right) in sorted(shared.items())
        if len(left) >= max(min_overlap, 1)
    }


@dataclass(frozen=True)
class AnnotatorAgreement:
    """One annotator against the consensus and against their peers.

    `consensus_accuracy`/`consensus_kappa` use the items where both the annotator and the
    consensus have a label (the consensus includes the annotator's own vote unless the
    caller passed a leave-one-out consensus). `mean_pairwise_kappa` averages Cohen's kappa
    with every peer sharing items (NaN kappas skipped; NaN if none).
    """

    annotator: str
    n_items: int
    consensus_accuracy: float
    consensus_kappa: float
    mean_pairwise_kappa: float


def annotator_agreement(
    triples: Sequence[Triple], consensus: Mapping[str, str]
) -> dict[str, AnnotatorAgreement]:
    """annotator -> `AnnotatorAgreement`, for every annotator in `triples`."""
    by_item = latest_labels(triples)
    mine: dict[str, tuple[list[str], list[str]]] = {}
    for item, answers in by_item.items():
        if item not in consensus:
            continue
        for annotator, label in answers.items():
            given, agreed = mine.setdefault(annotator, ([], []))
            given.append(label)
            agreed.append(consensus[item])
    peers: dict[str, list[float]] = {}
    for (a, b), pair in pairwise_agreement(triples).items():
        if not math.isnan(pair.kappa):
            peers.setdefault(a, []).append(pair.kappa)
            peers.setdefault(b, []).append(pair.kappa)
    annotators = sorted({a for answers in by_item.values() for a in answers})
    out = {}
    for annotator in annotators:
        given, agreed = mine.get(annotator, ([], []))
        pair = _pair(given, agreed) if given else PairAgreement(0, math.nan, math.nan)
        kappas = peers.get(annotator, [])
        out[annotator] = AnnotatorAgreement(
            annotator=annotator,
            n_items=pair.n_items,
            consensus_accuracy=pair.percent_agreement,
            consensus_kappa=pair.kappa,
            mean_pairwise_kappa=float(np.mean(kappas)) if kappas else math.nan,
        )
    return out


@dataclass(frozen=True)
class ProjectAgreement:
    """Agreement over a whole project (items with 2+ answers carry the statistics).

    `fleiss_kappa` covers the items with the most common number of answers
    (`fleiss_items` of them) and is NaN when fewer than two such items have 2+ answers.
    """

    n_items: int
    n_annotations: int
    n_multiply_labeled: int
    percent_agreement: float
    krippendorff_alpha: float
    fleiss_kappa: float
    fleiss_items: int
    mean_pairwise_kappa: float


def project_agreement(triples: Sequence[Triple], level: Level = "nominal") -> ProjectAgreement:
    """Project-level agreement; `level` other than nominal parses labels as numbers."""
    by_item = latest_labels(triples)
    multi = [a for a in by_item.values() if len(a) >= 2]
    # pairs of answers agreeing, over all pairs within items
    agree = sum(sum(x == y for x, y in itertools.combinations(a.values(), 2)) for a in multi)
    pairs = sum(len(a) * (len(a) - 1) // 2 for a in multi)
    data = reliability_matrix(triples, numeric=level != "nominal")
    alpha = krippendorff_alpha(data.matrix, level) if data.matrix.size else math.nan
    counts, fleiss_items, _ = fleiss_counts(triples)
    fleiss = math.nan
    if len(fleiss_items) >= 2:
        fleiss = fleiss_kappa(counts)
    kappas = [p.kappa for p in pairwise_agreement(triples).values() if not math.isnan(p.kappa)]
    return ProjectAgreement(
        n_items=len(by_item),
        n_annotations=sum(len(a) for a in by_item.values()),
        n_multiply_labeled=len(multi),
        percent_agreement=agree / pairs if pairs else math.nan,
        krippendorff_alpha=alpha,
        fleiss_kappa=fleiss,
        fleiss_items=len(fleiss_items),
        mean_pairwise_kappa=float(np.mean(kappas)) if kappas else math.nan,
    )


def _pair(left: Sequence[str], right: Sequence[str]) -> PairAgreement:
    same = sum(x == y for x, y in zip(left, right))
    return PairAgreement(len(left), same / len(left), cohen_kappa(left, right))


def _number(label: str) -> float:
    try:
        value = float(label)
    except ValueError:
        raise ValueError(f"label {label!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"label {label!r} is not a finite number")
    return value
