"""Dataset derivations on pyarrow Tables: merge, sample, filter, split, project.

Every function is pure (table in, table(s) out) and deterministic for a given seed. Row
order: outputs keep the input's relative row order (sampling and splitting select rows,
they do not shuffle them).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from atlas_core.errors import InvalidArgument

__all__ = ["filter_rows", "merge", "project", "sample", "split"]

SampleMethod = Literal["random", "stratified"]


def _require(table: pa.Table, column: str, role: str) -> None:
    if column not in table.column_names:
        raise InvalidArgument(
            f"{role} column '{column}' is not in the dataset (columns: "
            f"{', '.join(table.column_names)})",
            reason="UNKNOWN_COLUMN",
            metadata={"column": column},
        )


def _largest_remainder(total: int, weights: Sequence[float]) -> np.ndarray:
    """Integer counts summing to ``total``, each within 1 of ``total * weight / sum``."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum() if w.sum() > 0 else np.zeros_like(w)
    counts = np.floor(exact + 1e-9).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        # Stable order: earlier entries win ties, so results are reproducible.
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def _class_codes(table: pa.Table, column: str) -> np.ndarray:
    """Dense code per row of ``column``; nulls form their own class."""
    arr = table.column(column).combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if _is_nested(arr.type):
        raise InvalidArgument(f"column '{column}' holds {arr.type} values; cannot group by it")
    indices = arr.dictionary_encode().indices
    return indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _is_nested(typ: pa.DataType) -> bool:
    return pa.types.is_nested(typ)


def _take_sorted(table: pa.Table, rows: np.ndarray) -> pa.Table:
    return table.take(pa.array(np.sort(rows), type=pa.int64()))


# ---------------------------------------------------------------- merge


def _unified_type(name: str, types: list[pa.DataType]) -> pa.DataType:
    """The common type of one column across inputs (promotion rules in :func:`merge`)."""
    known = [t for t in types if not pa.types.is_null(t)]
    if not known:
        return pa.null()
    decoded = [t.value_type if pa.types.is_dictionary(t) else t for t in known]
    first = decoded[0]
    if all(t == first for t in decoded):
        return first
    if all(pa.types.is_integer(t) for t in decoded):
        return pa.int64()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in decoded):
        return pa.float64()
    if all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in decoded):
        return (
            pa.large_string() if any(pa.types.is_large_string(t) for t in decoded) else pa.string()
        )
    if all(pa.types.is_timestamp(t) for t in decoded) and len({t.tz for t in decoded}) == 1:
        finest = max(decoded, key=lambda t: ["s", "ms", "us", "ns"].index(t.unit))
        return finest
    other = next(i for i, t in enumerate(types) if t != types[0] and not pa.types.is_null(t))
    raise InvalidArgument(
        f"column '{name}' has incompatible types: {types[0]} (input 0) vs {types[other]} "
        f"(input {other})",
        reason="INCOMPATIBLE_SCHEMA",
        metadata={"column": name, "type_a": str(types[0]), "type_b": str(types[other])},
    )


