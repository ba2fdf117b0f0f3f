"""Streaming encode + write: checkpoint -> ``.sbs``, one tensor at a time.

:func:`convert` opens the checkpoint (:func:`open_source`), chooses the
config (:func:`.source.resolve_config`), then for every tensor gemma.cpp's
exporter would write (``tensors.canonical_tensors``, in its order) asks the
reader for float32 values, encodes them in the element type gemma.cpp's
exporter uses (:func:`.names.tensor_type`; SFP/NUQ scaled as in spec §6.5)
and appends the blob; ``config``, ``tokenizer`` and ``toc`` come last, as
gemma.cpp's ``SbsWriter`` does. The output goes to a temporary file renamed
into place at the end (:class:`~sbs_tools.writer.BlobWriter`).

Memory: one tensor at a time (plus its encoding). The embedding — by far the
largest tensor — is streamed in row chunks when its readers can (GGUF,
safetensors) and the element type is per-value (F32/BF16/SFP), so peak memory
stays near the largest *layer* matrix. (V1 layout needs every blob before the
directory and therefore holds them all; use V2, the default, for big models.)
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .. import codecs
from ..config import GLOBAL_TIMESCALE_MODELS, ModelConfig
from ..errors import CodecError, SbsError
from ..tensors import TensorSpec, canonical_tensors
from ..toc import TocRecord, encode_toc
from ..types import BLOCK_TYPES, TYPE_BITS, Type
from ..inputs import check_input_dir_or_file, check_input_file
from ..output import check_output_file
from ..writer import BlobWriter
from . import ConvertError, spm
from .names import WEIGHT_TYPES, tensor_type
from .source import Resolved, Source, resolve_config

SFP_MAX = np.float32(1.875)
#: Values per streamed chunk (64 MiB of float32).
CHUNK_VALUES = 16 << 20
Progress = Callable[[int, int, str], None]


@dataclass
class TensorResult:
    name: str
    type: str
    rows: int
    cols: int
    scale: float
    bytes: int


@dataclass
class ConvertResult:
    """What :func:`convert` wrote."""

    source: str
    source_kind: str
    path: str
    config: ModelConfig
    canonical: bool
    tensors: list[TensorResult]
    tokenizer_bytes: int
    file_bytes: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"source": self.source, "source_kind": self.source_kind, "path": self.path,
                "specifier": self.config.specifier, "model": self.config.model_name,
                "canonical_config": self.canonical, "file_bytes": self.file_bytes,
                "tokenizer_bytes": self.tokenizer_bytes, "seconds": round(self.seconds, 3),
                "notes": self.notes, "tensors": [vars(t) for t in self.tensors]}


def detect_format(path: str | os.PathLike) -> str:
    """``"gguf"``, ``"safetensors"`` (a file, or a directory of them) or ``"sbs"``."""
    check_input_dir_or_file(path)
    p = Path(path)
    if p.is_dir():
        if any(p.glob("*.safetensors")):
            return "safetensors"
        raise ConvertError(f"{p}: directory without *.safetensors files", code="unknown-format")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as e:
        raise ConvertError(f"cannot open {p}: {e.strerror}", code="io-error") from None
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] == b"SBS\n" or p.suffix == ".sbs":
        return "sbs"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise ConvertError(f"{p}: not a GGUF or safetensors checkpoint", code="unknown-format")


def open_source(path: str | os.PathLike) -> Source:
    """A reader for a GGUF file, a safetensors file, or a Hugging Face model directory."""
    fmt = detect_format(path)
    if fmt == "gguf":
        from .gguf_import import GgufSource

        return GgufSource(path)
    if fmt == "safetensors":
        from .hf_import import HfSource

        return HfSource(path)
    raise ConvertError(f"{path} is already a .sbs file (use `sbs repair` / `sbs export`)", code="unknown-format")


# -- encoding ---------------------------------------------------------------------------------------

def sfp_scale(maxabs: float) -> tuple[float, np.float32]:
    """(scale, inverse) of gemma.cpp's ``ScaleWeights`` for a tensor whose max |x| is ``maxabs``."""
    m = np.float32(maxabs)
    if m <= SFP_MAX:
        return 1.0, np.float32(1.0)
    scale = np.float32(m / SFP_MAX)
    return float(scale), np.float32(1.0 / np.float64(scale))


def apply_sfp_scale(x: np.ndarray, inv: np.float32) -> np.ndarray:
    if inv == np.float32(1.0):
        return x
    return np.copysign(np.minimum(SFP_MAX, np.abs(x * inv)), x).astype(np.float32)


