"""``sbs export IN.sbs OUT``: tensors to safetensors / npz (decoded or raw), or a Hugging Face directory."""
from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from .common import app, console, human_bytes, print_json


@app.command()
def export(
    source: Path = typer.Argument(..., exists=True, dir_okay=False, help="The .sbs file."),
    output: Path = typer.Argument(..., help="OUT.safetensors or OUT.npz (or a directory with --hf)."),
    raw: bool = typer.Option(False, "--raw", help="Packed blob bytes (uint8) instead of decoded float32."),
    hf: bool = typer.Option(False, "--hf", help="Write a Hugging Face checkpoint directory (config.json, "
                                               "model.safetensors, tokenizer.model) with HF names and layouts."),
    no_tokenizer: bool = typer.Option(False, "--no-tokenizer", help="Leave the tokenizer out."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Export every tensor (config and toc as metadata) to safetensors or npz."""
    from sbs_tools.export import export as run

    res = run(source, output, raw=raw, hf=hf, tokenizer=not no_tokenizer,
              progress=not quiet and not json_out and sys.stderr.isatty())
    if json_out:
        print_json(res.to_dict())
        return
    console.print(f"[bold]{escape(str(output))}[/]  {res.kind} {res.format}, {res.tensors} tensors, "
                  f"{human_bytes(res.file_bytes)}, {res.seconds:.1f} s")
