"""Equation discovery: sparse regression of estimated derivatives on candidate terms (SINDy).

For each independent system (every combination of the batch dims, e.g. thousands of
sensors or experiments), the time derivatives of the state variables, estimated by any
registered method, are regressed on a library of candidate terms — polynomials of the
variables and named functions of them — by sequentially thresholded least squares
(STLSQ). All systems are solved at once: the normal equations of every system are stacked
into one (systems, terms, terms) batch, so there is no Python loop over systems.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..engine import differentiate, smooth

__all__ = ["FUNCTIONS", "Library", "discover", "equations", "simulate"]

# named functions users may put in the library (no code from configs: names only)
FUNCTIONS: dict[str, Any] = {
    "sin": np.sin,
    "cos": np.cos,
    "exp": np.exp,
    "tanh": np.tanh,
    "abs": np.abs,
    "square": np.square,
}


@dataclass(frozen=True)
class Library:
    """Candidate terms: monomials of the variables up to ``degree`` and named functions."""

    variables: tuple[str, ...]
    degree: int = 2
    functions: tuple[str, ...] = ()
    constant: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.degree <= 5:
            raise ValueError(f"degree must be in 1..5, got {self.degree}")
        unknown = [f for f in self.functions if f not in FUNCTIONS]
        if unknown:
            raise ValueError(
                f"functions: unknown {unknown[0]!r}; allowed: {', '.join(sorted(FUNCTIONS))}"
            )

    @property
    def powers(self) -> list[tuple[int, ...]]:
        """Exponent tuples of the monomials, constant first, by total degree."""
        k = len(self.variables)
        out = [(0,) * k] if self.constant else []
        for deg in range(1, self.degree + 1):
            for combo in itertools.combinations_with_replacement(range(k), deg):
                p = [0] * k
                for i in combo:
                    p[i] += 1
                out.append(tuple(p))
        return out

    @property
    def names(self) -> list[str]:
        """Readable term names: '1', 'x', 'x*y', 'x^2', 'sin(x)'."""
        names = []
        for p in self.powers:
            parts = [
                v if e == 1 else f"{v}^{e}" for v, e in zip(self.variables, p, strict=True) if e
            ]
            names.append("*".join(parts) if parts else "1")
        names += [f"{f}({v})" for f in self.functions for v in self.variables]
        return names

    def evaluate(self, states: np.ndarray) -> np.ndarray:
        """Terms for states of shape (..., n, k): returns (..., n, terms)."""
        cols = []
        for p in self.powers:
            col = np.ones(states.shape[:-1])
            for i, e in enumerate(p):
                if e:
                    col = col * states[..., i] ** e
            cols.append(col)
        for f in self.functions:
            for i in range(states.shape[-1]):
                cols.append(FUNCTIONS[f](states[..., i]))
        return np.stack(cols, axis=-1)


def stlsq(
    theta: np.ndarray, target: np.ndarray, threshold: float, ridge: float = 1e-6, iters: int = 10
) -> np.ndarray:
    """Sequentially thresholded least squares for a batch of systems.

    theta (s, n, p) terms, target (s, n, q) derivatives -> coefficients (s, p, q).
    Columns are scaled to unit RMS before the regression (so the threshold, in the
    coefficients' own units, is applied after scaling back); a small ridge keeps the
    masked normal equations well posed.
    """
    s, n, p = theta.shape
    q = target.shape[-1]
    scale = np.sqrt(np.mean(theta**2, axis=1))  # (s, p)
    scale = np.where(scale > 0, scale, 1.0)
    a = theta / scale[:, None, :]
    gram = np.einsum("snp,snr->spr", a, a) / n
    rhs = np.einsum("snp,snq->spq", a, target) / n
    eye = np.eye(p)
    active = np.ones((s, q, p), dtype=bool)
    coef = np.zeros((s, p, q))
    for _ in range(iters):
        # per (system, equation): solve on the active terms; inactive rows become identity
        m = active[:, :, :, None] & active[:, :, None, :]  # (s, q, p, p)
        g = np.where(m, gram[:, None], 0.0) + ridge * eye
        g = g + np.where(active[:, :, :, None], 0.0, eye)  # unit diagonal where inactive
        b = np.where(active, np.moveaxis(rhs, 2, 1), 0.0)  # (s, q, p)
        w = np.linalg.solve(g, b[..., None])[..., 0]  # (s, q, p)
        c = w / scale[:, None, :]
        new_active = active & (np.abs(c) >= threshold)
        c = np.where(new_active, c, 0.0)
        coef = np.moveaxis(c, 1, 2)
        if np.array_equal(new_active, active):
            break
        active = new_active
    return coef


def discover(
    ds: xr.Dataset,
    dim: Hashable,
    variables: Sequence[str] | None = None,
    *,
    degree: int = 2,
    functions: Sequence[str] = (),
    threshold: float = 0.1,
    method: str = "savgol",
    use_smoothed: bool = True,
    trim: float = 0.05,
    **params: Any,
) -> xr.Dataset:
    """Discover d(state)/d(dim) = Theta(state) @ coefficients for every independent system.

    Parameters
    ----------
    ds : Dataset
        State variables along ``dim`` (time); every other dim is a batch of independent
        systems (each gets its own coefficients).
    variables : list of str, optional
        The state variables (default: every numeric variable with ``dim``).
    degree, functions
        The library: monomials up to ``degree`` and named functions
        (:data:`FUNCTIONS`) of each variable.
    threshold : float
        Coefficients smaller in magnitude are set to zero (units of the coefficients).
    method, **params
        How the derivatives (and, with ``use_smoothed``, the states in the library) are
        estimated: any registered method; smoothing methods make noisy data usable.
    trim : float
        Fraction of samples dropped at each end (derivative estimates are worst there).

    Returns
    -------
    Dataset with ``coefficients`` (batch dims..., ``equation``, ``term``), ``rmse`` of
    the fitted derivatives per equation, and attrs with the library; ``equations(result)``
    prints them.
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds must be an xarray.Dataset, got {type(ds).__name__}")
    if dim not in ds.dims:
        raise ValueError(f"dim {dim!r} not found; dims are {list(map(str, ds.dims))}")
    names = (
        list(variables)
        if variables is not None
        else [str(k) for k, v in ds.data_vars.items() if dim in v.dims and v.dtype.kind in "fiu"]
    )
    if not names:
        raise ValueError(f"no numeric variable with dim {dim!r} to discover equations for")
    for v in names:
        if v not in ds.data_vars:
            raise ValueError(f"variables: {v!r} is not a variable; have {list(ds.data_vars)}")
        if dim not in ds[v].dims:
            raise ValueError(f"variables: {v!r} has no dim {dim!r}")
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    lib = Library(tuple(names), degree=degree, functions=tuple(functions))
    states = ds[names]
    deriv = differentiate(states, dim, method=method, order=1, **params)
    if use_smoothed and _has_smoothed(method):
        states = smooth(states, dim, method=method, **params)
    batch = [d for d in ds[names[0]].dims if d != dim]
    x = np.stack([states[v].transpose(*batch, dim).values for v in names], axis=-1)
    y = np.stack([deriv[v].transpose(*batch, dim).values for v in names], axis=-1)
    n = x.shape[-2]
    cut = int(trim * n)
    sl = slice(cut, n - cut if cut else None)
    x, y = x[..., sl, :], y[..., sl, :]
    shape = x.shape[:-2]
    x2 = x.reshape(-1, x.shape[-2], x.shape[-1])
    y2 = y.reshape(-1, y.shape[-2], y.shape[-1])
    theta = lib.evaluate(x2)
    coef = stlsq(theta, y2, threshold)
    fit = np.einsum("snp,spq->snq", theta, coef)
    rmse = np.sqrt(np.mean((fit - y2) ** 2, axis=1))  # (s, q)
    coords = {d: ds[d] for d in batch if d in ds.coords}
    out = xr.Dataset(
        {
            "coefficients": (
                (*batch, "equation", "term"),
                np.moveaxis(coef, 1, 2).reshape(*shape, len(names), len(lib.names)),
            ),
            "rmse": ((*batch, "equation"), rmse.reshape(*shape, len(names))),
        },
        coords={**coords, "equation": [f"d{v}/d{dim}" for v in names], "term": lib.names},
    )
    out.attrs.update(
        deltaflow_degree=degree,
        deltaflow_functions=list(functions),
        deltaflow_threshold=threshold,
        deltaflow_method=method,
        deltaflow_dim=str(dim),
        deltaflow_variables=names,
    )
    return out


def _has_smoothed(method: str) -> bool:
    from ..kernels import get_method

    return get_method(method).has_smoothed


def equations(result: xr.Dataset, precision: int = 3) -> list[str]:
    """Readable equations of one system (select batch dims first): 'dx/dt = -1.0 x'."""
    coef = result["coefficients"]
    if coef.ndim != 2:
        raise ValueError("select one system first (e.g. result.isel(system=0))")
    lines = []
    for i, eq in enumerate(coef["equation"].values):
        terms = [
            f"{c:+.{precision}g} {t}" if t != "1" else f"{c:+.{precision}g}"
            for c, t in zip(coef.values[i], coef["term"].values, strict=True)
            if c != 0
        ]
        lines.append(f"{eq} = " + (" ".join(terms) if terms else "0"))
    return lines


def simulate(result: xr.Dataset, initial: Sequence[float], times: np.ndarray) -> np.ndarray:
    """Integrate one discovered system from ``initial`` over ``times``: (len(times), k)."""
    from scipy.integrate import solve_ivp

    coef = np.asarray(result["coefficients"].values)
    if coef.ndim != 2:
        raise ValueError("select one system first (e.g. result.isel(system=0))")
    variables = tuple(result.attrs["deltaflow_variables"])
    lib = Library(
        variables,
        degree=int(result.attrs["deltaflow_degree"]),
        functions=tuple(result.attrs["deltaflow_functions"]),
    )

    def rhs(_t: float, s: np.ndarray) -> np.ndarray:
        return lib.evaluate(s[None, None, :])[0, 0] @ coef.T

    sol = solve_ivp(
        rhs, (times[0], times[-1]), np.asarray(initial, float), t_eval=times, rtol=1e-9, atol=1e-9
    )
    return sol.y.T
