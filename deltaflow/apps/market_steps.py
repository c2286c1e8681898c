"""Workflow steps of the market and dynamics applications (one small class each).

Option Greeks and risk-neutral densities, Itô/Stratonovich log-return rates, and sparse
equation discovery. Imported by :mod:`deltaflow.workflow` so that the steps register.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

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

__all__ = ["DiscoverStep", "GreeksStep", "LogReturnRateStep", "RiskNeutralDensityStep"]


class _Priced(Step):
    """Shared settings of the finance steps: a method with its parameters (validated)."""

    model_config = {"extra": "allow", "frozen": True}
    method: str = Field("finite_difference", description="a method of `deltaflow methods`")

    @model_validator(mode="after")
    def _params(self) -> _Priced:
        _method_params(self.method, dict(self.model_extra or {}), smoothing=False)
        return self

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def describe(self) -> dict[str, Any]:
        fields = self.model_dump(
            mode="json", exclude_none=True, include=set(type(self).model_fields)
        )
        return {"step": self.kind, **fields, "params": self.params}


@register_step
class GreeksStep(_Priced):
    """Option Greeks of a price variable over the named risk-factor dims.

    Writes {out}delta, {out}gamma (spot), {out}vega, {out}volga (vol), {out}rho (rate),
    {out}theta (time), {out}vanna, {out}charm: those whose dims are given.
    """

    kind: ClassVar[str] = "greeks"
    var: str = Field(description="the option price variable")
    spot: str | None = Field(None, description="dim of the spot price")
    vol: str | None = Field(None, description="dim of the volatility")
    rate: str | None = Field(None, description="dim of the interest rate")
    time: str | None = Field(None, description="dim of time (see time_kind)")
    time_kind: str = Field("expiry", pattern="^(expiry|calendar)$", description="expiry|calendar")
    out: str = Field("", description="prefix of the output names")
    figure: str | None = Field(None, description="PNG of the Greeks over spot and vol/time")

    def _dims(self) -> dict[str, str]:
        roles = {"spot": self.spot, "vol": self.vol, "rate": self.rate, "time": self.time}
        return {r: d for r, d in roles.items() if d is not None}

    def halo(self) -> dict[str, int | None]:
        spec = get_method(self.method)
        p = spec.make_params(self.params)
        return {d: spec.footprint(2, p) for d in self._dims().values()}

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from .finance import greeks

        da = need_var(ds, self.var)
        dims = self._dims()
        if not dims:
            raise StepError("name at least one of spot, vol, rate, time", "spot")
        for role, d in dims.items():
            need_dim(da, d, role)
        res = greeks(da, time_kind=self.time_kind, method=self.method, **dims, **self.params)
        if self.figure:
            from ..plots import plot_greeks

            plot_greeks(res, output=self.figure)
        return ds.assign({f"{self.out}{k}": v for k, v in res.data_vars.items()})


@register_step
class RiskNeutralDensityStep(_Priced):
    """Risk-neutral density from call prices over strikes (Breeden–Litzenberger)."""

    kind: ClassVar[str] = "risk_neutral_density"
    var: str = Field(description="the call price variable")
    strike: str = Field("strike", description="dim of the strike")
    rate: float | str = Field(description="interest rate: a number or a coordinate name")
    time: float | str = Field(description="years to expiry: a number or a coordinate name")
    out: str = Field("density", description="output name")

    def halo(self) -> dict[str, int | None]:
        spec = get_method(self.method)
        return {self.strike: spec.footprint(2, spec.make_params(self.params))}

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from .finance import risk_neutral_density

        da = need_var(ds, self.var)
        need_dim(da, self.strike, "strike")
        try:
            q = risk_neutral_density(
                da, self.strike, rate=self.rate, time=self.time, method=self.method, **self.params
            )
        except ValueError as err:
            raise StepError(str(err), "rate") from None
        return ds.assign({self.out: q})


@register_step
class LogReturnRateStep(Step):
    """Itô or Stratonovich log-return rate of price paths, with volatility per path.

    Writes {out}_rate (per step; NaN at the last sample), {out}_mean_rate, {out}_sigma
    and {out}_naive_rate.
    """

    kind: ClassVar[str] = "log_return_rate"
    var: str = Field(description="the price variable")
    dim: str = Field(description="the time dim")
    calculus: str = Field("ito", pattern="^(ito|stratonovich)$", description="ito|stratonovich")
    out: str = Field("log_return", description="prefix of the outputs")

    def halo(self) -> dict[str, int | None]:
        return {self.dim: None}

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from .stochastic import log_return_rate

        da = need_var(ds, self.var)
        need_dim(da, self.dim)
        res = log_return_rate(da, self.dim, calculus=self.calculus)
        # back on the full time axis so the sink writes it beside the prices
        rate = (
            res["rate"].reindex({self.dim: da[self.dim]})
            if self.dim in da.coords
            else (res["rate"].pad({self.dim: (0, 1)}))
        )
        return ds.assign(
            {
                f"{self.out}_rate": rate,
                f"{self.out}_mean_rate": res["mean_rate"],
                f"{self.out}_sigma": res["sigma"],
                f"{self.out}_naive_rate": res["naive_rate"],
            }
        )


@register_step
class DiscoverStep(_Priced):
    """Sparse equation discovery (SINDy) per independent system (computed here).

    Writes {out}_coefficients over ({batch dims}, {out}_equation, {out}_term) and
    {out}_rmse; equation and term labels are stored as attrs (numeric outputs only).
    """

    kind: ClassVar[str] = "discover"
    method: str = Field("savgol", description="derivative method (a smoother for noisy data)")
    vars: list[str] = Field(min_length=1, description="the state variables")
    dim: str = Field(description="the time dim")
    degree: int = Field(2, ge=1, le=5, description="polynomial degree of the library")
    functions: list[str] = Field(default_factory=list, description="named functions to add")
    threshold: float = Field(0.1, ge=0, description="sparsity threshold on the coefficients")
    out: str = Field("model", description="prefix of the outputs")
    figure: str | None = Field(None, description="PNG: discovered vs observed, first system")

    def halo(self) -> dict[str, int | None]:
        return {self.dim: None}

    def run(self, ds: Any, ctx: StepContext) -> Any:
        from .discovery import discover, equations

        for v in self.vars:
            need_dim(need_var(ds, v, "vars"), self.dim)
        try:
            res = discover(
                ds,
                self.dim,
                self.vars,
                degree=self.degree,
                functions=self.functions,
                threshold=self.threshold,
                method=self.method,
                **self.params,
            )
        except ValueError as err:
            raise StepError(str(err), "functions") from None
        batch = {d: 0 for d in res["coefficients"].dims[:-2]}
        first = res.isel(batch)
        if self.figure:
            from ..plots import plot_discovery

            plot_discovery(first, ds[self.vars].isel(batch), self.dim, output=self.figure)
        eq, term = f"{self.out}_equation", f"{self.out}_term"
        coef = res["coefficients"].rename({"equation": eq, "term": term}).drop_vars([eq, term])
        coef.attrs = {
            "equations": list(map(str, res["equation"].values)),
            "terms": list(map(str, res["term"].values)),
            "first_system": equations(first),
            **res.attrs,
        }
        rmse = res["rmse"].rename({"equation": eq}).drop_vars(eq)
        return ds.assign({f"{self.out}_coefficients": coef, f"{self.out}_rmse": rmse})
