"""Dataset meta-features: the one definition shared by the data service (which records them
with each dataset) and the trainer (whose meta-store compares them to find similar studies).

Two values computed under different definitions must never be compared, so the definition
carries :data:`META_FEATURES_VERSION`; change anything below (a rule, a constant, a sample
size) and the version goes up. Rules of version 2:

* Feature columns are all columns except the target. Integer/float/decimal columns are
  numeric; string, dictionary and bool columns are categorical; fixed-size and variable
  lists of numbers (vectors) count as one numeric column each, and their first
  :data:`VECTOR_DIMS` dimensions take part in the statistics and landmarkers as numeric
  features. Other types (timestamps, dates, ...) count as columns but in neither group.
* Counts (rows, columns, missing cells, classes) are exact. ``missing_ratio``: null cells
  (and NaN in float columns; a null vector is one cell) over rows x feature columns.
* Task (:func:`detect_task`): a string, dictionary or bool target is classification; a
  numeric target is classification when it has at most :data:`MAX_NUMERIC_CLASSES` distinct
  values, regression otherwise.
* ``class_entropy`` is Shannon entropy in bits (a balanced binary label has 1.0).
  ``class_imbalance_ratio`` = smallest / largest class count. Both 0 for regression.
* Sampling, so large tables stay cheap: moments and landmarkers use the rows of
  :func:`sample_rows` (at most :data:`STATS_MAX_ROWS`, chosen with a fixed seed, in table
  order), so the same table always gives the same values.
* Skewness is the Fisher-Pearson coefficient and kurtosis the excess (Fisher) kurtosis,
  both biased (population) moments over non-missing values; constant columns are skipped.
* Landmarkers are 3-fold cross-validated scores of cheap models on at most
  :data:`LANDMARK_MAX_ROWS` labelled rows of the sample: ``decision_stump``,
  ``naive_bayes`` (classification only), ``1nn`` and ``linear`` (logistic regression /
  ridge). Metric ``accuracy`` for classification, ``r2`` for regression. Features are
  imputed with the median, categoricals ordinal-encoded, all standardised.
* :func:`similarity_vector` is what the trainer compares: finite, bounded values derived
  from the fields above only (so the trainer computes it from the data service's message).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from atlas_core.errors import InvalidArgument

if TYPE_CHECKING:
    import pandas as pd

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.int64]

__all__ = [
    "CV_FOLDS",
    "LANDMARK_MAX_ROWS",
    "MAX_NUMERIC_CLASSES",
    "META_FEATURES_VERSION",
    "STATS_MAX_ROWS",
    "VECTOR_DIMS",
    "VERSION_KEY",
    "Landmarker",
    "MetaFeatures",
    "compute_meta_features",
    "detect_task",
    "meta_features_of_frame",
    "sample_rows",
    "similarity_vector",
]

META_FEATURES_VERSION = 2
# Name of the version in ``MetaFeatures.extra`` on the wire (the message has no field for it).
VERSION_KEY = "meta_features_version"

VECTOR_DIMS = 8
MAX_NUMERIC_CLASSES = 20
CV_FOLDS = 3
STATS_MAX_ROWS = 100_000
LANDMARK_MAX_ROWS = 2_000
SAMPLE_SEED = 0


class Landmarker(NamedTuple):
    """Cross-validated score of a cheap model."""

    name: str
    metric: str
    score: float


@dataclass(frozen=True)
class MetaFeatures:
    """Mirror of the ``atlas.data.v1.MetaFeatures`` message, plus the detected ``task`` and
    the definition's ``version``."""

    rows: int
    columns: int
    numeric_columns: int
    categorical_columns: int
    missing_ratio: float
    classes: int
    class_entropy: float
    class_imbalance_ratio: float
    skew_mean: float
    skew_min: float
    skew_max: float
    skew_std: float
    kurtosis_mean: float
    kurtosis_min: float
    kurtosis_max: float
    kurtosis_std: float
    log_rows_per_column: float
    landmarkers: list[Landmarker]
    target_column: str
    extra: Mapping[str, float] = field(default_factory=dict)
    task: str = "none"  # "classification" | "regression" | "none"
    version: int = META_FEATURES_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (landmarkers as dicts); :meth:`from_dict` reads it back."""
        out = asdict(self)
        out["landmarkers"] = [lm._asdict() for lm in self.landmarkers]
        out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MetaFeatures:
        """Inverse of :meth:`to_dict`. A record without ``version`` predates versioning
        (version 1)."""
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in raw.items() if k in names}
        values["landmarkers"] = [
            Landmarker(**lm) if isinstance(lm, Mapping) else Landmarker(*lm)
            for lm in raw.get("landmarkers") or []
        ]
        values["extra"] = dict(raw.get("extra") or {})
        values.setdefault("version", 1)
        return cls(**values)


# ---------------------------------------------------------------- column kinds


def _is_vector(typ: pa.DataType) -> bool:
    list_like = (
        pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ)
    )
    return bool(list_like) and bool(
        pa.types.is_integer(typ.value_type) or pa.types.is_floating(typ.value_type)
    )


def _is_numeric(typ: pa.DataType) -> bool:
    return bool(pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ))


def _is_categorical(typ: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_dictionary(typ)
        or pa.types.is_boolean(typ)
    )


def detect_task(column: pa.ChunkedArray | pa.Array) -> str:
    """``"classification"`` or ``"regression"`` by the rule in the module docstring."""
    if not _is_numeric(column.type):
        return "classification"
    distinct = pc.count_distinct(column, mode="only_valid").as_py()
    return "classification" if distinct <= MAX_NUMERIC_CLASSES else "regression"


def sample_rows(rows: int) -> IndexArray | None:
    """Row indices (sorted) of the deterministic sample of a table of ``rows`` rows, or None
    when all rows are used."""
    if rows <= STATS_MAX_ROWS:
        return None
    rng = np.random.default_rng(SAMPLE_SEED)
    return np.sort(rng.choice(rows, size=STATS_MAX_ROWS, replace=False))


def _missing_cells(column: pa.ChunkedArray) -> int:
    missing = column.null_count
    if pa.types.is_floating(column.type):
        missing += pc.sum(pc.fill_null(pc.is_nan(column), False)).as_py() or 0
    return int(missing)


def _numeric_block(column: pa.ChunkedArray) -> FloatArray:
    """Column as float64 of shape (rows, k); nulls -> NaN; vectors give their first dims."""
    rows = len(column)
    block: FloatArray
    if _is_vector(column.type):
        arr = column.combine_chunks()
        if pa.types.is_fixed_size_list(arr.type):
            dims = min(arr.type.list_size, VECTOR_DIMS)
            flat = (
                arr.flatten()
                if arr.null_count == 0
                else pc.list_flatten(arr.fill_null(pa.scalar([0] * arr.type.list_size, arr.type)))
            )
            values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64)
            block = values.reshape(rows, arr.type.list_size)[:, :dims].copy()
        else:
            lists = arr.to_pylist()
            block = np.full((rows, VECTOR_DIMS), np.nan)
            for i, vec in enumerate(lists):
                if vec:
                    head = [np.nan if v is None else v for v in vec[:VECTOR_DIMS]]
                    block[i, : len(head)] = head
        if arr.null_count:
            block[arr.is_null().to_numpy(zero_copy_only=False)] = np.nan
        return block
    single: FloatArray = np.asarray(
        column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    ).reshape(rows, 1)
    return single


def _categorical_codes(column: pa.ChunkedArray | pa.Array) -> FloatArray:
    """Ordinal codes (float64, NaN for null) in first-seen order."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    codes = arr.dictionary_encode().indices
    out: FloatArray = np.asarray(
        codes.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    )
    return out


