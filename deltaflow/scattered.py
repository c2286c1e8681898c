"""Derivatives of scattered samples: moving least squares with a KD-tree.

For data not on a grid (model predictions at random feature vectors, irregular
measurements), :func:`fit_local` fits a weighted polynomial of degree 1 or 2 to the k
nearest samples of every query point and reads the value, gradient and (degree 2) Hessian
off its coefficients. Query points are processed in blocks; inside a block all fits are
one stacked SVD solve (no Python loop over points).

Neighbours are found, and the fits are set up, in standardized coordinates (each feature
divided by its standard deviation over the samples, ``scale="std"``) so that features of
very different units get comparable reach; derivatives are returned in the original units.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

__all__ = ["choose_neighbours", "fit_local", "n_coefficients", "neighbour_candidates"]

FEATURE = "feature"
FEATURE_2 = "feature_2"
QUERY = "point"
# design-matrix entries (block x k x p) solved together: bounds each block to ~32 MB
BLOCK_ENTRIES = 1 << 22
# largest k that neighbours="auto" tries (beyond it a local fit is hardly local)
MAX_AUTO_NEIGHBOURS = 1000


def n_coefficients(n_features: int, degree: int) -> int:
    """Number of polynomial coefficients of a full polynomial of ``degree`` (1 or 2)."""
    p = 1 + n_features
    if degree == 2:
        p += n_features * (n_features + 1) // 2
    return p


def neighbour_candidates(n_samples: int, n_features: int, degree: int) -> np.ndarray:
    """The k tried by ``neighbours="auto"``: about 6 values spaced geometrically from
    3x the coefficient count (at least 20) to all samples or MAX_AUTO_NEIGHBOURS."""
    p = n_coefficients(n_features, degree)
    hi = min(n_samples, max(MAX_AUTO_NEIGHBOURS, 3 * p))
    lo = min(hi, max(3 * p, 20))
    ks = np.unique(np.geomspace(lo, hi, 6).round().astype(np.int64))
    return ks[ks >= p]


def _as_points(points: Any, name: str) -> tuple[np.ndarray, list[Hashable] | None]:
    """(m, d) float64 array and feature labels (from a DataFrame or a 2-D DataArray)."""
    labels = None
    if hasattr(points, "columns") and hasattr(points, "to_numpy"):  # pandas DataFrame
        labels = list(points.columns)
        arr = points.to_numpy()
    elif isinstance(points, xr.DataArray):
        if points.ndim == 2:
            fdim = points.dims[-1]
            labels = list(points[fdim].values) if fdim in points.coords else None
        arr = points.values
    elif isinstance(points, xr.Dataset):
        labels = list(points.data_vars)
        arr = np.stack([np.asarray(points[v].values).ravel() for v in labels], axis=-1)
    else:
        arr = np.asarray(points)
    if arr.dtype.kind not in "iufb":
        raise TypeError(f"{name}: must be numeric, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected shape (n_points, n_features), got {arr.shape}")
    return arr, labels


def _design(u: np.ndarray, degree: int) -> np.ndarray:
    """Polynomial design matrix of offsets u (..., k, d): columns 1, u_i, [u_i u_j, i <= j]."""
    cols = [np.ones(u.shape[:-1] + (1,)), u]
    if degree == 2:
        iu, ju = np.triu_indices(u.shape[-1])
        cols.append(u[..., iu] * u[..., ju])
    return np.concatenate(cols, axis=-1)


def _weights(dist: np.ndarray, kernel: str) -> np.ndarray:
    """Kernel weights of neighbour distances (q, k), scaled by the k-th distance."""
    radius = dist[:, -1:] * 1.0001
    radius = np.where(radius > 0, radius, 1.0)
    r = dist / radius
    if kernel == "tricube":
        return (1.0 - r**3) ** 3
    if kernel == "gaussian":
        return np.exp(-0.5 * (2.0 * r) ** 2)
    return np.ones_like(r)


def _solve_block(
    pts: np.ndarray,
    vals: np.ndarray,
    tree: cKDTree,
    at: np.ndarray,
    k: int,
    degree: int,
    kernel: str,
    rcond: float,
    skip_first: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients (q, p, r) in radius-scaled offsets, the radii (q,) and ranks (q,).

    ``skip_first`` drops each query's nearest sample (itself, for leave-one-out fits).
    """
    dist, idx = tree.query(at, k=k + int(skip_first))
    dist, idx = dist.reshape(len(at), -1), idx.reshape(len(at), -1)
    if skip_first:
        dist, idx = dist[:, 1:], idx[:, 1:]
    radius = np.where(dist[:, -1] > 0, dist[:, -1], 1.0)
    u = (pts[idx] - at[:, None, :]) / radius[:, None, None]  # (q, k, d), |u| <= 1
    sw = np.sqrt(_weights(dist, kernel))[..., None]  # (q, k, 1)
    a = _design(u, degree) * sw  # (q, k, p)
    b = vals[idx] * sw  # (q, k, r)
    # normal equations, solved by a stacked symmetric eigendecomposition (a pseudo-inverse
    # that tolerates rank-deficient neighbourhoods); |u| <= 1 keeps them well scaled
    at_ = np.swapaxes(a, -1, -2)
    lam, vec = np.linalg.eigh(np.matmul(at_, a))  # (q, p), (q, p, p)
    keep = lam > rcond * lam[:, -1:]
    inv = np.where(keep, 1.0 / np.where(keep, lam, 1.0), 0.0)
    rhs = np.matmul(np.swapaxes(vec, -1, -2), np.matmul(at_, b)) * inv[..., None]
    coef = np.matmul(vec, rhs)  # (q, p, r)
    return coef, radius, keep.sum(axis=-1)


