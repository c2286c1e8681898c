"""Workflow files: validation messages (file, line, key path), overrides, schema, expressions."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from deltaflow import expr
from deltaflow.workflow import ConfigError, load_workflow
from deltaflow.workflow.config import check_cluster, cluster_kind, parse_path
from deltaflow.workflow.runner import validate_workflow

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
name: cfg-test
source:
  kind: sensors
  n_series: 4
  n_samples: 400
  chunks: {sensor: 2, time: 100}
steps:
  - differentiate:
      var: temperature
      dim: time
      method: finite_difference
      order: 1
      accuracy: 4
      out: dT_dt
sink:
  path: {store}
  mode: create
"""


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).replace("{store}", str(tmp_path / "out.zarr")))
    return p


def error_of(path, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        validate_workflow(path, **kw)
    return str(info.value)


def test_valid_file_loads(tmp_path):
    wf = load_workflow(write(tmp_path, BASE))
    step = wf.config.step_list()[0]
    assert step.kind == "differentiate" and step.params == {"accuracy": 4}
    assert wf.config.sink.mode == "create" and wf.config.cluster is None


def test_unknown_top_level_key_names_file_line_and_key(tmp_path):
    p = write(tmp_path, BASE + "colour: blue\n")
    msg = error_of(p)
    assert msg == f"{p}:18: colour: unknown key"


def test_bad_method_parameter_names_the_step_key_path_and_line(tmp_path):
    p = write(tmp_path, BASE.replace("accuracy: 4", "accuracy: 3"))
    msg = error_of(p)
    assert msg.startswith(f"{p}:13: steps[0].differentiate.accuracy: ")
    assert "2, 4, 6 or 8" in msg and "got 3" in msg


def test_unknown_method_parameter_lists_the_methods_parameters(tmp_path):
    p = write(tmp_path, BASE.replace("accuracy: 4", "windw: 21"))
    msg = error_of(p)
    assert "steps[0].differentiate.windw: unknown parameter of method 'finite_difference'" in msg
    assert "accuracy" in msg


def test_unknown_method_lists_known_ones(tmp_path):
    p = write(tmp_path, BASE.replace("method: finite_difference", "method: magic"))
    msg = error_of(p)
    assert "steps[0].differentiate.method: unknown method 'magic'; known methods:" in msg
    assert "finite_difference" in msg


def test_order_outside_the_methods_orders(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("order: 1", "order: 9")))
    expect = "steps[0].differentiate.order: method 'finite_difference' gives orders 1..4, got 9"
    assert expect in msg


def test_wrong_type_is_reported_with_the_value(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("n_series: 4", "n_series: many")))
    assert ":4: source.n_series: Input should be a valid integer" in msg
    assert "got 'many'" in msg


def test_every_problem_is_reported_at_once(tmp_path):
    text = BASE.replace("n_series: 4", "n_series: -1").replace("order: 1", "order: x")
    msg = error_of(write(tmp_path, text))
    assert "source.n_series" in msg and "steps[0].differentiate.order" in msg
    assert len(msg.splitlines()) == 2


def test_missing_required_key(tmp_path):
    text = BASE.replace("sink:\n  path: {store}\n  mode: create\n", "")
    assert "sink: missing required key" in error_of(write(tmp_path, text))


def test_unknown_source_kind(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("kind: sensors", "kind: telepathy")))
    assert "source" in msg and "telepathy" in msg and "sensors" in msg


def test_step_must_have_exactly_one_known_key(tmp_path):
    text = BASE.replace("  - differentiate:", "  - differentiat:")
    msg = error_of(write(tmp_path, text))
    assert "steps[0]: each step is a mapping with exactly one key, one of: select" in msg


def test_missing_variable_and_dim_are_found_before_any_data_is_read(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("var: temperature", "var: pressure")))
    assert ":9: steps[0].differentiate.var: no variable 'pressure' in the dataset" in msg
    assert "variables: temperature" in msg
    msg = error_of(write(tmp_path, BASE.replace("dim: time", "dim: depth")))
    assert "steps[0].differentiate.dim: variable 'temperature' has no dim 'depth'" in msg


def test_create_refuses_an_existing_store(tmp_path):
    (tmp_path / "out.zarr").mkdir()
    (tmp_path / "out.zarr" / "zarr.json").write_text("{}")
    msg = error_of(write(tmp_path, BASE))
    assert "sink.path:" in msg and "already exists (mode create refuses" in msg


def test_expression_is_checked_when_loading(tmp_path):
    text = BASE + "  - expression: {out: r, expr: \"__import__('os').system('x')\"}\n"
    text = text.replace("sink:\n  path: {store}\n  mode: create\n", "") + (
        "sink: {path: {store}}\n"
    )
    msg = error_of(write(tmp_path, text))
    assert "steps[1].expression.expr" in msg and "not allowed" in msg


def test_yaml_tags_cannot_run_code(tmp_path):
    p = write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_workflow(p)


def test_set_overrides_and_their_errors(tmp_path):
    p = write(tmp_path, BASE)
    wf = load_workflow(
        p, overrides=["steps[0].differentiate.accuracy=6", "source.n_series=3"], environ={}
    )
    assert wf.config.step_list()[0].params["accuracy"] == 6
    assert wf.config.source.n_series == 3
    with pytest.raises(ConfigError, match=r"no list item 5 \(the list has 1\)"):
        load_workflow(p, overrides=["steps[5].differentiate.accuracy=6"], environ={})
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_workflow(p, overrides=["steps[0]"], environ={})
    msg = error_of(p, overrides=["steps[0].differentiate.accuracy=5"], environ={})
    assert "steps[0].differentiate.accuracy" in msg and "got 5" in msg