# ---------------------------------------------------------------- statistics


def _moments(matrix: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-column skewness and excess kurtosis, NaN-aware; constant columns dropped."""
    if matrix.shape[1] == 0:
        return np.empty(0), np.empty(0)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(matrix, axis=0)
        centered = matrix - mean
        m2 = np.nanmean(centered**2, axis=0)
        m3 = np.nanmean(centered**3, axis=0)
        m4 = np.nanmean(centered**4, axis=0)
        skew = m3 / m2**1.5
        kurt = m4 / m2**2 - 3.0
        scale = np.nanmax(np.abs(matrix), axis=0, initial=0.0) if matrix.size else np.zeros(0)
    ok = np.isfinite(skew) & np.isfinite(kurt) & (m2 > (1e-12 * np.maximum(scale, 1.0)) ** 2)
    return skew[ok], kurt[ok]


def _summary(values: FloatArray) -> tuple[float, float, float, float]:
    if len(values) == 0:
        return 0.0, 0.0, 0.0, 0.0
    return float(values.mean()), float(values.min()), float(values.max()), float(values.std())


def _class_stats(target: pa.ChunkedArray) -> tuple[int, float, float, FloatArray]:
    counts = pc.value_counts(target.drop_null()).field("counts").to_numpy().astype(np.int64)
    if len(counts) == 0:
        return 0, 0.0, 0.0, counts
    p = counts / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    return len(counts), max(entropy, 0.0), float(counts.min() / counts.max()), counts


# ---------------------------------------------------------------- landmarkers


def _landmarkers(
    features: FloatArray, target: pa.ChunkedArray, task: str
) -> tuple[list[Landmarker], int]:
    """Landmarkers on ``features`` (rows of the sample) against ``target`` (same rows)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    labelled = np.flatnonzero(~target.is_null().to_numpy(zero_copy_only=False))
    if task == "regression":
        y_all = target.cast(pa.float64()).to_numpy(zero_copy_only=False)
        labelled = labelled[np.isfinite(y_all[labelled])]
    if len(labelled) > LANDMARK_MAX_ROWS:
        rng = np.random.default_rng(SAMPLE_SEED)
        labelled = np.sort(rng.choice(labelled, size=LANDMARK_MAX_ROWS, replace=False))
    if features.shape[1] == 0 or len(labelled) < 2 * CV_FOLDS:
        return [], len(labelled)
    x = _prepare(features[labelled])
    seed = SAMPLE_SEED
    if task == "classification":
        y = _categorical_codes(target.take(pa.array(labelled))).astype(np.int64)
        min_class = np.bincount(y).min(initial=0) if len(y) else 0
        if len(np.unique(y)) < 2:
            return [], len(labelled)
        folds = (
            StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed)
            if min_class >= CV_FOLDS
            else KFold(CV_FOLDS, shuffle=True, random_state=seed)
        )
        metric = "accuracy"
        models = {
            "decision_stump": DecisionTreeClassifier(max_depth=1, random_state=seed),
            "naive_bayes": GaussianNB(),
            "1nn": KNeighborsClassifier(n_neighbors=1),
            "linear": LogisticRegression(max_iter=300),
        }
    else:
        y = y_all[labelled]
        folds = KFold(CV_FOLDS, shuffle=True, random_state=seed)
        metric = "r2"
        models = {
            "decision_stump": DecisionTreeRegressor(max_depth=1, random_state=seed),
            "1nn": KNeighborsRegressor(n_neighbors=1),
            "linear": Ridge(alpha=1.0),
        }
    results = []
    for name, model in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = cross_val_score(model, x, y, cv=folds, scoring=metric, error_score=np.nan)
        score = float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")
        if math.isfinite(score):
            results.append(Landmarker(name, metric, score))
    return results, len(labelled)


