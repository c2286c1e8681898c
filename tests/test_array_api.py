"""Namespace-generic kernels: every GPU-capable method under ``array_api_strict`` equals NumPy.

A method whose spec says ``gpu=True`` promises one code path for NumPy, CuPy and any array-API
namespace; ``array_api_strict`` is the strictest such namespace and runs here without a GPU
(the CuPy run is ``tests/test_gpu.py``, ``-m gpu``). A method with ``gpu=False`` must refuse
non-NumPy input with an error that names it, rather than fail deep inside or copy to the host
without being asked.

Gaps found in the kernels are listed in ``KNOWN_GAPS`` as strict xfails: when a kernel is
fixed its test passes, the xfail turns into an error, and the entry is removed.
"""

from __future__ import annotations

import numpy as np
import pytest

import deltaflow as dfl
from deltaflow.kernels import registered

xps = pytest.importorskip("array_api_strict")

GPU_METHODS = sorted(m for m, s in registered().items() if s.gpu)
CPU_ONLY = sorted(m for m, s in registered().items() if not s.gpu)

# (method, case) -> why it fails today; case is "auto" (automatic per-series choices) or
# "refuse" (clear error for non-NumPy input).
KNOWN_GAPS: dict[tuple[str, str], str] = {}


def _params(methods: list[str], case: str) -> list:
    """Methods as parameters; a known gap is a strict xfail, so a fix is noticed."""
    out = []
    for m in methods:
        why = KNOWN_GAPS.get((m, case))
        marks = [pytest.mark.xfail(strict=True, reason=f"known gap: {why}")] if why else []
        out.append(pytest.param(m, marks=marks, id=m))
    return out


def _batch(n: int = 80, irregular: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Series with different noise levels, so per-series automatic choices differ."""
    rng = np.random.default_rng(4)
    x = np.linspace(0.0, 2.0, n)
    if irregular:
        h = x[1] - x[0]
        x[1:-1] += rng.uniform(-0.3 * h, 0.3 * h, n - 2)
    clean = np.sin(3 * x) + 0.5 * x**2
    levels = np.array([0.0, 1e-3, 1e-2, 5e-2])[:, None]
    return x, clean + levels * rng.standard_normal((levels.shape[0], n))


def _orders(method: str) -> list[int]:
    return [o for o in (1, 2) if o in dfl.get_method(method).orders]


def test_methods_are_split_by_capability():
    assert "finite_difference" in GPU_METHODS
    assert set(GPU_METHODS) | set(CPU_ONLY) == set(registered())


@pytest.mark.parametrize("irregular", [False, True], ids=["uniform", "irregular"])
@pytest.mark.parametrize("method", _params(GPU_METHODS, "auto"))
def test_gpu_method_matches_numpy_under_array_api_strict(method, irregular):
    spec = dfl.get_method(method)
    if irregular and not spec.irregular:
        pytest.skip(f"{method} needs uniform spacing")
    x, y = _batch(irregular=irregular)
    for order in _orders(method):
        ref = dfl.differentiate_array(y, x, method=method, order=order)
        got = dfl.differentiate_array(xps.asarray(y), x, method=method, order=order)
        assert type(got).__module__.startswith("array_api_strict"), type(got)
        scale = np.max(np.abs(ref))
        np.testing.assert_allclose(
            np.asarray(got), ref, rtol=1e-10, atol=1e-10 * scale, err_msg=f"order {order}"
        )


@pytest.mark.parametrize("method", GPU_METHODS)
def test_gpu_method_float32_stays_float32(method):
    x, y = _batch()
    got = dfl.differentiate_array(xps.asarray(y[:1], dtype=xps.float32), x, method=method)
    assert got.dtype == xps.float32
    ref = dfl.differentiate_array(y[:1].astype(np.float32), x, method=method)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("method", _params(CPU_ONLY, "refuse"))
def test_cpu_only_method_refuses_other_namespaces_by_name(method):
    x, y = _batch()
    for order in _orders(method):
        with pytest.raises((TypeError, ValueError), match=rf"{method}.*(NumPy|numpy|GPU|gpu)"):
            dfl.differentiate_array(xps.asarray(y), x, method=method, order=order)


def test_known_gaps_name_registered_methods():
    """A stale entry (method renamed or removed) is an error, not a silent pass."""
    for method, case in KNOWN_GAPS:
        assert method in registered(), method
        assert case in ("auto", "refuse")
        if case == "auto":
            assert method in GPU_METHODS
        else:
            assert method in CPU_ONLY
