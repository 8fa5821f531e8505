"""A tiny stand-in for ``atlas_labeling.quality`` (the consensus and agreement algorithms,
built on another branch) so the service's wiring can be tested before that package lands.

:func:`install` registers it only when the real package is not importable; once the real one
is merged the tests run against it. The stand-in is deliberately plain: majority vote for
both consensus functions, textbook kappas, nominal Krippendorff's alpha.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections import Counter
from collections.abc import Sequence

import numpy as np


def majority_vote(
    labels_by_item: dict[str, list[tuple[str, str]]],
) -> dict[str, tuple[str, float]]:
    out = {}
    for item, pairs in labels_by_item.items():
        counts = Counter(label for _, label in pairs)
        best = max(sorted(counts), key=lambda k: counts[k])
        out[item] = (best, counts[best] / len(pairs))
    return out


def dawid_skene(
    annotations: list[tuple[str, str, str]], max_iter: int = 50
) -> dict[str, tuple[str, float]]:
    grouped: dict[str, list[tuple[str, str]]] = {}
    for item, annotator, label in annotations:
        grouped.setdefault(item, []).append((annotator, label))
    return majority_vote(grouped)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(counts: np.ndarray) -> float:
    n = counts.sum(axis=1)[0]
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = ((counts * counts).sum(axis=1) - n) / (n * (n - 1))
    p_bar, p_e = p_i.mean(), (p_j**2).sum()
    return 1.0 if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


def krippendorff_alpha(reliability: np.ndarray, level: str = "nominal") -> float:
    values = sorted({v for v in reliability.flatten() if not np.isnan(v)})
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in reliability:
        present = [v for v in unit if not np.isnan(v)]
        m = len(present)
        if m < 2:
            continue
        for i, x in enumerate(present):
            for j, y in enumerate(present):
                if i != j:
                    o[index[x], index[y]] += 1 / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    d_o = (o.sum() - np.trace(o)) / n
    d_e = (n * n - (n_c**2).sum()) / (n * (n - 1))
    return 1.0 if d_e == 0 else float(1 - d_o / d_e)


def install() -> None:
    """Make ``atlas_labeling.quality`` importable (the stand-in) when it is not."""
    try:
        if importlib.util.find_spec("atlas_labeling.quality") is not None:
            return
    except ModuleNotFoundError:
        pass
    package = types.ModuleType("atlas_labeling.quality")
    package.__path__ = []  # a package, so its submodules resolve from sys.modules
    consensus = types.ModuleType("atlas_labeling.quality.consensus")
    consensus.majority_vote = majority_vote  # type: ignore[attr-defined]
    consensus.dawid_skene = dawid_skene  # type: ignore[attr-defined]
    agreement = types.ModuleType("atlas_labeling.quality.agreement")
    agreement.cohen_kappa = cohen_kappa  # type: ignore[attr-defined]
    agreement.fleiss_kappa = fleiss_kappa  # type: ignore[attr-defined]
    agreement.krippendorff_alpha = krippendorff_alpha  # type: ignore[attr-defined]
    package.consensus = consensus  # type: ignore[attr-defined]
    package.agreement = agreement  # type: ignore[attr-defined]
    sys.modules.update(
        {
            "atlas_labeling.quality": package,
            "atlas_labeling.quality.consensus": consensus,
            "atlas_labeling.quality.agreement": agreement,
        }
    )
    import atlas_labeling

    atlas_labeling.quality = package  # type: ignore[attr-defined]
