"""Column roles: what each raw column of a table is, and the features it becomes.

Real tables hold more than numbers and categories. Before any model sees the data, every
column gets a role (inferred from its values and name, or set by the user):

- ``datetime`` (native datetimes, or strings in one common format): calendar and cyclic
  features (year, month, day, weekday, hour, minute, day of year, sin/cos of the cycles) and
  the elapsed days since the earliest training date. Values that do not parse are missing.
- ``text`` (long, mostly distinct strings with spaces): TF-IDF of the most frequent word
  1-2-grams and character 2-3-grams (``TfidfVectorizer``; width capped) plus length and word
  statistics.
- ``identifier`` (nearly unique values: no signal across folds): dropped.
- ``categorical`` (other strings): left to the encoders; above ``HIGH_CARDINALITY`` distinct
  values it also gets its training frequency (the encoders add target encoding).
- ``latitude`` / ``longitude`` (a pair, by name and range): kept numeric, plus the pair
  rotated by a few angles (axis-aligned tree splits then follow diagonal regions).
- ``numeric``: as it is.

:class:`ColumnRoleFeatures` is fitted once per job on the training rows (nothing it learns
uses the target) and lives inside the model (:class:`ColumnRoleModel`), so serving turns raw
rows into the same features.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.ml._dates import DATE_FORMATS, date_matrix_fn, datetime_parts, parse_dates
from atlas_core.ml._model import EstimatorCompiler, MatrixScorer
from atlas_core.ml._sanitize import ColumnSanitizer, is_categorical
from atlas_core.ml._text_matrix import text_fn

NUMERIC, CATEGORICAL, DATETIME, TEXT, IDENTIFIER = (
    "numeric",
    "categorical",
    "datetime",
    "text",
    "identifier",
)
LATITUDE, LONGITUDE = "latitude", "longitude"
ROLES = (NUMERIC, CATEGORICAL, DATETIME, TEXT, IDENTIFIER, LATITUDE, LONGITUDE)

# Above this many distinct values a category also gets its frequency (the search space
# one-hot encodes at most 32).
HIGH_CARDINALITY = 32
# Text: at most this many TF-IDF columns per text column (words first), plus the statistics.
TEXT_MAX_FEATURES = 160
TEXT_WORD_SHARE = 0.6
TEXT_FIT_ROWS = 5_000  # vocabularies are chosen on a sample of this many values
# Inference thresholds: share of sampled values that must parse as dates; text is mostly
# distinct, has spaces in most values and at least this many words on average.
DATE_PARSE_SHARE = 0.95
TEXT_MIN_UNIQUE_RATIO = 0.3
TEXT_MIN_MEAN_WORDS = 3.0
SAMPLE_VALUES = 500
ROTATION_DEGREES = (30, 45, 60)

# the name's last word: ``pickup_lat`` is a latitude, ``long_description_len`` is not
_LAT = re.compile(r"(^|[_\W])(lat|latitude)$", re.IGNORECASE)
_LON = re.compile(r"(^|[_\W])(lon|lng|long|longitude)$", re.IGNORECASE)
_DIGITS_ONLY = re.compile(r"^[\s+-]*[\d.]+\s*$")
_PUNCTUATION = re.escape(string.punctuation)


@dataclass(frozen=True)
class ColumnRole:
    """The decision about one raw column: its ``role``, whether the spec set it
    (``overridden``), why (``detail``) and the features models see (empty: dropped)."""

    column: str
    role: str
    overridden: bool
    detail: str
    features: tuple[str, ...] = ()

    @property
    def dropped(self) -> bool:
        return not self.features


def unknown_roles(overrides: Mapping[str, str]) -> dict[str, str]:
    """The overrides whose role is not one of ``ROLES`` (column -> role)."""
    return {c: r for c, r in overrides.items() if r not in ROLES}


# ------------------------------------------------------------------------------ inference


def _sample(values: pd.Series) -> pd.Series:
    distinct = values.drop_duplicates()
    if len(distinct) > SAMPLE_VALUES:
        distinct = distinct.sample(SAMPLE_VALUES, random_state=0)
    return distinct


def best_date_format(values: pd.Series) -> tuple[str, float]:
    """(format, share of the sampled distinct strings it parses); ("", 0) when none does."""
    sample = _sample(values.dropna().astype(str))
    if sample.empty:
        return "", 0.0
    best, share = "", 0.0
    for fmt in DATE_FORMATS:
        got = float(parse_dates(sample, fmt).notna().mean())
        if got > share:
            best, share = fmt, got
            if got == 1.0:
                break
    return best, share


def _looks_like_dates(values: pd.Series) -> str:
    """The date format of a string column, or "" (numbers written as strings are not dates)."""
    sample = _sample(values.dropna().astype(str))
    if sample.empty or sample.str.match(_DIGITS_ONLY).mean() > 0.5:
        return ""
    fmt, share = best_date_format(values)
    return fmt if share >= DATE_PARSE_SHARE else ""


def _text_stats(values: pd.Series) -> tuple[float, float, float]:
    """(distinct ratio, share of values with a space, mean words) of the non-missing values."""
    text = values.dropna().astype(str)
    if text.empty:
        return 0.0, 0.0, 0.0
    words = text.str.split().str.len()
    return (
        text.nunique() / len(text),
        float(text.str.contains(" ", regex=False).mean()),
        float(words.mean()),
    )


def _native_datetimes(values: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return True
    if values.dtype != object:
        return False
    return pd.api.types.infer_dtype(values, skipna=True) in ("datetime", "datetime64", "date")


def _infer_one(name: str, values: pd.Series, sanitizer: ColumnSanitizer) -> tuple[str, str, str]:
    """(role, detail, date format) of one column."""
    why = sanitizer._reason_to_drop(name, values)  # noqa: SLF001 - one definition of id-like
    if why in ("all_missing", "constant"):
        return (CATEGORICAL if is_categorical(values) else NUMERIC), f"{why}: dropped", ""
    if _native_datetimes(values):
        return DATETIME, "datetime values", "native"
    if pd.api.types.is_bool_dtype(values.dtype):
        return NUMERIC, "boolean", ""
    if not is_categorical(values):
        if why == "id_like":
            return IDENTIFIER, "distinct integers in order or named like an id: dropped", ""
        return NUMERIC, "numbers", ""
    fmt = _looks_like_dates(values)
    if fmt:
        return DATETIME, f"strings in date format {fmt}", fmt
    unique, spaced, mean_words = _text_stats(values)
    if unique >= TEXT_MIN_UNIQUE_RATIO and spaced >= 0.5 and mean_words >= TEXT_MIN_MEAN_WORDS:
        return TEXT, f"free text ({unique:.0%} distinct, {mean_words:.1f} words on average)", ""
    if why == "id_like":
        return IDENTIFIER, f"nearly unique strings ({unique:.0%} distinct): dropped", ""
    k = int(values.nunique())
    if k > HIGH_CARDINALITY:
        return CATEGORICAL, f"high cardinality ({k} values): frequency + target encoding", ""
    return CATEGORICAL, f"{k} categories", ""


def _coordinate_pairs(
    X: pd.DataFrame, roles: dict[str, str], overridden: set[str]
) -> list[tuple[str, str]]:
    """Latitude/longitude pairs: columns set as such, or numeric columns named like one and
    within range, matched by the rest of their names (``pickup_lat`` with ``pickup_lon``)."""

    def in_range(name: str, bound: float) -> bool:
        s = pd.to_numeric(X[name], errors="coerce")
        return bool(s.notna().any() and s.abs().max() <= bound and s.nunique() > 1)

    lat: dict[str, str] = {}
    lon: dict[str, str] = {}
    for name, role in roles.items():
        if name in overridden:
            if role == LATITUDE:
                lat[_LAT.sub(r"\1", name)] = name
            elif role == LONGITUDE:
                lon[_LON.sub(r"\1", name)] = name
        elif role == NUMERIC:
            if _LAT.search(name) and in_range(name, 90):
                lat.setdefault(_LAT.sub(r"\1", name), name)
            elif _LON.search(name) and in_range(name, 180):
                lon.setdefault(_LON.sub(r"\1", name), name)
    pairs = [(lat[k], lon[k]) for k in lat if k in lon]
    if not pairs and len(lat) == 1 and len(lon) == 1:  # one of each, named differently
        pairs = [(next(iter(lat.values())), next(iter(lon.values())))]
    return pairs


# ------------------------------------------------------------------------------ features


def _text_values(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "").astype(str)


def _text_statistics(values: pd.Series) -> dict[str, np.ndarray]:
    """Length and word statistics (NaN for a missing value, so an indicator can flag it)."""
    text = _text_values(values)
    missing = values.isna().to_numpy()
    chars = text.str.len().to_numpy(np.float64)
    words = text.str.split().str.len().to_numpy(np.float64)
    safe = np.maximum(chars, 1.0)
    stats = {
        "chars": chars,
        "words": words,
        "mean_word_len": (chars - text.str.count(r"\s").to_numpy(np.float64))
        / np.maximum(words, 1.0),
        "upper_frac": text.str.count(r"[A-Z]").to_numpy(np.float64) / safe,
        "digit_frac": text.str.count(r"\d").to_numpy(np.float64) / safe,
        "punct_frac": text.str.count(f"[{_PUNCTUATION}]").to_numpy(np.float64) / safe,
    }
    for v in stats.values():
        v[missing] = np.nan
    return stats


def _category_values(values: pd.Series) -> pd.Series:
    """Values of a column used as a category, as strings (``1`` and ``1.0`` alike)."""
    if pd.api.types.is_numeric_dtype(values.dtype) or values.dtype == object:
        return values.map(_category_value).astype(object)
    return values.astype(object).where(values.notna(), None)


def _category_value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        f = float(v)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(v)


@dataclass
class _Text:
    vectorizers: list[tuple[str, Any]] = field(default_factory=list)  # (prefix, fitted)
    stats: list[str] = field(default_factory=list)


class ColumnRoleFeatures:
    """Raw columns -> the frame models learn from (see the module docstring).

    ``fit(X)`` infers each column's role (``overrides``: column -> role, taken as given) and
    fits what the roles need; ``roles_`` lists the decisions, in column order. ``transform``
    returns the numeric and categorical columns as they are (cast when a role says so) and
    the derived columns, named ``<column>.<part>``; datetime, text and identifier columns
    themselves are not in it. A column seen in ``fit`` but absent later is missing.
    """

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        text_max_features: int = TEXT_MAX_FEATURES,
    ) -> None:
        self.overrides = dict(overrides or {})
        self.text_max_features = text_max_features

    # -- fit -----------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame) -> ColumnRoleFeatures:
        X = X.set_axis([str(c) for c in X.columns], axis=1)
        self.columns_ = list(X.columns)
        sanitizer = ColumnSanitizer()
        decided: dict[str, tuple[str, str, str]] = {}
        for name in self.columns_:
            if name in self.overrides:
                role = self.overrides[name]
                fmt = ""
                if role == DATETIME:
                    fmt = self._override_format(X[name])
                decided[name] = (role, "set in the spec", fmt)
            else:
                decided[name] = _infer_one(name, X[name], sanitizer)
        roles = {n: r for n, (r, _, _) in decided.items()}
        self.pairs_ = _coordinate_pairs(X, roles, set(self.overrides))
        paired = {c for pair in self.pairs_ for c in pair}
        for lat, lon in self.pairs_:
            for name, role in ((lat, LATITUDE), (lon, LONGITUDE)):
                _, detail, _ = decided[name]
                if name not in self.overrides:
                    detail = f"{role} (paired with {lon if name == lat else lat})"
                decided[name] = (role, detail, "")
        for name, (role, detail, fmt) in list(decided.items()):
            if role in (LATITUDE, LONGITUDE) and name not in paired:
                decided[name] = (role, f"{detail}; no {role} partner: kept numeric", fmt)
        self.date_formats_: dict[str, str] = {}
        self.date_origins_: dict[str, pd.Timestamp] = {}
        self.date_parts_: dict[str, list[str]] = {}
        self.text_: dict[str, _Text] = {}
        self.frequencies_: dict[str, dict[str, float]] = {}
        self.numeric_: list[str] = []  # passed through as numbers
        self.categorical_: list[str] = []  # passed through as categories
        self.cast_: dict[str, str] = {}  # passed-through column -> role its values are cast to
        self.dropped_: dict[str, str] = {}
        out: list[ColumnRole] = []
        for name in self.columns_:
            role, detail, fmt = decided[name]
            over = name in self.overrides
            features = self._fit_column(X[name], name, role, fmt, over, detail)
            if role == DATETIME and over:
                missing = float(X[name].isna().mean())
                unparsed = float(parse_dates(X[name], fmt).isna().mean()) - missing
                detail = f"set in the spec; format {fmt}"
                if unparsed > 0:
                    detail += f"; {unparsed:.0%} of the values do not parse: taken as missing"
            out.append(ColumnRole(name, role, over, detail, tuple(features)))
            if role == IDENTIFIER:
                self.dropped_[name] = "identifier (set in the spec)" if over else "id_like"
        self.roles_ = out
        self.feature_names_out_ = [f for r in out for f in r.features]
        return self

    @staticmethod
    def _override_format(values: pd.Series) -> str:
        if _native_datetimes(values):
            return "native"
        if pd.api.types.is_numeric_dtype(values.dtype):
            return "epoch_seconds"
        fmt, _ = best_date_format(values)
        return fmt or "ISO8601"  # nothing parses: every value is missing

    def _fit_column(
        self, values: pd.Series, name: str, role: str, fmt: str, over: bool, detail: str
    ) -> list[str]:
        if detail.endswith(": dropped") and not over and role != IDENTIFIER:
            # constant or all missing: the sanitizer drops it (and says so), as it always did
            (self.categorical_ if role == CATEGORICAL else self.numeric_).append(name)
            return [name]
        if role == IDENTIFIER:
            return []
        if role == DATETIME:
            return self._fit_datetime(values, name, fmt)
        if role == TEXT:
            return self._fit_text(values, name)
        if role == CATEGORICAL:
            self.categorical_.append(name)
            if not is_categorical(values):
                self.cast_[name] = CATEGORICAL
                values = _category_values(values)
            features = [name]
            k = int(values.nunique())
            if k > HIGH_CARDINALITY:
                counts = _category_values(values).value_counts(normalize=True)
                self.frequencies_[name] = {str(c): float(v) for c, v in counts.items()}
                features.append(f"{name}.freq")
            return features
        # numeric, latitude, longitude
        self.numeric_.append(name)
        if is_categorical(values):
            self.cast_[name] = NUMERIC
        features = [name]
        for lat, lon in self.pairs_:
            if name == lon:
                features += [
                    f"{lat}+{lon}.rot{d}_{axis}" for d in ROTATION_DEGREES for axis in "xy"
                ]
        return features

    def _fit_datetime(self, values: pd.Series, name: str, fmt: str) -> list[str]:
        ts = parse_dates(values, fmt)
        self.date_formats_[name] = fmt
        origin = ts.min()
        self.date_origins_[name] = origin if pd.notna(origin) else pd.Timestamp(0, tz="UTC")
        parts = datetime_parts(ts, self.date_origins_[name])
        # a part constant over the training rows (every time at midnight) carries nothing
        kept = [p for p, v in parts.items() if np.isfinite(v).any() and np.nanstd(v) > 0] or [
            "elapsed_days"
        ]
        self.date_parts_[name] = kept
        return [f"{name}.{p}" for p in kept]

    def _fit_text(self, values: pd.Series, name: str) -> list[str]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        text = _text_values(values)
        # the most frequent terms of a few thousand values are those of all of them
        sample = text.sample(TEXT_FIT_ROWS, random_state=0) if len(text) > TEXT_FIT_ROWS else text
        fitted = _Text()
        features: list[str] = []
        word_cap = max(1, int(self.text_max_features * TEXT_WORD_SHARE))
        for prefix, kw in (
            ("w", {"analyzer": "word", "ngram_range": (1, 2), "max_features": word_cap}),
            (
                "c",
                {
                    "analyzer": "char_wb",
                    "ngram_range": (2, 3),
                    "max_features": max(1, self.text_max_features - word_cap),
                },
            ),
        ):
            vectorizer = TfidfVectorizer(min_df=2, sublinear_tf=True, dtype=np.float32, **kw)
            try:
                vectorizer.fit(sample)
            except ValueError:  # empty vocabulary: too few or too short values
                continue
            # every term left out (can be most of them): only for introspection, and it would
            # make the pickled model (the bundle) large
            vectorizer.stop_words_ = None
            fitted.vectorizers.append((prefix, vectorizer))
            features += [f"{name}.{prefix}:{t}" for t in vectorizer.get_feature_names_out()]
        stats = _text_statistics(values)
        fitted.stats = [s for s, v in stats.items() if np.isfinite(v).any() and np.nanstd(v) > 0]
        features += [f"{name}.{s}" for s in fitted.stats]
        self.text_[name] = fitted
        return features

    # -- transform -----------------------------------------------------------------------

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.set_axis([str(c) for c in X.columns], axis=1)
        index = X.index

        def column(name: str) -> pd.Series:
            if name in X.columns:
                return X[name]
            return pd.Series([None] * len(X), index=index, dtype=object)

        # Derived features are gathered as float blocks and become one frame block: a frame
        # of hundreds of single columns costs milliseconds per call (serving's one-row calls).
        kept: dict[str, pd.Series] = {}  # passed-through columns, as they are or cast
        names: list[str] = []
        blocks: list[np.ndarray] = []

        def add(block: dict[str, np.ndarray]) -> None:
            names.extend(block)
            blocks.append(
                np.column_stack([np.asarray(v, dtype=np.float64) for v in block.values()])
            )

        for role in self.roles_:
            name = role.column
            if not role.features:
                continue
            values = column(name)
            if name in self.date_formats_:
                ts = parse_dates(values, self.date_formats_[name])
                parts = datetime_parts(ts, self.date_origins_[name])
                add({f"{name}.{p}": parts[p] for p in self.date_parts_[name]})
            elif name in self.text_:
                self._text_features(values, name, names, blocks)
            elif name in self.categorical_:
                cats = _category_values(values) if self.cast_.get(name) else values
                kept[name] = cats
                if name in self.frequencies_:
                    freq = self.frequencies_[name]
                    keys = _category_values(cats)
                    add(
                        {
                            f"{name}.freq": np.asarray(
                                [freq.get(k, 0.0) if k is not None else np.nan for k in keys]
                            )
                        }
                    )
            else:
                if self.cast_.get(name) == NUMERIC:
                    values = pd.to_numeric(values, errors="coerce").astype(np.float64)
                kept[name] = values
                for lat, lon in self.pairs_:
                    if name == lon:
                        add(_rotations(column(lat), values, lat, lon))
        frames = [pd.DataFrame(kept, index=index)]
        if blocks:
            frames.append(pd.DataFrame(np.hstack(blocks), index=index, columns=names))
        frame = pd.concat(frames, axis=1) if len(frames) > 1 else frames[0]
        return frame[self.feature_names_out_]

    def fit_transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return self.fit(X).transform(X)

    def _text_features(
        self, values: pd.Series, name: str, names: list[str], blocks: list[np.ndarray]
    ) -> None:
        """Append the text column's TF-IDF and statistics blocks (and their names)."""
        fitted = self.text_[name]
        text = _text_values(values)
        for prefix, vectorizer in fitted.vectorizers:
            blocks.append(vectorizer.transform(text).toarray().astype(np.float64))
            names.extend(f"{name}.{prefix}:{t}" for t in vectorizer.get_feature_names_out())
        if fitted.stats:
            stats = _text_statistics(values)
            blocks.append(np.column_stack([stats[s] for s in fitted.stats]))
            names.extend(f"{name}.{s}" for s in fitted.stats)

    @property
    def changes_columns(self) -> bool:
        """False when the output is the input as the sanitizer would see it anyway (plain
        numbers and categories, inferred identifiers dropped by the sanitizer's own rule)."""
        for r in self.roles_:
            if r.overridden or r.role in (DATETIME, TEXT, LATITUDE, LONGITUDE):
                return True
            if len(r.features) > 1:
                return True
        return False

    def summary(self) -> str:
        """One pipeline step naming what the roles derive, e.g. ``roles(datetime:1,text:1)``."""
        counts = {
            role: sum(r.role == role for r in self.roles_) for role in (DATETIME, TEXT, IDENTIFIER)
        }
        counts["latlon"] = len(self.pairs_)
        counts["freq"] = len(self.frequencies_)
        return "roles(" + ",".join(f"{k}:{v}" for k, v in counts.items() if v) + ")"

    # -- the float-matrix path (serving's fast path) ---------------------------------------

    def matrix_transform(
        self, columns: Sequence[str]
    ) -> tuple[Callable[[np.ndarray], np.ndarray], list[str]] | None:
        """(``transform`` of a matrix whose columns are ``columns``, its output column names),
        or None when a kept column is not in ``columns``. The matrix is float64, or object
        when string columns hold their raw values (None for missing); the output is object
        then too, with the categorical columns' values as ``transform`` gives them (the
        model's encoders take them), free text as its TF-IDF and statistics (see
        ``_text_matrix``) and dates as their calendar parts (see ``_dates``)."""
        position = {str(c): i for i, c in enumerate(columns)}
        kept = (*self.numeric_, *self.categorical_, *self.text_, *self.date_formats_)
        if any(n not in position for n in kept):
            return None
        blocks = [
            block
            for role in self.roles_
            if role.features
            for block in self._matrix_blocks(role.column, position)
        ]

        def transform(M: np.ndarray) -> np.ndarray:
            parts = [block(M) for block in blocks]
            if not parts:
                return np.zeros((len(M), 0))
            return np.concatenate(parts, axis=1)

        return transform, list(self.feature_names_out_)

    def _matrix_blocks(
        self, name: str, position: Mapping[str, int]
    ) -> list[Callable[[np.ndarray], np.ndarray]]:
        """A kept column's features (``[n, k]`` each) from the matrix, in output order."""
        j = position[name]
        if name in self.date_formats_:
            dates = date_matrix_fn(
                self.date_formats_[name], self.date_origins_[name], self.date_parts_[name]
            )
            return [lambda M: dates(M[:, j])]
        if name in self.text_:
            fitted = self.text_[name]
            text = text_fn([v for _, v in fitted.vectorizers], fitted.stats)
            return [lambda M: text(M[:, j])]
        if name in self.categorical_:
            cast = self.cast_.get(name) == CATEGORICAL
            out = [(lambda M: _category_block(M[:, j])) if cast else (lambda M: M[:, j : j + 1])]
            if name in self.frequencies_:
                freq = self.frequencies_[name]

                def frequency(M: np.ndarray) -> np.ndarray:
                    keys = _category_block(M[:, j])[:, 0]
                    return np.array(
                        [[np.nan if k is None else freq.get(k, 0.0)] for k in keys],
                        dtype=np.float64,
                    ).reshape(len(M), 1)

                out.append(frequency)
            return out
        if self.cast_.get(name) == NUMERIC:
            out = [lambda M: _numbers(M[:, j])]
        else:
            out = [lambda M: M[:, j : j + 1]]
        for lat, lon in self.pairs_:
            if name == lon:
                out.append(_rotation_block(position[lat], j))
        return out


