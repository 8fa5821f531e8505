"""write_bundle: a fitted model + its schema, statistics, metrics and lineage -> one artifact."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from atlas_core.bundle_signing import BundleSigner
from atlas_core.bundles._archive import file_digest, write_archive
from atlas_core.bundles._contributions import raw_contributions
from atlas_core.bundles._manifest import (
    EXTRA_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    MODEL_MEMBER,
    TASKS,
    VARIANT_PREFIX,
    BundleLineage,
    canonical_json,
    jsonable,
    library_versions,
)
from atlas_core.bundles._schema import InputSchema
from atlas_core.bundles._stats import categorical_stats, frame_stats, numeric_stats, target_stats
from atlas_core.errors import InvalidArgument
from atlas_core.storage import ArtifactRef, ArtifactStore

# Rows of training data predicted for the prediction-distribution baseline.
PREDICTION_SAMPLE_ROWS = 10_000


def write_bundle(
    store: ArtifactStore,
    key: str,
    *,
    model: Any,
    task: str,
    target: str,
    classes: Sequence[Any] | None,
    X_train: pd.DataFrame,
    y_train: pd.Series | np.ndarray | Sequence[Any],
    metrics: Mapping[str, float],
    lineage: BundleLineage | Mapping[str, Any] | None,
    signer: BundleSigner | None,
    extra_files: Mapping[str, bytes | str | Path] | None = None,
    seed: int = 0,
    unused_columns: Sequence[str] = (),
    variant: Mapping[str, Any] | None = None,
    variants: Mapping[str, tuple[Any, Mapping[str, Any]]] | None = None,
) -> ArtifactRef:
    """Publish ``model`` as a model bundle under ``key`` and return its ref.

    ``model`` is a fitted estimator with ``predict(DataFrame)`` (and ``predict_proba`` for
    classifiers, columns in ``classes`` order); it must be picklable by joblib and importable
    without trainer code (custom transformers live in ``atlas_core.ml``). ``X_train`` (the
    frame the model was fitted on) gives the input schema and the drift baselines;
    ``y_train`` the label distribution. ``extra_files`` maps names to bytes or file paths,
    stored as ``extra/<name>``. ``unused_columns`` (columns of ``X_train`` the model drops)
    may be left out of requests. ``signer`` signs the manifest; loaders refuse a bundle written
    with ``signer=None`` unless they allow unsigned bundles (development only). The manifest
    is deterministic for equal inputs and ``seed``.
    The artifact is published atomically by the store (readers never see a partial bundle).
    ``variants`` maps names to other versions of the model (e.g. ``"refit_full"``: each
    member of a fold-bagged ensemble refit once on all rows) with JSON facts about each
    (estimated quality, measured latency); they are stored as ``variants/<name>.joblib`` and
    recorded under the manifest's ``variants``; ``variant`` holds the same facts about
    ``model`` itself (``manifest["model"]["variant"]``). Readers that know variants choose one
    (serving: ``atlas_serving.dataplane.variants``); others use ``model``.

    Raises:
        InvalidArgument: unknown task, classes not matching the task or the model, empty or
            mismatched training data, non-JSON metrics/lineage, a model that cannot predict
            its own training frame.
        plus the store's errors (Unavailable, PermissionDenied, ...).
    """
    classes_list = _check_task(task, classes, model)
    _check_training_data(X_train, y_train)
    schema = InputSchema.from_frame(X_train).with_unused(unused_columns)
    lineage_dict = lineage.to_dict() if isinstance(lineage, BundleLineage) else dict(lineage or {})
    with tempfile.TemporaryDirectory(prefix="atlas-bundle-") as tmp:
        workdir = Path(tmp)
        members = {MODEL_MEMBER: _dump_model(model, workdir)}
        members.update(_stage_extras(extra_files or {}, workdir))
        recorded_variants = {}
        for name, (other, facts) in sorted((variants or {}).items()):
            _check_variant_name(name)
            _check_task(task, classes, other)
            member = f"{VARIANT_PREFIX}{name}.joblib"
            members[member] = _dump_model(other, workdir, name=f"variant-{name}.joblib")
            recorded_variants[name] = {
                **jsonable(dict(facts)),
                "member": member,
                "class": f"{type(other).__module__}.{type(other).__qualname__}",
            }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": task,
            "target": target,
            "classes": classes_list,
            "input_schema": schema.to_dict(),
            "training_stats": {
                "rows": len(X_train),
                "features": frame_stats(X_train, schema, seed=seed),
                "target": target_stats(_as_series(y_train), task),
            },
            "prediction_stats": _prediction_stats(model, task, classes_list, X_train, seed),
            "metrics": {str(name): value for name, value in metrics.items()},
            "lineage": lineage_dict,
            "model": {
                "member": MODEL_MEMBER,
                "class": f"{type(model).__module__}.{type(model).__qualname__}",
                "has_predict_proba": callable(getattr(model, "predict_proba", None)),
                "has_contributions": _has_contributions(model, X_train),
                **({"variant": jsonable(dict(variant))} if variant else {}),
            },
            **({"variants": recorded_variants} if recorded_variants else {}),
            "libraries": library_versions(),
            "members": {},
        }
        recorded: dict[str, dict[str, Any]] = {}
        for name, path in members.items():
            sha256, size = file_digest(path)
            recorded[name] = {"sha256": sha256, "size": size}
        manifest["members"] = recorded
        archive = workdir / "bundle.tar"
        raw_manifest = canonical_json(manifest)
        signature = signer.sign(raw_manifest) if signer is not None else None
        write_archive(archive, raw_manifest, members, signature=signature)
        metadata = {"kind": "model-bundle", "bundle-format": str(FORMAT_VERSION), "task": task}
        return store.put_file(key, archive, metadata)


def _check_task(task: str, classes: Sequence[Any] | None, model: Any) -> list[Any]:
    if task not in TASKS:
        raise InvalidArgument(
            f"task must be one of {', '.join(TASKS)}; got {task!r}", reason="INVALID_TASK"
        )
    if not callable(getattr(model, "predict", None)):
        raise InvalidArgument(
            f"model {type(model).__name__} has no predict()", reason="INVALID_MODEL"
        )
    classes_list = [jsonable(label) for label in (classes if classes is not None else [])]
    if task == "regression":
        if classes_list:
            raise InvalidArgument("a regression bundle takes no classes", reason="INVALID_TASK")
        return []
    expected = "exactly 2" if task == "binary" else "at least 3"
    if (task == "binary" and len(classes_list) != 2) or (
        task == "multiclass" and len(classes_list) < 3
    ):
        raise InvalidArgument(
            f"a {task} bundle needs {expected} classes; got {classes_list}",
            reason="INVALID_TASK",
        )
    if not callable(getattr(model, "predict_proba", None)):
        raise InvalidArgument(
            f"a {task} model needs predict_proba(); {type(model).__name__} has none",
            reason="INVALID_MODEL",
        )
    fitted = getattr(model, "classes_", None)
    if fitted is not None and [jsonable(label) for label in fitted] != classes_list:
        raise InvalidArgument(
            f"classes {classes_list} differ from the model's classes_ "
            f"{[jsonable(label) for label in fitted]} (predict_proba columns follow classes_)",
            reason="INVALID_TASK",
        )
    return classes_list


def _check_training_data(X_train: pd.DataFrame, y_train: Any) -> None:
    if not isinstance(X_train, pd.DataFrame) or X_train.empty:
        raise InvalidArgument(
            "X_train must be a non-empty pandas DataFrame", reason="INVALID_TRAINING_DATA"
        )
    if len(_as_series(y_train)) != len(X_train):
        raise InvalidArgument(
            f"y_train has {len(_as_series(y_train))} rows, X_train {len(X_train)}",
            reason="INVALID_TRAINING_DATA",
        )


def _as_series(values: Any) -> pd.Series:
    return values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())


def _check_variant_name(name: str) -> None:
    if not name or not name.isascii() or not name.replace("_", "").isalnum():
        raise InvalidArgument(
            f"variant name {name!r} must be ASCII letters, digits and underscores",
            reason="INVALID_MODEL",
        )


def _dump_model(model: Any, workdir: Path, name: str = "model.joblib") -> Path:
    path = workdir / name
    joblib.dump(model, path)
    return path


def _stage_extras(extra_files: Mapping[str, bytes | str | Path], workdir: Path) -> dict[str, Path]:
    staged: dict[str, Path] = {}
    folder = workdir / "extra"
    folder.mkdir()
    for index, (name, content) in enumerate(sorted(extra_files.items())):
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise InvalidArgument(
                f"extra file name {name!r} must be a plain file name", reason="INVALID_EXTRA_FILE"
            )
        path = folder / str(index)
        if isinstance(content, bytes | bytearray):
            path.write_bytes(bytes(content))
        else:
            source = Path(content)
            if not source.is_file():
                raise InvalidArgument(
                    f"extra file {name!r}: {source} is not a file", reason="INVALID_EXTRA_FILE"
                )
            path.write_bytes(source.read_bytes())
        staged[EXTRA_PREFIX + name] = path
    return staged


def _prediction_stats(
    model: Any, task: str, classes: list[Any], X_train: pd.DataFrame, seed: int
) -> dict[str, Any]:
    """Distribution of the model's outputs on (a sample of) its training inputs."""
    sample = X_train
    if len(X_train) > PREDICTION_SAMPLE_ROWS:
        sample = X_train.sample(n=PREDICTION_SAMPLE_ROWS, random_state=seed)
    rng = np.random.default_rng(seed)
    try:
        predictions = np.asarray(model.predict(sample))
        outputs: dict[str, Any] = {}
        if task == "regression":
            outputs["value"] = numeric_stats(predictions.astype("float64"), rng=rng)
        else:
            proba = np.asarray(model.predict_proba(sample), dtype="float64")
            score = proba[:, 1] if task == "binary" else proba.max(axis=1)
            outputs["label"] = categorical_stats(pd.Series(predictions))
            outputs["score"] = numeric_stats(score, rng=rng)
    except Exception as err:  # noqa: BLE001 - any failure means the model is unusable
        raise InvalidArgument(
            f"the model cannot predict its own training frame: {type(err).__name__}: {err}",
            reason="INVALID_MODEL",
        ) from err
    return {"rows": len(sample), "outputs": outputs, "classes": classes}


def _has_contributions(model: Any, X_train: pd.DataFrame) -> bool:
    try:
        return raw_contributions(model, X_train.head(2)) is not None
    except Exception:  # noqa: BLE001 - a model whose contributions fail simply has none
        return False
