"""The method registry: one :class:`MethodSpec` per differentiation method.

A method module builds a pydantic parameter model (subclass of :class:`MethodParams`),
writes ``apply`` (and ``choose`` when some parameter is chosen from the data), and calls
:func:`register`. Everything above the kernel layer (engine, workflows, CLI) learns about a
method only through its spec: its parameters, orders, footprint and capabilities.

The call contract, for y of shape (..., n) and x of shape (n,):

``choose(y, x, order, params, xp) -> dict[str, array]``
    Per-series automatic choices (a smoothing window, a penalty, ...), each an array of
    shape ``y.shape[:-1]``. Computed from whole series. The engine runs it as a cheap first
    pass on full-length series so that a chunked kernel pass uses the same values as an
    unchunked one. Absent (None) when the method has nothing to choose.

``apply(y, x, order, params, chosen, xp, smoothed) -> Output``
    The derivative of ``order`` along the last axis (same shape as y). ``chosen`` is the
    dict returned by ``choose`` (or ``{}``); ``smoothed=True`` asks for the smoothed signal
    too (``Output.smoothed``), for methods whose ``has_smoothed`` is true.

``footprint(order, params) -> int | None``
    Samples needed on each side of a chunk (the halo) so that chunked == unchunked; None
    means global: a point's result depends on the whole series.

``block_bytes``
    For methods whose temporaries are many times their input (spectra, cross-validation
    halves): the caller hands ``choose`` and ``apply`` at most this many input bytes of
    series at a time, so a worker's memory per task stays bounded whatever the chunk size
    (but at least ``api.BLOCK_MIN_ROWS`` series while they fit in ``api.BLOCK_CAP_BYTES``:
    per-call work from the coordinates is shared by a block's series). From the main
    thread, NumPy blocks run several at once on the kernels' pool, their inputs together
    within ``api.BLOCK_CAP_BYTES``, so ``choose`` and ``apply`` must be thread-safe.
    Series are independent, so the result is the same (the batched == one-by-one contract).

``checks_nan: bool``
    True when ``apply`` on NumPy or CuPy input can itself detect NaN under
    ``nan_policy="raise"`` and raise ``NaNInInput`` (from its outputs, as it writes them).
    A caller that relies on it skips its separate read pass over the data, runs the kernel
    inside :func:`nan_check_in_kernel` (the kernel asks :func:`kernel_checks_nan`), and on
    that exception runs its own check, which names where the NaN is. False: callers always
    check first. Kernels called by other kernels (auto's candidates) never check. A method
    with a ``choose`` that sets it must choose without failing on data holding NaN (its
    ``apply`` then reports the NaN): the choice runs unchecked before it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError

from ._xp import is_cupy, is_numpy

NanPolicy = Literal["raise", "omit", "propagate"]


class MethodParams(BaseModel):
    """Base of every method's parameter model: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    nan_policy: NanPolicy = "raise"


class Output(NamedTuple):
    """What ``apply`` returns: the derivative, and the smoothed signal when asked for."""

    derivative: Any
    smoothed: Any = None


class NaNInInput(ValueError):
    """A kernel met NaN in its input under nan_policy='raise' (see ``checks_nan``); the
    caller, which knows the variable and the block, reports where."""


_NAN_IN_KERNEL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "deltaflow_nan_in_kernel", default=False
)


@contextmanager
def nan_check_in_kernel() -> Iterator[None]:
    """Within this block (this thread), kernels with ``checks_nan`` detect NaN input."""
    token = _NAN_IN_KERNEL.set(True)
    try:
        yield
    finally:
        _NAN_IN_KERNEL.reset(token)


def kernel_checks_nan(params: MethodParams) -> bool:
    """For kernels: detect NaN input in this call (the caller deferred its check to us)."""
    return params.nan_policy == "raise" and _NAN_IN_KERNEL.get()


