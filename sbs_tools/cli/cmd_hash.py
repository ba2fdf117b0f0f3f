"""``sbs hash FILE...`` / ``sbs hash --check MANIFEST``: per-tensor digests for CI pre-flight."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import (ALLOW_FULL_DOWNLOAD_HELP, app, console, err_console, exclusive, inputs_arg, print_json, requires,
                     show_progress, usage_error, with_transfer)
from .progress import progress_bar, status_line


class Per(str, Enum):
    tensor = "tensor"
    blob = "blob"
    file = "file"


class Algo(str, Enum):
    xxh64 = "xxh64"
    sha256 = "sha256"


@app.command("hash")
def hash_cmd(
    files: Optional[list[str]] = typer.Argument(None, metavar="FILE", help="One or more .sbs files (or URLs).",
                                                show_default=False),
    per: Optional[Per] = typer.Option(None, "--per", help="One digest per tensor (+ config, tokenizer), per "
                                                          "blob, or for the whole file [default: tensor]."),
    algo: Optional[Algo] = typer.Option(None, "--algo", help="Digest algorithm [default: xxh64]."),
    json_out: bool = typer.Option(False, "--json", help="Write the manifest (or the check results) as JSON."),
    check: Optional[Path] = typer.Option(None, "--check", "-c", metavar="MANIFEST",
                                         help="Verify files against a manifest (text or JSON), like sha256sum -c."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="With --check: print only failures."),
    allow_full_download: bool = typer.Option(False, "--allow-full-download", help=ALLOW_FULL_DOWNLOAD_HELP),
) -> None:
    """Digest a .sbs file per tensor, per blob or whole (over the mmap, no copies); --check a manifest."""
    from sbs_tools import hashing

    requires("quiet", quiet, "check", check is not None)
    files = inputs_arg(files or [], allow_full_download)
    if check is not None:
        exclusive(check=True, FILE=bool(files))
        exclusive(check=True, per=per is not None)
        exclusive(check=True, algo=algo is not None)
        _check(hashing, check, json_out, quiet)
        return
    if not files:
        usage_error("give one or more files, or --check MANIFEST")
    with progress_bar("hashing", show_progress(json_out=json_out)) as bar:
        manifest = hashing.hash_files(files, per=(per or Per.tensor).value, algo=(algo or Algo.xxh64).value,
                                      progress=bar)
    if json_out:
        print_json(with_transfer(manifest.to_dict(), files))
    else:
        print(manifest.to_text(), end="")


def _check(hashing, manifest: Path, json_out: bool, quiet: bool) -> None:
    with status_line("checking", show_progress(json_out=json_out, quiet=quiet)):
        lines = hashing.check(manifest)
    bad = [ln for ln in lines if ln.status != "OK"]
    failed = [ln for ln in bad if ln.status != "EXTRA"]
    if json_out:
        print_json({"manifest": str(manifest), "ok": not bad,
                    "entries": [{"path": ln.path, "name": ln.name, "status": ln.status, "detail": ln.detail}
                                for ln in lines]})
    else:
        for ln in lines:
            if ln.status != "OK" or not quiet:
                style = "" if ln.status == "OK" else "bold red" if ln.status != "EXTRA" else "yellow"
                console.print(escape(str(ln)), style=style, highlight=False, soft_wrap=True)
        if failed:
            err_console.print(f"WARNING: {len(failed)} of {len(lines)} entries did NOT match")
    if failed:
        raise typer.Exit(1)
