"""Minimal numpy inference for gemma.cpp ``.sbs`` files: proves a file runs and agrees with gemma.cpp.

>>> import inference
>>> m = inference.load("fixtures/corpus/v2/gemma2-2b-tiny-bf16.sbs", progress=False)
>>> m.generate([2, 10, 20, 30, 40], 3)
[40, 40, 40]
"""
from __future__ import annotations

import contextlib
import os
import sys

from .memory import MODES, choose_mode, parse_size
from .model import Model, no_progress
from .ops import ROPE_MODES
from .tokenizer import Tokenizer
from .vision import VISION_MODES
from .weights import NUMERICS, Streamed, UnsupportedModel, Weights

__all__ = ["load", "Model", "Weights", "Streamed", "Tokenizer", "UnsupportedModel", "ROPE_MODES",
           "NUMERICS", "VISION_MODES", "MODES", "choose_mode", "parse_size"]


def load(path: str | os.PathLike, *, rope: str = "gemmacpp", numerics: str = "gemmacpp", vision: str = "gemmacpp",
         images: bool = False, mode: str = "auto", max_memory: int | str | None = None, progress: bool = True,
         log=None) -> Model:
    """Open ``path`` and return a :class:`Model` that runs it.

    ``mode``: ``"resident"`` decodes every text weight once to float32 and keeps it;
    ``"streaming"`` keeps the file memory-mapped and decodes each matrix (the tied embedding too) a
    row block at a time whenever the forward pass multiplies by it, releasing the decoded block and
    the mapped pages behind it, so memory stays far below one layer's float32 weights; ``"auto"``
    is resident when the float32 weights fit ``max_memory`` (bytes, or a size such as ``"4G"``;
    default: half the available memory), streaming otherwise. Both give bit-identical logits.
    ``rope``: ``"gemmacpp"`` (what gemma.cpp 3ed403e computes: the 270M uses base 10,000 on all
    layers) or ``"reference"`` (base 1e6 on every Gemma 3 global layer, as the original models).
    ``numerics``: ``"gemmacpp"`` (bf16-rounded weights, I8 halves re-quantized) or ``"f32"``.
    ``vision``: ``"gemmacpp"`` (gemma.cpp's image path: soft-embedding norm on the first pooled
    token only, causal attention over Gemma 3 image tokens) or ``"reference"`` (the published
    models: norm on every token, bidirectional attention within an image). PaliGemma: both attend
    over the whole prompt as a prefix; ``"gemmacpp"`` then runs the last prompt token again at the
    next position and samples the first new token there, ``"reference"`` samples it from the last
    prompt position; see ``vision.py``.
    ``images``: decode the vision encoder now (else on the first image) and leave out the
    text-only notes.
    ``progress`` shows progress bars on stderr (decoding, and each streamed forward pass) when it
    is a terminal; ``log(str)`` receives notes (the chosen mode and why, skipped ViT layers, memory
    use); by default they go to stderr when ``progress`` is on.
    """
    import sbs_tools
    from rich.console import Console

    from . import vision as vis
    from .weights import load_weights, text_only_notes

    if vision not in VISION_MODES:
        raise ValueError(f"vision must be one of {VISION_MODES}, not {vision!r}")
    if log is None:
        log = (lambda s: print(s, file=sys.stderr)) if progress else (lambda s: None)
    console = Console(stderr=True)
    show = progress and console.is_terminal
    f = sbs_tools.open(path)
    try:
        weights = load_weights(f, rope=rope, numerics=numerics, streaming=True)  # checks every tensor
        chosen, why = choose_mode(weights.nbytes, mode, max_memory)
        log(f"{chosen} mode: {why}")
        if chosen == "resident":
            with _bar(console, "decoding weights", show) as tick:
                weights = load_weights(f, rope=rope, numerics=numerics, progress=tick)
        tok = Tokenizer.from_sbs(f) if f.tokenizer_bytes else None  # SbsError on a damaged blob
        vit = vis.load_vit(f, numerics) if images else None
    except BaseException:
        f.close()
        raise
    if chosen == "resident":
        f.close()
    passes = (lambda total: _pass_bar(console, total)) if show and chosen == "streaming" else no_progress
    model = Model(f.config, weights, tok, rope=rope, numerics=numerics, path=os.fspath(path), vision=vision,
                  vit=vit, progress=passes)
    skip = text_only_notes(f.config) if images else []
    for note in weights.notes:
        if note not in skip:
            log(f"note: {note}")
    if images:
        log(f"note: vision encoder: {len(vit.layers)} ViT layers, {vit.num_tokens} image tokens per image, "
            f"{vision} behaviour ({vis.describe(f.config, vision)})")
    if chosen == "streaming":
        log(f"opened {model.config.specifier}: {weights.num_layers} layers, weights {_mib(weights.nbytes)} as "
            f"float32 (largest layer {_mib(weights.layer_nbytes)}), decoded a block at a time as used{_rss()}")
    else:
        log(f"loaded {model.config.specifier}: {weights.num_layers} layers, weights {_mib(weights.nbytes)} "
            f"as float32{_rss()}")
    return model


@contextlib.contextmanager
def _bar(console, what: str, show: bool):
    """A transient rich progress bar; yields ``tick(done, total, name)``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(what + " {task.description}"), BarColumn(), TimeElapsedColumn(),
                   console=console, transient=True, disable=not show)
    with bar:
        task = bar.add_task("", total=None)
        yield lambda done, total, name="": bar.update(task, completed=done, total=total, description=name)


@contextlib.contextmanager
def _pass_bar(console, total: int):
    """One streamed forward pass: layers, then the logits."""
    with _bar(console, "forward pass", True) as tick:
        yield lambda done: tick(done, total, "logits" if done >= total - 1 else f"layer {done}")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _rss() -> str:
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return f", peak RSS {_mib(peak)}"
    except Exception:  # pragma: no cover - non-POSIX
        return ""
