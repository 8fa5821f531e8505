"""Fuzzing the filter expression language of dataset derivation (issue #33, capability 3).

Arbitrary text (and near-miss Python: attributes, calls, lambdas, comprehensions, deep
nesting) is either a filter or an INVALID_ARGUMENT ``BAD_FILTER``/unknown-column refusal,
never another exception; and expressions generated from the grammar keep exactly the rows a
reference evaluator keeps, whatever keyword case or SQL spelling (``=``, ``<>``) they use."""

from __future__ import annotations

import operator
from typing import Any

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from atlas_core.errors import InvalidArgument
from atlas_data.filter_expr import filter_rows
from tests.support.parser_fuzz import fuzz_settings

TABLE = pa.table(
    {
        "age": pa.array([5, 17, 18, 30, 64, 65, 90, 0], pa.int64()),
        "score": pa.array([0.5, -1.0, 2.5, 1e9, 0.0, 3.25, -7.5, 1.0]),
        "country": ["DE", "FR", "US", "DE", "", "FR", "ÄÖ", "us"],
        "odd name": [1, 2, 3, 4, 5, 6, 7, 8],
    }
)
ROWS = TABLE.to_pylist()

PYTHONISH = st.sampled_from(
    [
        "__import__('os').system('true')",
        "age.__class__",
        "(lambda: 1)()",
        "[x for x in age]",
        "age[0]",
        "open('/etc/passwd')",
        "exec('1')",
        "age if age else score",
        "{age: 1}",
        "f'{age}'",
        "age := 3",
        "*age",
        "await age",
        "yield age",
        "not " * 3000 + "age",
        "(" * 500 + "age" + ")" * 500,
        "age" + " + age" * 3000,
        "col('odd name') > 3",
        "col('missing') > 3",
        "country in ('DE', 'FR')",
        "age is null",
        "age = = 3",
        "\x00",
        "'unterminated",
    ]
)
TOKENS = st.sampled_from(
    ["age", "score", "country", "AND", "or", "NOT", "in", "is", "null", "=", "<>", "==", "(",
     ")", ",", "'DE'", "3", "-1.5", "+", "*", "/", "<", ">=", "true", "col", "\\", "#", ";"]
)  # fmt: skip
TEXT = (
    st.text(max_size=80)
    | PYTHONISH
    | st.lists(TOKENS, max_size=20).map(" ".join)
    | st.tuples(PYTHONISH, TOKENS, PYTHONISH).map(" ".join)
)


@fuzz_settings
@given(expression=TEXT)
def test_any_text_is_a_filter_or_a_clear_refusal(expression: str) -> None:
    try:
        out = filter_rows(TABLE, expression)
    except InvalidArgument as err:
        assert err.reason in ("BAD_FILTER", "UNKNOWN_COLUMN"), err.reason
        return
    assert out.schema == TABLE.schema
    assert out.num_rows <= TABLE.num_rows
    assert all(row in ROWS for row in out.to_pylist())


# -- expressions from the grammar, checked against a reference evaluator --------------------

COMPARE = {
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
Expr = tuple[str, Any]


def _comparison() -> st.SearchStrategy[Expr]:
    numeric = st.tuples(
        st.sampled_from(["age", "score"]),
        st.sampled_from(sorted(COMPARE)),
        st.integers(-10, 100) | st.sampled_from([0.5, 2.5, -7.5]),
    ).map(lambda t: ("cmp", t))
    member = st.tuples(
        st.booleans(), st.lists(st.sampled_from(["DE", "FR", "US", "us", ""]), min_size=1)
    ).map(lambda t: ("in", t))
    return numeric | member


EXPRS: st.SearchStrategy[Expr] = st.recursive(
    _comparison(),
    lambda inner: (
        st.tuples(st.sampled_from(["and", "AND", "or", "Or"]), inner, inner).map(
            lambda t: ("bool", t)
        )
        | inner.map(lambda e: ("not", e))
    ),
    max_leaves=8,
)


def render(e: Expr) -> str:
    kind, body = e
    if kind == "cmp":
        column, op, value = body
        return f"{column} {op} {value}"
    if kind == "in":
        negated, values = body
        listed = ", ".join(repr(v) for v in values)
        return f"country {'NOT IN' if negated else 'in'} ({listed})"
    if kind == "not":
        return f"NOT ({render(body)})"
    word, left, right = body
    return f"({render(left)}) {word} ({render(right)})"


def evaluate(e: Expr, row: dict[str, Any]) -> bool:
    kind, body = e
    if kind == "cmp":
        column, op, value = body
        return bool(COMPARE[op](row[column], value))
    if kind == "in":
        negated, values = body
        return (row["country"] in values) != negated
    if kind == "not":
        return not evaluate(body, row)
    word, left, right = body
    if word.lower() == "and":
        return evaluate(left, row) and evaluate(right, row)
    return evaluate(left, row) or evaluate(right, row)


@fuzz_settings
@given(expr=EXPRS)
def test_grammar_expressions_keep_exactly_the_matching_rows(expr: Expr) -> None:
    text = render(expr)
    out = filter_rows(TABLE, text)
    assert out.to_pylist() == [row for row in ROWS if evaluate(expr, row)], text
