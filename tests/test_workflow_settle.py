"""The settling threaded scheduler: after a task fails, everything not downstream of it
still runs (once), and what is downstream gets the failure's marker instead of running."""

from __future__ import annotations

import threading
from functools import partial

import dask
import pytest
from dask.delayed import delayed

from deltaflow.workflow.settle import Failed, settling_get


def test_independent_tasks_finish_and_downstream_ones_get_the_marker():
    calls: list[str] = []
    lock = threading.Lock()

    def step(name, *inputs):
        with lock:
            calls.append(name)
        if name == "bad":
            raise OSError("bad input block")
        assert not any(isinstance(x, Failed) for x in inputs), "a marker reached a task"
        return sum(inputs) + 1

    shared = delayed(step)("shared", dask_key_name="shared")
    bad = delayed(step)("bad", shared, dask_key_name="bad")
    good = [delayed(step)(f"good{i}", shared, dask_key_name=f"good{i}") for i in range(4)]
    after = delayed(step)("after", bad, good[0], dask_key_name="after")
    failures: list[Failed] = []
    out = dask.compute(*good, after, bad, scheduler=partial(settling_get, failures=failures))
    assert out[:4] == (2, 2, 2, 2)
    assert isinstance(out[4], Failed) and out[4] is out[5]
    assert out[4].key == "bad" and isinstance(out[4].exc, OSError)
    assert [f.key for f in failures] == ["bad"]
    assert sorted(calls) == sorted(["shared", "bad", "good0", "good1", "good2", "good3"])


def test_keyboard_interrupt_stops_the_run():
    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dask.compute(delayed(interrupt)(), scheduler=settling_get)


def test_without_failures_it_equals_the_threaded_scheduler():
    import dask.array as da

    x = da.arange(10_000, chunks=700).map_overlap(lambda b: b * 2, depth=3, boundary="none")
    s = x.sum()
    assert dask.compute(s, scheduler=settling_get)[0] == dask.compute(s, scheduler="threads")[0]
