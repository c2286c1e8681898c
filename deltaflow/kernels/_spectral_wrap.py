"""spectral's wrap test: does a periodic extension continue smoothly across the wrap?

Quadratic least-squares fits to the last and the first ``k`` samples (a fifth of the series,
at most ``WRAP_WINDOW``) give the value and slope at the wrap from either side; their
differences are measured against the same fits' differences at up to ``WRAP_POINTS``
interior points, where the series is continuous by construction. On a uniform grid every
window shares one set of weights (in samples); on an irregular grid each window has its own
(in x). The per-row work runs compiled (``_spectral_kernels.wrap_mismatch_rows``).
"""

from __future__ import annotations

import functools

import numpy as np

from . import _lsspectrum as _ls
from . import _spectral_kernels as _sk
from ._noise import _MAD_NORMAL
from ._stencil import run_rows

# at most this many interior points give the typical deviation (evenly spaced), and the
# fits at the wrap use at most WRAP_WINDOW samples on either side (a fifth of the series
# below that): the test costs rows * WRAP_POINTS * WRAP_WINDOW
WRAP_POINTS = 128
WRAP_WINDOW = 64


def _side_weights(k: int, at: float) -> np.ndarray:
    """Weights (2, k): value and slope at ``at`` of the quadratic LS fit to samples t=0..k-1."""
    t = np.arange(k, dtype=np.float64)
    proj = np.linalg.pinv(np.vander(t, 3, increasing=True))
    return np.stack([np.array([1.0, at, at * at]) @ proj, np.array([0.0, 1.0, 2.0 * at]) @ proj])


@functools.lru_cache(maxsize=8)
def wrap_plan(n: int, kind: str) -> tuple[np.ndarray, ...]:
    """The fits of :func:`wrap_mismatch` for series of n samples: weights (2, k) of the value
    and slope at the point from the k samples ending at it (``left``) and from the k starting
    at it (``right``), and the first sample of each left / right window (1 + P,): the wrap of
    ``kind`` first, then P interior points. O(P k), whatever n is (a dense (n, 2 + 2P) filter
    matrix was 135 MB at n = 65,536).
    """
    k = int(np.clip(n // 5, 4, WRAP_WINDOW))
    gap = 0 if kind == "closed" else 1  # closed: y[n-1] and y[0] are the same point
    left = _side_weights(k, k - 1 + 0.5 * gap)
    right = _side_weights(k, -0.5 * gap)
    shift = k - 1 if kind == "closed" else k  # closed: the two windows share the middle one
    count = n - k - shift + 1
    starts = np.unique(np.linspace(0, count - 1, min(count, WRAP_POINTS)).astype(np.int64))
    lstart = np.concatenate([[n - k], starts]).astype(np.int64)
    rstart = np.concatenate([[0], starts + shift]).astype(np.int64)
    for a in (left, right, lstart, rstart):
        a.setflags(write=False)
    return left, right, lstart, rstart


def wrap_mismatch(y2: np.ndarray, kind: str, x: np.ndarray | None = None) -> np.ndarray:
    """Per series (rows,): how far the periodic extension ``kind`` is from smooth at the wrap.

    Quadratic least-squares fits to the last and the first ``k`` samples (a fifth of the
    series, at most ``WRAP_WINDOW``) give the value and slope at the wrap from either side.
    Their differences are divided by their typical size at interior points (the same two
    fits on either side of up to ``WRAP_POINTS`` points, where the series is continuous by
    construction: noise plus the fits' own error on this signal, measured robustly by the
    median absolute difference); the larger of the two ratios is returned.
    """
    rows, n = y2.shape
    y2 = np.ascontiguousarray(y2, dtype=np.float64)
    out = np.empty(rows)
    if x is not None:  # irregular x: each window's fits in x (:func:`wrap_plan_irregular`)
        lw, rw, lstart, rstart = wrap_plan_irregular(
            np.ascontiguousarray(x, dtype=np.float64).tobytes(), kind
        )
    else:
        left, right, lstart, rstart = wrap_plan(n, kind)
        lw, rw = left[None], right[None]  # one set of weights for every point
    run_rows(_sk.wrap_mismatch_rows, y2, out, lw, rw, lstart, rstart, _MAD_NORMAL)
    return out


@functools.lru_cache(maxsize=8)
def wrap_plan_irregular(xkey: bytes, kind: str) -> tuple[np.ndarray, ...]:
    """:func:`wrap_plan` on an irregular grid: the same windows, each with its own weights
    (1 + P, 2, k) for the value and slope (per unit of x) of a quadratic fit in x at the
    window's meeting point: the wrap (half a mean step past the last sample for "periodic",
    the first sample one period on for "closed"), then P interior points (the midpoint
    between the two windows, or their shared sample for "closed")."""
    x = np.frombuffer(xkey)
    n = x.shape[0]
    left, _, lstart, rstart = wrap_plan(n, kind)
    k = left.shape[1]  # the uniform plan's window length
    step = (x[-1] - x[0]) / (n - 1)
    period = _ls.period_of(x, kind)
    at = np.empty(lstart.shape[0])
    if kind == "closed":
        at[1:] = x[rstart[1:]]
        at[0] = x[-1]
    else:
        at[1:] = 0.5 * (x[lstart[1:] + k - 1] + x[rstart[1:]])
        at[0] = x[-1] + 0.5 * step
    idx = np.arange(k)
    xl = x[lstart[:, None] + idx] - at[:, None]
    xr = x[rstart[:, None] + idx] - at[:, None]
    xr[0] += period  # the first samples, one period on: next to the wrap point
    weights = []
    for u in (xl, xr):
        sc = np.max(np.abs(u), axis=1, keepdims=True)
        v = u / sc
        proj = np.linalg.pinv(np.stack([np.ones_like(v), v, v * v], axis=-1))  # (1 + P, 3, k)
        w = np.stack([proj[:, 0], proj[:, 1] / sc], axis=1)  # value, slope per unit x
        weights.append(np.ascontiguousarray(w))
    for a in weights:
        a.setflags(write=False)
    return weights[0], weights[1], lstart, rstart