def _category_block(values: np.ndarray) -> np.ndarray:
    """``_category_values`` of a column's raw values, as an ``[n, 1]`` object array."""
    out = np.empty((len(values), 1), dtype=object)
    out[:, 0] = [_category_value(v) for v in values.tolist()]
    return out


def _numbers(values: np.ndarray) -> np.ndarray:
    """``pd.to_numeric(errors="coerce")`` of a column's raw values, as ``[n, 1]`` float64."""
    return np.asarray(
        pd.to_numeric(pd.Series(values, dtype=object), errors="coerce"), dtype=np.float64
    ).reshape(-1, 1)


def _rotation_block(lat: int, lon: int) -> Callable[[np.ndarray], np.ndarray]:
    angles = np.deg2rad(np.asarray(ROTATION_DEGREES, dtype=np.float64))
    cos, sin = np.cos(angles), np.sin(angles)

    def rotations(M: np.ndarray) -> np.ndarray:
        a = np.asarray(M[:, lat : lat + 1], dtype=np.float64)
        b = np.asarray(M[:, lon : lon + 1], dtype=np.float64)
        x, y = a * cos + b * sin, b * cos - a * sin
        return np.stack([x, y], axis=2).reshape(len(M), -1)

    return rotations


def _rotations(lat: pd.Series, lon: pd.Series, lat_name: str, lon_name: str) -> dict[str, Any]:
    a = pd.to_numeric(lat, errors="coerce").to_numpy(np.float64)
    b = pd.to_numeric(lon, errors="coerce").to_numpy(np.float64)
    out: dict[str, Any] = {}
    for d in ROTATION_DEGREES:
        r = math.radians(d)
        out[f"{lat_name}+{lon_name}.rot{d}_x"] = a * math.cos(r) + b * math.sin(r)
        out[f"{lat_name}+{lon_name}.rot{d}_y"] = b * math.cos(r) - a * math.sin(r)
    return out


