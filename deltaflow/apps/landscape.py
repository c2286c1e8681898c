"""Loss landscapes sampled on a grid: critical points and gradient-descent paths.

The gradient and Hessian come from :mod:`deltaflow.calculus` (any registered method per
dim); between grid nodes they are interpolated multilinearly. Critical points are found
in the cells where every gradient component changes sign, refined by Newton steps on the
interpolated fields, merged when closer than half a cell, and classified by the
eigenvalues of the Hessian there.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy.interpolate import NdBSpline, RegularGridInterpolator, make_interp_spline
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..calculus import gradient, hessian

__all__ = ["critical_points", "descent_path", "sample_function"]

KINDS = ("minimum", "maximum", "saddle", "degenerate")


def sample_function(func: Any, coords: Mapping[Hashable, Any], name: str = "f") -> xr.DataArray:
    """``func(*grids)`` on the grid spanned by ``coords`` (dim -> 1-D values), labelled."""
    dims = list(coords)
    axes = [np.asarray(coords[d], dtype=np.float64) for d in dims]
    grids = np.meshgrid(*axes, indexing="ij")
    return xr.DataArray(
        np.asarray(func(*grids)), dims=dims, coords=dict(zip(dims, axes, strict=True)), name=name
    )


def _interpolator(axes: list[np.ndarray], values: np.ndarray) -> Any:
    """Tensor-product cubic interpolating spline of values (n1, ..., nd, *trailing) on
    increasing axes, built one axis at a time (banded solves); multilinear where an axis
    has fewer than 4 samples. Called with points (m, d), returns (m, *trailing)."""
    if any(a.size < 4 for a in axes):
        return RegularGridInterpolator(axes, values)
    c = values
    knots = []
    for i, ax in enumerate(axes):
        spl = make_interp_spline(ax, np.moveaxis(c, i, 0), k=3, axis=0)
        c = np.moveaxis(spl.c, 0, i)
        knots.append(spl.t)
    return NdBSpline(tuple(knots), c, 3, extrapolate=True)


class _Field:
    """A landscape on a sorted grid with its gradient and Hessian, interpolable anywhere."""

    def __init__(
        self,
        da: xr.DataArray,
        dims: Sequence[Hashable],
        method: str,
        per_dim: Mapping[Hashable, Mapping[str, Any]] | None,
        params: dict[str, Any],
    ):
        if not isinstance(da, xr.DataArray):
            raise TypeError(f"expected an xarray.DataArray landscape, got {type(da).__name__}")
        dims = list(dims)
        for d in dims:
            if d not in da.dims:
                raise ValueError(
                    f"dims: {d!r} is not a dim of the landscape; its dims are {list(da.dims)}"
                )
        extra = [d for d in da.dims if d not in dims]
        if extra:
            raise ValueError(
                f"dims: the landscape has dims {extra} besides {dims}; select one landscape "
                "(e.g. da.isel(...)) or list every dim"
            )
        for d in dims:
            if d not in da.coords:
                da = da.assign_coords({d: np.arange(da.sizes[d], dtype=np.float64)})
            if da.sizes[d] < 3:
                raise ValueError(f"dims: {d!r} has {da.sizes[d]} samples; need at least 3")
        da = da.transpose(*dims).sortby(dims)
        if method == "finite_difference" and not per_dim:
            # flat directions (valley floors) need the gradient's error well below its size
            params = {"accuracy": 4, **params}
        self.dims = dims
        self.axes = [np.asarray(da[d].values, dtype=np.float64) for d in dims]
        self.spacing = np.array([(a[-1] - a[0]) / (a.size - 1) for a in self.axes])
        self.lo = np.array([a[0] for a in self.axes])
        self.hi = np.array([a[-1] for a in self.axes])
        g = gradient(da, dims, method=method, per_dim=per_dim, **params)
        h = hessian(da, dims, method=method, per_dim=per_dim, **params)
        self.f = np.asarray(da.values, dtype=np.float64)
        self.g = np.asarray(g.transpose(*dims, "component").values, dtype=np.float64)
        self.h = np.asarray(
            h.transpose(*dims, "component_i", "component_j").values, dtype=np.float64
        )
        if not (np.isfinite(self.f).all() and np.isfinite(self.g).all()):
            raise ValueError("the landscape has NaN or infinite values; fill or crop them first")
        self._fi = _interpolator(self.axes, self.f)
        self._gi = _interpolator(self.axes, self.g)
        self._hi = _interpolator(self.axes, self.h)

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lo, self.hi)

    def value(self, x: np.ndarray) -> np.ndarray:
        return self._fi(self.clip(x))

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self._gi(self.clip(x))

    def hess(self, x: np.ndarray) -> np.ndarray:
        h = self._hi(self.clip(x))
        return 0.5 * (h + np.swapaxes(h, -1, -2))

    def sign_change_cells(self) -> np.ndarray:
        """Lower-corner indices (c, d) of cells where every gradient component spans 0."""
        d = len(self.dims)
        ok = None
        for c in range(d):
            lo = hi = self.g[..., c]
            for ax in range(d):
                n = lo.shape[ax]
                a = [slice(None)] * d
                b = [slice(None)] * d
                a[ax] = slice(0, n - 1)
                b[ax] = slice(1, n)
                lo = np.minimum(lo[tuple(a)], lo[tuple(b)])
                hi = np.maximum(hi[tuple(a)], hi[tuple(b)])
            span = (lo <= 0) & (hi >= 0)
            ok = span if ok is None else ok & span
        return np.argwhere(ok)

    def cell_centres(self, cells: np.ndarray) -> np.ndarray:
        cols = [0.5 * (ax[cells[:, j]] + ax[cells[:, j] + 1]) for j, ax in enumerate(self.axes)]
        return np.stack(cols, axis=-1) if cols else np.empty((0, 0))


def _merge(points: np.ndarray, scale: np.ndarray, radius: float, score: np.ndarray) -> np.ndarray:
    """Indices of one representative (lowest score) per cluster of points closer than
    ``radius`` (in units of ``scale``)."""
    if points.shape[0] <= 1:
        return np.arange(points.shape[0])
    pairs = cKDTree(points / scale).query_pairs(radius, output_type="ndarray")
    n = points.shape[0]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    order = np.lexsort((score, label))
    first = np.ones(n, dtype=bool)
    first[1:] = label[order][1:] != label[order][:-1]
    return order[first]


def critical_points(
    da: xr.DataArray,
    dims: Sequence[Hashable],
    *,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    max_iter: int = 50,
    rtol: float = 1e-6,
    **params: Any,
) -> xr.Dataset:
    """Critical points of a landscape sampled on a grid, located and classified.

    Parameters
    ----------
    da : DataArray over exactly ``dims`` (a single landscape), coordinates monotonic.
    dims : the dims spanning the landscape.
    method, per_dim, **params : how the partial derivatives are estimated (see
        :mod:`deltaflow.calculus`); ``finite_difference`` defaults to ``accuracy=4`` here,
        as second-order errors move the critical points of narrow valleys (Rosenbrock
        on a 0.05 grid: (0.667, 0.444) instead of (1, 1)).
    max_iter : Newton iterations per candidate.
    rtol : Hessian eigenvalues within rtol * max |Hessian| of zero count as zero
        (``degenerate``); Newton stops when a step is below rtol cells.

    Returns
    -------
    Dataset over ``point`` (sorted by value): one variable per dim (the location),
    ``value`` (second-order Taylor estimate from the nearest node), ``kind`` (minimum,
    maximum, saddle or degenerate), ``eigenvalues`` (point, eigen), ``gradient_norm``
    (of the interpolated gradient at the location).
    """
    fld = _Field(da, dims, method, per_dim, params)
    dims = fld.dims
    nd = len(dims)
    cells = fld.sign_change_cells()
    x = fld.cell_centres(cells)
    active = np.ones(x.shape[0], dtype=bool)
    for _ in range(max_iter):
        if not active.any():
            break
        xa = x[active]
        step = np.einsum("cij,cj->ci", np.linalg.pinv(fld.hess(xa)), fld.grad(xa))
        new = fld.clip(xa - step)
        moved = np.max(np.abs(new - xa) / fld.spacing, axis=-1)
        x[active] = new
        idx = np.flatnonzero(active)
        active[idx[moved < rtol]] = False
    g = fld.grad(x) if x.size else np.empty((0, nd))
    gnorm = np.linalg.norm(g * fld.spacing, axis=-1)  # gradient in units of f per cell
    gscale = float(np.max(np.linalg.norm(fld.g * fld.spacing, axis=-1)))
    # accept converged points whose interpolated gradient vanishes (relative to the field)
    good = ~active & (gnorm <= max(gscale, np.finfo(float).tiny) * 1e3 * rtol)
    x, gnorm = x[good], gnorm[good]
    keep = _merge(x, fld.spacing, 0.5, gnorm)
    x, gnorm = x[keep], gnorm[keep]

    hx = fld.hess(x) if x.size else np.empty((0, nd, nd))
    eig = np.linalg.eigvalsh(hx) if x.size else np.empty((0, nd))
    hscale = float(np.max(np.abs(fld.h))) or 1.0
    tol = rtol * hscale
    pos = (eig > tol).all(axis=-1)
    neg = (eig < -tol).all(axis=-1)
    mixed = (eig > tol).any(axis=-1) & (eig < -tol).any(axis=-1)
    kind = np.where(pos, KINDS[0], np.where(neg, KINDS[1], np.where(mixed, KINDS[2], KINDS[3])))
    value = _taylor_value(fld, x)
    order = np.argsort(value, kind="stable")
    data: dict[Hashable, Any] = {d: ("point", x[order, j]) for j, d in enumerate(dims)}
    data.update(
        value=("point", value[order]),
        kind=("point", kind[order].astype(str)),
        eigenvalues=(("point", "eigen"), eig[order]),
        gradient_norm=("point", gnorm[order]),
    )
    out = xr.Dataset(data, coords={"point": np.arange(x.shape[0])})
    out.attrs = {
        "operation": "critical_points",
        "dims": ", ".join(map(str, dims)),
        "method": method,
    }
    return out


def _taylor_value(fld: _Field, x: np.ndarray) -> np.ndarray:
    """f at x from the nearest grid node: f + g.dx + dx.H.dx / 2."""
    if x.shape[0] == 0:
        return np.empty(0)
    idx = tuple(_nearest(ax, x[:, j]) for j, ax in enumerate(fld.axes))
    node = np.stack([ax[i] for ax, i in zip(fld.axes, idx, strict=True)], axis=-1)
    dx = x - node
    g = fld.g[idx]
    h = fld.h[idx]
    return fld.f[idx] + np.einsum("ci,ci->c", g, dx) + 0.5 * np.einsum("ci,cij,cj->c", dx, h, dx)


def _nearest(ax: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Index of the grid value nearest to each v on the increasing axis ax."""
    i = np.clip(np.searchsorted(ax, v), 1, ax.size - 1)
    return np.where(np.abs(ax[i - 1] - v) <= np.abs(ax[i] - v), i - 1, i)


