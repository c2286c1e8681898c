"""Faults against real processes on 127.0.0.1: a scheduler and workers started with
``python -m distributed.cli.dask_scheduler`` / ``dask_worker``, workflow runs in this process
or as ``deltaflow run`` subprocesses, and SIGKILL.

* a worker killed mid-run: the run completes, the store equals a clean run's byte for byte;
* the client killed mid-write: ``deltaflow run --resume`` completes it, recomputing exactly
  the regions the ledger lacks;
* a region whose source raises (a test-only source, enabled in the workflow file): the run
  fails naming the region and the cause, finished regions stay recorded, a resume after the
  cause is gone completes;
* two runs on one store at once: the second is refused by the store's lock.

Every process started here is killed in a ``finally``; each wait has a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import yaml

from deltaflow.io import Store, StoreLockedError
from deltaflow.workflow import ConfigError, register_source
from deltaflow.workflow.runner import RunError, run_workflow
from deltaflow.workflow.sources import SensorsSource

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
N_SERIES, N_TIME, CS, CT = 32, 2048, 8, 512  # 4 x 4 = 16 regions of 8 x 512
N_REGIONS = (N_SERIES // CS) * (N_TIME // CT)
TIMEOUT = 60.0
DELAY = 0.15  # seconds per source block: runs last long enough to be hit mid-way


# --------------------------------------------------------------------------- injected fault


@register_source
class FlakySensors(SensorsSource):
    """The sensors source, except that one block raises while a marker file exists.

    Test-only: chosen with ``source.kind: test_flaky_sensors`` in the workflow file, so
    the fault travels with the workflow to the worker processes (which import this module).
    """

    kind: Literal["test_flaky_sensors"] = "test_flaky_sensors"  # type: ignore[assignment]
    fail_block: tuple[int, int] = (1, 2)
    fail_while: str = ""
    fail_after_s: float = 0.0

    def _block(self, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        (s0, _), (t0, _) = block_info[None]["array-location"]  # type: ignore[index]
        cs, ct = self.chunks["sensor"], self.chunks["time"]
        if (s0 // cs, t0 // ct) == tuple(self.fail_block) and Path(self.fail_while).exists():
            time.sleep(self.fail_after_s)  # let other regions finish first
            raise InjectedFault(f"sensor block {tuple(self.fail_block)}: disk read error")
        return super()._block(block_info)


class InjectedFault(OSError):
    """The error the flaky source raises."""


# --------------------------------------------------------------------------- processes


class ProcCluster:
    """A dask scheduler and workers as separate processes on 127.0.0.1 (random ports)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.sched_file = workdir / "scheduler.json"
        pythonpath = os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])
        self.env = {**os.environ, "PYTHONPATH": pythonpath}
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.workdir / log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
                start_new_session=True,  # its own process group: killpg reaches only it
            )

    def start(self, n_workers: int) -> None:
        self.scheduler = self._spawn(
            [
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.sched_file),
            ],
            "scheduler.log",
        )
        deadline = time.monotonic() + TIMEOUT
        while not self.sched_file.exists():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("scheduler did not start: " + self.log("scheduler.log"))
            time.sleep(0.05)
        for _ in range(n_workers):
            self.add_worker()
        self.wait_for_workers(n_workers)

    def log(self, name: str) -> str:
        return (self.workdir / name).read_text(errors="replace")[-3000:]

    @property
    def address(self) -> str:
        return json.loads(self.sched_file.read_text())["address"]

    def add_worker(self) -> None:
        i = len(self.workers)
        self.workers.append(
            self._spawn(
                [
                    "distributed.cli.dask_worker",
                    "--scheduler-file",
                    str(self.sched_file),
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--memory-limit",
                    "1GiB",
                    "--no-nanny",  # SIGKILL of this pid is the death of the worker
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                    "--preload",
                    "test_faults",  # deltaflow and the test-only source, imported at start
                ],
                f"worker{i}.log",
            )
        )

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=TIMEOUT) as c:
            c.wait_for_workers(n, timeout=TIMEOUT)

    def ensure_workers(self, n: int) -> None:
        for _ in range(n - len(self.alive())):
            self.add_worker()
        self.wait_for_workers(n)

    def wait_idle(self, forget: bool = False) -> None:
        """Until no task runs or waits to (a dead client's or a failed run's have drained);
        with ``forget``, until the scheduler holds no task at all."""
        from distributed import Client

        count = _n_all if forget else _n_pending
        with Client(self.address, timeout=TIMEOUT) as c:
            _wait(lambda: c.run_on_scheduler(count) == 0, "the scheduler to go idle")

    def close(self) -> None:
        procs = [p for p in [*self.workers, self.scheduler] if p is not None]
        for p in procs:
            _kill(p, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(3)  # nothing to save: a short grace, then SIGKILL
            except subprocess.TimeoutExpired:
                _kill(p, signal.SIGKILL)
                p.wait(10)


def _n_pending(dask_scheduler: Any) -> int:
    """Tasks that are running or may still run (erred and finished ones do not count)."""
    pending = ("waiting", "queued", "no-worker", "processing")
    return sum(ts.state in pending for ts in dask_scheduler.tasks.values())


def _n_all(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def _kill(p: subprocess.Popen[Any], sig: int) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass


def _wait(cond: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    pc = ProcCluster(tmp_path_factory.mktemp("dask"))
    try:
        pc.start(2)
        yield pc
    finally:
        pc.close()


@pytest.fixture
def client(procs: ProcCluster) -> Iterator[Any]:
    from distributed import Client

    procs.ensure_workers(2)
    with Client(procs.address, timeout=TIMEOUT) as c:
        yield c


# --------------------------------------------------------------------------- workflows


def _workflow(sink: Path, **source: Any) -> dict[str, Any]:
    return {
        "name": "faults",
        "source": {
            "kind": "sensors",
            "n_series": N_SERIES,
            "n_samples": N_TIME,
            "dt": 0.01,
            "seed": 3,
            "chunks": {"sensor": CS, "time": CT},
            **source,
        },
        "steps": [
            {
                "differentiate": {
                    "var": "temperature",
                    "dim": "time",
                    "method": "finite_difference",
                    "order": 1,
                    "accuracy": 4,
                    "out": "dT_dt",
                }
            }
        ],
        "sink": {"path": str(sink), "mode": "create", "chunks": {"sensor": CS, "time": CT}},
    }


def _write(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _recorded(sink: Path) -> int:
    """Regions the store's ledger lists as finished (0 before the run set up the store)."""
    store = Store(str(sink))
    state = store.read_state()
    if not state or "epoch" not in state:
        return 0
    return len(store.recorded(state["epoch"]))


def _files(store: Path) -> dict[str, bytes]:
    """Every file of a store but deltaflow's bookkeeping, as relative path -> bytes."""
    out = {}
    for p in sorted(store.rglob("*")):
        rel = p.relative_to(store).as_posix()
        if p.is_file() and not rel.startswith("_deltaflow/"):
            out[rel] = p.read_bytes()
    return out


_VOLATILE = ("run_start", "run_end", "run_id", "created", "deltaflow_run")


def _root_attrs(store: Path) -> dict[str, Any]:
    meta = json.loads((store / "zarr.json").read_text())
    attrs = meta.get("attributes", {})
    return {k: v for k, v in attrs.items() if not any(s in k for s in _VOLATILE)}


def assert_same_store(got: Path, want: Path) -> None:
    """Byte-for-byte equal data and array metadata; equal root attrs but run times."""
    a, b = _files(got), _files(want)
    assert sorted(a) == sorted(b)
    chunks = [k for k in a if "/c/" in k]
    assert chunks, "no chunk files in the store"
    differ = [k for k in a if k != "zarr.json" and a[k] != b[k]]
    assert not differ, f"files differ from the clean run: {differ[:5]}"
    assert _root_attrs(got) == _root_attrs(want)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def clean(workdir: Path) -> Path:
    """The reference: the same workflow run undisturbed on the threaded scheduler.

    Written at the path the tests write to (so provenance, which hashes the workflow and
    with it the sink path, is identical), then moved aside.
    """
    sink = workdir / "out.zarr"
    summary = run_workflow(_write(workdir / "wf.yaml", _workflow(sink, delay_s=DELAY)))
    assert summary.complete and summary.regions_written == N_REGIONS
    return sink.rename(workdir / "clean.zarr")


@pytest.fixture
def sink(workdir: Path, clean: Path) -> Iterator[Path]:
    """The store path every test writes (the clean run's path), emptied before and after."""
    path = workdir / "out.zarr"
    shutil.rmtree(path, ignore_errors=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            box["error"] = err

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "deltaflow.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


# --------------------------------------------------------------------------- tests


def test_worker_killed_mid_run_store_equals_clean_run(
    procs: ProcCluster, client: Any, clean: Path, sink: Path, tmp_path: Path
) -> None:
    wf = _write(sink.parent / "wf.yaml", _workflow(sink, delay_s=DELAY))
    thread, box = _in_thread(lambda: run_workflow(wf, client=client))
    try:
        _wait(lambda: _recorded(sink) >= 2 or not thread.is_alive(), "the first regions")
        before = _recorded(sink)
        assert before < N_REGIONS, "the run finished before the kill"
        victim = procs.alive()[0]
        _kill(victim, signal.SIGKILL)
        victim.wait(10)
        thread.join(TIMEOUT * 2)
        assert not thread.is_alive(), "the run did not finish after the kill"
    finally:
        thread.join(TIMEOUT)
    assert "error" not in box, box.get("error")
    summary = box["result"]
    assert summary.complete and summary.regions_written == N_REGIONS
    assert len(client.scheduler_info()["workers"]) == 1  # it ran on with the survivor
    assert_same_store(sink, clean)


def test_client_killed_mid_write_resume_recomputes_only_missing(
    procs: ProcCluster, clean: Path, sink: Path
) -> None:
    procs.ensure_workers(2)
    wf = _write(sink.parent / "wf.yaml", _workflow(sink, delay_s=DELAY))
    env = {**procs.env, "PYTHONUNBUFFERED": "1"}
    run = _cli("run", str(wf), "--cluster", procs.address, env=env)
    try:
        _wait(lambda: _recorded(sink) >= 3 or run.poll() is not None, "the first regions")
        assert run.poll() is None, f"the run ended before the kill: {run.stdout.read()}"
        _kill(run, signal.SIGKILL)
        run.wait(10)
    finally:
        _kill(run, signal.SIGKILL)
        run.wait(10)
    procs.wait_idle()  # tasks of the dead client that were running have finished or gone
    done = _recorded(sink)
    assert 3 <= done < N_REGIONS
    resume = _cli("run", str(wf), "--cluster", procs.address, "--resume", env=env)
    try:
        out, _ = resume.communicate(timeout=TIMEOUT * 2)
    finally:
        _kill(resume, signal.SIGKILL)
    assert resume.returncode == 0, out
    assert f"wrote {N_REGIONS - done}/{N_REGIONS} regions, {done} already done" in out, out
    assert _recorded(sink) == N_REGIONS
    assert_same_store(sink, clean)


def _flaky(sink: Path, marker: Path) -> dict[str, Any]:
    """The workflow with source block (1, 2) failing while ``marker`` exists."""
    return _workflow(
        sink,
        kind="test_flaky_sensors",
        delay_s=DELAY,
        fail_block=[1, 2],
        fail_while=str(marker),
        fail_after_s=1.0,
    )


def test_failing_region_fails_the_run_keeps_finished_ones_and_resume_completes(
    procs: ProcCluster, clean: Path, sink: Path, tmp_path: Path
) -> None:
    from distributed import Client

    procs.ensure_workers(2)
    marker = tmp_path / "fault-present"
    marker.touch()
    cfg = _flaky(sink, marker)
    # A client of its own, closed after the failure (as when `deltaflow run` exits): while
    # a client holds the failed run's futures the scheduler keeps the erred task, and a
    # resume asking for the same keys would get that error back.
    with Client(procs.address, timeout=TIMEOUT) as failing:
        with pytest.raises(RunError) as info:
            run_workflow(cfg, client=failing)
    msg = str(info.value)
    del info
    assert "InjectedFault: sensor block (1, 2): disk read error" in msg, msg  # the cause
    assert "--resume" in msg, msg
    procs.wait_idle(forget=True)
    done = _recorded(sink)
    assert 0 < done < N_REGIONS  # finished regions stay recorded
    marker.unlink()  # the cause is gone
    with Client(procs.address, timeout=TIMEOUT) as client:
        summary = run_workflow(cfg, client=client, resume=True)
    assert summary.complete
    assert summary.regions_written == N_REGIONS - done
    # the flaky source gives the clean source's values: every chunk equals the clean run's
    got, want = _files(sink), _files(clean)
    chunks = sorted(k for k in want if "/c/" in k)
    assert chunks and all(got[k] == want[k] for k in chunks)


def test_failing_region_is_named_in_the_error(client: Any, sink: Path, tmp_path: Path) -> None:
    marker = tmp_path / "fault-present"
    marker.touch()
    cfg = _flaky(sink, marker)
    cfg["source"]["fail_after_s"] = 0.0
    with pytest.raises(RunError) as info:
        run_workflow(cfg, client=client)
    # source block (1, 2) is the region sensor 8-16, time 1024-1536
    assert "sensor=8-16,time=1024-1536" in str(info.value), str(info.value)


def test_second_writer_is_refused_while_the_first_runs(
    procs: ProcCluster, client: Any, clean: Path, sink: Path
) -> None:
    wf = _write(sink.parent / "wf.yaml", _workflow(sink, delay_s=DELAY))
    lock = sink / "_deltaflow" / "lock"
    thread, box = _in_thread(lambda: run_workflow(wf, client=client))
    try:
        _wait(lambda: lock.exists() or not thread.is_alive(), "the first run's lock")
        assert thread.is_alive(), box
        holder = json.loads(lock.read_text())
        with pytest.raises(StoreLockedError, match=r"another writer holds the store \(pid"):
            run_workflow(wf, client=client, resume=True)
        with pytest.raises((StoreLockedError, ConfigError)):
            run_workflow(wf, client=client)  # nor may a fresh create clear it
        assert _recorded(sink) < N_REGIONS, "the first run finished before the second tried"
        assert json.loads(lock.read_text()) == holder  # the holder's lock is untouched
    finally:
        thread.join(TIMEOUT * 2)
    assert "error" not in box, box.get("error")
    assert box["result"].regions_written == N_REGIONS
    assert not lock.exists()  # released at the end
    assert_same_store(sink, clean)  # not interleaved: exactly the first run's result


# --------------------------------------------------------------------------- threaded scheduler


def test_failing_region_on_the_threaded_scheduler_is_named_and_resumable(tmp_path: Path) -> None:
    """No cluster: the in-process threaded scheduler gives the same error as a distributed
    run (failed regions named, cause kept), every region that does not read the failing
    block still finishes and is recorded, and a resume writes only the failed ones."""
    import dask

    clean = tmp_path / "clean.zarr"
    sink = tmp_path / "out.zarr"
    marker = tmp_path / "fault-present"
    marker.touch()
    cfg = _flaky(sink, marker)
    cfg["source"].update(delay_s=0.0, fail_after_s=0.0)
    executed: list[str] = []

    class Count(dask.callbacks.Callback):  # every task runs once: shared inputs included
        def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
            executed.append(str(key))

    with Count(), pytest.raises(RunError) as info:
        run_workflow(cfg)
    msg = str(info.value)
    # block (1, 2) is read by its own region and, through the 2-sample halo, its neighbours
    failed = "; ".join(f"sensor=8-16,time={a}-{a + CT}" for a in (512, 1024, 1536))
    assert f"failed region(s) {failed}: InjectedFault: sensor block (1, 2)" in msg, msg
    assert "finish it with --resume" in msg, msg
    assert isinstance(info.value.__cause__.__cause__, InjectedFault)
    assert len(executed) == len(set(executed))
    assert _recorded(sink) == N_REGIONS - 3  # the others settled and are in the ledger
    marker.unlink()
    summary = run_workflow(cfg, resume=True)
    assert summary.complete and summary.regions_written == 3
    run_workflow({**cfg, "sink": {**cfg["sink"], "path": str(clean)}})
    got, want = _files(sink), _files(clean)
    chunks = sorted(k for k in want if k.startswith(("dT_dt/c/", "temperature/c/")))
    assert len(chunks) == 2 * N_REGIONS and all(got[k] == want[k] for k in chunks)
