"""Feature-group schema validation and the packed record layout."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from atlas_core.errors import InvalidArgument, NotFound
from atlas_data.schema import (
    MAX_VECTOR_DIMS,
    EntityKeyType,
    FeatureGroupSpec,
    FeatureSpec,
    FeatureType,
    RecordLayout,
    ValueBlock,
    categories_of,
    validate_spec,
)
from tests.unit.data.conftest import mixed_spec


def spec(*features: FeatureSpec, **overrides) -> FeatureGroupSpec:
    base: dict[str, Any] = dict(
        name="users",
        entity_key="user_id",
        entity_key_type=EntityKeyType.INT64,
        event_time_column="ts",
        features=features or (FeatureSpec("x", FeatureType.FLOAT32),),
    )
    base.update(overrides)
    return FeatureGroupSpec(**base)


def rejected(bad: FeatureGroupSpec) -> str:
    with pytest.raises(InvalidArgument) as info:
        validate_spec(bad)
    return info.value.message


@pytest.mark.parametrize("name", ["", "Users", "1users", "_users", "us-ers", "a" * 129])
def test_malformed_group_name_is_rejected_naming_the_field(name: str) -> None:
    assert rejected(spec(name=name)).startswith("name")


@pytest.mark.parametrize("name", ["", "1x", "X", "a-b", "a b"])
def test_malformed_feature_name_is_rejected_with_its_index(name: str) -> None:
    message = rejected(
        spec(FeatureSpec("ok", FeatureType.INT64), FeatureSpec(name, FeatureType.INT64))
    )
    assert message.startswith("features[1].name")


def test_feature_names_may_start_with_underscore() -> None:
    assert (
        validate_spec(spec(FeatureSpec("_private", FeatureType.FLOAT64))).features[0].name
        == "_private"
    )


def test_duplicate_feature_names_are_rejected() -> None:
    message = rejected(
        spec(FeatureSpec("a", FeatureType.INT64), FeatureSpec("a", FeatureType.FLOAT32))
    )
    assert "features[1].name 'a' duplicates features[0]" in message


@pytest.mark.parametrize("column, field", [("user_id", "entity_key"), ("ts", "event_time_column")])
def test_feature_colliding_with_key_or_time_column_is_rejected(column: str, field: str) -> None:
    message = rejected(spec(FeatureSpec(column, FeatureType.INT64)))
    assert "features[0].name" in message and field in message


def test_entity_key_and_event_time_must_differ() -> None:
    assert "event_time_column" in rejected(spec(event_time_column="user_id"))


@pytest.mark.parametrize("field", ["entity_key", "event_time_column"])
def test_malformed_key_or_time_column_is_rejected(field: str) -> None:
    assert rejected(spec(**{field: "Bad Name"})).startswith(field)


@pytest.mark.parametrize("dims", [0, -1, MAX_VECTOR_DIMS + 1])
def test_vector_dims_outside_range_are_rejected(dims: int) -> None:
    message = rejected(spec(FeatureSpec("emb", FeatureType.FLOAT32_VECTOR, dims)))
    assert "features[0].dims" in message and "emb" in message and "1..16384" in message


@pytest.mark.parametrize("dims", [1, MAX_VECTOR_DIMS])
def test_vector_dims_at_the_bounds_are_accepted(dims: int) -> None:
    assert (
        validate_spec(spec(FeatureSpec("emb", FeatureType.FLOAT32_VECTOR, dims))).features[0].dims
        == dims
    )


def test_scalar_dims_one_is_normalised_to_zero_and_two_is_rejected() -> None:
    assert validate_spec(spec(FeatureSpec("x", FeatureType.FLOAT64, 1))).features[0].dims == 0
    assert "features[0].dims" in rejected(spec(FeatureSpec("x", FeatureType.FLOAT64, 2)))


def test_a_group_needs_at_least_one_feature() -> None:
    assert rejected(dataclasses.replace(spec(), features=())).startswith("features")


@pytest.mark.parametrize("ttl", [0.0, -5.0])
def test_ttl_must_be_positive_when_set(ttl: float) -> None:
    assert rejected(spec(ttl_seconds=ttl)).startswith("ttl_seconds")


def test_categories_only_on_categorical_features_and_without_duplicates() -> None:
    assert "categories" in rejected(spec(FeatureSpec("x", FeatureType.STRING, categories=("a",))))
    assert "duplicates" in rejected(
        spec(FeatureSpec("x", FeatureType.CATEGORICAL, categories=("a", "a")))
    )


def test_specs_are_immutable_value_objects() -> None:
    labels = {"team": "risk"}
    s = spec(labels=labels)
    labels["team"] = "changed"
    assert s.labels["team"] == "risk"
    with pytest.raises(TypeError):
        s.labels["team"] = "x"  # type: ignore[index]
    listed = FeatureSpec("c", FeatureType.CATEGORICAL, categories=["a"])  # type: ignore[arg-type]
    assert listed.categories == ("a",)


def test_layout_packs_each_type_into_its_block_in_schema_order() -> None:
    layout = RecordLayout.for_spec(mixed_spec())
    assert (
        layout.float32_width,
        layout.float64_width,
        layout.int64_width,
        layout.string_width,
    ) == (4, 2, 2, 2)
    placed = {s.name: (s.block, s.offset, s.dims) for s in layout.slots}
    assert placed == {
        "score": (ValueBlock.FLOAT32, 0, 1),
        "country": (ValueBlock.STRING, 0, 1),
        "balance": (ValueBlock.FLOAT64, 0, 1),
        "emb": (ValueBlock.FLOAT32, 1, 3),
        "age": (ValueBlock.INT64, 0, 1),
        "is_vip": (ValueBlock.INT64, 1, 1),
        "nickname": (ValueBlock.STRING, 1, 1),
        "ratio": (ValueBlock.FLOAT64, 1, 1),
    }
    assert [s.name for s in layout.slots] == [f.name for f in mixed_spec().features]


def test_slot_of_unknown_feature_is_not_found_naming_feature_and_group() -> None:
    with pytest.raises(NotFound) as info:
        RecordLayout.for_spec(mixed_spec()).slot("nope")
    assert "'nope'" in info.value.message and "'accounts'" in info.value.message


def test_subset_keeps_requested_order_and_gathers_from_full_blocks() -> None:
    layout = RecordLayout.for_spec(mixed_spec())
    sub = layout.subset(["ratio", "emb", "nickname", "is_vip", "score"])
    assert [s.name for s in sub.layout.slots] == ["ratio", "emb", "nickname", "is_vip", "score"]
    assert (
        sub.layout.float32_width,
        sub.layout.float64_width,
        sub.layout.int64_width,
        sub.layout.string_width,
    ) == (4, 1, 1, 1)
    assert sub.layout.slot("score").offset == 3
    full_f32 = np.array([[10, 11, 12, 13]], dtype=np.float32)  # score, emb[0..2]
    assert full_f32[:, sub.float32_index].tolist() == [[11, 12, 13, 10]]
    assert sub.float64_index is not None and sub.float64_index.tolist() == [1]
    assert sub.int64_index is not None and sub.int64_index.tolist() == [1]
    assert sub.string_index is not None and sub.string_index.tolist() == [1]
    assert sub.slot_index is not None and sub.slot_index.tolist() == [7, 3, 6, 5, 0]


def test_subset_of_nothing_or_everything_in_order_is_the_whole_layout() -> None:
    layout = RecordLayout.for_spec(mixed_spec())
    assert layout.subset([]).is_identity and layout.subset([]).layout == layout
    assert layout.subset([s.name for s in layout.slots]).is_identity
    assert not layout.subset([s.name for s in reversed(layout.slots)]).is_identity


def test_subset_rejects_duplicates_and_unknown_names() -> None:
    layout = RecordLayout.for_spec(mixed_spec())
    with pytest.raises(InvalidArgument, match="'emb' is requested more than once"):
        layout.subset(["emb", "score", "emb"])
    with pytest.raises(NotFound, match="'missing'"):
        layout.subset(["emb", "missing"])


def test_categories_of_lists_only_closed_vocabularies() -> None:
    assert categories_of(mixed_spec()) == {"country": frozenset({"DE", "FR", "US"})}
