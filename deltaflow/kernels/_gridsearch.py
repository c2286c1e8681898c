"""Choosing one smoothing parameter per series on a log grid, coarse to fine, for a batch.

Used by ``spline`` (GCV) and ``kalman`` (maximum likelihood): every evaluation of a grid
value is one call for all the series that need it (one set of gains for all of them), so
the search asks for as few distinct values as it can. The result is rounded to a fixed
resolution, so that a series gets the same value alone or in any batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def grid_search(
    lg: np.ndarray,
    rows: int,
    evaluate: Callable[[float, np.ndarray], tuple[np.ndarray, np.ndarray]],
    resolution: float,
    fine: int = 4,
    climb: bool = False,
    bound: Callable[[int, np.ndarray], np.ndarray] | None = None,
    evaluate_many: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the log10 value on grid ``lg`` that maximises a score, coarse to fine.

    ``evaluate(log10_value, rows_idx)`` returns (score, aux) for those rows; one call serves
    every row that needs the value (one set of gains for all of them). All rows are scored
    on the coarse grid; around each row's best, the values between it and its neighbours
    at 1/``fine`` of the step are scored for the rows that need them; a parabola through the
    best fine point and its neighbours refines it. The result is rounded to ``resolution``
    decades so that a series gets the same value alone or in any batch. Returns the chosen
    log10 values (rows,) and ``aux`` at the evaluated point nearest to each.

    ``climb=True`` scores fewer fine points: each row steps from its coarse best, one fine
    point at a time, towards the higher neighbour until both neighbours score lower. Where
    the scores between the coarse neighbours rise to one peak and fall, that is the point
    the full fine stage finds, refined by the same parabola from the same scores (about
    2.5 fine scores per row instead of 2 * fine - 2).

    ``bound(i, low)``: where ``aux`` never decreases along the grid, an upper bound of the
    rows' scores at ``lg[i]`` given ``low``, a lower bound of their ``aux`` there. The
    coarse grid is then scored in increasing order and a row skips a value whose bound
    (from the largest ``aux`` it has below) is under its best score so far: that value
    cannot be its best, so the coarse best is the same; the best's neighbours are always
    scored (the fine stage uses them).

    ``evaluate_many(values, rows_idx)``: (scores, aux), each (len(values), len(rows_idx)),
    what ``evaluate`` gives for each value, in one call: the coarse grid (without
    ``bound``) is scored by it, and the fine points (without ``climb``) once per group of
    rows sharing a coarse best, so that a caller reads its rows once for all their values.
    """
    g = lg.shape[0]
    every = np.arange(rows)
    if bound is None and evaluate_many is not None:
        coarse, coarse_aux = evaluate_many(lg, every)
    elif bound is None:
        coarse = np.empty((g, rows))
        coarse_aux = np.empty((g, rows))
        for i, v in enumerate(lg):
            coarse[i], coarse_aux[i] = evaluate(float(v), every)
    else:
        coarse, coarse_aux = _pruned_coarse(lg, rows, evaluate, bound)
    best = np.argmax(coarse, axis=0)
    width = 2 * fine + 1
    local = np.full((width, rows), -np.inf)
    local_aux = np.full((width, rows), np.nan)
    for k in (-1, 0, 1):
        src = best + k
        ok = (src >= 0) & (src < g)
        local[fine * (k + 1), ok] = coarse[src[ok], every[ok]]
        local_aux[fine * (k + 1), ok] = coarse_aux[src[ok], every[ok]]
    step = lg[1] - lg[0] if g > 1 else 1.0
    centre = best * fine  # row's best in fine-index units
    if climb:
        _climb_fine(lg, evaluate, fine, centre, local, local_aux)
        return _parabola(lg, best, local, local_aux, resolution, fine)
    if evaluate_many is not None:  # rows sharing a coarse best share their fine points
        offsets = np.array([k for k in range(-(fine - 1), fine) if k != 0])
        for c in np.unique(centre):
            sel = np.flatnonzero(centre == c)
            f_idx = c + offsets
            values = lg[0] + f_idx * step / fine
            keep = (values >= lg[0]) & (values <= lg[-1])
            score, aux = evaluate_many(values[keep], sel)
            slot = (f_idx[keep] - c + fine)[:, None]
            local[slot, sel[None, :]] = score
            local_aux[slot, sel[None, :]] = aux
        return _parabola(lg, best, local, local_aux, resolution, fine)
    need = [(centre + k, k) for k in range(-(fine - 1), fine) if k != 0]
    targets = np.unique(np.concatenate([c for c, _ in need]))
    for f_idx in targets:
        value = lg[0] + f_idx * step / fine
        if value < lg[0] or value > lg[-1]:
            continue
        sel = np.flatnonzero((np.abs(f_idx - centre) < fine) & (f_idx != centre))
        score, aux = evaluate(float(value), sel)
        slot = f_idx - centre[sel] + fine
        local[slot, sel] = score
        local_aux[slot, sel] = aux
    return _parabola(lg, best, local, local_aux, resolution, fine)


