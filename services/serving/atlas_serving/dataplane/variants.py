"""Which version of a model a bundle serves: the refit-full one (each member of a fold-bagged
ensemble refit once on all training rows: one model per member instead of one per fold)
when the trainer wrote one and its estimated quality is within a tolerance of the
fold-bagged model's, else the bundle's main model.

The facts come from the bundle's manifest (``write_bundle``'s ``variant``/``variants``):
``score`` (the trainer's cross-validated estimate) and ``higher_is_better``."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

log = logging.getLogger("atlas.serving.variants")

REFIT_FULL = "refit_full"


def relative_loss(reference: Any, other: Any) -> float | None:
    """How much worse ``other``'s estimated quality is than ``reference``'s, relative to
    ``reference`` (0 when equal or better); None when either has no usable score."""
    try:
        ref, alt = float(reference["score"]), float(other["score"])
        higher = bool(reference.get("higher_is_better", True))
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(ref) and math.isfinite(alt)):
        return None
    worse = (ref - alt) if higher else (alt - ref)
    return max(0.0, worse) / max(abs(ref), 1e-12)


@dataclasses.dataclass(frozen=True)
class ServedVersion:
    """Which version of a bundle's model is served (``""``: a bundle with one unnamed
    model), why, and how rows are scored ("compiled", "matrix" or "frame"; see
    ``ServableModel.scoring``)."""

    name: str = ""
    reason: str = ""
    scoring: str = ""


def choose_variant(bundle: Any, tolerance: float) -> tuple[Any, ServedVersion]:
    """(the bundle as it will be served, which version it is and why). ``tolerance``: the
    largest relative loss of estimated quality accepted for the refit-full version;
    negative: always serve the main model."""
    main = dict(getattr(bundle, "model_variant", None) or {})
    name = str(main.get("name", ""))
    variants = getattr(bundle, "variants", None) or {}
    refit = variants.get(REFIT_FULL)
    if refit is None:
        return bundle, ServedVersion(name, "the bundle holds one version of the model")
    if tolerance < 0:
        why = "runtime.refit_full_tolerance is negative: the fold-bagged model is always served"
        return bundle, ServedVersion(name, why)
    loss = relative_loss(main, refit)
    if loss is None or loss > tolerance:
        log.info(
            "serving the fold-bagged model, not the refit-full one",
            extra={
                "key": bundle.ref.key,
                "relative_loss": loss,
                "tolerance": tolerance,
            },
        )
        why = (
            "no usable quality estimate to compare the refit-full version with"
            if loss is None
            else f"the refit-full version's estimated quality is {loss:.4g} worse (relative) "
            f"than this one's: over the tolerance {tolerance:g}"
        )
        return bundle, ServedVersion(name, why)
    served = dataclasses.replace(bundle, predictor=bundle.variant_predictor(REFIT_FULL))
    log.info(
        "serving the refit-full model",
        extra={"key": bundle.ref.key, "relative_loss": loss, "tolerance": tolerance},
    )
    why = (
        f"estimated quality {loss:.4g} worse (relative) than the fold-bagged model's: "
        f"within the tolerance {tolerance:g}"
    )
    return served, ServedVersion(REFIT_FULL, why)
