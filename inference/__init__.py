"""Minimal numpy inference for gemma.cpp ``.sbs`` files: proves a file runs and agrees with gemma.cpp.

>>> import inference
>>> m = inference.load("fixtures/corpus/v2/gemma2-2b-tiny-bf16.sbs", progress=False)
>>> m.generate([2, 10, 20, 30, 40], 3)
[40, 40, 40]
"""
from __future__ import annotations

import os
import sys

from .model import Model
from .ops import ROPE_MODES
from .tokenizer import Tokenizer
from .vision import VISION_MODES
from .weights import NUMERICS, UnsupportedModel

__all__ = ["load", "Model", "Tokenizer", "UnsupportedModel", "ROPE_MODES", "NUMERICS", "VISION_MODES"]


def load(path: str | os.PathLike, *, rope: str = "gemmacpp", numerics: str = "gemmacpp", vision: str = "gemmacpp",
         images: bool = False, progress: bool = True, log=None) -> Model:
    """Open ``path``, decode every text weight once to float32 and return a :class:`Model`.

    ``rope``: ``"gemmacpp"`` (what gemma.cpp 3ed403e computes: the 270M uses base 10,000 on all
    layers) or ``"reference"`` (base 1e6 on every Gemma 3 global layer, as the original models).
    ``numerics``: ``"gemmacpp"`` (bf16-rounded weights, I8 halves re-quantized) or ``"f32"``.
    ``vision``: ``"gemmacpp"`` (gemma.cpp's image path: soft-embedding norm on the first pooled
    token only, causal attention over Gemma 3 image tokens) or ``"reference"`` (the published
    models: norm on every token, bidirectional attention within an image); see ``vision.py``.
    ``images``: decode the vision encoder now (else on the first image) and leave out the
    text-only notes.
    ``progress`` shows a progress bar on stderr; ``log(str)`` receives notes (skipped ViT layers,
    memory use); by default they go to stderr when ``progress`` is on.
    """
    import sbs_tools
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from . import vision as vis
    from .weights import load_weights, text_only_notes

    if vision not in VISION_MODES:
        raise ValueError(f"vision must be one of {VISION_MODES}, not {vision!r}")
    if log is None:
        log = (lambda s: print(s, file=sys.stderr)) if progress else (lambda s: None)
    with sbs_tools.open(path) as f:
        console = Console(stderr=True)
        bar = Progress(TextColumn("decoding weights {task.description}"), BarColumn(), TimeElapsedColumn(),
                       console=console, transient=True, disable=not (progress and console.is_terminal))
        with bar:
            task = bar.add_task("", total=len(f.config.layer_configs) if f.config else 0)

            def tick(done: int, total: int, name: str) -> None:
                bar.update(task, completed=done, description=name)

            weights = load_weights(f, rope=rope, numerics=numerics, progress=tick)
        tok = Tokenizer.from_sbs(f) if f.tokenizer_bytes else None  # SbsError on a damaged blob
        vit = vis.load_vit(f, numerics) if images else None
        model = Model(f.config, weights, tok, rope=rope, numerics=numerics, path=os.fspath(path), vision=vision,
                      vit=vit)
    skip = text_only_notes(f.config) if images else []
    for note in weights.notes:
        if note not in skip:
            log(f"note: {note}")
    if images:
        log(f"note: vision encoder: {len(vit.layers)} ViT layers, {vit.num_tokens} image tokens per image, "
            f"{vision} behaviour ({vis.describe(f.config, vision)})")
    log(f"loaded {model.config.specifier}: {len(weights.layers)} layers, weights {_mib(weights.nbytes)} "
        f"as float32{_rss()}")
    return model


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _rss() -> str:
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return f", peak RSS {_mib(peak)}"
    except Exception:  # pragma: no cover - non-POSIX
        return ""
