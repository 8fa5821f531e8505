"""Dates as features: parsing a column in its inferred format, and its calendar parts.

One implementation of the parts serves the frame path and serving's matrix path: pandas
parses (its ``to_datetime`` is the contract for what a format accepts), then the parts are
NumPy arithmetic on the UTC nanoseconds — a one-row request costs tens of microseconds
instead of the milliseconds of a Series and its ``.dt`` accessors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

# Tried in order; the first with the highest parse share wins (so 01/02/2024 is month first).
DATE_FORMATS = (
    "ISO8601",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%b %d %Y",
    "%a %b %d %H:%M:%S %z %Y",  # Twitter's created_at
    "%a, %d %b %Y %H:%M:%S %z",  # RFC 2822 (e-mail, HTTP)
)

# (name, period or None) of the calendar parts, in output order.
_CALENDAR = (
    ("year", None),
    ("month", 12.0),
    ("day", 31.0),
    ("weekday", 7.0),
    ("hour", 24.0),
    ("minute", 60.0),
    ("dayofyear", 365.25),
)
_CYCLIC = ("month", "weekday", "hour", "dayofyear")
_NS_PER_DAY = 86_400 * 10**9
_NS_PER_HOUR = 3_600 * 10**9
_NS_PER_MINUTE = 60 * 10**9
_NAT = np.iinfo(np.int64).min  # pandas' NaT as int64


def parse_dates(values: pd.Series, fmt: str) -> pd.Series:
    """``values`` as UTC timestamps with format ``fmt`` (naive times are taken as UTC);
    a value that does not parse is NaT."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        out = pd.to_datetime(values, utc=True)
    elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
        values.dtype
    ):
        out = pd.to_datetime(values, unit="s", utc=True, errors="coerce")  # epoch seconds
    else:
        text = values.astype(object).where(values.notna(), None)
        if fmt == "native":  # datetime objects in an object column
            out = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
        else:
            out = pd.to_datetime(text.astype("string"), format=fmt, utc=True, errors="coerce")
    return pd.Series(out, index=values.index)


def datetime_parts(ts: pd.Series, origin: pd.Timestamp) -> dict[str, np.ndarray]:
    """Every calendar part of UTC timestamps (float64, NaN where ``ts`` is NaT) and the
    cyclic ones' sin/cos, in output order, then the days elapsed since ``origin``."""
    ns = pd.DatetimeIndex(ts).asi8
    return _parts(ns, _ns(origin))


def _ns(origin: pd.Timestamp) -> int:
    return int(pd.Timestamp(origin).as_unit("ns").value)


def _parts(ns: np.ndarray, origin_ns: int) -> dict[str, np.ndarray]:
    missing = ns == _NAT
    ns = np.where(missing, 0, ns)
    days = ns.astype("M8[ns]").astype("M8[D]")
    months = days.astype("M8[M]")
    years = days.astype("M8[Y]")
    in_day = ns - days.astype(np.int64) * _NS_PER_DAY
    minute = (in_day // _NS_PER_MINUTE % 60).astype(np.float64)
    raw = {
        "year": years.astype(np.int64) + 1970,
        "month": (months - years.astype("M8[M]")).astype(np.int64) + 1,
        "day": (days - months.astype("M8[D]")).astype(np.int64) + 1,
        "weekday": (days.astype(np.int64) + 3) % 7,  # 1970-01-01 was a Thursday
        "hour": (in_day // _NS_PER_HOUR).astype(np.float64) + minute / 60.0,
        "minute": minute,
        "dayofyear": (days - years.astype("M8[D]")).astype(np.int64) + 1,
    }
    parts: dict[str, np.ndarray] = {}
    for name, _ in _CALENDAR:
        parts[name] = np.where(missing, np.nan, raw[name].astype(np.float64))
    for name, period in _CALENDAR:
        if name in _CYCLIC and period is not None:
            angle = 2.0 * math.pi * parts[name] / period
            parts[f"{name}_sin"] = np.sin(angle)
            parts[f"{name}_cos"] = np.cos(angle)
    elapsed = (ns - origin_ns) / 10**9 / 86_400.0  # as Timedelta.total_seconds() divides
    parts["elapsed_days"] = np.where(missing, np.nan, elapsed)
    return parts


def date_matrix_fn(
    fmt: str, origin: pd.Timestamp, kept: Sequence[str]
) -> Callable[[np.ndarray], np.ndarray]:
    """The ``kept`` parts (``[n, len(kept)]`` float64) of one column of serving's matrix: raw
    strings (None for missing) or numbers, parsed as ``parse_dates`` parses the frame's
    column."""
    origin_ns = _ns(origin)

    def parts(values: np.ndarray) -> np.ndarray:
        if fmt != "native" and values.dtype == object and _all_text(values):
            ns = pd.to_datetime(values, format=fmt, utc=True, errors="coerce").asi8
        else:  # numbers, datetime objects: the frame's own parse
            column = pd.Series(values, dtype=object).infer_objects()
            ns = pd.DatetimeIndex(parse_dates(column, fmt)).asi8
        got = _parts(np.asarray(ns, dtype=np.int64), origin_ns)
        return np.column_stack([got[p] for p in kept]).reshape(len(values), len(kept))

    return parts


def _all_text(values: np.ndarray) -> bool:
    return all(v is None or type(v) is str for v in values.tolist())
