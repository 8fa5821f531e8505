"""Validation and packing of client records into a RecordBatch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from atlas_core.errors import InvalidArgument
from atlas_data.records import RawRecord, RecordBatch
from atlas_data.schema import (
    EntityKeyType,
    FeatureGroupSpec,
    FeatureSpec,
    FeatureType,
    RecordLayout,
    validate_spec,
)

EMB_SPEC = validate_spec(
    FeatureGroupSpec(
        name="users",
        entity_key="user_id",
        entity_key_type=EntityKeyType.INT64,
        event_time_column="ts",
        features=(
            FeatureSpec("head", FeatureType.FLOAT32_VECTOR, 904),
            FeatureSpec("emb", FeatureType.FLOAT32_VECTOR, 4096),
        ),
    )
)
EMB_LAYOUT = RecordLayout.for_spec(EMB_SPEC)


def emb_record(
    key: int | str | None = 1, *, n_values: int = 5000, event_time: int | None = 7
) -> RawRecord:
    return RawRecord(key, event_time, np.arange(n_values, dtype="<f4").tobytes())


def emb_error(records: list[RawRecord], key_type: EntityKeyType = EntityKeyType.INT64) -> str:
    with pytest.raises(InvalidArgument) as info:
        RecordBatch.from_records(EMB_LAYOUT, key_type, records)
    return info.value.message


def mixed_record(key: str = "a", **overrides) -> RawRecord:
    values: dict[str, Any] = dict(
        entity_key=key,
        event_time_us=100,
        float32_bytes=np.array([0.5, 1, 2, 3], dtype="<f4").tobytes(),
        float64=(1.5, 2.5),
        int64=(42, 1),
        strings=("DE", "bob"),
    )
    values.update(overrides)
    return RawRecord(**values)


def mixed_error(layout, categories, record: RawRecord, *, index: int = 0) -> str:
    records = [mixed_record(f"k{i}") for i in range(index)] + [record]
    with pytest.raises(InvalidArgument) as info:
        RecordBatch.from_records(layout, EntityKeyType.STRING, records, categories=categories)
    assert info.value.message.startswith(f"record {index}: ")
    return info.value.message


def test_wide_records_pack_into_one_contiguous_float32_matrix() -> None:
    records = [RawRecord(i, 1000 + i, np.full(5000, i, dtype="<f4").tobytes()) for i in range(50)]
    batch = RecordBatch.from_records(EMB_LAYOUT, EntityKeyType.INT64, records)
    assert len(batch) == 50
    assert batch.float32.shape == (50, 5000) and batch.float32.dtype == np.dtype("<f4")
    assert batch.float32.flags.c_contiguous
    assert (batch.float32[:, 0] == np.arange(50)).all() and (batch.float32[7] == 7).all()
    assert (
        isinstance(batch.keys, np.ndarray)
        and batch.keys.dtype == np.int64
        and batch.keys.tolist() == list(range(50))
    )
    assert batch.event_time_us.tolist() == [1000 + i for i in range(50)]
    assert batch.float64.shape == (50, 0) and batch.int64.shape == (50, 0)
    assert batch.null_masks is None


def test_mixed_records_fill_every_block(mixed_layout, mixed_categories) -> None:
    batch = RecordBatch.from_records(
        mixed_layout,
        EntityKeyType.STRING,
        [mixed_record("a"), mixed_record("b", int64=(7, 0))],
        categories=mixed_categories,
    )
    assert batch.keys == ["a", "b"]
    assert batch.float64.tolist() == [[1.5, 2.5], [1.5, 2.5]]
    assert batch.int64.tolist() == [[42, 1], [7, 0]]
    assert batch.strings == [("DE", "bob"), ("DE", "bob")]


def test_empty_record_list_gives_an_empty_batch() -> None:
    batch = RecordBatch.from_records(EMB_LAYOUT, EntityKeyType.INT64, [])
    assert len(batch) == 0 and batch.float32.shape == (0, 5000)


def test_short_vector_names_record_field_and_the_feature_it_ends_in() -> None:
    records = [emb_record(i) for i in range(17)] + [emb_record(17, n_values=1249)]
    message = emb_error(records)
    assert message.startswith("record 17: float32_values has 4996 bytes, expected 20000")
    assert "feature 'emb' (dims 4096 at offset 904)" in message and "345 of its 4096" in message


def test_vector_ending_at_a_feature_boundary_names_the_missing_feature() -> None:
    message = emb_error([emb_record(n_values=904)])
    assert message.startswith("record 0: float32_values has 3616 bytes")
    assert "end before feature 'emb'" in message


def test_float32_length_not_multiple_of_four_reports_wrong_dtype() -> None:
    message = emb_error([RawRecord(1, 7, b"\0" * 19999)])
    assert "not a multiple of 4" in message and "wrong dtype" in message


def test_float64_vector_sent_as_float32_is_recognised() -> None:
    record = RawRecord(1, 7, np.zeros(5000, dtype="<f8").tobytes())
    message = emb_error([emb_record(0), record])
    assert message.startswith("record 1: float32_values has 40000 bytes")
    assert "float64 sent instead of float32" in message


def test_string_key_for_int64_group_is_rejected() -> None:
    message = emb_error([emb_record(0), emb_record(1), emb_record(2), emb_record("u3")])
    assert message == "record 3: entity_key is a string but group 'users' has int64 keys"


def test_int_key_for_string_group_is_rejected() -> None:
    message = emb_error([emb_record("a"), emb_record(5)], EntityKeyType.STRING)
    assert message == "record 1: entity_key is an integer but group 'users' has string keys"


@pytest.mark.parametrize(
    "key, words",
    [
        (None, "entity_key is missing"),
        (True, "entity_key must be an int64"),
        (2**63, "outside the int64 range"),
    ],
)
def test_missing_or_malformed_int_key_is_rejected(key, words: str) -> None:
    message = emb_error([emb_record(key)])
    assert message.startswith("record 0: entity_key") and words in message


@pytest.mark.parametrize("key", ["", "x" * 501])
def test_empty_or_overlong_string_key_is_rejected(key: str) -> None:
    assert emb_error([emb_record(key)], EntityKeyType.STRING).startswith("record 0: entity_key")


def test_missing_event_time_is_rejected() -> None:
    assert (
        emb_error([emb_record(1), emb_record(2, event_time=None)])
        == "record 1: event_time is missing"
    )


def test_non_integer_event_time_is_rejected() -> None:
    assert "event_time must be integer microseconds" in emb_error([emb_record(event_time=1.5)])  # type: ignore[arg-type]


def test_wrong_float64_count_names_the_block_features(mixed_layout, mixed_categories) -> None:
    message = mixed_error(mixed_layout, mixed_categories, mixed_record(float64=(1.0,)), index=2)
    assert "float64_values has 1 values, expected 2 (features 'balance', 'ratio')" in message


def test_wrong_string_count_is_rejected(mixed_layout, mixed_categories) -> None:
    assert "string_values has 3 values" in mixed_error(
        mixed_layout, mixed_categories, mixed_record(strings=("DE", "a", "b"))
    )


def test_non_numeric_float64_names_value_and_feature(mixed_layout, mixed_categories) -> None:
    message = mixed_error(mixed_layout, mixed_categories, mixed_record(float64=(1.0, "x")), index=1)
    assert "float64_values[1] (feature 'ratio')" in message


@pytest.mark.parametrize("value", [1.5, 2**64, "3"])
def test_non_int64_value_names_value_and_feature(mixed_layout, mixed_categories, value) -> None:
    message = mixed_error(mixed_layout, mixed_categories, mixed_record(int64=(value, 0)), index=1)
    assert "int64_values[0] (feature 'age')" in message and "not an int64" in message


def test_bool_feature_must_be_zero_or_one(mixed_layout, mixed_categories) -> None:
    message = mixed_error(mixed_layout, mixed_categories, mixed_record(int64=(5, 2)), index=3)
    assert "int64_values[1] (bool feature 'is_vip') is 2, expected 0 or 1" in message


def test_categorical_value_outside_its_categories_is_rejected(
    mixed_layout, mixed_categories
) -> None:
    message = mixed_error(
        mixed_layout, mixed_categories, mixed_record(strings=("XX", "bob")), index=1
    )
    assert "categorical feature 'country'" in message and "'XX'" in message


def test_null_categorical_and_open_vocabularies_are_accepted(
    mixed_layout, mixed_categories
) -> None:
    country_slot = [s.name for s in mixed_layout.slots].index("country")
    null_country = bytes([1 << country_slot])
    RecordBatch.from_records(
        mixed_layout,
        EntityKeyType.STRING,
        [mixed_record(strings=("", "bob"), null_mask=null_country)],
        categories=mixed_categories,
    )
    RecordBatch.from_records(
        mixed_layout, EntityKeyType.STRING, [mixed_record(strings=("XX", "bob"))]
    )


def test_null_mask_of_the_wrong_length_is_rejected(mixed_layout, mixed_categories) -> None:
    message = mixed_error(mixed_layout, mixed_categories, mixed_record(null_mask=b"\0\0"))
    assert "null_mask has 2 bytes, expected 0 or 1" in message


def test_batch_constructor_rejects_inconsistent_shapes() -> None:
    with pytest.raises(InvalidArgument, match="float32 block"):
        RecordBatch(
            keys=np.arange(2),
            event_time_us=np.zeros(2, np.int64),
            float32=np.zeros((3, 4), np.float32),
            float64=np.zeros((2, 0)),
            int64=np.zeros((2, 0), np.int64),
            strings=[(), ()],
        )
