"""Hypothesis strategies for engine tests: shapes, uneven chunkings, coordinates."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def chunking(draw, n: int, max_chunks: int = 6) -> tuple[int, ...]:
    """A random uneven split of n into 1..max_chunks positive chunks."""
    k = draw(st.integers(1, min(max_chunks, n)))
    if k == 1:
        return (n,)
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), min_size=k - 1, max_size=k - 1)))
    edges = [0, *cuts, n]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:], strict=True))


@st.composite
def coordinate(draw, n: int, irregular: bool) -> np.ndarray:
    """n strictly increasing or decreasing values, evenly spaced or jittered."""
    step = draw(st.sampled_from([0.01, 0.5, 1.0, 3.0]))
    x = np.arange(n) * step + draw(st.sampled_from([0.0, -7.0, 1e3]))
    if irregular:
        seed = draw(st.integers(0, 2**16))
        x = x + np.random.default_rng(seed).uniform(-0.3, 0.3, n) * step
    if draw(st.booleans()):
        x = x[::-1].copy()
    return x


@st.composite
def chunked_case(draw, min_n: int = 8, max_n: int = 90, irregular: bool | None = None) -> dict:
    """Data of shape (rows, n) or (n, rows) or (a, n, b), the dim's axis, x and chunks."""
    n = draw(st.integers(min_n, max_n))
    layout = draw(st.sampled_from(["last", "first", "middle"]))
    rows = draw(st.integers(1, 5))
    if layout == "last":
        shape, ax = (rows, n), 1
    elif layout == "first":
        shape, ax = (n, rows), 0
    else:
        shape, ax = (2, n, rows), 1
    irr = draw(st.booleans()) if irregular is None else irregular
    x = draw(coordinate(n, irr))
    chunks = tuple(
        draw(chunking(s, 6)) if a == ax else draw(chunking(s, 3)) for a, s in enumerate(shape)
    )
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    shp = [1] * len(shape)
    shp[ax] = n
    base = np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t).reshape(shp)
    y = base * rng.uniform(0.5, 2.0, shape) + 0.05 * rng.standard_normal(shape)
    return {"y": y, "x": x, "axis": ax, "chunks": chunks, "irregular": irr}