def merge(tables: Sequence[pa.Table], *, deduplicate: bool = False) -> pa.Table:
    """Union of at least two tables with the same column names (order may differ).

    Columns follow the first input's order. Types must match, with these promotions:
    integers of any width -> int64; integers mixed with floats, or float32 with float64 ->
    float64; string with large_string -> large_string; dictionary columns -> their value
    type; timestamps with one time zone -> the finest unit; an all-null column -> the
    others' type. ``deduplicate`` drops exact duplicate rows, keeping the first.

    Raises:
        InvalidArgument: fewer than two inputs, a column missing from an input (named with
            the input index), or incompatible types (naming the column and both types).
    """
    if len(tables) < 2:
        raise InvalidArgument(f"merge needs at least two datasets, got {len(tables)}")
    names = tables[0].column_names
    for i, table in enumerate(tables[1:], start=1):
        for name in names:
            if name not in table.column_names:
                raise InvalidArgument(
                    f"input {i} has no column '{name}' (input 0 has it)",
                    reason="INCOMPATIBLE_SCHEMA",
                    metadata={"column": name},
                )
        for name in table.column_names:
            if name not in names:
                raise InvalidArgument(
                    f"input {i} has column '{name}' that input 0 lacks",
                    reason="INCOMPATIBLE_SCHEMA",
                    metadata={"column": name},
                )
    schema = pa.schema(
        [(name, _unified_type(name, [t.schema.field(name).type for t in tables])) for name in names]
    )
    try:
        merged = pa.concat_tables([t.select(names).cast(schema) for t in tables])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgument(
            f"inputs do not convert to one schema: {exc}", reason="INCOMPATIBLE_SCHEMA"
        ) from exc
    if deduplicate and merged.num_rows:
        merged = merged.filter(pa.array(~_duplicated(merged)))
    return merged


def _duplicated(table: pa.Table) -> np.ndarray:
    """True for rows equal to an earlier row (vectors compared by their bytes)."""
    frame = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type) and not _is_nested(column.type.value_type):
            width = column.type.list_size
            flat = column.fill_null(pa.scalar([None] * width, column.type)).flatten()
            values = flat.to_numpy(zero_copy_only=False).reshape(len(column), width)
            nulls = column.is_null().to_numpy(zero_copy_only=False)
            frame[name] = [
                None if n else row.tobytes() for row, n in zip(values, nulls, strict=True)
            ]
        elif _is_nested(column.type):
            frame[name] = [None if v is None else repr(v) for v in column.to_pylist()]
        else:
            frame[name] = column.to_pandas()
    return pd.DataFrame(frame).duplicated(keep="first").to_numpy()


# ---------------------------------------------------------------- sample


def sample(
    table: pa.Table,
    *,
    fraction: float | None = None,
    rows: int | None = None,
    method: SampleMethod = "random",
    stratify_column: str | None = None,
    seed: int = 0,
) -> pa.Table:
    """Rows drawn without replacement: ``fraction`` in (0, 1] (size rounded, at least one
    row of a non-empty table) or an exact ``rows`` count.

    ``stratified`` allocates the size over the classes of ``stratify_column`` (null is a
    class) by largest remainder, so each class gets its proportional share within one row.

    Raises:
        InvalidArgument: both or neither of fraction/rows, out-of-range size, unknown method,
            or a missing/unknown stratify column.
    """
    n = table.num_rows
    if (fraction is None) == (rows is None):
        raise InvalidArgument("give exactly one of fraction or rows", reason="BAD_SAMPLE_SIZE")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise InvalidArgument(
                f"fraction must be in (0, 1], got {fraction}", reason="BAD_SAMPLE_SIZE"
            )
        size = min(n, max(1, int(round(fraction * n)))) if n else 0
    else:
        assert rows is not None
        if rows < 1 or rows > n:
            raise InvalidArgument(
                f"rows must be in [1, {n}] for this dataset, got {rows}", reason="BAD_SAMPLE_SIZE"
            )
        size = rows
    rng = np.random.default_rng(seed)
    if method == "random":
        return _take_sorted(table, rng.choice(n, size=size, replace=False))
    if method != "stratified":
        raise InvalidArgument(f"unknown sample method '{method}'; expected random or stratified")
    if not stratify_column:
        raise InvalidArgument(
            "stratified sampling needs a stratify column", reason="MISSING_STRATIFY_COLUMN"
        )
    _require(table, stratify_column, "stratify")
    codes = _class_codes(table, stratify_column)
    classes, counts = np.unique(codes, return_counts=True)
    quota = _largest_remainder(size, counts)
    picked = [
        rng.choice(np.flatnonzero(codes == cls), size=int(q), replace=False)
        for cls, q in zip(classes, quota, strict=True)
    ]
    return _take_sorted(table, np.concatenate(picked) if picked else np.empty(0, np.int64))


