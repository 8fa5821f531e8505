"""Label distributions, and the dataset meta-features the data service records with each
dataset version. The meta-features' definition (and its version) is
:mod:`atlas_core.meta_features`, shared with the trainer, which compares them across datasets.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from atlas_core.errors import InvalidArgument
from atlas_core.meta_features import (
    META_FEATURES_VERSION,
    MetaFeatures,
    compute_meta_features,
    detect_task,
)

__all__ = [
    "META_FEATURES_VERSION",
    "LabelDistributionResult",
    "MetaFeatures",
    "compute_meta_features",
    "detect_task",
    "label_distribution",
]


@dataclass(frozen=True)
class LabelDistributionResult:
    """Mirror of ``LabelDistribution``: counts for classification, summary when numeric."""

    label_column: str
    counts: list[tuple[str, int]]
    mean: float
    stddev: float
    min: float
    max: float
    missing: int


def _is_numeric(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)


def label_distribution(table: pa.Table, label_column: str) -> LabelDistributionResult:
    """Counts per class (classification, most frequent first) and, for numeric labels, the
    mean, sample standard deviation (ddof=1; 0 for fewer than two values), min and max.

    Raises:
        InvalidArgument: ``label_column`` is not a column of ``table``.
    """
    if label_column not in table.column_names:
        raise InvalidArgument(
            f"label column '{label_column}' is not in the dataset",
            reason="MISSING_COLUMN",
            metadata={"column": label_column},
        )
    column = table.column(label_column)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    counts: list[tuple[str, int]] = []
    if detect_task(column) == "classification":
        tally = pc.value_counts(column.drop_null())
        labels = tally.field("values").cast(pa.string()).to_pylist()
        numbers = tally.field("counts").to_pylist()
        counts = sorted(zip(labels, numbers, strict=True), key=lambda lc: (-lc[1], lc[0]))
    mean = stddev = low = high = 0.0
    if _is_numeric(column.type) and len(column) - column.null_count > 0:
        values = column.cast(pa.float64())
        mean = pc.mean(values).as_py()
        if len(values) - values.null_count > 1:
            stddev = pc.stddev(values, ddof=1).as_py()
        low, high = pc.min(values).as_py(), pc.max(values).as_py()
    return LabelDistributionResult(
        label_column=label_column,
        counts=counts,
        mean=float(mean),
        stddev=float(stddev),
        min=float(low),
        max=float(high),
        missing=int(column.null_count),
    )
