"""Physics residuals: a stated differential equation evaluated on data (PINN-style checks).

``residual(ds, "d(u, t) + k*u", constants={"k": 0.5})`` estimates du/dt with the engine,
evaluates the expression, and returns the residual field and its RMS per series. An
equation may also be written with one ``=`` (``"d(u, t) = -k*u"``): the residual is the
left side minus the right side.

Expressions are evaluated by a small whitelisting evaluator (no ``eval``): numbers, names
(dataset variables, coordinates, constants), ``+ - * / **``, unary ``-``/``+``, calls of a
fixed set of numpy functions, and the derivative forms ``d(expr, dim)``,
``d(expr, dim, order)`` and ``d2(expr, dim)``, whose first argument may be any allowed
expression (``d(u*v, x)``, ``d(d(u, x), y)``) and whose ``dim`` is a bare dim name.
Everything else (attributes, subscripts, keywords, lambdas, ...) is refused with the
column where it appears. Dask-backed data stays lazy.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..engine import differentiate

__all__ = ["ResidualError", "residual"]

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": np.abs,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "tanh": np.tanh,
    "sinh": np.sinh,
    "cosh": np.cosh,
}
DERIVATIVES = ("d", "d2")
CONSTANTS = {"pi": float(np.pi), "e": float(np.e)}
_MAX_LENGTH = 2000


class ResidualError(ValueError):
    """An expression that does not parse, uses a refused construct or an unknown name."""


def _refuse(expr: str, node: ast.AST, what: str) -> ResidualError:
    col = getattr(node, "col_offset", None)
    where = f" at column {col + 1}" if col is not None else ""
    return ResidualError(f"expression {expr!r}: {what}{where}")


def _split_equation(expr: str) -> tuple[str, str | None]:
    """'lhs = rhs' -> (lhs, rhs) for an '=' outside brackets; otherwise (expr, None)."""
    marks, depth = [], 0
    for i, ch in enumerate(expr):
        depth += (ch in "([{") - (ch in ")]}")
        if (
            ch == "="
            and depth == 0
            and (i == 0 or expr[i - 1] not in "=<>!")
            and expr[i + 1 : i + 2] != "="
        ):
            marks.append(i)
    if not marks:
        return expr, None
    if len(marks) > 1:
        raise ResidualError(f"expression {expr!r}: more than one '=' (write one equation)")
    i = marks[0]
    return expr[:i], expr[i + 1 :]


class _Evaluator:
    """Checks and evaluates one expression against a dataset."""

    def __init__(
        self,
        ds: xr.Dataset,
        constants: Mapping[str, Any],
        method: str,
        per_dim: Mapping[Hashable, Mapping[str, Any]],
        params: Mapping[str, Any],
    ):
        self.ds = ds
        self.env: dict[str, Any] = {**CONSTANTS}
        self.env.update({str(k): ds.coords[k] for k in ds.coords})
        self.env.update({str(k): ds[k] for k in ds.data_vars})
        self.env.update(dict(constants))
        self.method = method
        self.per_dim = {k: dict(v) for k, v in per_dim.items()}
        self.params = dict(params)
        self.used_dims: list[Hashable] = []

    def parse(self, expr: str) -> ast.AST:
        if not isinstance(expr, str) or not expr.strip():
            raise ResidualError("expression must be a non-empty string")
        if len(expr) > _MAX_LENGTH:
            raise ResidualError(f"expression is {len(expr)} characters long; at most {_MAX_LENGTH}")
        try:
            tree = ast.parse(expr.strip(), mode="eval")
        except SyntaxError as err:
            raise ResidualError(
                f"invalid expression {expr!r}: {err.msg} at column {err.offset}"
            ) from None
        self._check(tree.body, expr)
        return tree.body

    def _check(self, node: ast.AST, expr: str) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise _refuse(expr, node, f"only numeric constants are allowed, got {node.value!r}")
        elif isinstance(node, ast.Name):
            if node.id not in self.env:
                known = ", ".join(sorted(self.env))
                raise _refuse(expr, node, f"unknown name {node.id!r} (known: {known})")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            self._check(node.left, expr)
            self._check(node.right, expr)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand, expr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if node.keywords:
                raise _refuse(expr, node, f"keyword arguments are not allowed in {name}()")
            if name in DERIVATIVES:
                self._check_derivative(node, expr)
            elif name in FUNCTIONS:
                for a in node.args:
                    self._check(a, expr)
            else:
                allowed = ", ".join([*DERIVATIVES, *sorted(FUNCTIONS)])
                raise _refuse(expr, node, f"function {name!r} is not allowed (allowed: {allowed})")
        else:
            allowed = ", ".join([*DERIVATIVES, *sorted(FUNCTIONS)])
            raise _refuse(
                expr,
                node,
                f"{type(node).__name__} is not allowed; only numbers, names, + - * / **, "
                f"and calls of {allowed}",
            )

    def _check_derivative(self, node: ast.Call, expr: str) -> None:
        name = node.func.id  # type: ignore[attr-defined]
        nargs = (2,) if name == "d2" else (2, 3)
        if len(node.args) not in nargs:
            form = "d2(expr, dim)" if name == "d2" else "d(expr, dim) or d(expr, dim, order)"
            raise _refuse(expr, node, f"{name}() takes {form}, got {len(node.args)} argument(s)")
        self._check(node.args[0], expr)
        dim = node.args[1]
        if not isinstance(dim, ast.Name) or dim.id not in self.ds.dims:
            got = ast.unparse(dim)
            raise _refuse(
                expr, dim, f"{name}(): {got!r} is not a dim; dims are {list(self.ds.dims)}"
            )
        if len(node.args) == 3:
            order = node.args[2]
            if not (
                isinstance(order, ast.Constant)
                and isinstance(order.value, int)
                and not isinstance(order.value, bool)
                and order.value >= 1
            ):
                raise _refuse(expr, order, f"{name}(): order must be a positive integer literal")

    def eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.env[node.id]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self.eval(node.left), self.eval(node.right))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self.eval(node.operand))
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if node.func.id in DERIVATIVES:
            dim = node.args[1].id  # type: ignore[attr-defined]
            order = 2 if node.func.id == "d2" else 1
            if len(node.args) == 3:
                order = node.args[2].value  # type: ignore[attr-defined]
            return self.derivative(self.eval(node.args[0]), dim, order)
        return FUNCTIONS[node.func.id](*(self.eval(a) for a in node.args))

    def derivative(self, value: Any, dim: Hashable, order: int) -> Any:
        if not isinstance(value, xr.DataArray) or dim not in value.dims:
            return xr.zeros_like(self.ds[dim], dtype=np.float64)  # constant along dim
        if dim not in self.used_dims:
            self.used_dims.append(dim)
        own = dict(self.per_dim.get(dim, {}))
        method = own.pop("method", self.method)
        params = {**(self.params if method == self.method else {}), **own}
        return differentiate(value, dim, method=method, order=order, **params)


def residual(
    ds: xr.Dataset,
    expression: str,
    *,
    constants: Mapping[str, Any] | None = None,
    over: Sequence[Hashable] | None = None,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    **params: Any,
) -> xr.Dataset:
    """Evaluate a differential equation's residual on data, with its RMS per series.

    Parameters
    ----------
    ds : Dataset holding the variables the expression names.
    expression : e.g. ``"d(u, t) + k*u"`` or ``"d(u, t) = -k*u"`` or ``"d2(u, x) - d(u, t)"``;
        precomputed variables (``du_dt``) are plain names.
    constants : values of names not in ``ds`` (numbers or DataArrays), e.g. ``{"k": 0.5}``.
    over : dims the RMS reduces over; default the dims differentiated along (so one RMS
        per series), or every dim when the expression has no derivative.
    method, per_dim, **params : the differentiation method (see :mod:`deltaflow.calculus`).

    Returns
    -------
    Dataset with ``residual`` (the broadcast dims of the expression) and ``rms`` (the
    residual's root mean square over ``over``, NaNs skipped).
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds: expected an xarray.Dataset, got {type(ds).__name__}")
    lhs, rhs = _split_equation(expression)
    ev = _Evaluator(ds, constants or {}, method, per_dim or {}, params)
    out = ev.eval(ev.parse(lhs))
    if rhs is not None:
        out = out - ev.eval(ev.parse(rhs))
    if not isinstance(out, xr.DataArray):
        out = xr.DataArray(out)
    dims = list(over) if over is not None else (ev.used_dims or list(out.dims))
    for d in dims:
        if d not in out.dims:
            raise ValueError(f"over: dim {d!r} is not a dim of the residual {list(out.dims)}")
    out = out.rename("residual")
    out.attrs = {"expression": expression, "method": method}
    rms = np.sqrt((out**2).mean(dims, skipna=True)).rename("rms")
    rms.attrs = {"expression": expression, "over": ", ".join(map(str, dims))}
    return xr.Dataset({"residual": out, "rms": rms}, attrs={"operation": "residual"})
