"""The demo module runs end to end on a small dataset and scores methods sensibly."""

from __future__ import annotations

import io

import numpy as np
import pytest

from deltaflow import demo


def test_dataset_derivatives_are_exact():
    data = demo.make_dataset(series=3, length=2001, noise=0.0, seed=1)
    fd = np.gradient(data.y, data.t, axis=1, edge_order=2)
    np.testing.assert_allclose(fd[:, 5:-5], data.d1[:, 5:-5], atol=1e-3)
    fd2 = np.gradient(data.d1, data.t, axis=1, edge_order=2)
    np.testing.assert_allclose(fd2[:, 5:-5], data.d2[:, 5:-5], atol=1e-3)


def test_run_prints_a_row_per_method_and_smoothers_beat_raw_differences():
    buf = io.StringIO()
    rows = demo.run(
        series=12,
        length=120,
        noise=0.03,
        methods=["finite_difference", "spectral", "auto"],
        out=buf,
    )
    text = buf.getvalue()
    assert [r["method"] for r in rows] == ["finite_difference", "spectral", "auto"]
    for r in rows:
        assert r["method"] in text
        assert r["series_per_s"] > 0 and np.isfinite(r["err1"])
    by = {r["method"]: r for r in rows}
    assert by["spectral"]["err1"] < 0.3 * by["finite_difference"]["err1"]
    assert by["auto"]["err1"] < 0.3 * by["finite_difference"]["err1"]


def test_main_parses_arguments(capsys):
    assert demo.main(["--series", "4", "--length", "60", "--methods", "finite_difference"]) == 0
    assert "finite_difference" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        demo.main(["--length", "10"])
