"""A threaded dask scheduler that lets the rest of the graph settle after a task fails.

dask's threaded scheduler stops at the first exception: regions already finished stay
written, but the ones still queued are dropped and the error does not say which task
failed. A run needs what the distributed path gives: every independent region finished
(and recorded in the ledger) and the regions that failed named. ``settling_get`` runs
the graph once on a thread pool through ``dask.local.get_async`` with three of its hooks:

* ``pack_exception`` turns a task's exception into a :class:`Failed` marker (its key and
  the exception) that is stored as the task's result instead of being raised;
* ``raise_exception`` records the failure and returns, so the scheduler goes on;
* the pool's ``submit`` never runs a task that depends on a marker: it hands the marker
  on as that task's result (failed), so no function ever sees a marker as data.

Each task still runs at most once (shared halo inputs are not recomputed). Results are
the computed values, or the :class:`Failed` marker of the first failure upstream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Failed:
    """The result of a task that raised, or of one downstream of it: the first cause."""

    __slots__ = ("exc", "key")

    def __init__(self, exc: BaseException, key: Any):
        self.exc = exc
        self.key = key

    def __repr__(self) -> str:
        return f"Failed({self.key!r}: {type(self.exc).__name__}: {self.exc})"


def _marker_in(task_info: Any) -> Failed | None:
    """The first Failed among a task's inputs (``task_info`` is ``(task, {dep: value})``)."""
    try:
        _, data = task_info
        values = data.values()
    except (TypeError, ValueError, AttributeError):
        return None
    for v in values:
        if isinstance(v, Failed):
            return v
    return None


def settling_get(
    dsk: Any,
    keys: Sequence[Any] | Any,
    *,
    num_workers: int | None = None,
    failures: list[Failed] | None = None,
    **kwargs: Any,
) -> Any:
    """Compute ``keys`` of ``dsk`` on threads, finishing every task not downstream of a
    failure; a failed key's value is a :class:`Failed`. The root failures, in the order
    they happened, are appended to ``failures``. Use as ``dask.compute(scheduler=...)``
    (with ``functools.partial`` to pass ``failures``)."""
    import dask
    from dask.local import get_async

    try:
        from dask.threaded import ContextAwareThreadPoolExecutor as Pool
    except ImportError:  # pragma: no cover - older dask
        Pool = ThreadPoolExecutor  # noqa: N806
    from dask.system import CPU_COUNT

    n = num_workers or dask.config.get("num_workers", None) or CPU_COUNT or 1
    roots = failures if failures is not None else []

    def pack_exception(err: BaseException, dumps: Callable[[Any], Any]) -> Any:
        if not isinstance(err, Exception):
            raise err  # KeyboardInterrupt, SystemExit: stop at once, do not settle
        return err, err.__traceback__

    def raise_exception(marker: Failed, tb: Any) -> None:
        # called by the scheduler's loop (one thread) for every failed task: note the
        # root causes once each, raise nothing, so the loop goes on with the rest
        if not any(m is marker for m in roots):
            roots.append(marker)

    def submit(fn: Callable[[Any], Any], batch: list[tuple[Any, ...]]) -> Future[Any]:
        def run() -> list[tuple[Any, Any, bool]]:
            out = []
            for args in batch:
                key, task_info = args[0], args[1]
                upstream = _marker_in(task_info)
                if upstream is not None:  # an input failed: hand its marker on
                    out.append((key, (upstream, None), True))
                    continue
                ((k, result, failed),) = fn([args])
                if failed:  # (exception, traceback) from pack_exception
                    result = (Failed(result[0], k), None)
                out.append((k, result, failed))
            return out

        return pool.submit(run)

    pool = Pool(n)
    try:
        return get_async(
            submit,
            n,
            dsk,
            keys,
            pack_exception=pack_exception,
            raise_exception=raise_exception,
            get_id=threading.get_ident,
            **kwargs,
        )
    finally:
        # nothing is pending after a full run; after an interrupt do not wait for the queue
        pool.shutdown(wait=False, cancel_futures=True)
