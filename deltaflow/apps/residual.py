"""Physics residuals: a stated differential equation evaluated on data (PINN-style checks).

``residual(ds, "d(u, t) + k*u", constants={"k": 0.5})`` estimates du/dt with the engine,
evaluates the expression, and returns the residual field and its RMS per series. An
equation may also be written with one ``=`` (``"d(u, t) = -k*u"``): the residual is the
left side minus the right side.

Expressions use the project's safe evaluator (:mod:`deltaflow.expr`: numbers, names,
arithmetic, comparisons, a fixed set of numpy functions; no ``eval``) extended by the
derivative forms ``d(expr, dim)``, ``d(expr, dim, order)`` and ``d2(expr, dim)``. The first
argument of a derivative may be any allowed expression (``d(u*v, x)``,
``d(d(u, x), y)``); ``dim`` is a bare dim name. Each derivative is computed through the
engine and bound to a fresh name, and the rest is evaluated by :func:`deltaflow.expr.evaluate`.
Names are the dataset's variables and coordinates and the given constants. Dask-backed
data stays lazy.
"""

from __future__ import annotations

import ast
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .. import expr as _expr
from ..engine import differentiate

__all__ = ["ResidualError", "residual"]

DERIVATIVES = ("d", "d2")


class ResidualError(_expr.ExpressionError):
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
    """Checks one side of an equation, computes its derivative terms, evaluates the rest."""

    def __init__(
        self,
        ds: xr.Dataset,
        constants: Mapping[str, Any],
        method: str,
        per_dim: Mapping[Hashable, Mapping[str, Any]],
        params: Mapping[str, Any],
    ):
        self.ds = ds
        self.env: dict[str, Any] = {str(k): ds.coords[k] for k in ds.coords}
        self.env.update({str(k): ds[k] for k in ds.data_vars})
        self.env.update(dict(constants))
        self.method = method
        self.per_dim = {k: dict(v) for k, v in per_dim.items()}
        self.params = dict(params)
        self.used_dims: list[Hashable] = []
        self._n = 0

    def parse(self, text: str) -> ast.expr:
        """Parse and check: every node passes deltaflow.expr's whitelist, except the
        derivative calls, which are checked here."""
        if not isinstance(text, str) or not text.strip():
            raise ResidualError("expression must be a non-empty string")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as err:
            raise ResidualError(
                f"invalid expression {text!r}: {err.msg} at column {err.offset}"
            ) from None
        for node in ast.walk(tree):
            if self._is_derivative(node):
                self._check_derivative(node, text)  # type: ignore[arg-type]
            else:
                try:
                    _expr._check_node(node, text)
                except _expr.ExpressionError as err:
                    raise ResidualError(str(err)) from None
        skip = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        skip |= {id(n.args[1]) for n in ast.walk(tree) if self._is_derivative(n)}
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in skip}
        missing = sorted(used - set(self.env) - set(_expr.CONSTANTS))
        if missing:
            raise ResidualError(
                f"expression {text!r}: unknown name(s) {', '.join(missing)}; known: "
                + ", ".join(sorted({*self.env, *_expr.CONSTANTS}))
            )
        return tree.body

    @staticmethod
    def _is_derivative(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in DERIVATIVES
        )

    def _check_derivative(self, node: ast.Call, text: str) -> None:
        name = node.func.id  # type: ignore[attr-defined]
        if node.keywords:
            raise _refuse(text, node, f"keyword arguments are not allowed in {name}()")
        nargs = (2,) if name == "d2" else (2, 3)
        if len(node.args) not in nargs:
            form = "d2(expr, dim)" if name == "d2" else "d(expr, dim) or d(expr, dim, order)"
            raise _refuse(text, node, f"{name}() takes {form}, got {len(node.args)} argument(s)")
        dim = node.args[1]
        if not isinstance(dim, ast.Name) or dim.id not in self.ds.dims:
            raise _refuse(
                text,
                dim,
                f"{name}(): {ast.unparse(dim)!r} is not a dim; dims are {list(self.ds.dims)}",
            )
        if len(node.args) == 3:
            order = node.args[2]
            if not (
                isinstance(order, ast.Constant)
                and isinstance(order.value, int)
                and not isinstance(order.value, bool)
                and order.value >= 1
            ):
                raise _refuse(text, order, f"{name}(): order must be a positive integer literal")

    def eval(self, node: ast.expr) -> Any:
        """Replace each derivative call (innermost first) by a name bound to its value,
        then evaluate with deltaflow.expr."""
        evaluator = self

        class Bind(ast.NodeTransformer):
            def visit_Call(self, call: ast.Call) -> ast.AST:
                self.generic_visit(call)
                if not evaluator._is_derivative(call):
                    return call
                inner = evaluator._evaluate(call.args[0])
                dim = call.args[1].id  # type: ignore[attr-defined]
                order = 2 if call.func.id == "d2" else 1  # type: ignore[attr-defined]
                if len(call.args) == 3:
                    order = call.args[2].value  # type: ignore[attr-defined]
                evaluator._n += 1
                name = f"_deriv{evaluator._n}"
                evaluator.env[name] = evaluator.derivative(inner, dim, order)
                return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), call)

        return self._evaluate(Bind().visit(node))

    def _evaluate(self, node: ast.expr) -> Any:
        try:
            return _expr.evaluate(ast.unparse(node), self.env)
        except _expr.ExpressionError as err:
            raise ResidualError(str(err)) from None

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
