"""Dataset derivations: merge, sample, filter, split, project."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from atlas_core.errors import InvalidArgument
from atlas_data.derive import filter_rows, merge, project, sample, split

UTC = pa.timestamp("us", tz="UTC")


def _people(n: int = 1000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": pa.array(np.arange(n)),
            "age": pa.array(rng.integers(10, 80, n)),
            "country": pa.array(rng.choice(["DE", "FR", "US"], n, p=[0.5, 0.3, 0.2])),
            "score": pa.array(rng.normal(size=n)),
            "label": pa.array(rng.choice([0, 1, 2], n, p=[0.7, 0.2, 0.1])),
            "user": pa.array(rng.integers(0, 60, n)),
            "t": pa.array(rng.permutation(n) * 1_000_000).cast(UTC),
        }
    )


# ---------------------------------------------------------------- merge


def test_merge_reorders_columns_and_promotes_numbers():
    a = pa.table({"x": pa.array([1, 2], pa.int32()), "y": ["a", "b"]})
    b = pa.table({"y": ["c", "a"], "x": pa.array([1.5, 1.0])})
    merged = merge([a, b])
    assert merged.column_names == ["x", "y"]
    assert merged.schema.field("x").type == pa.float64()
    assert merged.column("x").to_pylist() == [1.0, 2.0, 1.5, 1.0]
    deduped = merge([a, b, a], deduplicate=True)
    assert deduped.to_pylist() == [{"x": 1.0, "y": "a"}, {"x": 2.0, "y": "b"}, {"x": 1.5, "y": "c"}]


def test_merge_deduplicates_vectors():
    vec = pa.FixedSizeListArray.from_arrays(pa.array([1, 2, 1, 2, 3, 4], pa.float32()), 2)
    t = pa.table({"v": vec, "k": [1, 1, 1]})
    assert merge([t, t], deduplicate=True).to_pylist() == [
        {"v": [1.0, 2.0], "k": 1},
        {"v": [3.0, 4.0], "k": 1},
    ]


def test_merge_incompatible_names_column_and_types():
    a = pa.table({"x": [1], "y": ["a"]})
    with pytest.raises(
        InvalidArgument, match=r"column 'y'.*string \(input 0\) vs int64 \(input 1\)"
    ):
        merge([a, pa.table({"x": [2], "y": [3]})])
    with pytest.raises(InvalidArgument, match="input 1 has no column 'y'"):
        merge([a, pa.table({"x": [2]})])
    with pytest.raises(InvalidArgument, match="'z'"):
        merge([a, pa.table({"x": [2], "y": ["b"], "z": [1]})])
    with pytest.raises(InvalidArgument, match="at least two"):
        merge([a])


# ---------------------------------------------------------------- sample


def test_random_sample_sizes_and_determinism():
    people = _people()
    assert sample(people, fraction=0.25, seed=3).num_rows == 250
    assert sample(people, rows=17, seed=3).num_rows == 17
    assert sample(people, fraction=1.0).num_rows == 1000
    assert sample(people, rows=40, seed=5).equals(sample(people, rows=40, seed=5))
    ids = sample(people, rows=40, seed=5).column("id").to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == 40  # original order, no repeats
    for bad in (
        dict(fraction=0.0),
        dict(fraction=1.5),
        dict(rows=0),
        dict(rows=1001),
        {},
        dict(fraction=0.5, rows=3),
    ):
        with pytest.raises(InvalidArgument):
            sample(people, **bad)


def test_stratified_sample_keeps_proportions_within_one_row():
    people = _people()
    out = sample(people, fraction=0.1, method="stratified", stratify_column="label", seed=1)
    assert out.num_rows == 100
    full = np.bincount(people.column("label").to_numpy())
    got = np.bincount(out.column("label").to_numpy(), minlength=3)
    assert np.all(np.abs(got - full * 0.1) <= 1)
    with pytest.raises(InvalidArgument, match="'nope'"):
        sample(people, fraction=0.1, method="stratified", stratify_column="nope")


# ---------------------------------------------------------------- filter


def _ids(table: pa.Table) -> list[int]:
    return table.column("id").to_pylist()


def test_filter_semantics_match_python():
    people = _people(200)
    rows = people.to_pylist()
    cases = {
        "age >= 18 and country in ('DE', 'FR')": lambda r: (
            r["age"] >= 18 and r["country"] in ("DE", "FR")
        ),
        "age >= 18 AND country IN ('DE', 'FR')": lambda r: (
            r["age"] >= 18 and r["country"] in ("DE", "FR")
        ),
        "not (score > 0) or label = 2": lambda r: not r["score"] > 0 or r["label"] == 2,
        "20 < age <= 30": lambda r: 20 < r["age"] <= 30,
        "age * 2 - 10 > 100": lambda r: r["age"] * 2 - 10 > 100,
        "age / 4 > 15.5": lambda r: r["age"] / 4 > 15.5,
        "country not in ['US'] and -score < 0.5": lambda r: (
            r["country"] != "US" and -r["score"] < 0.5
        ),
        "country <> 'DE'": lambda r: r["country"] != "DE",
        "t >= '1970-01-01T00:01:40Z'": lambda r: r["t"].timestamp() >= 100,
    }
    for expression, predicate in cases.items():
        assert _ids(filter_rows(people, expression)) == [r["id"] for r in rows if predicate(r)], (
            expression
        )


def test_filter_nulls():
    table = pa.table({"id": [1, 2, 3], "x": pa.array([1.0, None, 3.0]), "odd name": [1, 2, 3]})
    assert _ids(filter_rows(table, "x IS NULL")) == [2]
    assert _ids(filter_rows(table, "x is not null")) == [1, 3]
    assert _ids(filter_rows(table, "is_null(x) or x > 2")) == [2, 3]
    assert _ids(filter_rows(table, "x > 0")) == [1, 3]  # null is not true
    assert _ids(filter_rows(table, "col('odd name') = 2")) == [2]


@pytest.mark.parametrize(
    "expression, needle",
    [
        ("__import__('os').system('x')", "__import__"),
        ("age.__class__", "Attribute"),
        ("open('f')", "open"),
        ("[x for x in age]", "ListComp"),
        ("lambda: 1", "Lambda"),
        ("age[0] > 1", "Subscript"),
        ("age ** 99999999 > 1", "Pow"),
        ("nope > 1", "'nope'"),
        ("age >", "does not parse"),
        ("age > 1; 2", "does not parse"),
    ],
)
def test_filter_rejects_unsafe_or_unknown_input(expression: str, needle: str):
    with pytest.raises(InvalidArgument, match=needle.replace("(", r"\(").replace("[", r"\[")):
        filter_rows(_people(10), expression)


def test_filter_rejects_non_boolean_and_type_errors():
    with pytest.raises(InvalidArgument):
        filter_rows(_people(10), "age + 1")
    with pytest.raises(InvalidArgument):
        filter_rows(_people(10), "country > 3")


# ---------------------------------------------------------------- split


def test_random_split_sizes_partition_and_seed():
    people = _people()
    parts = split(people, train=0.7, valid=0.2, test=0.1, seed=4)
    assert {k: v.num_rows for k, v in parts.items()} == {"train": 700, "valid": 200, "test": 100}
    all_ids = sorted(sum((_ids(p) for p in parts.values()), []))
    assert all_ids == list(range(1000))
    assert split(people, train=0.7, valid=0.2, test=0.1, seed=4)["test"].equals(parts["test"])
    assert set(split(people, train=0.8, valid=0.0, test=0.2)) == {"train", "test"}


def test_split_fraction_validation():
    people = _people(10)
    for bad in (dict(train=0.5, valid=0.3, test=0.1), dict(train=1.2, valid=-0.2, test=0.0)):
        with pytest.raises(InvalidArgument, match="fraction"):
            split(people, **bad)
    with pytest.raises(InvalidArgument, match="one of"):
        split(people, train=0.5, valid=0.5, test=0.0, group_column="user", time_column="t")
    with pytest.raises(InvalidArgument, match="'nope'"):
        split(people, train=0.5, valid=0.5, test=0.0, group_column="nope")


def test_time_split_puts_earliest_rows_in_train():
    parts = split(_people(), train=0.6, valid=0.2, test=0.2, time_column="t")
    times = {k: v.column("t").cast(pa.int64()).to_numpy() for k, v in parts.items()}
    assert times["train"].max() < times["valid"].min() <= times["valid"].max() < times["test"].min()
    assert [len(times[k]) for k in ("train", "valid", "test")] == [600, 200, 200]


def test_group_split_keeps_groups_together():
    parts = split(_people(), train=0.6, valid=0.2, test=0.2, group_column="user", seed=2)
    users = {k: set(v.column("user").to_pylist()) for k, v in parts.items()}
    assert not (
        users["train"] & users["valid"]
        or users["train"] & users["test"]
        or users["valid"] & users["test"]
    )
    assert sum(p.num_rows for p in parts.values()) == 1000
    assert abs(parts["train"].num_rows - 600) < 80  # group granularity (~17 rows a group)


def test_stratified_split_keeps_proportions():
    people = _people()
    full = np.bincount(people.column("label").to_numpy())
    parts = split(people, train=0.5, valid=0.25, test=0.25, stratify_column="label", seed=9)
    for name, fraction in (("train", 0.5), ("valid", 0.25), ("test", 0.25)):
        got = np.bincount(parts[name].column("label").to_numpy(), minlength=3)
        assert np.all(np.abs(got - full * fraction) <= 1)


# ---------------------------------------------------------------- project


def test_project_keep_drop_and_errors():
    people = _people(5)
    assert project(people, columns=["label", "id"]).column_names == ["label", "id"]
    assert "score" not in project(people, drop=["score"]).column_names
    with pytest.raises(InvalidArgument, match="'nope'"):
        project(people, columns=["id", "nope"])
    with pytest.raises(InvalidArgument, match="'nope'"):
        project(people, drop=["nope"])
    with pytest.raises(InvalidArgument):
        project(people, columns=["id"], drop=["age"])
    with pytest.raises(InvalidArgument):
        project(people)
    with pytest.raises(InvalidArgument):
        project(people, drop=people.column_names)