def _pruned_coarse(
    lg: np.ndarray,
    rows: int,
    evaluate: Callable[[float, np.ndarray], tuple[np.ndarray, np.ndarray]],
    bound: Callable[[int, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """The coarse stage of :func:`grid_search` with ``bound``: (g, rows) scores and aux,
    -inf / NaN where a value was skipped."""
    g = lg.shape[0]
    every = np.arange(rows)
    coarse = np.full((g, rows), -np.inf)
    coarse_aux = np.full((g, rows), np.nan)
    done = np.zeros((g, rows), dtype=bool)
    top = np.full(rows, -np.inf)  # best score so far
    low = np.zeros(rows)  # largest aux so far: a lower bound of aux further up the grid
    exact = np.ones(rows, dtype=bool)  # rows whose scores and aux stayed finite
    for i, v in enumerate(lg):
        # skip only by a clear margin (rounding of the scores is far below it)
        skip = exact & (bound(i, low) < top - 1e-6)
        sel = every[~skip]
        if sel.size:
            score, aux = evaluate(float(v), sel)
            coarse[i, sel], coarse_aux[i, sel] = score, aux
            done[i, sel] = True
            exact[sel] &= np.isfinite(score) & np.isfinite(aux)
            top[sel] = np.fmax(top[sel], score)
            low[sel] = np.fmax(low[sel], aux)
    best = np.argmax(coarse, axis=0)
    for k in (-1, 1):  # the fine stage reads the best's neighbours
        nb = best + k
        ok = (nb >= 0) & (nb < g)
        ok[ok] = ~done[nb[ok], every[ok]]
        for i in np.unique(nb[ok]):
            sel = every[ok & (nb == i)]
            coarse[i, sel], coarse_aux[i, sel] = evaluate(float(lg[i]), sel)
    return coarse, coarse_aux


def _parabola(
    lg: np.ndarray,
    best: np.ndarray,
    local: np.ndarray,
    local_aux: np.ndarray,
    resolution: float,
    fine: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The fine stage's answer: a parabola through the best of the 2*fine+1 local scores
    (rows as columns, -inf where not scored) and its neighbours, rounded to resolution."""
    width, rows = local.shape
    every = np.arange(rows)
    g = lg.shape[0]
    step = lg[1] - lg[0] if g > 1 else 1.0
    idx = np.argmax(local, axis=0)
    inner = np.clip(idx, 1, width - 2)
    s0, s1, s2 = local[inner - 1, every], local[inner, every], local[inner + 1, every]
    with np.errstate(divide="ignore", invalid="ignore"):
        curv = s0 - 2.0 * s1 + s2
        shift = np.where(np.isfinite(curv) & (curv < 0), 0.5 * (s0 - s2) / curv, 0.0)
    shift = np.clip(np.nan_to_num(shift), -1.0, 1.0)
    at = np.where(idx == inner, inner + shift, idx)
    chosen = lg[best] + (at - fine) * step / fine
    chosen = np.clip(chosen, lg[0], lg[-1])
    return np.round(chosen / resolution) * resolution, local_aux[idx, every]


def _climb_fine(
    lg: np.ndarray,
    evaluate: Callable[[float, np.ndarray], tuple[np.ndarray, np.ndarray]],
    fine: int,
    centre: np.ndarray,
    local: np.ndarray,
    local_aux: np.ndarray,
) -> None:
    """Fill ``local`` (2*fine+1, rows) by climbing from its centre slot (see grid_search)."""
    width, rows = local.shape
    every = np.arange(rows)
    step = lg[1] - lg[0] if lg.shape[0] > 1 else 1.0
    offsets = np.arange(width) - fine
    values = lg[0] + (centre[None, :] + offsets[:, None]) * step / fine
    # scored already: the coarse slots; never scored: fine points outside the grid
    scored = (values < lg[0]) | (values > lg[-1])
    scored[::fine] = True
    want = np.zeros((width, rows), dtype=bool)
    want[fine - 1] = want[fine + 1] = True
    want &= ~scored
    while want.any():
        slots, cols = np.nonzero(want)
        f_idx = centre[cols] + slots - fine
        for f in np.unique(f_idx):
            pick = f_idx == f
            sel, slot = cols[pick], slots[pick]
            local[slot, sel], local_aux[slot, sel] = evaluate(float(lg[0] + f * step / fine), sel)
        scored |= want
        idx = np.argmax(local, axis=0)
        want = np.zeros((width, rows), dtype=bool)
        for k in (-1, 1):
            nb = idx + k
            ok = (nb >= 0) & (nb < width)
            ok[ok] = ~scored[nb[ok], every[ok]]
            want[nb[ok], every[ok]] = True
