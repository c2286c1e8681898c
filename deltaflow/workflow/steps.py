"""Workflow steps: each is one small registered class (a pydantic model plus ``run``).

A step's model holds its validated settings (unknown keys refused); ``run(ds, ctx)`` takes
the lazy dataset built so far and returns the next one, building a graph and computing
nothing. ``halo()`` says how many samples the step needs on each side along the dims it
works on (``None``: the whole dim), which ``plan`` reports and ``append`` runs rely on.

Adding a step::

    @register_step
    class Gradient(Step):
        \"\"\"The gradient of a variable on a grid.\"\"\"
        kind: ClassVar[str] = "gradient"
        var: str
        def run(self, ds, ctx):
            ...
            return ds.assign(...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from .. import expr as _expr
from .config import StrictModel

STEPS: dict[str, type[Step]] = {}


class StepError(ValueError):
    """A step that cannot run on the dataset it gets; ``key`` names the offending setting."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass
class StepContext:
    """What a step may know about the run besides the dataset."""

    index: int = 0
    log: list[str] = field(default_factory=list)
    allow_host: bool = False  # the workflow's allow_host: GPU data through host-only methods


class Step(StrictModel):
    """Base of every step."""

    kind: ClassVar[str] = ""

    def run(self, ds: Any, ctx: StepContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def halo(self) -> dict[str, int | None]:
        """Samples needed on each side per dim (None: the whole dim); {} when pointwise."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Provenance: the step kind and its settings."""
        return {"step": self.kind, **self.model_dump(mode="json", exclude_none=True)}


def register_step(cls: type[Step]) -> type[Step]:
    """Class decorator: add a step model to the registry under ``cls.kind``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} needs a class attribute kind")
    if cls.kind in STEPS:
        raise ValueError(f"step {cls.kind!r} is already registered")
    STEPS[cls.kind] = cls
    return cls


# --------------------------------------------------------------------------- helpers


def need_var(ds: Any, name: str, key: str = "var") -> Any:
    """The data variable ``name`` or a StepError listing the variables there are."""
    if name not in ds.data_vars:
        have = ", ".join(map(str, ds.data_vars)) or "none"
        raise StepError(f"no variable {name!r} in the dataset; variables: {have}", key)
    return ds[name]


def need_dim(da: Any, dim: str, key: str = "dim") -> None:
    """StepError unless the variable has ``dim``."""
    if dim not in da.dims:
        raise StepError(
            f"variable {da.name!r} has no dim {dim!r}; its dims: {', '.join(map(str, da.dims))}",
            key,
        )


def _engine(name: str) -> Any:
    import deltaflow

    fn = getattr(deltaflow, name, None)
    if fn is None:
        raise StepError(f"deltaflow.{name} is not available in this build")
    return fn


def _method_params(method: str, extras: dict[str, Any], *, smoothing: bool) -> Any:
    """Validate method parameters against the kernel registry's model (errors keyed by name)."""
    from ..kernels import get_method

    try:
        spec = get_method(method)
    except ValueError as err:
        raise _errors([(("method",), str(err), method)]) from None
    if smoothing and not spec.has_smoothed:
        from ..kernels import registered

        have = sorted(n for n, s in registered().items() if s.has_smoothed)
        raise _errors(
            [
                (
                    ("method",),
                    f"method {method!r} has no smoothed signal; methods with one: "
                    + (", ".join(have) or "none registered"),
                    method,
                )
            ]
        )
    try:
        return spec, spec.params(**extras)
    except ValidationError as err:
        allowed = ", ".join(spec.params.model_fields)
        rows = []
        for e in err.errors():
            msg = str(e["msg"]).removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown parameter of method {method!r}; its parameters: {allowed}"
            elif "got " not in msg and "input" in e:
                msg = f"{msg}, got {e['input']!r}"
            rows.append((tuple(e["loc"]), msg, e.get("input")))
        raise _errors(rows) from None


def _errors(rows: list[tuple[tuple[Any, ...], str, Any]]) -> ValidationError:
    return ValidationError.from_exception_data(
        "step",
        [
            InitErrorDetails(
                type=PydanticCustomError("step_setting", "{msg}", {"msg": msg}),
                loc=loc,
                input=inp,
            )
            for loc, msg, inp in rows
        ],
    )


def _out_names(vars_: list[str], out: str | list[str] | None, default: str) -> list[str]:
    if out is None:
        return [default.format(var=v) for v in vars_]
    if isinstance(out, list):
        if len(out) != len(vars_):
            raise StepError(f"out has {len(out)} names for {len(vars_)} variables", "out")
        return out
    if len(vars_) > 1 and "{var}" not in out:
        raise StepError("out must contain {var} (or be a list) when var lists several", "out")
    return [out.format(var=v) for v in vars_]


# --------------------------------------------------------------------------- steps


@register_step
class Select(Step):
    """Select by label (sel) or by index (isel), and keep or drop variables."""

    kind: ClassVar[str] = "select"
    sel: dict[str, Any] = Field(
        default_factory=dict,
        description="label selection per dim: a value, a list, or {start, stop} (inclusive)",
    )
    isel: dict[str, Any] = Field(
        default_factory=dict,
        description="index selection per dim: an int, a list, or {start, stop, step}",
    )
    vars: list[str] | None = Field(None, description="data variables to keep")
    drop: list[str] = Field(default_factory=list, description="data variables to drop")

    @staticmethod
    def _indexer(value: Any, labels: bool) -> Any:
        if isinstance(value, dict):
            allowed = {"start", "stop"} if labels else {"start", "stop", "step"}
            bad = set(value) - allowed
            if bad:
                raise StepError(f"range keys are {sorted(allowed)}, got {sorted(bad)}")
            return slice(value.get("start"), value.get("stop"), value.get("step"))
        return value

    def run(self, ds: Any, ctx: StepContext) -> Any:
        for key, sel in (("sel", self.sel), ("isel", self.isel)):
            missing = [d for d in sel if d not in ds.dims]
            if missing:
                raise StepError(
                    f"unknown dim(s) {', '.join(missing)}; dims: {', '.join(map(str, ds.dims))}",
                    f"{key}.{missing[0]}",
                )
        if self.vars is not None:
            for v in self.vars:
                need_var(ds, v, "vars")
            ds = ds[self.vars]
        for v in self.drop:
            need_var(ds, v, "drop")
        ds = ds.drop_vars(self.drop)
        if self.sel:
            try:
                ds = ds.sel({d: self._indexer(v, True) for d, v in self.sel.items()})
            except KeyError as err:
                raise StepError(f"label not found: {err}", "sel") from None
        if self.isel:
            try:
                ds = ds.isel({d: self._indexer(v, False) for d, v in self.isel.items()})
            except IndexError as err:
                raise StepError(f"index out of range: {err}", "isel") from None
        for d in ds.dims:
            if ds.sizes[d] == 0:
                raise StepError(f"the selection leaves dim {d!r} empty")
        return ds

    def halo(self) -> dict[str, int | None]:
        return {d: None for d in (*self.sel, *self.isel)}


@register_step
class Rechunk(Step):
    """Change the dask chunks (samples per chunk per dim; -1 = the whole dim)."""

    kind: ClassVar[str] = "rechunk"
    chunks: dict[str, int | Literal["auto"]] = Field(description="chunk size per dim")

    @field_validator("chunks")
    @classmethod
    def _sizes(cls, v: dict[str, Any]) -> dict[str, Any]:
        for d, c in v.items():
            if isinstance(c, int) and c != -1 and c < 1:
                raise ValueError(f"chunk size of {d!r} must be >= 1 or -1, got {c}")
        return v

    def run(self, ds: Any, ctx: StepContext) -> Any:
        missing = [d for d in self.chunks if d not in ds.dims]
        if missing:
            raise StepError(
                f"unknown dim(s) {', '.join(missing)}; dims: {', '.join(map(str, ds.dims))}",
                f"chunks.{missing[0]}",
            )
        return ds.chunk(self.chunks)


class _MethodStep(Step):
    """Shared by differentiate and smooth: a method whose parameters the registry validates."""

    model_config = {"extra": "allow", "frozen": True}
    smoothing: ClassVar[bool] = False

    var: str | list[str] = Field(description="variable(s) to work on")
    dim: str = Field(description="dim to work along")
    method: str = Field("finite_difference", description="a method of `deltaflow methods`")
    datetime_unit: str = Field("s", description="unit of a datetime coordinate")

    _spec: Any = PrivateAttr(None)
    _params_model: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _params(self) -> _MethodStep:
        extras = dict(self.model_extra or {})
        spec, params = _method_params(self.method, extras, smoothing=self.smoothing)
        order = getattr(self, "order", None)
        if order is not None and not spec.min_order <= order <= spec.max_order:
            raise _errors(
                [
                    (
                        ("order",),
                        f"method {self.method!r} gives orders {spec.min_order}.."
                        f"{spec.max_order}, got {order}",
                        order,
                    )
                ]
            )
        self._spec = spec
        self._params_model = params
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The method parameters as given (validated)."""
        return dict(self.model_extra or {})

    def vars(self) -> list[str]:
        return [self.var] if isinstance(self.var, str) else list(self.var)

    def _order(self) -> int:
        return max(self._spec.min_order, 1)

    def halo(self) -> dict[str, int | None]:
        return {self.dim: self._spec.footprint(self._order(), self._params_model)}

    def describe(self) -> dict[str, Any]:
        fields = self.model_dump(
            mode="json", exclude_none=True, include=set(type(self).model_fields)
        )
        return {"step": self.kind, **fields, "params": self._params_model.model_dump(mode="json")}


@register_step
class Differentiate(_MethodStep):
    """Differentiate variable(s) along a dim with a registered method and its parameters."""

    kind: ClassVar[str] = "differentiate"
    order: int = Field(1, ge=1, description="derivative order")
    out: str | list[str] | None = Field(
        None, description="output name(s); may use {var}; default d{var}_d{dim} (order 1)"
    )
    smoothed_out: str | list[str] | None = Field(
        None, description="also write the method's smoothed signal under this name"
    )

    def _order(self) -> int:
        return self.order

    def default_out(self) -> str:
        if self.order == 1:
            return "d{var}_d" + self.dim
        return f"d{self.order}" + "{var}_d" + f"{self.dim}{self.order}"

    def run(self, ds: Any, ctx: StepContext) -> Any:
        names = self.vars()
        for v in names:
            need_dim(need_var(ds, v), self.dim)
        outs = _out_names(names, self.out, self.default_out())
        smooth_outs = (
            _out_names(names, self.smoothed_out, "{var}_smooth") if self.smoothed_out else None
        )
        if self.smoothed_out and not self._spec.has_smoothed:
            raise StepError(f"method {self.method!r} has no smoothed signal", "smoothed_out")
        differentiate = _engine("differentiate")
        new = {}
        for i, (v, o) in enumerate(zip(names, outs, strict=True)):
            res = differentiate(
                ds[v],
                self.dim,
                method=self.method,
                order=self.order,
                return_smoothed=bool(smooth_outs),
                datetime_unit=self.datetime_unit,
                allow_host=ctx.allow_host,
                **self.params,
            )
            if smooth_outs:
                res, sm = res
                new[smooth_outs[i]] = sm.assign_attrs(deltaflow_source_var=v, deltaflow_order=0)
            new[o] = res.assign_attrs(deltaflow_source_var=v, deltaflow_order=self.order)
        return ds.assign(new)


@register_step
class Smooth(_MethodStep):
    """The smoothed signal of a method that has one (e.g. savgol, spline)."""

    kind: ClassVar[str] = "smooth"
    smoothing: ClassVar[bool] = True
    out: str | list[str] | None = Field(None, description="output name(s); default {var}_smooth")

    def run(self, ds: Any, ctx: StepContext) -> Any:
        names = self.vars()
        for v in names:
            need_dim(need_var(ds, v), self.dim)
        outs = _out_names(names, self.out, "{var}_smooth")
        smooth = _engine("smooth")
        new = {}
        for v, o in zip(names, outs, strict=True):
            res = smooth(
                ds[v],
                self.dim,
                self.method,
                datetime_unit=self.datetime_unit,
                allow_host=ctx.allow_host,
                **self.params,
            )
            new[o] = res.assign_attrs(deltaflow_source_var=v, deltaflow_order=0)
        return ds.assign(new)


@register_step
class Integrate(Step):
    """Cumulative integral along a dim, starting from an initial value."""

    kind: ClassVar[str] = "integrate"
    var: str | list[str] = Field(description="variable(s) to integrate")
    dim: str = Field(description="dim to integrate along")
    initial: float = Field(0.0, description="value at the first sample")
    rule: Literal["trapezoid", "simpson"] = Field("trapezoid", description="quadrature rule")
    out: str | list[str] | None = Field(None, description="output name(s); default {var}_int")
    datetime_unit: str = Field("s", description="unit of a datetime coordinate")

    def run(self, ds: Any, ctx: StepContext) -> Any:
        names = [self.var] if isinstance(self.var, str) else list(self.var)
        for v in names:
            need_dim(need_var(ds, v), self.dim)
        outs = _out_names(names, self.out, "{var}_int")
        integrate = _engine("integrate")
        new = {}
        for v, o in zip(names, outs, strict=True):
            res = integrate(
                ds[v],
                self.dim,
                initial=self.initial,
                method=self.rule,
                datetime_unit=self.datetime_unit,
            )
            new[o] = res.assign_attrs(deltaflow_source_var=v, deltaflow_order=-1)
        return ds.assign(new)

    def halo(self) -> dict[str, int | None]:
        return {self.dim: None}  # a running sum: every point depends on all before it


@register_step
class Expression(Step):
    """A new variable from arithmetic on variables and constants, e.g. dU_dt + k * U."""

    kind: ClassVar[str] = "expression"
    out: str = Field(description="name of the new variable")
    expr: str = Field(description="arithmetic on variable names, numbers and constants")
    constants: dict[str, float] = Field(default_factory=dict, description="named numbers")
    attrs: dict[str, Any] = Field(default_factory=dict, description="attributes of the result")

    @field_validator("expr")
    @classmethod
    def _parse(cls, v: str) -> str:
        _expr.parse(v)
        return v

    def run(self, ds: Any, ctx: StepContext) -> Any:
        clash = sorted(set(self.constants) & set(ds.data_vars))
        if clash:
            raise StepError(f"constant(s) {', '.join(clash)} shadow variables", "constants")
        symbols = {str(k): ds[k] for k in ds.data_vars}
        symbols.update(self.constants)
        try:
            value = _expr.evaluate(self.expr, symbols)
        except _expr.ExpressionError as err:
            raise StepError(str(err), "expr") from None
        if not hasattr(value, "dims"):
            raise StepError("the expression uses no variable (it is a constant)", "expr")
        return ds.assign({self.out: value.assign_attrs(expression=self.expr, **self.attrs)})
