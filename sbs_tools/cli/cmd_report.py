"""``sbs report FILE [FILE_B] [-o OUT.html] [--deep]``: one self-contained HTML page about a file.

The page shows the verify verdict and findings, a to-scale byte map of the
file, the layer stack (text and ViT layers, missing tensors as red holes) and,
with ``--deep``, per-tensor value statistics with histograms. With two files it
shows what differs from A to B. Nothing in the page loads from the network.

Exit codes: 0 the report was written (whatever the file's verdict: the report
says it); 2 unreadable input or usage error.
"""
from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from .common import app, console, err_console


@app.command()
def report(
    files: list[Path] = typer.Argument(..., metavar="FILE", help="The .sbs file, or two files A B to compare.",
                                       exists=True, dir_okay=False, readable=True, show_default=False),
    out: Path | None = typer.Option(None, "-o", "--output", metavar="OUT.html", dir_okay=False,
                                    help="Where to write the page (default: <FILE stem>.report.html in the current "
                                         "directory; '-' for stdout)."),
    deep: bool = typer.Option(False, "--deep", help="Also decode every tensor: value statistics and histograms "
                                                    "(and value differences with two files)."),
) -> None:
    """Write a self-contained HTML report: verdict, byte map, layer stack, (--deep) value histograms; with two
    files, the differences from A to B."""
    from sbs_tools.report import render_report

    if len(files) > 2:
        err_console.print("[bold red]error:[/] sbs report takes one file, or two to compare")
        raise typer.Exit(2)
    show = sys.stderr.isatty()
    status = err_console.status("building report", spinner="dots") if show else None
    if status is not None:
        status.start()
    try:
        page = render_report(files, deep=deep,
                             progress=(lambda msg: status.update(escape(msg))) if status is not None else None)
    finally:
        if status is not None:
            status.stop()
    if out is not None and str(out) == "-":
        sys.stdout.write(page)
        return
    if out is None:
        stem = files[0].stem if len(files) == 1 else f"{files[0].stem}-vs-{files[1].stem}"
        out = Path(f"{stem}.report.html")
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as e:
        err_console.print(f"[bold red]error:[/] cannot write {escape(str(out))}: {escape(e.strerror or str(e))}")
        raise typer.Exit(2)
    console.print(f"wrote [bold]{escape(str(out))}[/] ({len(page.encode()) / 1024:.0f} KiB)", soft_wrap=True)
