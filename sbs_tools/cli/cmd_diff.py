"""``sbs diff A B``: config, toc and blob differences, and per-tensor value differences after decoding."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import ALLOW_FULL_DOWNLOAD_HELP, app, console, exclusive, inputs_arg, print_json, show_progress, with_transfer
from .progress import progress_bar


@app.command()
def diff(
    a: str = typer.Argument(..., metavar="A", help="First .sbs file (or URL)."),
    b: str = typer.Argument(..., metavar="B", help="Second .sbs file (or URL)."),
    atol: Optional[float] = typer.Option(None, "--atol", min=0.0, metavar="X",
                                         help="Absolute tolerance for values [default: 0]."),
    rtol: Optional[float] = typer.Option(None, "--rtol", min=0.0, metavar="X",
                                         help="Relative tolerance (of |B|) for values [default: 0]."),
    no_values: bool = typer.Option(False, "--no-values", help="Compare bytes only; do not decode."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    allow_full_download: bool = typer.Option(False, "--allow-full-download", help=ALLOW_FULL_DOWNLOAD_HELP),
) -> None:
    """Compare two .sbs files by name. Exit 0 if equivalent (values within --atol/--rtol), 1 otherwise."""
    from sbs_tools.diff import diff as run

    exclusive(no_values=no_values, atol=atol is not None)
    exclusive(no_values=no_values, rtol=rtol is not None)
    a, b = inputs_arg([a, b], allow_full_download)
    with progress_bar("comparing", show_progress(quiet=quiet, json_out=json_out)) as bar:
        rep = run(a, b, atol=atol or 0.0, rtol=rtol or 0.0, values=not no_values, progress=bar)
    if json_out:
        print_json(with_transfer(rep.to_dict(), [a, b]))
    else:
        _render(rep)
    if not rep.equivalent:
        raise typer.Exit(1)


def _render(rep) -> None:
    from rich.table import Table  # only the text output needs it

    if rep.identical:
        console.print(f"[green]identical[/]: {escape(rep.a)} and {escape(rep.b)} "
                      f"({rep.unchanged} tensors, same config and blobs)")
        return
    head = "[green]equivalent[/]" if rep.equivalent else "[bold red]different[/]"
    console.print(f"{head}: {escape(rep.a)} vs {escape(rep.b)}  (atol {rep.atol:g}, rtol {rep.rtol:g})")
    for line in rep.container:
        console.print(f"  container: {escape(line)}")
    for line in rep.config:
        console.print(f"  config: {escape(line)}")
    for line in rep.blobs:
        console.print(f"  blob {escape(line)}")
    if rep.removed:
        console.print(f"  only in A ({len(rep.removed)}): " + escape(", ".join(rep.removed)))
    if rep.added:
        console.print(f"  only in B ({len(rep.added)}): " + escape(", ".join(rep.added)))
    console.print(f"  {rep.unchanged} tensors byte-identical, {len(rep.tensors)} changed")
    if rep.tensors:
        t = Table(show_edge=False, pad_edge=False)
        for col in ("tensor", "verdict", "changes", "max |a-b|", "max rel", "outside tol", "values"):
            t.add_column(col, overflow="fold")
        style = {"equal": "green", "close": "green", "different": "red", "incomparable": "red"}
        for td in rep.tensors:
            rel = td.max_rel if isinstance(td.max_rel, str) else f"{td.max_rel:.3g}"
            t.add_row(escape(td.name), f"[{style[td.verdict]}]{td.verdict}[/]" + ("" if not td.bytes_equal else " (bytes)"),
                      escape("; ".join(td.changes)), f"{td.max_abs:.3g}", rel, str(td.mismatched), str(td.values))
        console.print(t)
