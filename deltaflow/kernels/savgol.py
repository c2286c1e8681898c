"""Savitzky–Golay (local polynomial least squares) derivatives, uniform or irregular x.

Each point takes the derivative of a degree-``polyorder`` least-squares polynomial fitted
to the ``window`` samples around it. Near an end the window stays full and shifts inward
(the nearest full window's polynomial, evaluated at the end points): no padding.

- Uniform x: one convolution vector for the interior plus ``window // 2`` end rows per
  side, computed once per call and applied by the fast stencil path (``_stencil``).
- Irregular x: every point solves its own small least-squares problem; the (n, window)
  weight table comes from one batched pseudo-inverse of the stacked design matrices.

``window=None`` chooses the window per series from the whole series with a
derivative-targeted plug-in rule (see ``_bandwidth``), bounded by ``max_window`` (a
RuntimeWarning names the series whose window stopped there: long, densely sampled series
need wider windows than the default cap); series that pick different windows each go
through their own window's stencil in one pass. For CuPy data the choice runs on the
device (``_bandwidth_xp``) and only the windows come to the host.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ._bandwidth import choose_window, warn_at_cap
from ._bandwidth_xp import choose_window as choose_window_xp
from ._localpoly import derivative_rows, fit_operator
from ._stencil import (
    Stencil,
    apply_stencil,
    apply_stencils,
    banded_stencil,
    cached_stencil,
    grid_key,
    local_window_starts,
)
from ._xp import astype, is_cupy, namespace, to_numpy
from .api import uniform_step
from .registry import MethodParams, MethodSpec, Output, kernel_checks_nan, register

MAX_ORDER = 6


def _odd(v: int | None, name: str = "window") -> int | None:
    if v is not None and v % 2 == 0:
        raise PydanticCustomError("odd", "must be odd")
    return v


def min_window(polyorder: int) -> int:
    """Smallest odd window that determines a polynomial of degree ``polyorder``."""
    w = polyorder + 1
    return w if w % 2 else w + 1


class SavgolParams(MethodParams):
    """Parameters of ``savgol``."""

    window: int | None = Field(
        None,
        ge=3,
        description="odd window length in samples; None chooses it per series from the data",
    )
    polyorder: int = Field(3, ge=1, le=8, description="degree of the local polynomial")
    max_window: int = Field(
        101,
        ge=3,
        description="odd upper bound of the automatic window (it sets the chunk halo)",
    )

    @field_validator("window")
    @classmethod
    def _window_odd(cls, v: int | None) -> int | None:
        return _odd(v)

    @field_validator("polyorder")
    @classmethod
    def _polyorder_below_window(cls, v: int, info: ValidationInfo) -> int:
        window = info.data.get("window")
        if window is not None and v >= window:
            raise PydanticCustomError(
                "polyorder_window",
                "must be less than window ({window}): allowed 1..{top}",
                {"window": window, "top": window - 1},
            )
        return v

    @field_validator("max_window")
    @classmethod
    def _max_window_valid(cls, v: int, info: ValidationInfo) -> int:
        _odd(v)
        p = info.data.get("polyorder")
        if p is not None and v < min_window(p):
            raise PydanticCustomError(
                "max_window_small",
                "must be at least {low} for polyorder {p}",
                {"low": min_window(p), "p": p},
            )
        return v


def check_order(order: int, params: SavgolParams) -> None:
    """ValueError unless the local polynomial has a derivative of ``order``."""
    if order > params.polyorder:
        raise ValueError(
            f"method 'savgol': order {order} needs polyorder >= {order}, got polyorder="
            f"{params.polyorder} (allowed orders 1..{params.polyorder})"
        )


def build_stencil(x: np.ndarray, window: int, polyorder: int, deriv: int) -> Stencil:
    """The Savitzky–Golay stencil of the deriv-th derivative for increasing x (n,), kept
    per grid."""
    n = x.shape[0]
    if window > n:
        raise ValueError(f"savgol: window ({window}) exceeds the {n} samples of the series")
    key = ("savgol", window, polyorder, deriv, *grid_key(x))
    return cached_stencil(key, lambda: _build_stencil(x, window, polyorder, deriv))


def _build_stencil(x: np.ndarray, window: int, polyorder: int, deriv: int) -> Stencil:
    n = x.shape[0]
    half = (window - 1) // 2
    step = uniform_step(x)
    if step is not None:
        t = np.arange(-half, half + 1, dtype=np.float64) / half
        op = fit_operator(t, polyorder)  # (p + 1, window)
        scale = (half * step) ** deriv
        center = derivative_rows(np.zeros(1), polyorder, deriv) @ op / scale
        left_at = (np.arange(half) - half) / half
        right_at = np.arange(1, half + 1) / half
        left = derivative_rows(left_at, polyorder, deriv) @ op / scale
        right = derivative_rows(right_at, polyorder, deriv) @ op / scale
        return Stencil(n=n, center=center[0], left=left, right=right)
    starts = local_window_starts(n, half, window)
    nodes = x[starts[:, None] + np.arange(window)]
    reach = np.max(np.abs(nodes - x[:, None]), axis=1)
    t = (nodes - x[:, None]) / reach[:, None]
    op = fit_operator(t, polyorder)  # (n, p + 1, window)
    weights = math.factorial(deriv) * op[:, deriv, :] / reach[:, None] ** deriv
    return banded_stencil(n, [(np.arange(n), starts, weights)])


def _windows(y: Any, x: np.ndarray, order: int, params: SavgolParams, chosen: dict) -> Any:
    """The window of every series: the fixed one, or the chosen per-series array."""
    if params.window is not None:
        return params.window
    if "window" in chosen:
        return np.asarray(to_numpy(chosen["window"]), dtype=np.int64)
    return _choose(y, x, order, params, None)["window"]


def _choose(y: Any, x: np.ndarray, order: int, params: SavgolParams, xp: Any) -> dict[str, Any]:
    """Per-series automatic window (shape y.shape[:-1]) from whole series; {} when fixed."""
    check_order(order, params)
    if params.window is not None:
        return {}
    wmin = min_window(params.polyorder)
    shape = y.shape[:-1]
    dev = namespace(y)
    if is_cupy(dev):  # chosen on the device, the windows (small) brought to the host
        y2 = astype(dev.reshape(y, (-1, y.shape[-1])), dev.float64)
        found = choose_window_xp(y2, x, params.polyorder, order, wmin, params.max_window, dev)
        windows = to_numpy(found[0])
    else:
        y2 = np.asarray(to_numpy(y), dtype=np.float64).reshape(-1, y.shape[-1])
        windows, _ = choose_window(y2, x, params.polyorder, order, wmin, params.max_window)
    warn_at_cap(windows, x.shape[0], params.max_window, "savgol")
    return {"window": windows.reshape(shape)}


def _apply(
    y: Any,
    x: np.ndarray,
    order: int,
    params: SavgolParams,
    chosen: dict[str, Any],
    xp: Any,
    smoothed: bool,
) -> Output:
    check_order(order, params)
    windows = _windows(y, x, order, params, chosen)
    orders = (order, 0) if smoothed else (order,)
    check = kernel_checks_nan(params)  # on the first pass only
    if np.ndim(windows) == 0 or np.unique(windows).size == 1:
        w = int(np.ravel(windows)[0]) if np.ndim(windows) else int(windows)
        outs = [
            apply_stencil(build_stencil(x, w, params.polyorder, k), y, xp, check and i == 0)
            for i, k in enumerate(orders)
        ]
        return Output(outs[0], outs[1] if smoothed else None)
    # several windows: one stencil per distinct window, each series through its own
    distinct, which = np.unique(np.ravel(windows), return_inverse=True)
    outs = [
        apply_stencils(
            [build_stencil(x, int(w), params.polyorder, k) for w in distinct],
            which,
            y,
            xp,
            check and i == 0,
        )
        for i, k in enumerate(orders)
    ]
    return Output(outs[0], outs[1] if smoothed else None)


def _footprint(order: int, params: SavgolParams) -> int:
    w = params.window if params.window is not None else params.max_window
    return (w - 1) // 2


def _min_samples(order: int, params: SavgolParams) -> int:
    return params.window if params.window is not None else min_window(params.polyorder)


SPEC = register(
    MethodSpec(
        name="savgol",
        summary="Savitzky–Golay local polynomial fits; window chosen per series when None.",
        params=SavgolParams,
        max_order=MAX_ORDER,
        apply=_apply,
        footprint=_footprint,
        choose=_choose,
        min_samples=_min_samples,
        irregular=True,
        nan_omit=False,
        gpu=True,
        has_smoothed=True,
        # the stencil flags NaN as it writes, so callers skip their own pass over the data;
        # an automatic window is chosen first from data that may hold NaN (NaNs are ignored
        # in the noise estimate, a row with a NaN gets the smallest window)
        checks_nan=True,
    )
)