# ---------------------------------------------------------------- split


def split(
    table: pa.Table,
    *,
    train: float,
    valid: float,
    test: float,
    stratify_column: str | None = None,
    group_column: str | None = None,
    time_column: str | None = None,
    seed: int = 0,
) -> dict[str, pa.Table]:
    """Split rows into ``train``/``valid``/``test``; only parts with a non-zero fraction are
    returned. Part sizes are the fractions of the row count, rounded by largest remainder.

    * default: uniformly at random;
    * ``stratify_column``: each class split by the fractions (within one row per class);
    * ``group_column``: whole groups (null is one group) go to one part: groups are shuffled
      and a group lands in the part where the middle of its rows falls, so part sizes are
      approximate at group granularity;
    * ``time_column``: the earliest rows to train, then valid, then test (rows with equal
      times may straddle a boundary; nulls are rejected).

    At most one of stratify/group/time may be given.

    Raises:
        InvalidArgument: a fraction outside [0, 1], fractions not summing to 1 (±1e-6),
            several modes at once, unknown columns, or nulls in the time column.
    """
    fractions = {"train": train, "valid": valid, "test": test}
    for name, value in fractions.items():
        if not 0 <= value <= 1:
            raise InvalidArgument(
                f"{name} fraction must be in [0, 1], got {value}", reason="BAD_SPLIT_FRACTIONS"
            )
    if abs(sum(fractions.values()) - 1) > 1e-6:
        raise InvalidArgument(
            f"split fractions must sum to 1, got {train} + {valid} + {test} = "
            f"{sum(fractions.values())}",
            reason="BAD_SPLIT_FRACTIONS",
        )
    modes = [m for m in (stratify_column, group_column, time_column) if m]
    if len(modes) > 1:
        raise InvalidArgument(
            "choose one of stratify_column, group_column and time_column", reason="BAD_SPLIT_MODE"
        )
    n = table.num_rows
    weights = list(fractions.values())
    rng = np.random.default_rng(seed)
    if time_column:
        _require(table, time_column, "time")
        if table.column(time_column).null_count:
            raise InvalidArgument(
                f"time column '{time_column}' has null values",
                reason="NULL_TIMESTAMP",
                metadata={"column": time_column},
            )
        order = pc.sort_indices(table, [(time_column, "ascending")]).to_numpy()
        parts = np.split(order, np.cumsum(_largest_remainder(n, weights))[:-1])
    elif group_column:
        _require(table, group_column, "group")
        parts = _group_parts(_class_codes(table, group_column), weights, rng)
    elif stratify_column:
        _require(table, stratify_column, "stratify")
        codes = _class_codes(table, stratify_column)
        buckets: list[list[np.ndarray]] = [[], [], []]
        for cls in np.unique(codes):
            members = rng.permutation(np.flatnonzero(codes == cls))
            cuts = np.cumsum(_largest_remainder(len(members), weights))[:-1]
            for bucket, chunk in zip(buckets, np.split(members, cuts), strict=True):
                bucket.append(chunk)
        parts = [np.concatenate(b) if b else np.empty(0, np.int64) for b in buckets]
    else:
        parts = np.split(rng.permutation(n), np.cumsum(_largest_remainder(n, weights))[:-1])
    return {
        name: _take_sorted(table, part)
        for (name, fraction), part in zip(fractions.items(), parts, strict=True)
        if fraction > 0
    }


def _group_parts(
    codes: np.ndarray, weights: list[float], rng: np.random.Generator
) -> list[np.ndarray]:
    groups, inverse, sizes = np.unique(codes, return_inverse=True, return_counts=True)
    shuffled = rng.permutation(len(groups))
    ends = np.cumsum(sizes[shuffled])
    middles = ends - sizes[shuffled] / 2
    bounds = np.cumsum(weights)[:-1] * len(codes)
    part_of_group = np.empty(len(groups), dtype=np.int64)
    part_of_group[shuffled] = np.searchsorted(bounds, middles, side="right")
    part_of_row = part_of_group[inverse]
    return [np.flatnonzero(part_of_row == p) for p in range(3)]


