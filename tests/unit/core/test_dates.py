"""Date parts: the NumPy calendar arithmetic equals pandas' ``.dt`` accessors bit for bit
(before 1970, leap days, year ends, time zones, NaT), and serving's matrix path parses
raw strings, numbers and missing values as the frame path does."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from atlas_core.ml._dates import _CALENDAR, _CYCLIC, date_matrix_fn, datetime_parts, parse_dates


def pandas_parts(ts: pd.Series, origin: pd.Timestamp) -> dict[str, np.ndarray]:
    """The parts as pandas computes them (the reference)."""
    dt = ts.dt
    raw = {
        "year": dt.year,
        "month": dt.month,
        "day": dt.day,
        "weekday": dt.weekday,
        "hour": dt.hour + dt.minute / 60.0,
        "minute": dt.minute,
        "dayofyear": dt.dayofyear,
    }
    parts = {name: np.asarray(raw[name], dtype=np.float64) for name, _ in _CALENDAR}
    for name, period in _CALENDAR:
        if name in _CYCLIC and period is not None:
            angle = 2.0 * math.pi * parts[name] / period
            parts[f"{name}_sin"] = np.sin(angle)
            parts[f"{name}_cos"] = np.cos(angle)
    elapsed = (ts - origin).dt.total_seconds() / 86_400.0
    parts["elapsed_days"] = np.asarray(elapsed, dtype=np.float64)
    return parts


def timestamps(n: int = 20_000, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    ns = rng.integers(-3_000_000_000, 4_000_000_000, n) * 10**9 + rng.integers(0, 10**9, n)
    edges = (
        pd.to_datetime(
            [
                "1900-02-28 23:59:59",
                "1904-02-29",
                "1969-12-31 23:59:59.999",
                "1970-01-01",
                "2000-02-29 12:30",
                "2023-12-31 23:59",
                "2024-12-31 00:01",
                "2100-03-01",
            ],
            format="ISO8601",
        )
        .as_unit("ns")
        .asi8
    )
    values = pd.Series(pd.to_datetime(np.concatenate([ns, edges]), utc=True))
    values[::97] = pd.NaT
    return values


def test_parts_equal_pandas_bit_for_bit() -> None:
    ts = timestamps()
    origin = pd.Timestamp("1980-06-15 03:00", tz="UTC")
    got, want = datetime_parts(ts, origin), pandas_parts(ts, origin)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert np.isnan(got["year"][::97]).all() and np.isnan(got["elapsed_days"][::97]).all()


def test_the_matrix_path_parses_as_the_frame_path() -> None:
    origin = pd.Timestamp("2021-01-01", tz="UTC")
    kept = ["year", "month", "hour", "weekday_sin", "dayofyear_cos", "elapsed_days"]
    cases = {
        "ISO8601": [
            "2021-03-01T04:05:06Z",
            "2021-03-01 04:05:06+02:00",
            "2022-12-31",
            None,
            "not a date",
            "",
        ],
        "%m/%d/%Y": ["03/01/2021", "12/31/2022", None, "31/12/2022"],
        "%a %b %d %H:%M:%S %z %Y": ["Mon Mar 01 04:05:06 +0000 2021", None, "yesterday"],
    }
    for fmt, values in cases.items():
        column = np.array(values, dtype=object)
        frame = datetime_parts(parse_dates(pd.Series(column), fmt), origin)
        want = np.column_stack([frame[p] for p in kept])
        got = date_matrix_fn(fmt, origin, kept)(column)
        np.testing.assert_array_equal(got, want, err_msg=fmt)
        assert np.isnan(got[[v is None for v in values]]).all()
    # numbers (epoch seconds) in an object or a float column, as serving's matrices hold them
    seconds = np.array([1.6e9, np.nan, 0.0])
    frame = datetime_parts(parse_dates(pd.Series(seconds), "ISO8601"), origin)
    want = np.column_stack([frame[p] for p in kept])
    for column in (seconds, seconds.astype(object)):
        np.testing.assert_array_equal(date_matrix_fn("ISO8601", origin, kept)(column), want)
    # one row: the shape serving asks for
    assert date_matrix_fn("ISO8601", origin, kept)(
        np.array(["2021-01-02"], dtype=object)
    ).shape == (1, 6)
