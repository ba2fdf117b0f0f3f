"""``sbs convert IN OUT.sbs``: GGUF or Hugging Face safetensors -> gemma.cpp weights, with pip alone."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import app, console, err_console, human_bytes, print_json


@app.command()
def convert(
    source: Path = typer.Argument(..., exists=True, help="A .gguf file, a .safetensors file, or a Hugging Face "
                                                          "model directory (config.json + *.safetensors)."),
    output: Path = typer.Argument(..., dir_okay=False, help="The .sbs file to write."),
    weight_type: str = typer.Option("bf16", "--type", "-t", metavar="f32|bf16|sfp|nuq|i8",
                                    help="Element type of the large matrices; embedding and norms follow "
                                         "gemma.cpp (BF16, or F32 with --type f32)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="SPECIFIER",
                                        help="gemma.cpp model to insist on, e.g. gemma3-270m-bf16-pt "
                                             "(default: recognized from the checkpoint)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", exists=True, dir_okay=False,
                                             help="tokenizer.model to embed instead of the checkpoint's own."),
    layout: str = typer.Option("v2", "--layout", metavar="v1|v2",
                               help="v2: gemma.cpp from 2025-07-31 on; v1: also older builds (holds all "
                                    "blobs in memory while writing)."),
    wrapping: Optional[str] = typer.Option(None, "--wrapping", metavar="it|pt",
                                           help="Prompt wrapping to record (default: from the checkpoint's "
                                                "name: instruction-tuned -> it, else pt)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary instead of the report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Convert a GGUF or safetensors Gemma 2/3 checkpoint to a gemma.cpp .sbs file (streaming)."""
    from sbs_tools.convert.build import convert as run

    show = not quiet and not json_out and sys.stderr.isatty()
    res = run(source, output, weight=weight_type, model=model, tokenizer=tokenizer, layout=layout.lower(),
              wrapping=wrapping, progress=show)
    if json_out:
        print_json(res.to_dict())
        return
    cfg = res.config
    console.print(f"[bold]{escape(str(output))}[/]  [cyan]{cfg.specifier}[/]  "
                  f"{human_bytes(res.file_bytes)}, {len(res.tensors)} tensors, {res.seconds:.1f} s")
    counts: dict[str, int] = {}
    for t in res.tensors:
        counts[t.type] = counts.get(t.type, 0) + 1
    scaled = sum(1 for t in res.tensors if t.scale != 1.0)
    console.print("  types: " + ", ".join(f"{k} x{v}" for k, v in counts.items())
                  + (f"; {scaled} tensors scaled for SFP/NUQ" if scaled else ""))
    for n in res.notes:
        console.print(f"  [blue]note[/] {escape(n)}")
    err_console.print(f"next: sbs verify --deep {escape(str(output))}", style="dim")