def _encode(t: Type, x: np.ndarray, name: str) -> bytes:
    try:
        return codecs.encode(t, x)
    except CodecError as e:
        raise CodecError(f"tensor {name}: {e.message}", code=e.code, tensor=name) from None


def _chunk_rows(cols: int) -> int:
    return max(1, CHUNK_VALUES // max(cols, 1))


class _Progress:
    def __init__(self, progress: bool | Progress, total: int, label: str) -> None:
        self.cb: Progress | None = progress if callable(progress) else None
        self.bar = None
        self.done, self.total = 0, total
        if progress is True:
            from rich.console import Console
            from rich.progress import (BarColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(),
                                    TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                                    TimeRemainingColumn(), TextColumn("{task.fields[tensor]}"),
                                    console=Console(stderr=True), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, tensor="")

    def advance(self, n: int, name: str) -> None:
        self.done += n
        if self.cb:
            self.cb(self.done, self.total, name)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, tensor=name)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _add_tensor(w: BlobWriter, src: Source, spec: TensorSpec, t: Type, cfg: ModelConfig,
                prog: _Progress) -> TensorResult:
    n = spec.rows * spec.cols
    nbytes = codecs.packed_size(t, n)
    rows = _chunk_rows(spec.cols)
    streamable = t in (Type.F32, Type.BF16, Type.SFP) and spec.rows > rows
    if streamable and src.chunks(spec, cfg, rows) is not None:
        inv = np.float32(1.0)
        scale = 1.0
        if t == Type.SFP:
            maxabs = np.float32(0.0)
            for c in src.chunks(spec, cfg, rows):
                if c.size:
                    maxabs = max(maxabs, np.float32(np.abs(c).max()))
            scale, inv = sfp_scale(maxabs)

        def gen() -> Iterator[bytes]:
            for c in src.chunks(spec, cfg, rows):
                if c.ndim != 2 or c.shape[1] != spec.cols:
                    raise ConvertError(f"{spec.name}: chunk of shape {c.shape}, expected (*, {spec.cols})",
                                       code="shape-mismatch", tensor=spec.name)
                yield _encode(t, apply_sfp_scale(c, inv) if t == Type.SFP else c, spec.name)
                prog.advance(c.size, spec.name)

        w.add_stream(spec.name, nbytes, gen)
        return TensorResult(spec.name, t.name, spec.rows, spec.cols, scale, nbytes)

    if t in BLOCK_TYPES:
        data = src.blocks(spec, cfg, t)
        if data is not None:
            if len(data) != nbytes:
                raise ConvertError(f"{spec.name}: {len(data)} bytes of {t.name} blocks, expected {nbytes}",
                                   code="shape-mismatch", tensor=spec.name)
            w.add(spec.name, data)
            prog.advance(n, spec.name)
            return TensorResult(spec.name, t.name, spec.rows, spec.cols, 1.0, nbytes)
    x = src.get(spec, cfg)
    if x.dtype != np.float32 or x.shape != spec.shape:
        x = np.asarray(x, dtype=np.float32).reshape(spec.shape)
    scale = 1.0
    if t in (Type.SFP, Type.NUQ):
        if not np.isfinite(x).all():
            raise CodecError(f"tensor {spec.name}: NaN/Inf among the values", code="non-finite", tensor=spec.name)
        scale, inv = sfp_scale(np.abs(x).max() if x.size else 0.0)
        x = apply_sfp_scale(x, inv)
    data = _encode(t, x, spec.name)
    del x
    w.add(spec.name, data)
    prog.advance(n, spec.name)
    return TensorResult(spec.name, t.name, spec.rows, spec.cols, scale, len(data))


#: A SentencePiece model is a few MiB; anything far larger is refused before it is read.
MAX_TOKENIZER_BYTES = 256 << 20


def _tokenizer(src: Source, path: str | os.PathLike | None, cfg: ModelConfig, notes: list[str]) -> bytes | None:
    if path is not None:
        if check_input_file(path).st_size > MAX_TOKENIZER_BYTES:
            raise ConvertError(f"tokenizer {path} is larger than {MAX_TOKENIZER_BYTES >> 20} MiB; "
                               "that is no SentencePiece model", code="bad-tokenizer")
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ConvertError(f"cannot read tokenizer {path}: {e.strerror}", code="io-error") from None
        notes.append(f"tokenizer from {path}")
    else:
        data = src.tokenizer()
    if data is None:
        notes.append("no tokenizer: the file gets gemma.cpp's 'unavailable' placeholder (pass --tokenizer)")
        return None
    pieces = spm.check_loadable(data)
    if pieces > cfg.vocab_size:
        notes.append(f"the tokenizer has {pieces} pieces but the embedding only {cfg.vocab_size} rows")
    return data


