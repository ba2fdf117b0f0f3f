"""``sbs report FILE [FILE_B] [-o OUT.html] [--deep]``: one self-contained HTML page about a file.

The page shows the verify verdict and findings, a to-scale byte map of the
file, the layer stack (text and ViT layers, missing tensors as red holes) and,
with ``--deep``, per-tensor value statistics with histograms. With two files it
shows what differs from A to B. Nothing in the page loads from the network.

Exit codes: 0 the report was written (whatever the file's verdict: the report
says it); 2 unreadable input, an output the output policy refuses, or a usage error.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import ALLOW_FULL_DOWNLOAD_HELP, app, console, inputs_arg, refuse_unreadable, show_progress, usage_error
from .progress import status_line


@app.command()
def report(
    files: list[str] = typer.Argument(..., metavar="FILE", help="The .sbs file (or URL), or two files A B to "
                                                                "compare.", show_default=False),
    out: Optional[Path] = typer.Option(None, "-o", "--output", metavar="OUT.html",
                                       help="Where to write the page (default: <FILE stem>.report.html in the "
                                            "current directory; '-' for stdout)."),
    deep: bool = typer.Option(False, "--deep", help="Also decode every tensor: value statistics and histograms "
                                                    "(and value differences with two files)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT.html."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress spinner."),
    allow_full_download: bool = typer.Option(False, "--allow-full-download", help=ALLOW_FULL_DOWNLOAD_HELP),
) -> None:
    """Write a self-contained HTML report: verdict, byte map, layer stack, (--deep) value histograms; with two
    files, the differences from A to B."""
    from sbs_tools.output import check_output_file, write_file

    if len(files) > 2:
        usage_error("sbs report takes one file, or two to compare")
    from sbs_tools.source import stem

    files = inputs_arg(files, allow_full_download)
    to_stdout = out is not None and str(out) == "-"
    if force and to_stdout:
        usage_error("--force does not apply to -o - (standard output)")
    if out is None:
        name = stem(files[0]) if len(files) == 1 else f"{stem(files[0])}-vs-{stem(files[1])}"
        out = Path(f"{name}.report.html")
    if not to_stdout:
        check_output_file(out, files, force=force)
    from sbs_tools.report import build_file_model, render_models

    with status_line("building report", show_progress(quiet=quiet)) as say:
        models = []
        for f in files:  # each input is opened once; one that is no .sbs at all stops here (exit 2)
            m = build_file_model(f, deep=deep, progress=say)
            refuse_unreadable(m.verify)
            models.append(m)
        page = render_models(models, deep=deep, progress=say)
    if to_stdout:
        sys.stdout.write(page)
        return
    size = write_file(out, page)
    console.print(f"wrote [bold]{escape(str(out))}[/] ({size / 1024:.0f} KiB)", soft_wrap=True)
