"""Times, durations and enums from requests: out-of-range values are INVALID_ARGUMENT naming
the field (found by fuzzing: they used to escape as INTERNAL)."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from atlas_core.errors import InvalidArgument
from atlas_core.proto_convert import duration_seconds, enum_member, ts_datetime


def test_valid_times_and_durations_convert() -> None:
    ts = timestamp_pb2.Timestamp(seconds=1_765_000_000, nanos=5000)
    assert ts_datetime(ts, "t") == datetime.fromtimestamp(1_765_000_000.000005, timezone.utc)
    assert duration_seconds(duration_pb2.Duration(seconds=-3, nanos=-500_000_000), "d") == -3.5
    assert duration_seconds(duration_pb2.Duration(seconds=315_576_000_000), "d") == 315_576e6


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(-(2**63), 0), (2**63 - 1, 0), (0, -1), (0, 2**31 - 1)]
)
def test_out_of_range_timestamps_name_the_field(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidArgument, match="label_time") as err:
        ts_datetime(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos), "label_time")
    assert err.value.reason == "INVALID_TIMESTAMP"


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(2**63 - 1, 0), (-(2**63), 0), (1, -1), (0, 1_000_000_000)]
)
def test_invalid_durations_name_the_field(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidArgument, match="idle_ttl") as err:
        duration_seconds(duration_pb2.Duration(seconds=seconds, nanos=nanos), "idle_ttl")
    assert err.value.reason == "INVALID_DURATION"


def test_unknown_enum_numbers_name_the_field() -> None:
    class Policy(Enum):
        A = 1

    assert enum_member(Policy, 1, "p") is Policy.A
    with pytest.raises(InvalidArgument, match="fallback has no value -7") as err:
        enum_member(Policy, -7, "fallback")
    assert err.value.reason == "INVALID_ENUM_VALUE"