def _input_files(source: str | os.PathLike) -> list[str]:
    """The files a conversion reads: the source, or every file of a checkpoint directory."""
    p = os.fspath(source)
    if os.path.isdir(p):
        return [os.path.join(p, n) for n in sorted(os.listdir(p))]
    return [p]


def convert(source: str | os.PathLike, output: str | os.PathLike, *, weight: str | Type = "bf16",
            model: str | None = None, tokenizer: str | os.PathLike | None = None, layout: str = "v2",
            wrapping: str | int | None = None, progress: bool | Progress = False,
            overwrite: bool = False) -> ConvertResult:
    """Convert a GGUF file or a Hugging Face safetensors checkpoint to a gemma.cpp ``.sbs`` file.

    ``weight``: f32, bf16, sfp, nuq or i8 — the type of the big matrices
    (the rest follows gemma.cpp's exporter). ``model``: a gemma.cpp
    specifier (``gemma3-270m-bf16-pt``) to insist on; by default the model is
    recognized from the checkpoint's dimensions. ``tokenizer``: a
    ``tokenizer.model`` to embed instead of the checkpoint's own.
    ``wrapping``: it/pt (overrides the guess from the checkpoint's name).
    ``progress``: True for a rich progress bar on stderr, or a callback
    ``(done_values, total_values, tensor_name)``. The output policy applies
    (:mod:`sbs_tools.output`): an existing ``output`` only with ``overwrite``, never an input.
    """
    from .. import canonical as C

    t0 = time.perf_counter()
    wt = WEIGHT_TYPES.get(str(weight).lower()) if not isinstance(weight, Type) else weight
    if wt is None:
        raise ConvertError(f"--type must be one of {', '.join(WEIGHT_TYPES)}, not {weight!r}", code="bad-arguments")
    if layout not in ("v1", "v2"):
        raise ConvertError(f"--layout must be v1 or v2, not {layout!r}", code="bad-arguments")
    wrap = None if wrapping is None else C.wrapping_enum(wrapping)
    check_input_dir_or_file(source)
    inputs = _input_files(source) + ([os.fspath(tokenizer)] if tokenizer is not None else [])
    check_output_file(output, inputs, force=overwrite)
    src = open_source(source)
    try:
        resolved: Resolved = resolve_config(src.arch, wt, specifier=model, wrapping=wrap)
        cfg = resolved.config
        tok_notes: list[str] = []
        tok = _tokenizer(src, tokenizer, cfg, tok_notes)
        notes = src.notes + resolved.notes + tok_notes
        plan: list[tuple[TensorSpec, Type]] = []
        for spec in canonical_tensors(cfg):
            if not src.has(spec):
                raise ConvertError(f"the checkpoint has no data for {spec.name} ({spec.where})",
                                   code="missing-tensor", tensor=spec.name)
            plan.append((spec, tensor_type(spec, wt)))
        if cfg.model in GLOBAL_TIMESCALE_MODELS:
            cfg.use_global_timescale = True  # what gemma.cpp's own exporter writes since 1bdde1a
        cfg = cfg.compact_form()  # readable by 3ed403e too when nothing newer is needed
        if wt in BLOCK_TYPES:
            # gemma.cpp asserts config.weight == the first toc type with the fewest bits
            first = min(plan, key=lambda x: TYPE_BITS[x[1]])[1]
            if first != wt:
                notes.append(f"no matrix has rows of a multiple of 32 values, so none is {wt.name}; the big "
                             f"matrices are {first.name}")
            cfg.weight = int(first)
        total = sum(s.rows * s.cols for s, _ in plan)
        prog = _Progress(progress, total, f"{Path(source).name} -> {cfg.specifier}")
        w = BlobWriter(output, layout, inputs=inputs, overwrite=overwrite)
        results: list[TensorResult] = []
        try:
            for spec, t in plan:
                results.append(_add_tensor(w, src, spec, t, cfg, prog))
            notes += src.block_notes()
            records = [TocRecord.make(r.name, Type[r.type], r.rows, r.cols, r.scale) for r in results]
            w.add("config", cfg.to_bytes())
            w.add("tokenizer", tok if tok else b"unavailable")
            w.add("toc", encode_toc(records))
            size = w.finish()
        except BaseException:
            w.abort()
            raise
        finally:
            prog.close()
    except SbsError:
        raise
    except (ValueError, OSError) as e:
        raise ConvertError(f"converting {source}: {e}", code="convert-failed") from None
    finally:
        src.close()
    return ConvertResult(os.fspath(source), src.kind, os.fspath(output), cfg, resolved.canonical, results,
                         len(tok) if tok else 0, size, time.perf_counter() - t0, notes)
