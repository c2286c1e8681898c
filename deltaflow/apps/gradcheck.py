"""Check an analytic gradient against central finite differences.

Integer inputs are cast to float64 first (an integer x would otherwise make x + h round
back to x), and the step of each component is scaled to its magnitude, so the check holds
for x = 3 as for x = 1e6.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["GradientCheck", "check_gradient"]

# central-difference coefficients (offsets in steps, weights) and the error exponent
_SCHEMES = {
    2: (np.array([-1.0, 1.0]), np.array([-0.5, 0.5]), 3.0),
    4: (np.array([-2.0, -1.0, 1.0, 2.0]), np.array([1.0, -8.0, 8.0, -1.0]) / 12.0, 5.0),
}


@dataclass(frozen=True)
class GradientCheck:
    """Outcome of :func:`check_gradient`; arrays have the shape of x."""

    analytic: np.ndarray
    numeric: np.ndarray
    absolute_error: np.ndarray
    relative_error: np.ndarray
    max_relative_error: float
    step: np.ndarray
    attainable: np.ndarray
    tolerance: float

    @property
    def ok(self) -> bool:
        """True when every component agrees within the tolerance."""
        return bool(self.max_relative_error <= self.tolerance)

    def worst(self) -> tuple[int, ...]:
        """Index of the component with the largest relative error."""
        return tuple(
            int(i)
            for i in np.unravel_index(np.argmax(self.relative_error), self.relative_error.shape)
        )

    def __str__(self) -> str:
        state = "ok" if self.ok else "MISMATCH"
        return (
            f"gradient check {state}: max relative error {self.max_relative_error:.3g} "
            f"(tolerance {self.tolerance:.3g}) at component {self.worst()}"
        )


def _scalar(v: Any, where: str) -> float:
    a = np.asarray(v)
    if a.size != 1:
        raise ValueError(f"f: must return a scalar, got shape {a.shape} at {where}")
    if a.dtype.kind not in "iufb":
        raise TypeError(f"f: must return a real number, got dtype {a.dtype} at {where}")
    return float(a.reshape(()))


def check_gradient(
    f: Callable[[np.ndarray], Any],
    grad_f: Callable[[np.ndarray], Any],
    x: Any,
    *,
    accuracy: Literal[2, 4] = 4,
    step: float | None = None,
    tolerance: float = 1e-5,
    floor: float | None = None,
) -> GradientCheck:
    """Compare ``grad_f(x)`` with central differences of the scalar function ``f`` at ``x``.

    Parameters
    ----------
    f : callable taking an array shaped like x (float64) and returning a scalar.
    grad_f : callable returning the gradient, an array shaped like x.
    x : array-like of any shape; integers and bools are cast to float64.
    accuracy : 2 or 4
        Order of the central-difference scheme (error ~ step**accuracy).
    step : float, optional
        Relative step; the step of component i is ``step * max(|x_i|, 1)``. Default:
        eps**(1/(accuracy+1)), which balances truncation and rounding error.
    tolerance : float
        ``ok`` is true when the max relative error is at most this.
    floor : float, optional
        Denominator floor of the relative error, so that components whose true value is
        near zero are judged against the gradient's size rather than their own; default
        max(1e-4 * the largest component magnitude, sqrt(eps), attainable / tolerance):
        an exactly zero gradient (at a minimum) is judged absolutely, and a component is
        not failed for the finite differences' own error (``attainable``: 10x the
        truncation error, estimated by halving the step, plus the rounding error,
        eps * |f| / step).

    Returns
    -------
    :class:`GradientCheck` with per-component absolute and relative errors, the finite-
    difference gradient, its attainable accuracy, and the max relative error. f is called
    4 * accuracy times per component (two step sizes).
    """
    if accuracy not in _SCHEMES:
        raise ValueError(f"accuracy: must be 2 or 4, got {accuracy!r}")
    x0 = np.asarray(x)
    if x0.dtype.kind not in "iufb":
        raise TypeError(f"x: must be real numeric, got dtype {x0.dtype}")
    x0 = x0.astype(np.float64)
    if not np.isfinite(x0).all():
        raise ValueError("x: must be finite")
    offsets, weights, power = _SCHEMES[accuracy]
    rel = np.finfo(np.float64).eps ** (1.0 / power) if step is None else float(step)
    if not rel > 0:
        raise ValueError(f"step: must be positive, got {step!r}")
    flat = x0.ravel()
    h = rel * np.maximum(np.abs(flat), 1.0)
    # make each step exactly representable relative to x (x + h - x == h)
    h = (flat + h) - flat

    analytic = np.asarray(grad_f(x0.copy()))
    if analytic.dtype.kind not in "iufb":
        raise TypeError(f"grad_f: must return real numbers, got dtype {analytic.dtype}")
    analytic = analytic.astype(np.float64)
    if analytic.size != flat.size:
        raise ValueError(
            f"grad_f: returned {analytic.size} components (shape {analytic.shape}) for x of "
            f"shape {x0.shape}"
        )
    analytic = analytic.reshape(x0.shape)

    def quotient(i: int, hi: float) -> tuple[float, float]:
        """The difference quotient of component i with step hi, and max |f| it saw."""
        acc, top = 0.0, 0.0
        for off, w in zip(offsets, weights, strict=True):
            xi = flat.copy()
            xi[i] += off * hi
            fi = _scalar(f(xi.reshape(x0.shape)), f"component {i}")
            acc += w * fi
            top = max(top, abs(fi))
        return acc / hi, top

    numeric = np.zeros(flat.size)
    halved = np.zeros(flat.size)
    fmax = np.zeros(flat.size)
    for i in range(flat.size):  # calls of the user's function, two step sizes
        numeric[i], fmax[i] = quotient(i, h[i])
        halved[i], _ = quotient(i, h[i] / 2)
    # error estimates: truncation from the step-halving difference (Richardson), rounding
    # from f's own size times eps over the step
    eps = np.finfo(np.float64).eps
    order = accuracy
    truncation = (np.abs(numeric - halved) / (1.0 - 2.0**-order)).reshape(x0.shape)
    roundoff = (eps * np.sum(np.abs(weights)) * fmax / h).reshape(x0.shape)
    numeric = numeric.reshape(x0.shape)
    attainable = 10.0 * (truncation + roundoff)
    abs_err = np.abs(analytic - numeric)
    if floor is None:
        top = max(
            float(np.max(np.abs(analytic), initial=0.0)),
            float(np.max(np.abs(numeric), initial=0.0)),
        )
        floor = np.maximum(max(1e-4 * top, float(np.sqrt(eps))), attainable / tolerance)
    denom = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    rel_err = abs_err / denom
    return GradientCheck(
        analytic=analytic,
        numeric=numeric,
        absolute_error=abs_err,
        relative_error=rel_err,
        max_relative_error=float(rel_err.max()) if rel_err.size else 0.0,
        step=h.reshape(x0.shape),
        attainable=attainable,
        tolerance=float(tolerance),
    )