@dataclass(frozen=True)
class MethodSpec:
    """Everything the layers above need to know about one differentiation method."""

    name: str
    summary: str
    params: type[MethodParams]
    max_order: int
    apply: Callable[..., Output]
    footprint: Callable[[int, MethodParams], int | None]
    choose: Callable[..., dict[str, Any]] | None = None
    min_order: int = 1
    irregular: bool = True
    # longest series it takes on irregular x (None: any length)
    irregular_max_samples: int | None = None
    nan_omit: bool = False
    gpu: bool = False
    has_smoothed: bool = False
    min_samples: Callable[[int, MethodParams], int] = field(default=lambda order, p: order + 1)
    block_bytes: int | None = None
    checks_nan: bool = False

    def defers_nan_check(self, params: MethodParams, xp: Any) -> bool:
        """Whether ``apply`` does the nan_policy='raise' check for arrays of ``xp``."""
        return self.checks_nan and params.nan_policy == "raise" and (is_numpy(xp) or is_cupy(xp))

    def takes_irregular(self, n: int) -> bool:
        """Whether it differentiates series of n samples on irregular x."""
        return self.irregular and (
            self.irregular_max_samples is None or n <= self.irregular_max_samples
        )

    @property
    def orders(self) -> tuple[int, ...]:
        """The derivative orders this method can give."""
        return tuple(range(self.min_order, self.max_order + 1))

    def is_global(self, order: int, params: MethodParams) -> bool:
        """True when a point's result depends on the whole series (no finite halo)."""
        return self.footprint(order, params) is None

    def make_params(self, params: Mapping[str, Any] | MethodParams | None = None) -> MethodParams:
        """Validate user parameters into this method's model.

        Raises ValueError naming the method, the parameter and the allowed range.
        """
        if isinstance(params, self.params):
            return params
        try:
            return self.params(**dict(params or {}))
        except ValidationError as err:
            raise ValueError(format_validation_error(self.name, err)) from None

    def check_order(self, order: int) -> None:
        """Raise ValueError unless this method gives derivatives of ``order``."""
        if isinstance(order, bool) or not isinstance(order, int | _np_integer()):
            raise TypeError(f"order must be an integer, got {type(order).__name__} {order!r}")
        if not self.min_order <= order <= self.max_order:
            raise ValueError(
                f"method {self.name!r}: order must be in {self.min_order}..{self.max_order}, "
                f"got {order}"
            )

    def describe(self) -> dict[str, Any]:
        """A plain description: parameters with defaults and constraints, orders, capabilities."""
        schema = self.params.model_json_schema()
        props = schema.get("properties", {})
        parameters = {}
        for name, fld in self.params.model_fields.items():
            info = props.get(name, {})
            parameters[name] = {
                "default": fld.default,
                "description": fld.description or info.get("description", ""),
                "constraints": {
                    k: v
                    for k, v in info.items()
                    if k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum")
                },
                "type": _type_name(info),
            }
        return {
            "name": self.name,
            "summary": self.summary,
            "orders": list(self.orders),
            "parameters": parameters,
            "footprint": "global" if self.footprint(1, self.make_params()) is None else "local",
            "irregular": self.irregular,
            "irregular_max_samples": self.irregular_max_samples,
            "nan_omit": self.nan_omit,
            "gpu": self.gpu,
            "smoothed": self.has_smoothed,
        }


def _np_integer() -> type:
    import numpy as np

    return np.integer


def _type_name(info: dict[str, Any]) -> str:
    if "type" in info:
        return str(info["type"])
    if "anyOf" in info:
        return " | ".join(str(a.get("type", a.get("const", "?"))) for a in info["anyOf"])
    if "enum" in info:
        return "enum"
    return "?"


def format_validation_error(method: str, err: ValidationError) -> str:
    """One line per problem: ``method 'savgol': window: must be odd, got 10``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<params>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown parameter"
        elif "input" in e and e["type"] != "missing":
            msg = f"{msg}, got {e['input']!r}"
        lines.append(f"method {method!r}: {loc}: {msg}")
    return "; ".join(lines)


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method to the registry (a method module calls this at import)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """The spec of a registered method; ValueError listing the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown method {name!r}; known methods: {known}") from None


def registered() -> dict[str, MethodSpec]:
    """All registered methods by name."""
    return dict(_REGISTRY)
