"""A training frame -> the tensors a net reads, the validation split, and the encoding the
bundle's :class:`~atlas_core.ml.TorchNetModel` applies to requests.

Every refusal names the column or the param to fix (``BAD_DEEP_INPUT``, ``TOO_MANY_CLASSES``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from atlas_core.errors import InvalidArgument
from atlas_core.ml import text_token_ids, tokenize
from atlas_trainer.deep.models import InputInfo
from atlas_trainer.deep.params import DeepConfig


@dataclass
class Prepared:
    """Inputs (float32 ``[n, ...]`` or int64 word ids ``[n, max_len]``), label codes, the
    train/validation row indices, class names, and what the bundle needs: its input frame
    (``frame``), ``columns`` and ``encoding``."""

    inputs: np.ndarray
    labels: np.ndarray
    train_rows: np.ndarray
    validation_rows: np.ndarray
    classes: list[Any]
    info: InputInfo
    frame: pd.DataFrame
    columns: list[str]
    encoding: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _bad(field_name: str, message: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field_name}: {message}", reason="BAD_DEEP_INPUT", metadata={"field": field_name}
    )


def _check_sharded_classes(cfg: DeepConfig, classes: int, target: str, max_classes: int) -> None:
    """The sharded layer's class count against the target's, the limit and the workers."""
    where = "deep_learning.params.sharded_classes"
    configured = cfg.params.sharded_classes
    if configured > max_classes:
        raise InvalidArgument(
            f"{where}: {configured} classes; a deep-learning job takes at most {max_classes} "
            "(jobs.deep_max_classes)",
            reason="TOO_MANY_CLASSES",
            metadata={"field": where, "classes": str(configured)},
        )
    if configured and classes > configured:
        raise InvalidArgument(
            f"{where}: target_column '{target}' has {classes} classes, more than the "
            f"{configured} the sharded layer is configured for",
            reason="TOO_MANY_CLASSES",
            metadata={"field": where, "classes": str(classes)},
        )
    if (configured or classes) < cfg.workers:
        raise InvalidArgument(
            f"deep_learning.workers: {cfg.workers} workers cannot split a layer of "
            f"{configured or classes} classes (each holds at least one)",
            reason="BAD_DEEP_PARAMS",
            metadata={"field": "deep_learning.workers"},
        )


def prepare(
    X: pd.DataFrame, y: pd.Series, cfg: DeepConfig, *, target: str, max_classes: int
) -> Prepared:
    """Raises InvalidArgument naming the field (see the module docstring)."""
    keep = y.notna().to_numpy()
    X, y = X.loc[keep].reset_index(drop=True), y.loc[keep].reset_index(drop=True)
    classes = sorted(pd.unique(y).tolist(), key=lambda v: (str(type(v)), v))
    if len(classes) > max_classes:
        raise InvalidArgument(
            f"target_column '{target}' has {len(classes)} classes; a deep-learning job takes at "
            f"most {max_classes} (jobs.deep_max_classes)",
            reason="TOO_MANY_CLASSES",
            metadata={"field": "target_column", "classes": str(len(classes))},
        )
    if len(classes) < 2:
        raise _bad("target_column", f"'{target}' needs at least 2 classes, got {classes}")
    if cfg.params.sharded_classifier:
        _check_sharded_classes(cfg, len(classes), target, max_classes)
    codes = pd.Categorical(y, categories=classes).codes.astype(np.int64)
    train_rows, validation_rows = _split(codes, cfg)
    kind = cfg.input_kind
    if kind == "text":
        return _text(X, codes, classes, train_rows, validation_rows, cfg)
    frame, warnings = (
        _image_frame(X, cfg) if kind == "image" else _numeric_frame(X, "the training data")
    )
    matrix = frame.to_numpy(dtype=np.float32, na_value=np.nan)
    train = matrix[train_rows]
    mean = np.nanmean(train, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.nanstd(train, axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
    encoding: dict[str, Any] = {
        "kind": kind,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
    }
    if kind == "image":
        shape = _image_shape(frame.shape[1], cfg)
        encoding["image_shape"] = list(shape)
        info = InputInfo("image", image_shape=shape)
    else:
        info = InputInfo("tabular", features=frame.shape[1])
    columns = list(frame.columns)
    prepared = Prepared(
        inputs=np.empty(0),
        labels=codes,
        train_rows=train_rows,
        validation_rows=validation_rows,
        classes=classes,
        info=info,
        frame=frame,
        columns=columns,
        encoding=encoding,
        warnings=warnings,
    )
    from atlas_core.ml import TorchNetModel

    prepared.inputs = TorchNetModel(
        columns=columns, classes=classes, encoding=encoding, script=b""
    ).encode(frame)
    return prepared


def _split(codes: np.ndarray, cfg: DeepConfig) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(len(codes))
    counts = np.bincount(codes)
    stratify = codes if counts.min() >= 2 else None
    n_val = max(1, int(round(len(codes) * cfg.validation_fraction)))
    if stratify is not None and n_val < len(counts):
        stratify = None
    train, val = train_test_split(
        rows, test_size=n_val, random_state=cfg.seed % (2**32), stratify=stratify
    )
    return np.sort(train), np.sort(val)


def _numeric_frame(X: pd.DataFrame, what: str) -> tuple[pd.DataFrame, list[str]]:
    numeric = [
        c
        for c in X.columns
        if pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])
    ]
    if not numeric:
        raise _bad("dataset", f"{what} has no numeric columns for the net to read")
    skipped = [str(c) for c in X.columns if c not in numeric]
    warnings = (
        [f"non-numeric columns not used by the net: {', '.join(skipped[:20])}"] if skipped else []
    )
    return X[numeric].astype(np.float32), warnings


def _image_frame(X: pd.DataFrame, cfg: DeepConfig) -> tuple[pd.DataFrame, list[str]]:
    name = cfg.params.image_column
    if not name:
        return _numeric_frame(X, "the training data (pixels: every numeric column)")
    field_name = "deep_learning.params.image_column"
    spread = [
        c for c in X.columns if str(c).startswith(f"{name}_") and str(c)[len(name) + 1 :].isdigit()
    ]
    if name not in X.columns and spread:
        # A fixed-size tensor column arrives as one column per value (name_0, name_1, ...).
        spread.sort(key=lambda c: int(str(c)[len(name) + 1 :]))
        return X[spread].astype(np.float32), []
    if name not in X.columns:
        raise _bad(field_name, f"column '{name}' is not in the dataset")
    cells = X[name]
    if cells.isna().any():
        first = int(np.flatnonzero(cells.isna().to_numpy())[0])
        raise _bad(field_name, f"column '{name}' has rows without an image (first: row {first})")
    try:
        arrays = [np.asarray(v, dtype=np.float32).ravel() for v in cells]
    except (TypeError, ValueError) as err:
        raise _bad(field_name, f"column '{name}' does not hold numeric tensors: {err}") from None
    sizes = Counter(len(a) for a in arrays)
    if len(sizes) > 1:
        (common, _), (other, _) = sizes.most_common(2)
        row = next(i for i, a in enumerate(arrays) if len(a) == other)
        raise _bad(
            field_name,
            f"images of mixed sizes in column '{name}': {common} values in most rows, {other} "
            f"in row {row} ({len(sizes)} sizes); resize them to one shape",
        )
    matrix = np.vstack(arrays)
    columns = [f"{name}_{i}" for i in range(matrix.shape[1])]
    return pd.DataFrame(matrix, columns=columns), []


def _image_shape(pixels: int, cfg: DeepConfig) -> tuple[int, int, int]:
    shape = cfg.params.image_shape
    if shape:
        c, h, w = shape
        if c * h * w != pixels:
            raise _bad(
                "deep_learning.params.image_shape",
                f"{shape} holds {c * h * w} values but each image has {pixels}",
            )
        return c, h, w
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise _bad(
            "deep_learning.params.image_shape",
            f"images have {pixels} values, not a square: give [channels, height, width]",
        )
    return 1, side, side


def _text(
    X: pd.DataFrame,
    codes: np.ndarray,
    classes: list[Any],
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    cfg: DeepConfig,
) -> Prepared:
    p = cfg.params
    name = p.text_column
    if not name:
        strings = [
            c
            for c in X.columns
            if not pd.api.types.is_numeric_dtype(X[c])
            and pd.api.types.infer_dtype(X[c], skipna=True) == "string"
        ]
        if len(strings) != 1:
            raise _bad(
                "deep_learning.params.text_column",
                f"name the text column (string columns: {', '.join(map(str, strings)) or 'none'})",
            )
        name = str(strings[0])
    if name not in X.columns:
        raise _bad("deep_learning.params.text_column", f"column '{name}' is not in the dataset")
    texts = X[name].tolist()
    empty = [i for i, t in enumerate(texts) if not tokenize(t)]
    if empty:
        raise _bad(
            "deep_learning.params.text_column",
            f"column '{name}' has {len(empty)} rows with empty or missing text (first: row "
            f"{empty[0]}); drop or fill them",
        )
    encoding: dict[str, Any] = {"kind": "text", "column": name, "mode": p.text_mode}
    encoding["max_len"] = p.max_len
    if p.text_mode == "hashed":
        encoding.update(buckets=p.buckets, ngrams=p.ngrams)
        vocab_size = p.buckets + 1
    else:
        counts = Counter(w for i in train_rows for w in tokenize(texts[i]))
        words = [w for w, _ in counts.most_common(p.max_vocab)]
        encoding["vocab"] = {w: i + 2 for i, w in enumerate(words)}
        vocab_size = len(words) + 2
    frame = pd.DataFrame({name: X[name].astype(object)})
    return Prepared(
        inputs=text_token_ids(texts, encoding),
        labels=codes,
        train_rows=train_rows,
        validation_rows=validation_rows,
        classes=classes,
        info=InputInfo("text", vocab_size=vocab_size),
        frame=frame,
        columns=[name],
        encoding=encoding,
        warnings=[],
    )
