"""A safe arithmetic evaluator for workflow ``expression`` steps (no ``eval``).

An expression such as ``dU_dt + k * U`` is parsed with :mod:`ast` and only a whitelist of
nodes is accepted: numbers, names (variables of the dataset or named constants), the
arithmetic operators ``+ - * / // % **``, unary ``+``/``-``, comparisons, and calls of a
fixed set of numpy functions with positional arguments. Attribute access, subscripts,
keywords, lambdas, comprehensions and every other node are refused, so an expression can
neither import nor run code. Operands are whatever the names map to (xarray objects, numpy
arrays or numbers); evaluation stays lazy on dask-backed data.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}

#: functions an expression may call (numpy ufuncs work on xarray and dask objects lazily)
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": np.abs,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "log10": np.log10,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "tanh": np.tanh,
    "arctan": np.arctan,
    "sign": np.sign,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "where": lambda cond, a, b: _where(cond, a, b),
}

#: named constants usable without declaring them
CONSTANTS: dict[str, float] = {"pi": float(np.pi), "e": float(np.e)}

_MAX_LENGTH = 2000


class ExpressionError(ValueError):
    """An expression that does not parse, uses a refused construct, or names an unknown symbol."""


def _where(cond: Any, a: Any, b: Any) -> Any:
    import xarray as xr

    if isinstance(cond, xr.DataArray | xr.Dataset):
        return xr.where(cond, a, b)
    return np.where(cond, a, b)


def parse(expr: str) -> ast.Expression:
    """Parse and check ``expr``; ExpressionError names the refused construct and its column."""
    if not isinstance(expr, str) or not expr.strip():
        raise ExpressionError("expression must be a non-empty string")
    if len(expr) > _MAX_LENGTH:
        raise ExpressionError(f"expression is {len(expr)} characters long; at most {_MAX_LENGTH}")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as err:
        raise ExpressionError(
            f"invalid expression {expr!r}: {err.msg} at column {err.offset}"
        ) from None
    for node in ast.walk(tree):
        _check_node(node, expr)
    return tree


def _check_node(node: ast.AST, expr: str) -> None:
    allowed = (
        ast.Expression,
        ast.BinOp,
        ast.UnaryOp,
        ast.Compare,
        ast.Constant,
        ast.Name,
        ast.Load,
        ast.Call,
        *(_BINOPS),
        *(_UNARY),
        *(_COMPARE),
    )
    if not isinstance(node, allowed):
        col = getattr(node, "col_offset", None)
        where = f" at column {col + 1}" if col is not None else ""
        raise ExpressionError(
            f"expression {expr!r}: {type(node).__name__} is not allowed{where}; only numbers, "
            "names, + - * / // % **, comparisons and calls of " + ", ".join(sorted(FUNCTIONS))
        )
    if isinstance(node, ast.Constant) and (
        isinstance(node.value, bool) or not isinstance(node.value, int | float)
    ):
        raise ExpressionError(
            f"expression {expr!r}: only numeric constants are allowed, got {node.value!r}"
        )
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExpressionError(
                f"expression {expr!r}: function {name!r} is not allowed; allowed: "
                + ", ".join(sorted(FUNCTIONS))
            )
        if node.keywords:
            raise ExpressionError(
                f"expression {expr!r}: keyword arguments are not allowed in {node.func.id}()"
            )


def names(expr: str) -> set[str]:
    """The variable and constant names an expression uses (function names excluded)."""
    tree = parse(expr)
    funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in funcs}


def evaluate(expr: str, symbols: Mapping[str, Any]) -> Any:
    """Evaluate ``expr`` with ``symbols`` (plus :data:`CONSTANTS`) bound to its names.

    Raises ExpressionError for an unknown name, listing the names that are known.
    """
    tree = parse(expr)
    env = {**CONSTANTS, **symbols}
    missing = sorted(names(expr) - set(env))
    if missing:
        raise ExpressionError(
            f"expression {expr!r}: unknown name(s) {', '.join(missing)}; known: "
            + ", ".join(sorted(env))
        )
    return _eval(tree.body, env)


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, env))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        result = None
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, env)
            part = _COMPARE[type(op)](left, right)
            result = part if result is None else result & part
            left = right
        return result
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id](*(_eval(a, env) for a in node.args))
    raise ExpressionError(f"{type(node).__name__} is not allowed")  # unreachable after parse()
