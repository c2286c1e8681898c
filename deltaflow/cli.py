"""The ``deltaflow`` command line (typer).

Exit codes: 0 success, 1 failed run, 2 invalid input. Errors print one clear message;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

# the help shown by ``deltaflow --help`` (plain text: the terminal shows no reST markup)
HELP = (
    "deltaflow: chunked, distributed numerical differentiation of labelled data.\n\n"
    "Exit codes: 0 success, 1 failed run, 2 invalid input. Errors print one clear message; "
    "--debug shows the traceback."
)
app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP)
console = Console(soft_wrap=True)


@app.callback()
def _root() -> None:
    """deltaflow: chunked, distributed numerical differentiation of labelled data."""


@app.command("methods")
def methods_cmd(
    as_json: bool = typer.Option(False, "--json", help="print machine-readable JSON"),
) -> None:
    """List every differentiation method with its parameters, orders and capabilities."""
    from . import methods

    info = methods()
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    table = Table(title="deltaflow methods", show_lines=True)
    for col in ("method", "orders", "parameters (default)", "footprint", "capabilities"):
        table.add_column(col)
    for name, d in info.items():
        params = "\n".join(
            f"{k} = {v['default']!r}" + (f"  {v['constraints']}" if v["constraints"] else "")
            for k, v in d["parameters"].items()
        )
        caps = ", ".join(c for c in ("irregular", "nan_omit", "gpu", "smoothed") if d[c])
        if d["irregular"] and d["irregular_max_samples"] is not None:
            caps = caps.replace("irregular", f"irregular (<= {d['irregular_max_samples']} samples)")
        orders = f"{d['orders'][0]}..{d['orders'][-1]}"
        table.add_row(name, orders, params, d["footprint"], caps)
    console.print(table)


# --------------------------------------------------------------------------- workflows

DEBUG_HELP = "show the full traceback on errors"
SET_HELP = "override a key: steps[0].differentiate.window=31 (repeatable)"


def _fail(err: BaseException, debug: bool) -> NoReturn:
    """One clear message on stderr and exit 2 (invalid input) or 1 (failed run)."""
    from .io import IncompleteStoreError
    from .workflow.config import ConfigError

    invalid = isinstance(err, ConfigError | FileNotFoundError | IncompleteStoreError)
    if isinstance(err, ValueError) and not invalid:
        invalid = True
    if debug:
        traceback.print_exception(err, file=sys.stderr)
    label = "invalid input" if invalid else "run failed"
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error[/] ({label}): {escape(str(err))}"
    )
    raise typer.Exit(2 if invalid else 1)


def _guard(debug: bool, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        Console(stderr=True).print("[red]interrupted[/]; finish the store with --resume")
        raise typer.Exit(1) from None
    except Exception as err:  # noqa: BLE001 - turned into one message and an exit code
        _fail(err, debug)


def _progress_printer(total_hint: str) -> tuple[Callable[[int, int, str], None], Any]:
    """A rich progress bar on a terminal, plain log lines otherwise."""
    if console.is_terminal:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        task = bar.add_task(f"regions of {total_hint}", total=None)

        def tick(done: int, total: int, key: str) -> None:
            bar.update(task, completed=done, total=total)

        return tick, bar
    state = {"last": 0.0}

    def line(done: int, total: int, key: str) -> None:
        now = time.monotonic()
        if done in (0, total) or now - state["last"] >= 2.0:
            state["last"] = now
            print(f"[deltaflow] {done}/{total} regions written {key}".rstrip(), flush=True)

    return line, None


@app.command("run")
def run_cmd(
    workflow: str = typer.Argument(..., help="workflow YAML file"),
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    cluster: str = typer.Option(None, "--cluster", help="local, a profile, or tcp://host:port"),
    resume: bool = typer.Option(False, "--resume", help="write only the unrecorded regions"),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Run a workflow: validate, compute region by region, write the store (and plot)."""
    from .workflow.runner import run_workflow

    def go() -> Any:
        tick, bar = _progress_printer(workflow)
        if bar is not None:
            with bar:
                return run_workflow(
                    workflow, overrides=set_ or (), cluster=cluster, resume=resume, progress=tick
                )
        return run_workflow(
            workflow, overrides=set_ or (), cluster=cluster, resume=resume, progress=tick
        )

    summary = _guard(debug, go)
    console.print(f"[green]done[/] {escape(str(summary))}", highlight=False)


