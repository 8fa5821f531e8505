"""Input schema of a model bundle: ordered columns with kinds, dtypes and categories.

The schema is taken from the training frame at write time and enforced at predict time:
:meth:`InputSchema.normalise` turns a request frame into exactly the frame the model was
trained on (column order, dtypes, categorical categories) or raises ``InvalidArgument``
naming every missing or mistyped column. Extra columns are ignored; columns the model drops
(``used`` False: identifiers, constants) may be missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.errors import FailedPrecondition, InvalidArgument

NUMERIC = "numeric"
CATEGORICAL = "categorical"
BOOLEAN = "boolean"
DATETIME = "datetime"
KINDS = (NUMERIC, CATEGORICAL, BOOLEAN, DATETIME)

# pandas.api.types.infer_dtype results accepted for each kind (object columns are checked by
# their values, because request frames built from rows often have object dtype).
_ACCEPTED_INFERRED = {
    NUMERIC: {"integer", "floating", "mixed-integer-float", "decimal", "boolean", "empty"},
    CATEGORICAL: {"string", "empty"},
    BOOLEAN: {"boolean", "empty"},
    DATETIME: {"datetime64", "datetime", "date", "empty"},
}

# Feature types (as a feature store or proto names them) that can feed each kind.
_COMPATIBLE_TYPES = {
    NUMERIC: {
        "double",
        "float",
        "float16",
        "float32",
        "float64",
        "int",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "integer",
        "numeric",
        "number",
        "long",
    },
    CATEGORICAL: {"string", "str", "object", "category", "categorical", "utf8", "large_string"},
    BOOLEAN: {"bool", "boolean"},
    DATETIME: {"datetime", "datetime64", "datetime64[ns]", "timestamp", "date"},
}


@dataclass(frozen=True)
class ColumnSpec:
    """One input column as seen at training time.

    ``dtype`` is the pandas dtype name at training; ``categories`` is set only for pandas
    ``category`` columns (the exact categories the model saw, in order); ``nullable`` says
    whether training data had missing values; ``used`` is False for a column the model
    drops (an identifier, a constant): requests may leave it out.
    """

    name: str
    kind: str
    dtype: str
    categories: tuple[Any, ...] | None = None
    nullable: bool = False
    used: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "categories": None if self.categories is None else list(self.categories),
            "nullable": self.nullable,
        } | ({} if self.used else {"used": False})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        categories = data.get("categories")
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            dtype=str(data["dtype"]),
            categories=None if categories is None else tuple(categories),
            nullable=bool(data.get("nullable", False)),
            used=bool(data.get("used", True)),
        )


@dataclass(frozen=True)
class InputSchema:
    """The ordered input columns of a model. Immutable and thread-safe."""

    columns: tuple[ColumnSpec, ...]

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def unused(self) -> frozenset[str]:
        """Columns the model drops: a request may leave them out."""
        return frozenset(column.name for column in self.columns if not column.used)

    def with_unused(self, names: Iterable[str]) -> InputSchema:
        """This schema with ``names`` marked unused (names that are not columns are refused)."""
        wanted = set(names)
        unknown = sorted(wanted.difference(self.names))
        if unknown:
            raise InvalidArgument(
                f"unused columns are not training columns: {', '.join(unknown)}",
                reason="INVALID_SCHEMA",
            )
        return InputSchema(
            tuple(replace(c, used=False) if c.name in wanted else c for c in self.columns)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [column.to_dict() for column in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSchema:
        return cls(tuple(ColumnSpec.from_dict(column) for column in data["columns"]))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> InputSchema:
        """The schema of a training frame. Raises InvalidArgument for non-string or duplicate
        column names (they cannot round-trip through JSON or a request)."""
        names = list(frame.columns)
        bad = [repr(name) for name in names if not isinstance(name, str) or not name]
        if bad:
            raise InvalidArgument(
                f"training frame column names must be non-empty strings; got {', '.join(bad)}",
                reason="INVALID_SCHEMA",
            )
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise InvalidArgument(
                f"training frame has duplicate columns: {', '.join(duplicated)}",
                reason="INVALID_SCHEMA",
            )
        return cls(tuple(_column_spec(name, frame[name]) for name in names))

    # -- predict-time checks ----------------------------------------------------------------

    def normalise(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` reduced to the schema's columns, in order, cast to the training dtypes.

        Raises:
            InvalidArgument: reason ``MISSING_FEATURES``, ``MISTYPED_FEATURES`` or
                ``INVALID_FEATURES`` (both); the message names every offending column and the
                metadata lists them (``missing``, ``mistyped``, comma-separated).
        """
        if not isinstance(frame, pd.DataFrame):
            raise InvalidArgument(
                f"input must be a pandas DataFrame, got {type(frame).__name__}",
                reason="INVALID_FEATURES",
            )
        missing = [column.name for column in self.columns if column.name not in frame.columns]
        mistyped: dict[str, str] = {}
        out: dict[str, pd.Series] = {}
        for column in self.columns:
            if column.name in missing:
                if not column.used:  # the model drops it: any value will do
                    out[column.name] = pd.Series(None, index=frame.index, dtype=object)
                    missing.remove(column.name)
                continue
            series = frame[column.name]
            if isinstance(series, pd.DataFrame):
                mistyped[column.name] = "column appears more than once"
                continue
            problem, cast = _coerce(series, column)
            if problem:
                mistyped[column.name] = problem
            else:
                out[column.name] = cast
        if missing or mistyped:
            raise _features_error(missing, mistyped)
        return pd.DataFrame(out, index=frame.index, columns=self.names)

    def problems_with(self, features: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[str]:
        """Human-readable reasons why features with these (name, type) pairs cannot feed
        the model; empty when compatible. Types are dtype-like names ("float32", "int64",
        "string", "bool", "timestamp", ...), case-insensitive."""
        available = dict(features.items() if isinstance(features, Mapping) else features)
        problems: list[str] = []
        for column in self.columns:
            if column.name not in available and not column.used:
                continue
            if column.name not in available:
                problems.append(f"feature '{column.name}' ({column.kind}) is missing")
                continue
            given = str(available[column.name]).strip().lower()
            if given not in _COMPATIBLE_TYPES[column.kind]:
                problems.append(
                    f"feature '{column.name}' has type '{available[column.name]}' but the "
                    f"model was trained on {column.kind} values ({column.dtype})"
                )
        return problems

    def check_compatible(self, features: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """Raise FailedPrecondition (reason ``SCHEMA_INCOMPATIBLE``) listing every problem
        from :meth:`problems_with`; return quietly when compatible."""
        problems = self.problems_with(features)
        if problems:
            raise FailedPrecondition(
                "features do not match the model's input schema: " + "; ".join(problems),
                reason="SCHEMA_INCOMPATIBLE",
                metadata={"problems": " | ".join(problems)},
            )


def _features_error(missing: Sequence[str], mistyped: Mapping[str, str]) -> InvalidArgument:
    parts = []
    if missing:
        parts.append("missing features: " + ", ".join(missing))
    if mistyped:
        parts.append(
            "mistyped features: " + "; ".join(f"{name} ({why})" for name, why in mistyped.items())
        )
    reason = (
        "INVALID_FEATURES"
        if missing and mistyped
        else "MISSING_FEATURES"
        if missing
        else "MISTYPED_FEATURES"
    )
    return InvalidArgument(
        "; ".join(parts),
        reason=reason,
        metadata={"missing": ",".join(missing), "mistyped": ",".join(mistyped)},
    )


def _column_spec(name: str, series: pd.Series) -> ColumnSpec:
    dtype = series.dtype
    nullable = bool(series.isna().any())
    if isinstance(dtype, pd.CategoricalDtype):
        categories = tuple(_native(value) for value in dtype.categories)
        return ColumnSpec(name, CATEGORICAL, "category", categories, nullable)
    if pd.api.types.is_bool_dtype(dtype):
        return ColumnSpec(name, BOOLEAN, str(dtype), None, nullable)
    if pd.api.types.is_numeric_dtype(dtype):
        return ColumnSpec(name, NUMERIC, str(dtype), None, nullable)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return ColumnSpec(name, DATETIME, str(dtype), None, nullable)
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred == "boolean":
        return ColumnSpec(name, BOOLEAN, "bool" if not nullable else "object", None, nullable)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return ColumnSpec(name, NUMERIC, "float64", None, nullable)
    return ColumnSpec(name, CATEGORICAL, str(dtype), None, nullable)


def _coerce(series: pd.Series, column: ColumnSpec) -> tuple[str | None, pd.Series]:
    """(problem, cast series): problem is None when the values fit the column."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        inferred = pd.api.types.infer_dtype(dtype.categories, skipna=True)
    elif pd.api.types.is_bool_dtype(dtype):
        inferred = "boolean"
    elif pd.api.types.is_numeric_dtype(dtype):
        inferred = "floating"
    else:
        inferred = pd.api.types.infer_dtype(series, skipna=True)
    accepted = set(_ACCEPTED_INFERRED[column.kind])
    if column.kind == CATEGORICAL and column.categories is not None:
        # A category column trained on non-string categories accepts values of that type.
        accepted.add(pd.api.types.infer_dtype(list(column.categories), skipna=True))
        if "integer" in accepted or "floating" in accepted:
            accepted |= {"integer", "floating", "mixed-integer-float"}
    if inferred not in accepted:
        return f"expected {column.kind} values, got {_describe(inferred, series)}", series
    try:
        return None, _cast(series, column)
    except (TypeError, ValueError) as err:
        return f"cannot convert to {column.dtype}: {err}", series


def _cast(series: pd.Series, column: ColumnSpec) -> pd.Series:
    if column.kind == CATEGORICAL:
        if column.categories is not None:
            return pd.Series(
                pd.Categorical(series, categories=list(column.categories)),
                index=series.index,
                name=series.name,
            )
        return series.astype(object) if series.dtype != object else series
    if column.kind == NUMERIC:
        target = np.dtype(column.dtype) if column.dtype != "object" else np.dtype("float64")
        if target.kind in "iu" and series.isna().any():
            target = np.dtype("float64")  # missing values in an int column: keep them as NaN
        if series.dtype == target:
            return series
        return series.astype(target)
    if column.kind == BOOLEAN:
        if series.isna().any():
            return series.astype(object)
        return series.astype(bool)
    return pd.to_datetime(series)


def _describe(inferred: str, series: pd.Series) -> str:
    example = next((value for value in series if value is not None and value == value), None)
    names = {"string": "strings", "integer": "integers", "floating": "floats"}
    return f"{names.get(inferred, inferred)} (e.g. {example!r})"


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
