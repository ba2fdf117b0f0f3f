"""``sbs convert IN OUT.sbs``: GGUF or Hugging Face safetensors -> gemma.cpp weights, with pip alone."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import app, console, err_console, human_bytes, print_json, show_progress


class WeightType(str, Enum):
    f32 = "f32"
    bf16 = "bf16"
    sfp = "sfp"
    nuq = "nuq"
    i8 = "i8"
    q4_0 = "q4_0"
    mxfp4 = "mxfp4"


class Layout(str, Enum):
    v1 = "v1"
    v2 = "v2"


class Wrapping(str, Enum):
    it = "it"
    pt = "pt"


@app.command()
def convert(
    source: Path = typer.Argument(..., metavar="IN", help="A .gguf file, a .safetensors file, or a Hugging Face "
                                                          "model directory (config.json + *.safetensors)."),
    output: Path = typer.Argument(..., metavar="OUT.sbs", help="The .sbs file to write."),
    weight_type: WeightType = typer.Option(WeightType.bf16, "--type", "-t",
                                           help="Element type of the large matrices; embedding and norms follow "
                                                "gemma.cpp (BF16, or F32 with --type f32)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="SPECIFIER",
                                        help="gemma.cpp model to insist on, e.g. gemma3-270m-bf16-pt "
                                             "(default: recognized from the checkpoint)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", metavar="FILE.spm",
                                             help="tokenizer.model to embed instead of the checkpoint's own."),
    layout: Layout = typer.Option(Layout.v2, "--layout",
                                  help="v2: gemma.cpp from 2025-07-31 on; v1: also older builds (holds all "
                                       "blobs in memory while writing)."),
    wrapping: Optional[Wrapping] = typer.Option(None, "--wrapping",
                                                help="Prompt wrapping to record (default: from the checkpoint's "
                                                     "name: instruction-tuned -> it, else pt)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT.sbs."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary instead of the report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Convert a GGUF or safetensors Gemma 2/3 checkpoint to a gemma.cpp .sbs file (streaming)."""
    from sbs_tools.convert.build import convert as run

    res = run(source, output, weight=weight_type.value, model=model, tokenizer=tokenizer, layout=layout.value,
              wrapping=wrapping.value if wrapping else None, progress=show_progress(quiet=quiet, json_out=json_out),
              overwrite=force)
    if json_out:
        print_json(res.to_dict())
        return
    cfg = res.config
    console.print(f"[bold]{escape(str(output))}[/]  [cyan]{cfg.specifier}[/]  "
                  f"{human_bytes(res.file_bytes)}, {len(res.tensors)} tensors, {res.seconds:.1f} s", soft_wrap=True)
    counts: dict[str, int] = {}
    for t in res.tensors:
        counts[t.type] = counts.get(t.type, 0) + 1
    scaled = sum(1 for t in res.tensors if t.scale != 1.0)
    console.print("  types: " + ", ".join(f"{k} x{v}" for k, v in counts.items())
                  + (f"; {scaled} tensors scaled for SFP/NUQ" if scaled else ""))
    for n in res.notes:
        console.print(f"  [blue]note[/] {escape(n)}")
    err_console.print(f"next: sbs verify --deep {escape(str(output))}", style="dim")
