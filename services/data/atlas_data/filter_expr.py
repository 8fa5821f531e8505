"""The filter expression language of dataset derivation: a small, safe subset of SQL/Python
parsed with :mod:`ast` and compiled to a pyarrow compute expression (never evaluated)."""

from __future__ import annotations

import ast
import io
import tokenize
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from atlas_core.errors import InvalidArgument

__all__ = ["filter_rows"]


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
            # SQL's one-element list ``x IN ('a')`` parses as a parenthesised literal.
            one = isinstance(right_node, ast.Constant) and right_node.value is not None
            if not one and not isinstance(right_node, (ast.List, ast.Tuple, ast.Set)):
                raise InvalidArgument(
                    "'in' needs a list of literals, e.g. x in ('a', 'b')", reason="BAD_FILTER"
                )
            elts = [right_node] if one else right_node.elts  # type: ignore[attr-defined]
            left = self.compile(left_node)
            values = [self._literal_for(left, self.compile(v)) for v in elts]
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
