"""The bundle manifest: what a bundle holds, how it was made, and the checksum of each member.

The manifest is canonical JSON (sorted keys, no whitespace, no NaN), so the same inputs give
the same bytes. Top-level keys (format version 1)::

    format, format_version, task, target, classes,
    input_schema      {"columns": [{name, kind, dtype, categories, nullable}, ...]}
    training_stats    {"rows", "features": {name: FeatureStats}, "target": FeatureStats}
    prediction_stats  {"rows", "outputs": {"label"|"score"|"value": FeatureStats}}
    metrics           {name: float | null}
    lineage           {dataset, study_name, trial_number, job_id, ensemble, ...}
    model             {member, class, has_predict_proba, has_contributions}
    libraries         {python, numpy, pandas, sklearn, joblib, xgboost?, lightgbm?, ...}
    members           {path: {"sha256", "size"}}   every file in the bundle except the manifest
"""

from __future__ import annotations

import json
import math
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from atlas_core.errors import DataLoss, FailedPrecondition, InvalidArgument
from atlas_core.storage import ArtifactRef

FORMAT = "atlas-model-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_MEMBER = "model/model.joblib"
EXTRA_PREFIX = "extra/"
# Other versions of the model (e.g. "refit_full" beside a fold-bagged ensemble).
VARIANT_PREFIX = "variants/"
TASKS = ("binary", "multiclass", "regression")

# Libraries whose versions matter for unpickling; recorded when already imported (a bundle
# writer never imports a heavy library just to note its version).
_TRACKED_LIBRARIES = (
    "numpy",
    "pandas",
    "sklearn",
    "scipy",
    "joblib",
    "xgboost",
    "lightgbm",
    "torch",
    "optuna",
)


@dataclass(frozen=True)
class BundleLineage:
    """Where a bundle came from. Any field may be None; ``extra`` holds further JSON values.

    ``dataset`` is a JSON description of the training data, e.g. ``{"name": "credit",
    "version": 3}`` or an artifact ref (``{"uri", "key", "sha256", "size"}``); ``ensemble``
    describes ensemble members, e.g. ``{"members": [{"trial": 3, "weight": 0.6,
    "pipeline": "median-impute > xgboost"}, ...]}``.
    """

    dataset: Mapping[str, Any] | None = None
    study_name: str | None = None
    trial_number: int | None = None
    job_id: str | None = None
    ensemble: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        for name in ("dataset", "study_name", "trial_number", "job_id", "ensemble"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes of ``value`` (numpy scalars unwrapped, NaN/inf -> null)."""
    return json.dumps(
        jsonable(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; raises InvalidArgument for what JSON cannot hold."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, ArtifactRef):
        return {"uri": value.uri, "key": value.key, "sha256": value.sha256, "size": value.size}
    if isinstance(value, BundleLineage):
        return jsonable(value.to_dict())
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, Sequence | np.ndarray | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [jsonable(item) for item in items]
    raise InvalidArgument(
        f"cannot store a {type(value).__name__} in a bundle manifest (JSON values only)",
        reason="INVALID_BUNDLE_FIELD",
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TRACKED_LIBRARIES:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if version:
            versions[name] = str(version)
    return versions


def version_warnings(recorded: Mapping[str, str]) -> list[str]:
    """Differences between the libraries a bundle was written with and the ones loaded now."""
    current = library_versions()
    warnings = []
    for name, version in sorted(recorded.items()):
        if name in current and current[name] != version:
            warnings.append(f"{name} {current[name]} loads a bundle written with {version}")
    return warnings


def parse_manifest(raw: bytes, *, key: str) -> dict[str, Any]:
    """Parse and sanity-check manifest bytes of the bundle at ``key``.

    Raises:
        DataLoss: reason ``BUNDLE_MALFORMED`` when the manifest is not a bundle manifest.
        FailedPrecondition: reason ``BUNDLE_FORMAT_UNSUPPORTED`` for a newer format version.
    """
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _malformed(key, f"manifest is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _malformed(key, f"manifest does not declare format {FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise _malformed(key, "manifest has no integer format_version")
    if version > FORMAT_VERSION:
        raise FailedPrecondition(
            f"bundle '{key}' has format version {version}; this loader reads up to "
            f"{FORMAT_VERSION}: upgrade atlas-platform",
            reason="BUNDLE_FORMAT_UNSUPPORTED",
            metadata={"key": key, "format_version": str(version)},
        )
    required = ("task", "input_schema", "members", "model", "training_stats")
    absent = [name for name in required if name not in manifest]
    if absent:
        raise _malformed(key, f"manifest lacks {', '.join(absent)}")
    if manifest["task"] not in TASKS:
        raise _malformed(key, f"unknown task {manifest['task']!r}")
    members = manifest["members"]
    if not isinstance(members, dict) or not all(
        isinstance(name, str) and isinstance(record, dict) for name, record in members.items()
    ):
        raise _malformed(key, "manifest members are not a mapping of name to record")
    return manifest


def _malformed(key: str, why: str) -> DataLoss:
    return DataLoss(
        f"model bundle '{key}' is malformed: {why}",
        reason="BUNDLE_MALFORMED",
        metadata={"key": key},
    )