def _starts(start: Any, dims: list[Hashable]) -> tuple[np.ndarray, bool]:
    """Start points as (n, d) and whether a single point was given."""
    if isinstance(start, Mapping):
        missing = [d for d in dims if d not in start]
        if missing:
            raise ValueError(f"start: missing coordinate(s) for dim(s) {missing}")
        arr = np.stack([np.atleast_1d(np.asarray(start[d], dtype=np.float64)) for d in dims], -1)
        single = all(np.ndim(start[d]) == 0 for d in dims)
    else:
        arr = np.array(start, dtype=np.float64)  # a copy: paths update it in place
        single = arr.ndim == 1
        arr = np.atleast_2d(arr)
    if arr.ndim != 2 or arr.shape[1] != len(dims):
        raise ValueError(
            f"start: expected {len(dims)} coordinates per start point (dims {dims}), got "
            f"shape {np.shape(start)}"
        )
    return arr, single


def descent_path(
    da: xr.DataArray,
    dims: Sequence[Hashable],
    start: Sequence[float] | Mapping[Hashable, Any] | np.ndarray,
    *,
    learning_rate: float | None = None,
    max_steps: int = 2000,
    gtol: float = 1e-6,
    method: str = "finite_difference",
    per_dim: Mapping[Hashable, Mapping[str, Any]] | None = None,
    **params: Any,
) -> xr.Dataset:
    """Gradient-descent trajectories on a sampled landscape from one or many start points.

    With ``learning_rate`` the update is plain gradient descent, x <- x - rate * grad f
    (in the coordinates' units). Without it the step adapts per path: it starts at one
    grid cell, grows by 10 % after a step that lowers f and halves (the step is retried)
    after one that does not; steps are taken in grid-cell units, so dims of very
    different units are treated alike. A path stops at the grid boundary (clipped), when
    |grad f| falls below ``gtol`` times its starting value, or when its step falls below
    1e-9 cells; a step that would leave the grid is clipped to its boundary.

    Returns a Dataset over ``step`` (and ``start`` when several start points are given):
    one variable per dim (the position), ``value`` and ``gradient_norm`` along the path;
    ``n_steps`` and ``converged`` per path. A stopped path repeats its last position.
    """
    fld = _Field(da, dims, method, per_dim, params)
    dims = fld.dims
    x, single = _starts(start, dims)
    for j, d in enumerate(dims):
        out = (x[:, j] < fld.lo[j]) | (x[:, j] > fld.hi[j])
        if out.any():
            raise ValueError(
                f"start: {d}={float(x[out, j][0])} lies outside the grid [{fld.lo[j]}, {fld.hi[j]}]"
            )
    if learning_rate is not None and not learning_rate > 0:
        raise ValueError(f"learning_rate: must be positive, got {learning_rate!r}")
    n = x.shape[0]
    h = fld.spacing
    g = fld.grad(x)
    f = fld.value(x)
    g0 = np.linalg.norm(g * h, axis=-1)
    rate = 1.0 / np.maximum(g0, np.finfo(float).tiny)  # one cell on the first step
    running = g0 > 0
    converged = ~running.copy()
    steps = np.zeros(n, dtype=np.int64)
    path = [x.copy()]
    vals = [f.copy()]
    norms = [g0.copy()]
    for _ in range(max_steps):
        if not running.any():
            break
        r = np.flatnonzero(running)
        if learning_rate is not None:
            new = fld.clip(x[r] - learning_rate * g[r])
            accept = np.ones(r.size, dtype=bool)
        else:
            new = fld.clip(x[r] - (rate[r, None] * g[r] * h) * h)  # a step in cell units
            fnew = fld.value(new)
            accept = fnew < f[r]
            rate[r] = np.where(accept, rate[r] * 1.1, rate[r] * 0.5)
        moved = r[accept]
        x[moved] = new[accept]
        g[moved] = fld.grad(x[moved])
        f[moved] = fld.value(x[moved])
        steps[moved] += 1
        gn = np.linalg.norm(g * h, axis=-1)
        done_g = gn <= gtol * g0
        if learning_rate is None:
            stuck = rate * gn < 1e-9  # the step shrank to nothing: no lower point nearby
        else:  # projected descent pinned at the boundary
            stuck = np.zeros(n, dtype=bool)
            stuck[r] = np.max(np.abs(new - path[-1][r]) / h, axis=-1) < 1e-9
        converged |= running & done_g
        running &= ~(done_g | stuck)
        path.append(x.copy())
        vals.append(f.copy())
        norms.append(gn)
    pos = np.stack(path, axis=1)  # (n, steps + 1, d)
    data: dict[Hashable, Any] = {d: (("start", "step"), pos[..., j]) for j, d in enumerate(dims)}
    data["value"] = (("start", "step"), np.stack(vals, axis=1))
    data["gradient_norm"] = (("start", "step"), np.stack(norms, axis=1))
    data["n_steps"] = ("start", steps)
    data["converged"] = ("start", converged)
    out = xr.Dataset(data, coords={"step": np.arange(pos.shape[1])})
    if single:
        out = out.isel(start=0)
    out.attrs = {
        "operation": "descent_path",
        "dims": ", ".join(map(str, dims)),
        "learning_rate": "adaptive" if learning_rate is None else float(learning_rate),
    }
    return out
