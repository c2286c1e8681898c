"""Workflow steps of the calculus layer and the applications (one small class each).

Imported by :mod:`deltaflow.workflow` so that the steps register. Grid operators
(gradient, hessian, laplacian, directional_derivative, divergence, curl, jacobian,
jacobian_logdet, residual) stay lazy; critical_points, descent_path and sensitivity
compute their (small) results while the step runs, since their sizes depend on the data.
Outputs are numeric only (critical point kinds are integer codes with CF ``flag_values``
and ``flag_meanings``), so the Zarr sink writes them region by region like any variable.
Steps with a ``figure`` setting draw their figure (PNG) when they run; the step runs when
the graph is built, so ``deltaflow validate`` and ``plan`` draw it too (steps get no
dry-run flag yet).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import xarray as xr
from pydantic import Field, PrivateAttr, model_validator

from ..kernels import get_method
from ..workflow.steps import (
    Step,
    StepContext,
    StepError,
    _method_params,
    need_dim,
    need_var,
    register_step,
)

__all__ = [
    "CriticalPointsStep",
    "CurlStep",
    "DescentPathStep",
    "DirectionalDerivativeStep",
    "DivergenceStep",
    "GradientStep",
    "HessianStep",
    "JacobianLogdetStep",
    "JacobianStep",
    "LaplacianStep",
    "ResidualStep",
    "SensitivityStep",
]

KIND_CODES = {"minimum": 0, "maximum": 1, "saddle": 2, "degenerate": 3}


class _Calculus(Step):
    """Shared settings: dims, a method with its parameters (validated by the registry),
    optional per-dim overrides."""

    model_config = {"extra": "allow", "frozen": True}
    order: ClassVar[int] = 1

    dims: list[str] = Field(min_length=1, description="dims to differentiate along")
    method: str = Field("finite_difference", description="a method of `deltaflow methods`")
    per_dim: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-dim overrides: {dim: {method: ..., param: ...}}"
    )

    _specs: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _params(self) -> _Calculus:
        specs = {}
        for d in self.dims:
            own = dict(self.per_dim.get(d, {}))
            method = own.pop("method", self.method)
            extras = {**(self.params if method == self.method else {}), **own}
            specs[d] = _method_params(method, extras, smoothing=False)
        bad = [d for d in self.per_dim if d not in self.dims]
        if bad:
            raise ValueError(f"per_dim: dim {bad[0]!r} is not one of the dims {self.dims}")
        self._specs = specs
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The common method parameters (validated)."""
        return dict(self.model_extra or {})

    def calculus_kwargs(self) -> dict[str, Any]:
        return {"method": self.method, "per_dim": self.per_dim or None, **self.params}

    def halo(self) -> dict[str, int | None]:
        return {d: spec.footprint(self.order, p) for d, (spec, p) in self._specs.items()}

    def describe(self) -> dict[str, Any]:
        fields = self.model_dump(
            mode="json", exclude_none=True, include=set(type(self).model_fields)
        )
        return {"step": self.kind, **fields, "params": self.params}

    def check(self, ds: Any, names: list[str], key: str = "var") -> None:
        for v in names:
            da = need_var(ds, v, key)
            for d in self.dims:
                need_dim(da, d, "dims")


@register_step
class GradientStep(_Calculus):
    """The gradient of a variable over dims (new dim ``component``)."""

    kind: ClassVar[str] = "gradient"
    var: str = Field(description="variable to differentiate")
    out: str | None = Field(None, description="output name; default grad_{var}")

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from ..calculus import gradient

        self.check(ds, [self.var])
        res = gradient(ds[self.var], self.dims, **self.calculus_kwargs())
        return ds.assign({self.out or f"grad_{self.var}": res})


@register_step
class HessianStep(_Calculus):
    """The Hessian of a variable, true mixed partials (dims ``component_i``, ``component_j``)."""

    kind: ClassVar[str] = "hessian"
    order: ClassVar[int] = 2
    var: str = Field(description="variable to differentiate")
    out: str | None = Field(None, description="output name; default hess_{var}")

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from ..calculus import hessian

        self.check(ds, [self.var])
        res = hessian(ds[self.var], self.dims, **self.calculus_kwargs())
        return ds.assign({self.out or f"hess_{self.var}": res})


@register_step
class LaplacianStep(_Calculus):
    """The Laplacian of a variable: the sum of its second derivatives along dims."""

    kind: ClassVar[str] = "laplacian"
    order: ClassVar[int] = 2
    var: str = Field(description="variable to differentiate")
    out: str | None = Field(None, description="output name; default lap_{var}")

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from ..calculus import laplacian

        self.check(ds, [self.var])
        res = laplacian(ds[self.var], self.dims, **self.calculus_kwargs())
        return ds.assign({self.out or f"lap_{self.var}": res})