def _prepare(x: FloatArray) -> FloatArray:
    """Median-impute and standardise; drops all-missing and constant columns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(x, axis=0)
    keep = np.isfinite(median)
    x = x[:, keep]
    x = np.where(np.isnan(x), median[keep], x)
    std = x.std(axis=0)
    keep = std > 0
    return (x[:, keep] - x[:, keep].mean(axis=0)) / std[keep] if keep.any() else x[:, :0]


# ---------------------------------------------------------------- public API


def compute_meta_features(table: pa.Table, target_column: str | None) -> MetaFeatures:
    """Meta-features of ``table`` against ``target_column`` (see the module docstring).

    ``target_column`` None or empty computes the target-free features only (task "none",
    no class statistics, no landmarkers).

    Raises:
        InvalidArgument: ``target_column`` is not a column of ``table``.
    """
    target_column = target_column or None
    if target_column is not None and target_column not in table.column_names:
        raise InvalidArgument(
            f"target column '{target_column}' is not in the dataset",
            reason="MISSING_COLUMN",
            metadata={"column": target_column},
        )
    rows = table.num_rows
    sample = sample_rows(rows)
    sampled = table if sample is None else table.take(pa.array(sample))
    n_sampled = sampled.num_rows
    feature_names = [c for c in table.column_names if c != target_column]
    numeric = categorical = vectors = other = 0
    missing_cells = 0
    blocks: list[FloatArray] = []
    code_blocks: list[FloatArray] = []
    for name in feature_names:
        column = table.column(name)
        missing_cells += _missing_cells(column)
        if _is_vector(column.type):
            numeric += 1
            vectors += 1
            blocks.append(_numeric_block(sampled.column(name)))
        elif _is_numeric(column.type):
            numeric += 1
            blocks.append(_numeric_block(sampled.column(name)))
        elif _is_categorical(column.type):
            categorical += 1
            code_blocks.append(_categorical_codes(sampled.column(name)).reshape(n_sampled, 1))
        else:
            other += 1
    numeric_matrix = np.hstack(blocks) if blocks else np.empty((n_sampled, 0))
    skew, kurt = _moments(numeric_matrix)
    columns = len(feature_names)
    extra: dict[str, float] = {
        "vector_columns": float(vectors),
        "other_columns": float(other),
        "numeric_features_used": float(numeric_matrix.shape[1]),
        "numeric_ratio": numeric / columns if columns else 0.0,
        "sampled_rows": float(n_sampled),
    }

    task, classes, entropy, imbalance = "none", 0, 0.0, 0.0
    landmarks: list[Landmarker] = []
    if target_column is not None:
        target = table.column(target_column)
        extra["target_missing"] = float(target.null_count)
        task = detect_task(target) if rows else "classification"
        if task == "classification":
            classes, entropy, imbalance, counts = _class_stats(target)
            if len(counts):
                extra["majority_class_ratio"] = float(counts.max() / counts.sum())
        all_features = np.hstack([numeric_matrix, *code_blocks]) if code_blocks else numeric_matrix
        landmarks, used = _landmarkers(all_features, sampled.column(target_column), task)
        extra["landmarker_rows"] = float(used)

    skew_stats, kurt_stats = _summary(skew), _summary(kurt)
    return MetaFeatures(
        rows=rows,
        columns=columns,
        numeric_columns=numeric,
        categorical_columns=categorical,
        missing_ratio=missing_cells / (rows * columns) if rows and columns else 0.0,
        classes=classes,
        class_entropy=entropy,
        class_imbalance_ratio=imbalance,
        skew_mean=skew_stats[0],
        skew_min=skew_stats[1],
        skew_max=skew_stats[2],
        skew_std=skew_stats[3],
        kurtosis_mean=kurt_stats[0],
        kurtosis_min=kurt_stats[1],
        kurtosis_max=kurt_stats[2],
        kurtosis_std=kurt_stats[3],
        log_rows_per_column=math.log(rows / columns) if rows and columns else 0.0,
        landmarkers=landmarks,
        target_column=target_column or "",
        extra=extra,
        task=task,
    )


def _arrow_column(values: pd.Series) -> pa.Array:
    """A pandas column as Arrow; object columns Arrow cannot type become strings."""
    try:
        return pa.Array.from_pandas(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return pa.Array.from_pandas(values.astype("string"))


def meta_features_of_frame(frame: pd.DataFrame, target: pd.Series) -> MetaFeatures:
    """:func:`compute_meta_features` of a pandas ``frame`` of features and its ``target``
    (the trainer's in-memory form of a table): the same values as for the Arrow table they
    were read from when the columns convert back to the same Arrow types (vectors do not:
    the trainer spreads them over one column per dimension)."""
    name = str(target.name) if target.name is not None else "target"
    while name in frame.columns:
        name = f"_{name}"
    arrays = {str(c): _arrow_column(frame[c]) for c in frame.columns}
    arrays[name] = _arrow_column(target)
    return compute_meta_features(pa.table(arrays), name)


def _clip(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high)) if math.isfinite(value) else 0.0


def similarity_vector(mf: MetaFeatures) -> dict[str, float]:
    """The meta-features the trainer compares between datasets (by Euclidean distance over
    per-feature scales): sizes on a log scale, ratios, normalised class entropy, bounded
    moments and landmarker scores. Every value is finite."""
    columns = max(mf.columns, 1)
    out = {
        "log_rows": math.log10(max(mf.rows, 1)),
        "log_columns": math.log10(columns),
        "numeric_ratio": mf.numeric_columns / columns,
        "categorical_ratio": mf.categorical_columns / columns,
        "missing_ratio": _clip(mf.missing_ratio, 0.0, 1.0),
        "log_classes": math.log10(max(mf.classes, 1)),
        "class_entropy_normalized": (
            _clip(mf.class_entropy / math.log2(mf.classes), 0.0, 1.0) if mf.classes > 1 else 0.0
        ),
        "class_imbalance_ratio": _clip(mf.class_imbalance_ratio, 0.0, 1.0),
        "skew_mean": _clip(mf.skew_mean, -50.0, 50.0),
        "skew_std": _clip(mf.skew_std, 0.0, 50.0),
        "kurtosis_mean": _clip(mf.kurtosis_mean, -5.0, 100.0),
    }
    for lm in mf.landmarkers:
        out[f"landmark_{lm.name}"] = _clip(lm.score, -1.0, 1.0)
    return out