@app.command("validate")
def validate_cmd(
    workflow: str = typer.Argument(..., help="workflow YAML file"),
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Validate a workflow in full (file, source metadata, steps, sink); reads no data."""
    from .workflow.runner import validate_workflow

    built = _guard(debug, lambda: validate_workflow(workflow, overrides=set_ or ()))
    console.print(
        f"[green]valid[/] {workflow}: {len(built.steps_info)} step(s), "
        f"{len(built.write_vars)} variable(s) to {built.store.path} ({len(built.grid)} regions)",
        highlight=False,
    )


@app.command("plan")
def plan_cmd(
    workflow: str = typer.Argument(..., help="workflow YAML file"),
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    as_json: bool = typer.Option(False, "--json", help="print machine-readable JSON"),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Show what a run would do: steps, halos, chunk grid, tasks, memory per worker."""
    from .workflow.runner import _fmt_bytes, plan_workflow

    plan = _guard(debug, lambda: plan_workflow(workflow, overrides=set_ or ()))
    if as_json:
        typer.echo(json.dumps(plan, indent=2, default=str))
        return
    table = Table(
        title=f"plan of {plan['workflow']} -> {plan['sink']['path']} [{plan['sink']['mode']}]"
    )
    for col in ("#", "step", "settings", "halo"):
        table.add_column(col)
    for i, st in enumerate(plan["steps"]):
        settings = {k: v for k, v in st.items() if k not in ("step", "halo")}
        table.add_row(str(i), st["step"], json.dumps(settings, default=str), json.dumps(st["halo"]))
    console.print(table)
    out = Table(title="outputs")
    for col in ("variable", "dims", "shape", "store chunks", "dtype", "size"):
        out.add_column(col)
    for v, d in plan["outputs"].items():
        out.add_row(
            v,
            ", ".join(d["dims"]),
            str(tuple(d["shape"])),
            str(tuple(d["chunks"])),
            d["dtype"],
            _fmt_bytes(d["bytes"]),
        )
    console.print(out)
    grid = " x ".join(f"{d}:{n}" for d, n in plan["chunk_grid"].items())
    console.print(
        f"chunk grid {grid} = {plan['regions']} regions; halos {plan['halos']}; "
        f"{plan['tasks']} tasks; {_fmt_bytes(plan['bytes'])} to write; estimated memory per "
        f"worker {_fmt_bytes(plan['memory_per_worker'])} ({plan['threads_per_worker']} threads); "
        f"device {plan['device']}" + (" (host copies allowed)" if plan["allow_host"] else ""),
        highlight=False,
    )


@app.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of workflow files (configs/workflow.schema.json)."""
    from .workflow.config import json_schema

    typer.echo(json.dumps(json_schema(), indent=2, sort_keys=True))


@app.command("inspect")
def inspect_cmd(
    store: str = typer.Argument(..., help="Zarr store path or URL"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable JSON"),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Variables, chunks, codecs, provenance and completeness of a store (exit 1 if unfinished)."""
    from .io import inspect_store
    from .workflow.runner import _fmt_bytes

    info = _guard(debug, lambda: inspect_store(store))
    comp = info["completeness"]
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
    else:
        table = Table(title=f"{store} ({_fmt_bytes(info['bytes_on_disk'])} on disk)")
        for col in ("variable", "dims", "shape", "chunks", "dtype", "codec"):
            table.add_column(col)
        for name, v in info["variables"].items():
            table.add_row(
                name,
                ", ".join(map(str, v["dims"])),
                str(tuple(v["shape"])),
                str(tuple(v["chunks"])),
                v["dtype"],
                ", ".join(v["codec"]),
            )
        console.print(table)
        for k in ("workflow_name", "workflow_sha256", "deltaflow_version", "run_start", "run_end"):
            if k in info["attrs"]:
                console.print(f"{k}: {info['attrs'][k]}", highlight=False)
        for st in info["attrs"].get("steps", []) or []:
            console.print(f"step: {json.dumps(st, default=str)}", highlight=False)
        if "source" in info["attrs"]:
            console.print(f"source: {json.dumps(info['attrs']['source'])}", highlight=False)
        if comp["complete"] is None:
            console.print("completeness: unknown (not written by deltaflow)")
        elif comp["complete"]:
            console.print(
                f"[green]COMPLETE[/]: {comp['regions_done']}/{comp['regions_total']} regions",
                highlight=False,
            )
        else:
            shown = ", ".join(comp["missing"][:5]) + (" ..." if len(comp["missing"]) > 5 else "")
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"[bold white on red] INCOMPLETE [/] {comp['regions_done']}/"
                f"{comp['regions_total']} regions written (status {comp['status']!r}); "
                f"missing regions read as NaN: {shown}. Finish with "
                "`deltaflow run WORKFLOW --resume`."
            )
    if comp["complete"] is False:
        raise typer.Exit(1)


@app.command("plot")
def plot_cmd(
    store: str = typer.Argument(..., help="Zarr store path"),
    var: str = typer.Argument(..., help="variable to plot with its derivatives"),
    out: str = typer.Option(..., "--out", help="PNG file to write"),
    sel: Annotated[list[str] | None, typer.Option("--sel", help="dim=label (repeatable)")] = None,
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete"),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Plot a signal and its stored derivatives along one dim to a PNG."""
    from .workflow.config import parse_value
    from .workflow.plot import plot_store

    def go() -> Any:
        picks = {}
        for s in sel or ():
            if "=" not in s:
                raise ValueError(f"--sel {s!r}: expected dim=label")
            k, v = s.split("=", 1)
            picks[k.strip()] = parse_value(v)
        return plot_store(store, var, sel=picks, out=out, allow_incomplete=allow_incomplete)

    path = _guard(debug, go)
    console.print(f"wrote {path}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    app()


if __name__ == "__main__":
    main()
