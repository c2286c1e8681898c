"""A run killed with SIGKILL mid-write is flagged incomplete and resumes to the same bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import xarray as xr

import deltaflow
from deltaflow.io import IncompleteStoreError, Store, StoreLockedError, inspect_store, open_store
from deltaflow.workflow.runner import run_workflow

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not hasattr(deltaflow, "differentiate"), reason="needs the engine (deltaflow.differentiate)"
)

WF = """\
name: kill-test
source:
  kind: sensors
  n_series: 8
  n_samples: 2400
  chunks: {sensor: 2, time: 300}
  delay_s: DELAY
steps:
  - differentiate: {var: temperature, dim: time, method: finite_difference, order: 1,
                    accuracy: 4, out: dT_dt}
sink: {path: STORE, mode: create}
"""


def _files(store: Path) -> dict[str, bytes]:
    """Every data file of the store's arrays (chunks and array metadata), by relative path."""
    out = {}
    for p in sorted(store.rglob("*")):
        rel = p.relative_to(store)
        if p.is_file() and rel.parts[0] != "_deltaflow" and rel.as_posix() != "zarr.json":
            out[rel.as_posix()] = p.read_bytes()
    return out


def test_sigkill_mid_write_then_resume_gives_the_clean_bytes(tmp_path):
    killed = tmp_path / "killed.zarr"
    wf = tmp_path / "wf.yaml"
    wf.write_text(textwrap.dedent(WF).replace("STORE", str(killed)).replace("DELAY", "0.12"))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env = {k: v for k, v in env.items() if not k.startswith("DELTAFLOW__")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "deltaflow.cli", "run", str(wf)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ledger_root = killed / "_deltaflow" / "ledger"
    deadline = time.monotonic() + 180
    tried_second_writer = False
    try:
        while time.monotonic() < deadline:
            n = (
                sum(1 for p in ledger_root.rglob("*") if p.is_file() and p.suffix != ".tmp")
                if ledger_root.exists()
                else 0
            )
            if n >= 1 and not tried_second_writer:
                tried_second_writer = True
                # a second writer is refused while the first one lives
                with pytest.raises(StoreLockedError, match=f"pid {proc.pid} on"):
                    Store(str(killed)).acquire("second-writer")
            if n >= 4:
                break
            assert proc.poll() is None, proc.stdout.read().decode()  # must not finish first
            time.sleep(0.02)
        else:
            pytest.fail("the run did not record 4 regions in time")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    state = Store(str(killed)).read_state()
    recorded = len(Store(str(killed)).recorded(state["epoch"]))
    total = 4 * 8
    assert 4 <= recorded < total
    # an unfinished store must not pass for a finished one
    assert xr.open_zarr(killed, consolidated=False).attrs["deltaflow_status"] == "incomplete"
    with pytest.raises(IncompleteStoreError, match=f"INCOMPLETE \\({recorded}/{total}"):
        open_store(str(killed))
    assert inspect_store(str(killed))["completeness"]["complete"] is False

    summary = run_workflow(wf, resume=True, environ={})  # takes over the dead writer's lock
    assert summary.complete and summary.regions_written == total - recorded
    assert summary.regions_skipped == recorded

    clean = tmp_path / "clean.zarr"
    run_workflow(wf, environ={}, overrides=[f"sink.path={clean}", "source.delay_s=0"])
    a, b = _files(killed), _files(clean)
    assert a.keys() == b.keys() and len(a) > 2 * total
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]][:5]
    assert open_store(str(killed)).attrs["deltaflow_status"] == "complete"