class ColumnRoleModel:
    """A fitted model behind its column-role features: raw rows in, the model's answers out
    (same interface as ``TabularModel``: scores, labels, contributions on derived features,
    a float-matrix scorer when the roles allow one)."""

    def __init__(self, features: ColumnRoleFeatures, model: Any) -> None:
        self.features = features
        self.model = model
        self.task = model.task
        self.classes_ = model.classes_
        self.family = getattr(model, "family", "")
        self.description = f"{features.summary()} > {model.description}"

    @property
    def open_vocabulary_columns(self) -> frozenset[str]:
        """Raw columns whose values are not categories the model knows (dates, text, dropped
        identifiers): a value training never saw is normal there, not an unknown category."""
        open_roles = (DATETIME, TEXT, IDENTIFIER)
        return frozenset(r.column for r in self.features.roles_ if r.role in open_roles)

    def predict_scores(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict_scores(self.features.transform(X)))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            raise AttributeError("predict_proba is only defined for classification models")
        return self.predict_scores(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        scores = self.predict_scores(X)
        if self.task == "regression":
            return scores
        return np.asarray(self.classes_)[scores.argmax(axis=1)]

    def contributions(self, X: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
        own = getattr(self.model, "contributions", None)
        return None if own is None else own(self.features.transform(X))

    def matrix_scorer(
        self, columns: Sequence[str], compile_estimator: EstimatorCompiler | None = None
    ) -> MatrixScorer | None:
        """The model's matrix scorer behind the roles' matrix transform; None when either
        needs a frame (serving then scores rows through ``predict_scores``)."""
        found = self.features.matrix_transform(columns)
        if found is None or not hasattr(self.model, "matrix_scorer"):
            return None
        transform, names = found
        inner = self.model.matrix_scorer(names, compile_estimator)
        if inner is None:
            return None
        return lambda M: inner(transform(M))