def test_environment_overrides_with_set_winning(tmp_path):
    p = write(tmp_path, BASE)
    env = {
        "DELTAFLOW__STEPS__0__DIFFERENTIATE__ACCURACY": "8",
        "DELTAFLOW__SINK__PATH": str(tmp_path / "env.zarr"),
        "DELTAFLOW_HYPOTHESIS_PROFILE": "ci",  # single underscore: not an override
    }
    wf = load_workflow(p, environ=env)
    assert wf.config.step_list()[0].params["accuracy"] == 8
    assert wf.config.sink.path == str(tmp_path / "env.zarr")
    wf = load_workflow(p, environ=env, overrides=["steps[0].differentiate.accuracy=2"])
    assert wf.config.step_list()[0].params["accuracy"] == 2


def test_hash_ignores_mode_and_cluster_but_not_settings(tmp_path):
    p = write(tmp_path, BASE)
    a = load_workflow(p, environ={})
    b = load_workflow(p, environ={}, overrides=["sink.mode=resume", "cluster=tcp://h:8786"])
    c = load_workflow(p, environ={}, overrides=["steps[0].differentiate.accuracy=6"])
    assert a.sha256 == b.sha256 != c.sha256


def test_parse_path():
    assert parse_path("steps[1].differentiate.window") == ("steps", 1, "differentiate", "window")
    with pytest.raises(ConfigError):
        parse_path("steps..x")


@pytest.mark.parametrize(
    "value,kind",
    [
        ("local", "local"),
        ("tcp://10.0.0.1:8786", "address"),
        ("scheduler:8786", "address"),
        ("configs/slurm.yaml", "file"),
        ("slurm", "profile"),
    ],
)
def test_cluster_shapes(value, kind):
    assert check_cluster(value) == value and cluster_kind(value) == kind


def test_bad_cluster_value(tmp_path):
    msg = error_of(write(tmp_path, BASE + "cluster: 'two words!'\n"))
    assert "cluster: expected 'local', a profile name" in msg
    p = write(tmp_path, BASE + "cluster: no-such-profile\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:18: cluster: ") and "unknown cluster 'no-such-profile'" in msg


def test_savgol_window_errors_read_like_the_kernel(tmp_path):
    text = BASE.replace("method: finite_difference", "method: savgol").replace(
        "accuracy: 4", "window: 10"
    )
    p = write(tmp_path, text)
    msg = error_of(p)
    assert msg.startswith(f"{p}:13: steps[0].differentiate.window: ")
    assert "odd" in msg and "10" in msg


def test_schema_file_is_in_sync():
    # what `deltaflow schema` prints in a fresh process: other tests register test-only
    # steps, sources and methods in this one, which would change the in-process schema
    import subprocess
    import sys

    printed = subprocess.run(
        [sys.executable, "-m", "deltaflow.cli", "schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    stored = json.loads((ROOT / "configs" / "workflow.schema.json").read_text())
    assert stored == json.loads(printed), (
        "configs/workflow.schema.json is stale: regenerate it with "
        "`deltaflow schema > configs/workflow.schema.json`"
    )


def test_example_workflows_validate(tmp_path):
    for path in sorted((ROOT / "workflows").glob("*.yaml")):
        sink = tmp_path / (path.stem + ".zarr")
        wf = load_workflow(path, overrides=[f"sink.path={sink}"], environ={})
        assert wf.config.name


# --------------------------------------------------------------------------- expressions


def test_expression_evaluates_arithmetic_on_variables():
    a = xr.DataArray(np.arange(4.0), dims="t")
    b = xr.DataArray(np.ones(4), dims="t")
    out = expr.evaluate("a + k * b ** 2 - sqrt(abs(a)) / 2", {"a": a, "b": b, "k": 0.5})
    np.testing.assert_allclose(out, np.arange(4.0) + 0.5 - np.sqrt(np.arange(4.0)) / 2)
    assert expr.names("dU_dt + k * U") == {"dU_dt", "k", "U"}
    np.testing.assert_allclose(expr.evaluate("where(a > 1, a, -a)", {"a": a}), [0, -1, 2, 3])


@pytest.mark.parametrize(
    "bad,fragment",
    [
        ("__import__('os')", "function '__import__' is not allowed"),
        ("a.__class__", "Attribute is not allowed"),
        ("(lambda: 1)()", "not allowed"),
        ("a[0]", "Subscript is not allowed"),
        ("'text' + a", "only numeric constants"),
        ("exp(x=a)", "keyword arguments are not allowed"),
        ("a +", "invalid expression"),
        ("[x for x in a]", "not allowed"),
    ],
)
def test_expression_refuses_everything_else(bad, fragment):
    with pytest.raises(expr.ExpressionError, match=fragment.replace("(", r"\(")):
        expr.evaluate(bad, {"a": 1.0})


def test_expression_unknown_name_lists_known():
    with pytest.raises(expr.ExpressionError, match=r"unknown name\(s\) c; known: a, e, pi"):
        expr.evaluate("a + c", {"a": 1.0})
