"""``sbs export IN.sbs OUT``: tensors to safetensors / npz (decoded or raw), or a Hugging Face directory."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from .common import (ALLOW_FULL_DOWNLOAD_HELP, app, console, exclusive, human_bytes, inputs_arg, print_json,
                     show_progress, with_transfer)
from .progress import progress_bar


@app.command()
def export(
    source: str = typer.Argument(..., metavar="IN.sbs", help="The .sbs file, or its URL."),
    output: Path = typer.Argument(..., metavar="OUT", help="OUT.safetensors or OUT.npz (or a directory with "
                                                           "--hf)."),
    raw: bool = typer.Option(False, "--raw", help="Packed blob bytes (uint8) instead of decoded float32."),
    hf: bool = typer.Option(False, "--hf", help="Write a Hugging Face checkpoint directory (config.json, "
                                               "model.safetensors, tokenizer.model) with HF names and layouts."),
    no_tokenizer: bool = typer.Option(False, "--no-tokenizer", help="Leave the tokenizer out."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT; with --hf, write into a non-empty "
                                                      "directory (only the files export writes are replaced)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    allow_full_download: bool = typer.Option(False, "--allow-full-download", help=ALLOW_FULL_DOWNLOAD_HELP),
) -> None:
    """Export every tensor (config and toc as metadata) to safetensors or npz, or a Hugging Face directory."""
    from sbs_tools.export import export as run

    exclusive(raw=raw, hf=hf)
    source = inputs_arg(source, allow_full_download)
    with progress_bar("exporting", show_progress(quiet=quiet, json_out=json_out)) as bar:
        res = run(source, output, raw=raw, hf=hf, tokenizer=not no_tokenizer, progress=bar or False,
                  overwrite=force)
    if json_out:
        print_json(with_transfer(res.to_dict(), [source]))
        return
    console.print(f"[bold]{escape(str(output))}[/]  {res.kind} {res.format}, {res.tensors} tensors, "
                  f"{human_bytes(res.file_bytes)}, {res.seconds:.1f} s", soft_wrap=True)
