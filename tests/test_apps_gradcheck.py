"""The gradient check: analytic vs finite differences, integer inputs, wrong gradients."""

from __future__ import annotations

import numpy as np
import pytest

import deltaflow as dfl
from deltaflow.plots import plot_gradient_check


def rosen(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def rosen_grad(x):
    return np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])


@pytest.mark.parametrize("x", [[0, 0], [1, 1], [3, -4], [0.5, 0.25], [-1.2, 1.0]])
@pytest.mark.parametrize("accuracy", [2, 4])
def test_correct_gradient_passes(x, accuracy):
    r = dfl.check_gradient(rosen, rosen_grad, x, accuracy=accuracy)
    assert r.ok, str(r)
    assert r.numeric.shape == (2,) and r.relative_error.shape == (2,)


def test_integer_inputs_are_cast_and_steps_scaled():
    def f(x):
        return np.sum(x**3) + x[0] * x[1]

    def g(x):
        return 3 * x**2 + np.array([x[1], x[0], 0.0])

    seen = []

    def f_spy(x):
        seen.append(x.dtype)
        return f(x)

    x = np.array([1_000_000, 3, -2])  # int64
    r = dfl.check_gradient(f_spy, g, x)
    assert r.ok, str(r)
    assert set(seen) == {np.dtype(np.float64)}
    assert r.step[0] > 1e3 * r.step[1]  # step scaled to |x|
    # an integer-only step (x + h rounded back to x) would give a zero difference
    assert np.all(r.numeric != 0)


def test_wrong_gradient_fails_and_names_the_component():
    def bad(x):
        return rosen_grad(x) * np.array([1.0, 1.001])

    r = dfl.check_gradient(rosen, bad, [2, 3])
    assert not r.ok
    assert r.worst() == (1,)
    assert r.max_relative_error == pytest.approx(1e-3, rel=1e-2)
    assert "MISMATCH" in str(r)
    # a wrong gradient at a minimum (true gradient zero) is caught too
    r0 = dfl.check_gradient(rosen, lambda x: rosen_grad(x) + [0, 1e-3], [1, 1])
    assert not r0.ok


def test_matrix_shaped_input():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])

    def f(w):
        return float(np.sum((w @ a) ** 2))

    def g(w):
        return 2 * (w @ a) @ a.T

    w = np.arange(6).reshape(3, 2)
    r = dfl.check_gradient(f, g, w)
    assert r.ok and r.analytic.shape == (3, 2)


def test_errors():
    with pytest.raises(ValueError, match="grad_f: returned 3 components"):
        dfl.check_gradient(rosen, lambda x: np.zeros(3), [0, 0])
    with pytest.raises(ValueError, match="f: must return a scalar"):
        dfl.check_gradient(lambda x: x, rosen_grad, [0, 0])
    with pytest.raises(ValueError, match="accuracy: must be 2 or 4"):
        dfl.check_gradient(rosen, rosen_grad, [0, 0], accuracy=6)
    with pytest.raises(TypeError, match="x: must be real numeric"):
        dfl.check_gradient(rosen, rosen_grad, ["a", "b"])


def test_gradient_check_figure(tmp_path):
    r = dfl.check_gradient(rosen, lambda x: rosen_grad(x) * [1, 1.01], [2, 3])
    out = tmp_path / "gradcheck.png"
    fig = plot_gradient_check(r, output=out)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert len(fig.axes[0].patches) == 2