# ---------------------------------------------------------------- project


def project(
    table: pa.Table, columns: Sequence[str] | None = None, drop: Sequence[str] | None = None
) -> pa.Table:
    """Keep ``columns`` (in that order) or drop ``drop``; exactly one must be non-empty.

    Raises:
        InvalidArgument: both/neither given, an unknown or repeated column, or no column left.
    """
    columns, drop = list(columns or []), list(drop or [])
    if bool(columns) == bool(drop):
        raise InvalidArgument(
            "give exactly one of columns to keep or columns to drop", reason="BAD_PROJECTION"
        )
    for name in columns or drop:
        _require(table, name, "projected")
    chosen = columns or drop
    if len(set(chosen)) != len(chosen):
        raise InvalidArgument("a column is listed twice", reason="BAD_PROJECTION")
    if columns:
        return table.select(columns)
    if len(drop) == table.num_columns:
        raise InvalidArgument(
            "dropping every column leaves an empty dataset", reason="BAD_PROJECTION"
        )
    return table.drop_columns(drop)


# ---------------------------------------------------------------- filter


def filter_rows(table: pa.Table, expression: str) -> pa.Table:
    """Rows for which ``expression`` is true (null counts as false, as in SQL WHERE).

    The expression language is a small, safe subset parsed with :mod:`ast` (never
    evaluated): column names (or ``col("odd name")``), literals (numbers, strings, true,
    false, null), comparisons ``== = != <> < <= > >=`` (chains allowed), ``and``/``or``/
    ``not``, ``+ - * /``, ``in``/``not in`` a list of literals, ``is null``/``is not
    null`` (or ``is_null(x)``/``is_not_null(x)``). Keywords are case-insensitive, so
    ``age >= 18 AND country IN ('DE', 'FR')`` works. Timestamp columns compare with
    ISO-8601 string literals. Anything else (attributes, calls, subscripts, lambdas, ...)
    is rejected.

    Raises:
        InvalidArgument: syntax outside the language (naming it), an unknown column, an
            overly long expression, or an expression that is not a boolean over the columns.
    """
    if len(expression) > _MAX_EXPRESSION_CHARS:
        raise InvalidArgument(
            f"filter expression is longer than {_MAX_EXPRESSION_CHARS} chars", reason="BAD_FILTER"
        )
    tree = _parse(expression, table.column_names)
    compiled = _Compiler(table.schema).compile(tree.body)
    try:
        return table.filter(compiled.expr)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError) as exc:
        raise InvalidArgument(
            f"filter expression {expression!r} cannot be applied: {exc}", reason="BAD_FILTER"
        ) from exc


_MAX_EXPRESSION_CHARS = 10_000
_MAX_NODES = 2_000
_SQL_WORDS = {
    "and": "and",
    "or": "or",
    "not": "not",
    "in": "in",
    "is": "is",
    "null": "None",
    "true": "True",
    "false": "False",
}


