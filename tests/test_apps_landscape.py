"""Loss landscapes: critical points located and classified, descent paths, the figure."""

from __future__ import annotations

import numpy as np
import pytest

import deltaflow as dfl
from deltaflow.apps.landscape import sample_function
from deltaflow.plots import plot_landscape


def rosen(x, y):
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


@pytest.fixture(scope="module")
def rosenbrock():
    axes = {"x": np.linspace(-2, 2, 81), "y": np.linspace(-1, 3, 81)}
    return sample_function(rosen, axes, name="rosenbrock")


def test_rosenbrock_minimum_at_1_1(rosenbrock):
    cp = dfl.critical_points(rosenbrock, ["x", "y"])
    assert cp.sizes["point"] == 1
    np.testing.assert_allclose([cp.x.item(), cp.y.item()], [1.0, 1.0], atol=1e-6)
    assert cp.kind.item() == "minimum"
    # Hessian at (1, 1) is [[802, -400], [-400, 200]]
    np.testing.assert_allclose(
        cp.eigenvalues.values[0], np.linalg.eigvalsh([[802, -400], [-400, 200]]), rtol=1e-6
    )
    assert abs(cp.value.item()) < 1e-8


def test_saddle_of_x2_minus_y2_off_grid():
    # 0 is not a grid node along y: the saddle must be found between nodes
    axes = {"x": np.linspace(-1, 1, 41), "y": np.linspace(-1.3, 1, 47)}
    cp = dfl.critical_points(sample_function(lambda x, y: x**2 - y**2, axes), ["x", "y"])
    assert cp.sizes["point"] == 1
    assert cp.kind.item() == "saddle"
    np.testing.assert_allclose([cp.x.item(), cp.y.item()], [0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(sorted(cp.eigenvalues.values[0]), [-2.0, 2.0], atol=1e-6)


def test_all_kinds_on_a_periodic_surface():
    axes = {"x": np.linspace(-4, 4, 81), "y": np.linspace(-2.5, 2.5, 51)}
    f = sample_function(lambda x, y: np.sin(x) * np.cos(y), axes)
    cp = dfl.critical_points(f, ["x", "y"])
    h = np.pi / 2
    truth = {
        (-h, 0): "minimum",
        (h, 0): "maximum",
        (0, -h): "saddle",
        (0, h): "saddle",
        (-np.pi, -h): "saddle",
        (np.pi, -h): "saddle",
        (-np.pi, h): "saddle",
        (np.pi, h): "saddle",
    }
    found = {
        (round(float(a) / h * 2) / 2 * h, round(float(b) / h * 2) / 2 * h): k
        for a, b, k in zip(cp.x.values, cp.y.values, cp.kind.values, strict=True)
    }
    assert len(found) == cp.sizes["point"] == len(truth)
    for (a, b), kind in truth.items():
        key = min(found, key=lambda p: (p[0] - a) ** 2 + (p[1] - b) ** 2)
        assert np.hypot(key[0] - a, key[1] - b) < 1e-6
        assert found[key] == kind
    assert cp.value.values[0] == pytest.approx(-1.0, abs=1e-5)
    assert cp.value.values[-1] == pytest.approx(1.0, abs=1e-5)


def test_three_dim_minimum():
    axes = {"a": np.linspace(-1, 1, 15), "b": np.linspace(-1, 2, 17), "c": np.linspace(0, 1, 11)}
    f = sample_function(
        lambda a, b, c: (a - 0.3) ** 2 + 2 * (b - 0.1) ** 2 + (c - 0.55) ** 2 + a * b, axes
    )
    cp = dfl.critical_points(f, ["a", "b", "c"])
    # gradient zero: 2(a-.3)+b=0, 4(b-.1)+a=0, c=.55
    a, b = np.linalg.solve([[2, 1], [1, 4]], [0.6, 0.4])
    assert cp.sizes["point"] == 1 and cp.kind.item() == "minimum"
    np.testing.assert_allclose([cp.a.item(), cp.b.item(), cp.c.item()], [a, b, 0.55], atol=1e-9)


def test_descent_path_lowers_f_and_converges(rosenbrock):
    bowl = sample_function(
        lambda x, y: (x - 0.5) ** 2 + 4 * (y + 0.25) ** 2,
        {"x": np.linspace(-2, 2, 41), "y": np.linspace(-1, 1, 21)},
    )
    p = dfl.descent_path(bowl, ["x", "y"], [-1.5, 0.8])
    assert p.converged.item()
    np.testing.assert_allclose([p.x.values[-1], p.y.values[-1]], [0.5, -0.25], atol=1e-4)
    assert np.all(np.diff(p.value.values) <= 1e-12)
    r = dfl.descent_path(rosenbrock, ["x", "y"], {"x": -1.5, "y": 2.0}, max_steps=3000)
    assert np.all(np.diff(r.value.values) <= 1e-12)
    assert r.value.values[-1] < 0.01 * r.value.values[0]
    # the end lies near the valley floor y = x^2, heading to (1, 1)
    assert abs(r.y.values[-1] - r.x.values[-1] ** 2) < 0.05 and r.x.values[-1] > 0.5


def test_descent_many_starts_fixed_rate():
    bowl = sample_function(
        lambda x, y: x**2 + y**2, {"x": np.linspace(-1, 1, 21), "y": np.linspace(-1, 1, 21)}
    )
    starts = np.array([[0.9, 0.9], [-0.5, 0.7], [0.2, -0.8]])
    p = dfl.descent_path(bowl, ["x", "y"], starts, learning_rate=0.1, max_steps=500)
    assert p.sizes["start"] == 3
    assert p.converged.all()
    # plain gradient descent on x^2 + y^2 with rate 0.1 multiplies x by 0.8 per step
    np.testing.assert_allclose(p.x.values[:, 1], 0.8 * starts[:, 0], rtol=1e-6)
    np.testing.assert_allclose(p.x.values[:, -1], 0, atol=1e-5)


def test_errors(rosenbrock):
    with pytest.raises(ValueError, match=r"the landscape has dims \['t'\] besides"):
        dfl.critical_points(rosenbrock.expand_dims(t=[0, 1]), ["x", "y"])
    with pytest.raises(ValueError, match="dims: 'z' is not a dim"):
        dfl.critical_points(rosenbrock, ["x", "z"])
    with pytest.raises(ValueError, match=r"start: x=5.0 lies outside the grid \[-2.0, 2.0\]"):
        dfl.descent_path(rosenbrock, ["x", "y"], [5.0, 0.0])
    with pytest.raises(ValueError, match="start: expected 2 coordinates"):
        dfl.descent_path(rosenbrock, ["x", "y"], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="learning_rate: must be positive"):
        dfl.descent_path(rosenbrock, ["x", "y"], [0.0, 0.0], learning_rate=-1)


def test_landscape_figure(rosenbrock, tmp_path):
    cp = dfl.critical_points(rosenbrock, ["x", "y"])
    path = dfl.descent_path(rosenbrock, ["x", "y"], [[-1.5, 2.0], [1.5, -0.5]], max_steps=300)
    out = tmp_path / "fig" / "landscape.png"
    fig = plot_landscape(rosenbrock, ["x", "y"], cp, path, output=out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    ax = fig.axes[0]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"minimum", "descent path"}
    with pytest.raises(ValueError, match="needs 2 dims"):
        plot_landscape(rosenbrock, ["x"])