@register_step
class DirectionalDerivativeStep(_Calculus):
    """The derivative of a variable along a fixed direction (one number per dim)."""

    kind: ClassVar[str] = "directional_derivative"
    var: str = Field(description="variable to differentiate")
    direction: list[float] = Field(description="one component per dim, in the order of dims")
    normalize: bool = Field(True, description="scale the direction to unit length")
    out: str | None = Field(None, description="output name; default ddir_{var}")

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from ..calculus import directional_derivative

        self.check(ds, [self.var])
        if len(self.direction) != len(self.dims):
            raise StepError(
                f"direction has {len(self.direction)} components for {len(self.dims)} dims",
                "direction",
            )
        res = directional_derivative(
            ds[self.var],
            self.dims,
            self.direction,
            normalize=self.normalize,
            **self.calculus_kwargs(),
        )
        return ds.assign({self.out or f"ddir_{self.var}": res})


class _Field(_Calculus):
    """A vector field: several variables paired with the dims."""

    vars: list[str] = Field(min_length=1, description="variables of the vector field")
    out: str = Field(description="output name")

    def run(self, ds: Any, ctx: StepContext) -> Any:
        self.check(ds, self.vars, "vars")
        res = self.compute(ds)
        return ds.assign({self.out: res})

    def compute(self, ds: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@register_step
class DivergenceStep(_Field):
    """The divergence of the vector field ``vars`` over ``dims`` (paired in order)."""

    kind: ClassVar[str] = "divergence"
    out: str = Field("divergence", description="output name")

    def compute(self, ds: Any) -> Any:
        from ..calculus import divergence

        return divergence(ds, self.vars, self.dims, **self.calculus_kwargs())


@register_step
class CurlStep(_Field):
    """The curl of a 2-D (scalar) or 3-D (vector, dim ``component``) field."""

    kind: ClassVar[str] = "curl"
    out: str = Field("curl", description="output name")

    def compute(self, ds: Any) -> Any:
        from ..calculus import curl

        return curl(ds, self.vars, self.dims, **self.calculus_kwargs())


@register_step
class JacobianStep(_Field):
    """The Jacobian d(vars_i)/d(dims_j) (dims ``variable``, ``component``)."""

    kind: ClassVar[str] = "jacobian"
    out: str = Field("jacobian", description="output name")

    def compute(self, ds: Any) -> Any:
        from ..calculus import jacobian

        return jacobian(ds, self.vars, self.dims, **self.calculus_kwargs())


@register_step
class JacobianLogdetStep(_Field):
    """log |det J| of the square Jacobian of ``vars`` over ``dims``."""

    kind: ClassVar[str] = "jacobian_logdet"
    out: str = Field("jacobian_logdet", description="output name")

    def compute(self, ds: Any) -> Any:
        from ..calculus import jacobian_logdet

        return jacobian_logdet(ds, self.vars, self.dims, **self.calculus_kwargs())


def _prefixed(res: xr.Dataset, out: str, rename_dims: dict[str, str]) -> dict[str, Any]:
    """The numeric variables of an app result as {out}_{name}, dims renamed."""
    res = res.rename({k: v for k, v in rename_dims.items() if k in res.dims})
    new = {}
    for name, v in res.data_vars.items():
        if v.dtype.kind in "fiub":
            new[f"{out}_{name}"] = v.reset_coords(drop=True) if hasattr(v, "reset_coords") else v
    return new


@register_step
class CriticalPointsStep(_Calculus):
    """Critical points of a landscape variable, located and classified (computed here).

    Writes {out}_{dim} per dim, {out}_value, {out}_kind (0 minimum, 1 maximum, 2 saddle,
    3 degenerate), {out}_eigenvalues and {out}_gradient_norm over the dim ``{out}``.
    """

    kind: ClassVar[str] = "critical_points"
    order: ClassVar[int] = 2
    var: str = Field(description="the landscape variable (over exactly the dims)")
    out: str = Field("critical", description="prefix of the outputs and name of the point dim")
    figure: str | None = Field(None, description="PNG of the landscape with its critical points")

    def halo(self) -> dict[str, int | None]:
        return {d: None for d in self.dims}

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from .landscape import critical_points

        self.check(ds, [self.var])
        da = ds[self.var].load()
        found = critical_points(da, self.dims, **self.calculus_kwargs())
        codes = np.array([KIND_CODES[k] for k in found["kind"].values], dtype=np.int8)
        res = found.assign(kind=("point", codes))
        res["kind"].attrs = {
            "flag_values": list(KIND_CODES.values()),
            "flag_meanings": " ".join(KIND_CODES),
        }
        if self.figure:
            from ..plots import plot_landscape

            plot_landscape(da, self.dims, found, output=self.figure)
        new = _prefixed(
            res.drop_vars("point"), self.out, {"point": self.out, "eigen": f"{self.out}_eigen"}
        )
        return ds.assign(new)


def critical_from(ds: Any, prefix: str, dims: list[str]) -> xr.Dataset:
    """Rebuild a critical_points result from the variables a CriticalPointsStep wrote."""
    names = {code: kind for kind, code in KIND_CODES.items()}
    kinds = [names[int(c)] for c in np.asarray(ds[f"{prefix}_kind"].values)]
    data = {d: ("point", np.asarray(ds[f"{prefix}_{d}"].values)) for d in dims}
    data["kind"] = ("point", np.array(kinds, dtype=str))
    return xr.Dataset(data)


@register_step
class DescentPathStep(_Calculus):
    """Gradient-descent paths on a landscape variable from start points (computed here).

    Writes {out}_{dim} per dim, {out}_value, {out}_gradient_norm over
    ({out}_start, {out}_step), and {out}_n_steps, {out}_converged per start.
    """

    kind: ClassVar[str] = "descent_path"
    var: str = Field(description="the landscape variable (over exactly the dims)")
    start: list[list[float]] = Field(min_length=1, description="start points, one list per path")
    learning_rate: float | None = Field(None, gt=0, description="fixed rate; default adaptive")
    max_steps: int = Field(2000, ge=1, description="iterations per path")
    out: str = Field("descent", description="prefix of the outputs")
    figure: str | None = Field(None, description="PNG of the landscape with the paths")
    critical: str | None = Field(
        None, description="prefix of an earlier critical_points step to draw on the figure"
    )

    def halo(self) -> dict[str, int | None]:
        return {d: None for d in self.dims}

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from .landscape import descent_path

        self.check(ds, [self.var])
        bad = [i for i, s in enumerate(self.start) if len(s) != len(self.dims)]
        if bad:
            raise StepError(
                f"start[{bad[0]}] has {len(self.start[bad[0]])} coordinates for dims {self.dims}",
                "start",
            )
        da = ds[self.var].load()
        res = descent_path(
            da,
            self.dims,
            np.asarray(self.start, dtype=np.float64),
            learning_rate=self.learning_rate,
            max_steps=self.max_steps,
            **self.calculus_kwargs(),
        )
        if self.figure:
            from ..plots import plot_landscape

            crit = None
            if self.critical:
                need_var(ds, f"{self.critical}_kind", "critical")
                crit = critical_from(ds, self.critical, self.dims)
            plot_landscape(da, self.dims, crit, res, output=self.figure)
        new = _prefixed(
            res.drop_vars("step"),
            self.out,
            {"start": f"{self.out}_start", "step": f"{self.out}_step"},
        )
        return ds.assign(new)


@register_step
class SensitivityStep(Step):
    """Sensitivity of a variable to features: grid form (``var`` + ``dims``) or scattered
    form (``features`` variables + ``predictions``, all over one sample dim).

    Writes {out}_mean_abs, {out}_mean, {out}_scaled, {out}_ranking over ``{out}_feature``
    (labels: the feature names), and {out}_local when ``local`` is true.
    """

    model_config = {"extra": "allow", "frozen": True}
    kind: ClassVar[str] = "sensitivity"
    var: str | None = Field(None, description="grid form: the variable sampled over dims")
    dims: list[str] | None = Field(None, description="grid form: the feature dims")
    features: list[str] | None = Field(None, description="scattered form: feature variables")
    predictions: str | None = Field(None, description="scattered form: the predicted variable")
    degree: int = Field(1, ge=1, le=2, description="scattered form: local polynomial degree")
    method: str = Field("finite_difference", description="grid form: differentiation method")
    local: bool = Field(False, description="also write the local sensitivities")
    out: str = Field("sensitivity", description="prefix of the outputs")
    figure: str | None = Field(None, description="PNG bar chart of the ranking")

    @model_validator(mode="after")
    def _form(self) -> SensitivityStep:
        grid = self.var is not None or self.dims is not None
        scattered = self.features is not None or self.predictions is not None
        if grid == scattered or (grid and (self.var is None or not self.dims)):
            raise ValueError(
                "give either var and dims (grid form) or features and predictions (scattered form)"
            )
        if scattered and (not self.features or self.predictions is None):
            raise ValueError("the scattered form needs both features and predictions")
        if grid:
            _method_params(self.method, dict(self.model_extra or {}), smoothing=False)
        return self

    def halo(self) -> dict[str, int | None]:
        # the global measures reduce over every sample: each dim is needed whole
        return {d: None for d in self.dims or []}

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from .sensitivity import sensitivity

        if self.var is not None:
            da = need_var(ds, self.var)
            for d in self.dims or []:
                need_dim(da, d, "dims")
            res = sensitivity(da, dims=self.dims, method=self.method, **(self.model_extra or {}))
        else:
            names = list(self.features or [])
            pred = need_var(ds, str(self.predictions), "predictions")
            for f in names:
                need_var(ds, f, "features")
            if pred.ndim != 1:
                raise StepError(
                    f"predictions must be 1-D over samples, got dims {pred.dims}", "predictions"
                )
            feats = ds[names].load()
            res = sensitivity(feats, pred.values, degree=self.degree)
            res = res.assign_coords(feature=names)
        if self.figure:
            from ..plots import plot_sensitivity

            plot_sensitivity(res, output=self.figure)
        res = res.compute()
        keep = ["mean_abs", "mean", "scaled", "ranking"] + (["local"] if self.local else [])
        res = res[keep]
        res = res.drop_vars([c for c in res.coords if c != "feature" and c not in res.dims])
        res = res.rename(
            {
                "feature": f"{self.out}_feature",
                **({"point": f"{self.out}_point"} if "point" in res.dims else {}),
            }
        )
        return ds.assign({f"{self.out}_{k}": res[k] for k in keep})


@register_step
class ResidualStep(Step):
    """The residual of a differential equation on the data, e.g. ``d(u, t) + k*u``,
    and its RMS per series."""

    model_config = {"extra": "allow", "frozen": True}
    kind: ClassVar[str] = "residual"
    expression: str = Field(description="an equation or expression with d(var, dim), d2(var, dim)")
    constants: dict[str, float] = Field(default_factory=dict, description="named numbers")
    over: list[str] | None = Field(None, description="dims the RMS reduces over")
    method: str = Field("finite_difference", description="a method of `deltaflow methods`")
    out: str = Field("residual", description="output name; the RMS is {out}_rms")
    figure: str | None = Field(None, description="PNG of the residual and its RMS")

    @model_validator(mode="after")
    def _check(self) -> ResidualStep:
        from .residual import _split_equation

        _method_params(self.method, dict(self.model_extra or {}), smoothing=False)
        for side in _split_equation(self.expression):
            if side is not None:
                import ast

                try:
                    ast.parse(side.strip(), mode="eval")
                except SyntaxError as err:
                    raise ValueError(f"invalid expression: {err.msg}") from None
        return self

    def halo(self) -> dict[str, int | None]:
        """Halos of the derivative terms along their dims, nested terms added up."""
        import ast

        from .residual import DERIVATIVES, _split_equation

        spec = get_method(self.method)
        params = spec.make_params(dict(self.model_extra or {}))
        out: dict[str, int | None] = {}

        def walk(node: ast.AST, acc: dict[str, int | None]) -> None:
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in DERIVATIVES
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Name)
            ):
                order = 2 if node.func.id == "d2" else 1
                if len(node.args) == 3 and isinstance(node.args[2], ast.Constant):
                    order = int(node.args[2].value)
                dim = node.args[1].id
                h = spec.footprint(min(order, spec.max_order), params)
                inner = dict(acc)
                prev = inner.get(dim, 0)
                inner[dim] = None if h is None or prev is None else prev + h
                walk(node.args[0], inner)
                return
            children = list(ast.iter_child_nodes(node))
            if not children:
                for k, v in acc.items():
                    cur = out.get(k, 0)
                    out[k] = None if v is None or cur is None else max(cur, v)
            for c in children:
                walk(c, acc)

        for side in _split_equation(self.expression):
            if side is not None:
                walk(ast.parse(side.strip(), mode="eval"), {})
        return out

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from .residual import ResidualError, residual

        try:
            res = residual(
                ds,
                self.expression,
                constants=self.constants,
                over=self.over,
                method=self.method,
                **(self.model_extra or {}),
            )
        except ResidualError as err:
            raise StepError(str(err), "expression") from None
        if self.figure:
            from ..plots import plot_residual

            plot_residual(res, output=self.figure)
        return ds.assign({self.out: res["residual"], f"{self.out}_rms": res["rms"]})