# sample points used to score each candidate k by leave-one-out error
LOO_POINTS = 200


def _fit_blocks(
    zs: np.ndarray,
    vals: np.ndarray,
    tree: cKDTree,
    zq: np.ndarray,
    k: int,
    degree: int,
    kernel: str,
    rcond: float,
    skip_first: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Value (q, r), gradient (q, d, r), Hessian (q, d, d, r) or None, rank (q,) at the
    query points zq, in the units of the (scaled) sample coordinates zs."""
    q, d = zq.shape
    r = vals.shape[1]
    p = n_coefficients(d, degree)
    block = max(1, BLOCK_ENTRIES // (k * p))
    value = np.empty((q, r))
    grad = np.empty((q, d, r))
    hess = np.empty((q, d, d, r)) if degree == 2 else None
    rank = np.empty(q, dtype=np.int64)
    iu, ju = np.triu_indices(d)
    diag = np.arange(d)
    for lo in range(0, q, block):
        hi = min(lo + block, q)
        coef, radius, rk = _solve_block(
            zs, vals, tree, zq[lo:hi], k, degree, kernel, rcond, skip_first
        )
        value[lo:hi] = coef[:, 0]
        # the fit used offsets u = (z - z0) / radius
        grad[lo:hi] = coef[:, 1 : 1 + d] / radius[:, None, None]
        if hess is not None:
            c2 = coef[:, 1 + d :]  # (b, n_pairs, r)
            h = np.zeros((hi - lo, d, d, r))
            h[:, iu, ju] = c2
            h[:, ju, iu] = c2
            h[:, diag, diag] *= 2.0  # the u_i^2 coefficient is H_ii / 2
            hess[lo:hi] = h / (radius**2)[:, None, None, None]
        rank[lo:hi] = rk
    return value, grad, hess, rank


def choose_neighbours(
    zs: np.ndarray,
    vals: np.ndarray,
    tree: cKDTree,
    degree: int,
    kernel: str,
    rcond: float,
) -> tuple[int, np.ndarray, np.ndarray]:
    """k by leave-one-out squared error of the fitted value, with the one-standard-error
    rule (the largest k within one standard error of the smallest error).

    Scored on up to LOO_POINTS samples spread over the sample order; returns (k, the
    candidate ks, their mean squared errors). Noisy near-linear data picks a large k
    (noise averages out), strongly curved data a small one (less bias).
    """
    m, d = zs.shape
    ks = neighbour_candidates(m - 1, d, degree)
    if ks.size == 0:
        raise ValueError(
            f"neighbours: {m} samples are too few for a degree-{degree} fit in {d} features "
            f"(needs more than {n_coefficients(d, degree)})"
        )
    sub = np.unique(np.linspace(0, m - 1, min(m, LOO_POINTS)).astype(np.int64))
    scores = np.empty(ks.size)
    errors = np.empty(ks.size)
    for j, k in enumerate(ks):
        fitted = _fit_blocks(zs, vals, tree, zs[sub], int(k), degree, kernel, rcond, True)
        sq = np.mean((fitted[0] - vals[sub]) ** 2, axis=-1)
        scores[j] = sq.mean()
        errors[j] = sq.std() / np.sqrt(sq.size)
    # one-standard-error rule: the largest k whose score is within one standard error of
    # the best (the smoothest fit the data cannot tell apart from the best one)
    low = int(np.argmin(scores))
    best = int(np.flatnonzero(scores <= scores[low] + errors[low])[-1])
    return int(ks[best]), ks, scores


def fit_local(
    points: Any,
    values: Any,
    at: Any = None,
    degree: Literal[1, 2] = 2,
    *,
    neighbours: int | Literal["auto"] = "auto",
    kernel: Literal["tricube", "gaussian", "uniform"] = "tricube",
    scale: Literal["std"] | Sequence[float] | None = "std",
    features: Sequence[Hashable] | None = None,
    rcond: float = 1e-12,
) -> xr.Dataset:
    """Value, gradient and Hessian of scattered samples at query points (moving least squares).

    Parameters
    ----------
    points : array (m, d), DataFrame, 2-D DataArray (sample, feature) or Dataset of features
        Sample locations.
    values : array (m,) or (m, r)
        Sample values (r outputs fitted at once share the neighbours).
    at : array (q, d) or (d,), optional
        Query points; None means the sample points themselves.
    degree : 1 or 2
        Local polynomial degree; 2 also gives the Hessian (and removes the curvature bias
        from the gradient).
    neighbours : int or "auto"
        k nearest samples per fit; "auto" picks one k for all query points among
        :func:`neighbour_candidates` by leave-one-out error (see
        :func:`choose_neighbours`).
    kernel : "tricube", "gaussian" or "uniform"
        Weights of the neighbours by distance relative to the k-th neighbour.
    scale : "std", per-feature scales, or None
        Units in which distances are measured (see module docs).
    features : labels for the feature dim (default: DataFrame columns, DataArray labels,
        or 0..d-1).

    Returns
    -------
    Dataset with dims ``point`` (q), ``feature`` (d) [and ``feature_2`` (d)], ``output`` (r,
    only when values is 2-D): ``value``, ``gradient`` (units of values per unit of feature),
    ``hessian`` (degree 2), ``fit_rank`` (rank of each local fit; below the coefficient count
    means the neighbours did not determine every coefficient).
    """
    pts, labels = _as_points(points, "points")
    m, d = pts.shape
    vals = np.asarray(values.values if isinstance(values, xr.DataArray) else values)
    if vals.dtype.kind not in "iufb":
        raise TypeError(f"values: must be numeric, got dtype {vals.dtype}")
    vals = vals.astype(np.float64)
    multi = vals.ndim == 2
    if vals.ndim == 1:
        vals = vals[:, None]
    if vals.ndim != 2 or vals.shape[0] != m:
        raise ValueError(
            f"values: expected shape ({m},) or ({m}, r) to match {m} points, got {vals.shape}"
        )
    if degree not in (1, 2):
        raise ValueError(f"degree: must be 1 or 2, got {degree!r}")
    if kernel not in ("tricube", "gaussian", "uniform"):
        raise ValueError(f"kernel: must be 'tricube', 'gaussian' or 'uniform', got {kernel!r}")
    bad = ~np.isfinite(pts).all(axis=1) | ~np.isfinite(vals).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"points/values: {int(bad.sum())} sample(s) have NaN or infinite entries, first at "
            f"sample {first}; drop them before fitting"
        )
    p = n_coefficients(d, degree)
    if isinstance(neighbours, str):
        if neighbours != "auto":
            raise ValueError(f"neighbours: must be 'auto' or an integer, got {neighbours!r}")
    elif not p <= int(neighbours) <= m:
        raise ValueError(
            f"neighbours: must be in {p}..{m} (at least the {p} coefficients of a degree-"
            f"{degree} fit in {d} features, at most the {m} samples), got {neighbours}"
        )
    if scale is None:
        s = np.ones(d)
    elif isinstance(scale, str):
        if scale != "std":
            raise ValueError(f"scale: must be 'std', a sequence of {d} scales or None")
        s = pts.std(axis=0)
        s = np.where(s > 0, s, 1.0)
    else:
        s = np.asarray(scale, dtype=np.float64).ravel()
        if s.shape != (d,) or not np.all(s > 0):
            raise ValueError(f"scale: expected {d} positive scales, got {scale!r}")
    if at is None:
        q_pts = pts
    else:
        q_pts, _ = _as_points(at, "at")
        if q_pts.shape[1] != d and q_pts.shape[0] == d and q_pts.shape[1] == 1:
            q_pts = q_pts.T  # a single point given as (d,)
        if q_pts.shape[1] != d:
            raise ValueError(f"at: expected {d} coordinates per point, got shape {q_pts.shape}")
        if not np.isfinite(q_pts).all():
            raise ValueError("at: query points must be finite")
    if features is not None:
        labels = list(features)
        if len(labels) != d:
            raise ValueError(f"features: expected {d} labels, got {len(labels)}")
    if labels is None:
        labels = list(range(d))

    zs = pts / s
    zq = q_pts / s
    tree = cKDTree(zs)
    if neighbours == "auto":
        k, _, _ = choose_neighbours(zs, vals, tree, degree, kernel, rcond)
    else:
        k = int(neighbours)
    value, grad, hess, rank = _fit_blocks(zs, vals, tree, zq, k, degree, kernel, rcond)
    grad = grad / s[None, :, None]
    if hess is not None:
        hess = hess / (s[None, :, None, None] * s[None, None, :, None])

    coords = {FEATURE: labels}
    out_dims: tuple[str, ...] = ("output",) if multi else ()

    def _lab(a: np.ndarray, dims: tuple[str, ...]) -> xr.DataArray:
        if not multi:
            a = a[..., 0]
        return xr.DataArray(a, dims=dims + out_dims)

    data = {
        "value": _lab(value, (QUERY,)),
        "gradient": _lab(grad, (QUERY, FEATURE)),
        "fit_rank": xr.DataArray(rank, dims=(QUERY,)),
    }
    if hess is not None:
        data["hessian"] = _lab(hess, (QUERY, FEATURE, FEATURE_2))
        coords[FEATURE_2] = labels
    ds = xr.Dataset(data, coords=coords)
    for j, lab in enumerate(labels):
        ds.coords[f"at_{lab}"] = (QUERY, q_pts[:, j])
    ds.attrs = {
        "operation": "fit_local",
        "degree": degree,
        "neighbours": k,
        "kernel": kernel,
        "coefficients": p,
    }
    return ds