def _parse(expression: str, columns: list[str]) -> ast.Expression:
    """Rewrite SQL-isms token by token, then parse as a Python expression (never run)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expression).readline))
        out: list[tuple[int, str]] = []
        for tok in tokens:
            text = tok.string
            if tok.type == tokenize.NAME and text.lower() in _SQL_WORDS and text not in columns:
                text = _SQL_WORDS[text.lower()]
            elif tok.type == tokenize.OP and text == "=":
                text = "=="
            elif tok.type == tokenize.OP and text == ">" and out and out[-1] == (tokenize.OP, "<"):
                out[-1] = (tokenize.OP, "!=")
                continue
            out.append((tok.type, text))
        source = tokenize.untokenize(out).strip()
        tree = ast.parse(source, mode="eval")
    except (
        SyntaxError,
        tokenize.TokenError,
        IndentationError,
        ValueError,
        RecursionError,
        MemoryError,
    ) as exc:
        raise InvalidArgument(
            f"filter expression {expression!r} does not parse: {exc}", reason="BAD_FILTER"
        ) from exc
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise InvalidArgument(
            f"filter expression has more than {_MAX_NODES} parts", reason="BAD_FILTER"
        )
    return tree


class _Compiled:
    """A compiled sub-expression: a pyarrow expression or a literal, plus the column type
    when it is a bare column (so string literals can be read as timestamps)."""

    def __init__(self, expr: Any, *, literal: bool = False, column_type: pa.DataType | None = None):
        self.expr, self.literal, self.column_type = expr, literal, column_type


_COMPARE = {
    ast.Eq: pc.equal,
    ast.NotEq: pc.not_equal,
    ast.Lt: pc.less,
    ast.LtE: pc.less_equal,
    ast.Gt: pc.greater,
    ast.GtE: pc.greater_equal,
}
_ARITHMETIC = {ast.Add: pc.add, ast.Sub: pc.subtract, ast.Mult: pc.multiply}


class _Compiler:
    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema

    def compile(self, node: ast.AST) -> _Compiled:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise InvalidArgument(
                f"unsupported syntax in filter expression: {type(node).__name__}",
                reason="BAD_FILTER",
                metadata={"syntax": type(node).__name__},
            )
        return method(node)

    def _column(self, name: str) -> _Compiled:
        if name not in self.schema.names:
            raise InvalidArgument(
                f"filter expression names unknown column '{name}'",
                reason="UNKNOWN_COLUMN",
                metadata={"column": name},
            )
        return _Compiled(pc.field(name), column_type=self.schema.field(name).type)

    def _Name(self, node: ast.Name) -> _Compiled:
        return self._column(node.id)

    def _Constant(self, node: ast.Constant) -> _Compiled:
        if node.value is not None and not isinstance(node.value, (bool, int, float, str)):
            raise InvalidArgument(
                f"unsupported literal {node.value!r} in filter expression", reason="BAD_FILTER"
            )
        return _Compiled(node.value, literal=True)

    def _BoolOp(self, node: ast.BoolOp) -> _Compiled:
        parts = [self._expr(v) for v in node.values]
        result = parts[0]
        for part in parts[1:]:
            result = (result & part) if isinstance(node.op, ast.And) else (result | part)
        return _Compiled(result)

    def _UnaryOp(self, node: ast.UnaryOp) -> _Compiled:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return _Compiled(~self._as_expr(operand))
        if isinstance(node.op, ast.USub):
            if operand.literal and isinstance(operand.expr, (int, float)):
                return _Compiled(-operand.expr, literal=True)
            return _Compiled(pc.negate(self._as_expr(operand)))
        if isinstance(node.op, ast.UAdd):
            return operand
        raise InvalidArgument("unsupported operator '~' in filter expression", reason="BAD_FILTER")

    def _BinOp(self, node: ast.BinOp) -> _Compiled:
        left, right = self._expr(node.left), self._expr(node.right)
        if isinstance(node.op, ast.Div):
            return _Compiled(pc.divide(left.cast(pa.float64()), right.cast(pa.float64())))
        function = _ARITHMETIC.get(type(node.op))
        if function is None:
            raise InvalidArgument(
                f"unsupported operator {type(node.op).__name__} in filter expression",
                reason="BAD_FILTER",
                metadata={"syntax": type(node.op).__name__},
            )
        return _Compiled(function(left, right))

    def _Compare(self, node: ast.Compare) -> _Compiled:
        terms = [node.left, *node.comparators]
        result = None
        for op, left_node, right_node in zip(node.ops, terms[:-1], terms[1:], strict=True):
            piece = self._compare_pair(op, left_node, right_node)
            result = piece if result is None else result & piece
        return _Compiled(result)

    def _compare_pair(self, op: ast.cmpop, left_node: ast.AST, right_node: ast.AST) -> Any:
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (isinstance(right_node, ast.Constant) and right_node.value is None):
                raise InvalidArgument("'is' compares only with null", reason="BAD_FILTER")
            test = pc.is_null(self._expr(left_node))
            return ~test if isinstance(op, ast.IsNot) else test
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right_node, (ast.List, ast.Tuple, ast.Set)):
                raise InvalidArgument(
                    "'in' needs a list of literals, e.g. x in ('a', 'b')", reason="BAD_FILTER"
                )
            left = self.compile(left_node)
            values = [self._literal_for(left, self.compile(v)) for v in right_node.elts]
            test = pc.is_in(self._as_expr(left), value_set=self._value_set(left, values))
            return ~test if isinstance(op, ast.NotIn) else test
        left, right = self.compile(left_node), self.compile(right_node)
        left_value = self._literal_for(right, left)
        right_value = self._literal_for(left, right)
        return _COMPARE[type(op)](
            self._as_scalar_or_expr(left_value), self._as_scalar_or_expr(right_value)
        )

    def _Call(self, node: ast.Call) -> _Compiled:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)[:80]
        if name not in ("is_null", "is_not_null", "col") or node.keywords or len(node.args) != 1:
            raise InvalidArgument(
                f"unsupported function '{name}' in filter expression",
                reason="BAD_FILTER",
                metadata={"syntax": name},
            )
        arg = node.args[0]
        if name == "col":
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise InvalidArgument("col() takes a column name string", reason="BAD_FILTER")
            return self._column(arg.value)
        test = pc.is_null(self._expr(arg))
        return _Compiled(~test if name == "is_not_null" else test)

    # -- helpers

    def _expr(self, node: ast.AST) -> Any:
        return self._as_expr(self.compile(node))

    @staticmethod
    def _as_expr(compiled: _Compiled) -> Any:
        return pc.scalar(compiled.expr) if compiled.literal else compiled.expr

    @staticmethod
    def _as_scalar_or_expr(value: Any) -> Any:
        return value if isinstance(value, (pc.Expression, pa.Scalar)) else pc.scalar(value)

    @staticmethod
    def _literal_for(other: _Compiled, compiled: _Compiled) -> Any:
        """``compiled`` as a value; strings become timestamps when compared to one."""
        if not compiled.literal:
            return compiled.expr
        typ = other.column_type
        if (
            typ is not None
            and isinstance(compiled.expr, str)
            and (pa.types.is_timestamp(typ) or pa.types.is_date(typ))
        ):
            try:
                stamp = pd.Timestamp(compiled.expr)
            except ValueError as exc:
                raise InvalidArgument(
                    f"{compiled.expr!r} is not a timestamp", reason="BAD_FILTER"
                ) from exc
            if pa.types.is_date(typ):
                return pa.scalar(stamp.date(), typ)
            tz = getattr(typ, "tz", None)
            if tz and stamp.tzinfo is None:
                stamp = stamp.tz_localize("UTC")
            elif not tz and stamp.tzinfo is not None:
                stamp = stamp.tz_convert("UTC").tz_localize(None)
            return pa.scalar(stamp, pa.timestamp(typ.unit, tz))
        return compiled.expr

    @staticmethod
    def _value_set(left: _Compiled, values: list[Any]) -> pa.Array:
        typ = left.column_type
        try:
            if values and all(isinstance(v, pa.Scalar) for v in values):
                return pa.array([v.as_py() for v in values], values[0].type)
            if typ is not None and not pa.types.is_dictionary(typ):
                return pa.array(values, typ)
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise InvalidArgument(
                f"'in' list {values!r} does not match the column type {typ}: {exc}",
                reason="BAD_FILTER",
            ) from exc
