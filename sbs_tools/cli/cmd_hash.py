"""``sbs hash FILE...`` / ``sbs hash --check MANIFEST``: per-tensor digests for CI pre-flight."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import app, console, err_console, print_json


@app.command("hash")
def hash_cmd(
    files: Optional[list[Path]] = typer.Argument(None, help="One or more .sbs files.", dir_okay=False,
                                                 show_default=False),
    per: str = typer.Option("tensor", "--per", metavar="tensor|blob|file",
                            help="One digest per tensor (+ config, tokenizer), per blob, or for the whole file."),
    algo: str = typer.Option("xxh64", "--algo", metavar="xxh64|sha256", help="Digest algorithm."),
    json_out: bool = typer.Option(False, "--json", help="Write the manifest as JSON."),
    check: Optional[Path] = typer.Option(None, "--check", "-c", metavar="MANIFEST", dir_okay=False,
                                         help="Verify files against a manifest (text or JSON), like sha256sum -c."),
    quiet: bool = typer.Option(False, "--quiet", help="With --check: print only failures."),
) -> None:
    """Digest a .sbs file per tensor, per blob or whole (over the mmap, no copies); --check a manifest."""
    from sbs_tools import hashing

    if check is not None:
        if files:
            raise typer.BadParameter("give either FILES or --check MANIFEST")
        lines = hashing.check(check)
        bad = [ln for ln in lines if ln.status not in ("OK",)]
        if json_out:
            print_json({"manifest": str(check), "ok": not bad,
                        "entries": [{"path": ln.path, "name": ln.name, "status": ln.status, "detail": ln.detail}
                                    for ln in lines]})
        else:
            for ln in lines:
                if ln.status != "OK" or not quiet:
                    style = "" if ln.status == "OK" else "bold red" if ln.status != "EXTRA" else "yellow"
                    console.print(escape(str(ln)), style=style, highlight=False)
            failed = [ln for ln in bad if ln.status != "EXTRA"]
            if failed:
                err_console.print(f"WARNING: {len(failed)} of {len(lines)} entries did NOT match")
        if [ln for ln in bad if ln.status != "EXTRA"]:
            raise typer.Exit(1)
        return
    if not files:
        raise typer.BadParameter("give one or more files, or --check MANIFEST")
    manifest = hashing.hash_files(files, per=per, algo=algo)
    if json_out:
        print_json(manifest.to_dict())
    else:
        print(manifest.to_text(), end="")
