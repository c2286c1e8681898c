"""The ``deltaflow`` command line (typer).

Exit codes: 0 success, 1 failed run, 2 invalid input. Errors print one clear message;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()


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
        orders = f"{d['orders'][0]}..{d['orders'][-1]}"
        table.add_row(name, orders, params, d["footprint"], caps)
    console.print(table)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
