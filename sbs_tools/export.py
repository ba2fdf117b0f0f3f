"""``sbs export``: a ``.sbs`` file's tensors as safetensors or npz, with the config as metadata.

Three shapes of output:

* **decoded** (default): every tensor as float32 ``rows x cols`` under its
  gemma.cpp name, the toc ``scale`` applied (the values gemma.cpp computes
  with, before its own bf16 rounding);
* **raw** (``raw=True``): every tensor's packed blob bytes as a 1-D uint8
  array (zero-copy from the mapping), plus the ``config`` and ``toc`` blobs as
  ``__config__`` / ``__toc__``;
* **Hugging Face** (``hf=True``, safetensors only): a checkpoint directory
  (``config.json``, ``model.safetensors``, ``tokenizer.model``) with
  Hugging Face names and layouts — the inverse of ``sbs convert`` from
  safetensors, so ``convert -> export --hf -> convert`` reproduces the file.

Metadata (safetensors ``__metadata__``; npz member ``__metadata__``, a 0-d
unicode array holding the same JSON): ``format`` = ``"sbs-export"``,
``kind`` (decoded/raw), ``specifier``, ``config`` (the full config as JSON,
enums by name), ``config_u32`` (the config blob's words, so a tool can
rebuild it exactly), ``toc`` (name, type, rows, cols, scale per tensor),
``source`` and ``sbs_tools`` version. The tokenizer, when present, is the
uint8 array ``__tokenizer__`` (omit with ``tokenizer=False``).

Output is streamed: decoded tensors are produced in chunks of whole
compression groups, so memory stays near one chunk (plus one tensor for
``hf``), and files are written to a temporary name and renamed at the end.
"""
from __future__ import annotations

import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import __version__, codecs
from .errors import SbsError
from .output import PendingFile, check_output_file
from .sbsfile import SbsFile, read_buffer
from .types import Type

#: Values decoded per chunk; a multiple of every group size (NUQ 256, I8 128).
CHUNK_VALUES = 1 << 22
FORMAT_TAG = "sbs-export"
_RAW_PIECE = 4 << 20  # bytes per piece of a --raw export
_GROUP_BYTES = {Type.NUQ: (256, 144), Type.I8: (256, 264)}  # per 256 values


class ExportError(SbsError):
    code = "export-error"


@dataclass
class ExportResult:
    source: str
    path: str
    format: str  # safetensors | npz | hf
    kind: str  # decoded | raw | hf
    tensors: int
    file_bytes: int
    seconds: float

    def to_dict(self) -> dict:
        return dict(vars(self), seconds=round(self.seconds, 3))


# -- decoding in chunks -----------------------------------------------------------------------------

def iter_values(f: SbsFile, name: str, chunk_values: int = CHUNK_VALUES) -> Iterator[np.ndarray]:
    """A tensor's values, flattened row-major, as float32 chunks with the scale applied.

    Chunks hold a multiple of 256 values (whole NUQ/I8 groups), so any element
    type decodes piecewise without ever materializing the whole tensor. The packed
    bytes are read with ``SbsFile.read_into`` into one reusable buffer (never through
    the mapping: a file truncated meanwhile raises ``file-changed``); each yielded
    array is a fresh float32 array.
    """
    info = f.tensors.get(name)
    if info is None:
        raise SbsError(f"no tensor named {name!r}", code="no-such-tensor", tensor=name)
    t = Type(info.type)
    n = info.num_values
    size = f.entry(info.key).size  # nothing read (a blob outside the file: blob-out-of-bounds)
    need = info.expected_bytes
    if need is None or need > size:
        raise SbsError(f"tensor {name!r}: {info.type_name} {info.rows}x{info.cols} needs {need} bytes but its blob "
                       f"has {size}", code="tensor-size-mismatch", tensor=name)
    step = max(256, chunk_values // 256 * 256)
    scale = np.float32(info.scale)
    buf = read_buffer(codecs.packed_size(t, min(step, n)) if n else 1)
    for start in range(0, n, step):
        stop = min(n, start + step)
        if t in _GROUP_BYTES:
            vals, gb = _GROUP_BYTES[t]
            a = start // vals * gb
            b = need if stop == n else stop // vals * gb
        else:
            eb = codecs.packed_size(t, 1)
            a, b = start * eb, stop * eb
        raw = buf[:b - a]
        f.read_into(info.offset + a, raw)
        out = codecs.decode(t, raw, stop - start)
        if scale != np.float32(1.0):
            out *= scale
        yield out


def decoded(f: SbsFile, name: str) -> np.ndarray:
    """A whole tensor as float32 ``(rows, cols)``, scale applied."""
    info = f.tensors[name]
    out = np.empty(info.num_values, np.float32)
    pos = 0
    for c in iter_values(f, name):
        out[pos:pos + c.size] = c
        pos += c.size
    return out.reshape(info.rows, info.cols)


# -- metadata ---------------------------------------------------------------------------------------------

def export_metadata(f: SbsFile, kind: str) -> dict[str, str]:
    """The string -> string metadata every export carries."""
    cfg = f.config
    toc = [{"name": t.name, "type": t.type_name, "rows": t.rows, "cols": t.cols, "scale": t.scale}
           for t in f.tensors.values()]
    md = {"format": FORMAT_TAG, "kind": kind, "source": os.path.basename(f.path), "sbs_tools": __version__,
          "toc": json.dumps(toc, separators=(",", ":"))}
    if cfg is not None:
        md["specifier"] = cfg.specifier
        md["config"] = json.dumps(cfg.to_dict(), separators=(",", ":"))
        md["config_u32"] = json.dumps(cfg.to_words(), separators=(",", ":"))
    return md


# -- writers ----------------------------------------------------------------------------------------------

def _blob_chunks(f: SbsFile, key: str) -> Iterator[np.ndarray]:
    """A blob's packed bytes in pieces (``SbsFile.chunks``, one reusable buffer)."""
    e = f.blobs[key]
    return f.chunks(e.offset, e.size, chunk_bytes=_RAW_PIECE)


def _items(f: SbsFile, raw: bool, tokenizer: bool):
    """(name, dtype name, shape, chunk-callable) for every array of a decoded/raw export."""
    from .convert.safetensors_io import StItem

    items = []
    for name, info in f.tensors.items():
        if raw:
            items.append(StItem(name, "U8", (f.entry(info.key).size,), lambda k=info.key: _blob_chunks(f, k)))
        else:
            items.append(StItem(name, "F32", (info.rows, info.cols), lambda n=name: iter_values(f, n)))
    if raw:
        for key in ("config", "toc"):
            if key in f.blobs:
                items.append(StItem(f"__{key}__", "U8", (f.blobs[key].size,), lambda k=key: _blob_chunks(f, k)))
    tok = f.tokenizer_bytes if tokenizer else None
    if tok:
        items.append(StItem("__tokenizer__", "U8", (len(tok),), lambda t=tok: [t]))
    return items


def _write_npz(path: str, items, metadata: dict[str, str], tick: Callable[[str], None]) -> int:
    from .convert.safetensors_io import write_chunks

    with PendingFile(path) as pending:
        with zipfile.ZipFile(pending.file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("__metadata__.npy", "w") as fh:
                np.lib.format.write_array(fh, np.array(json.dumps(metadata)), allow_pickle=False)
            for it in items:
                dtype = np.dtype("<f4") if it.dtype == "F32" else np.dtype("u1")
                with zf.open(it.name + ".npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array_header_2_0(
                        fh, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                             "shape": tuple(it.shape)})
                    n = write_chunks(fh, it.chunks())
                    if n != it.nbytes:
                        raise ExportError(f"{it.name}: wrote {n} bytes, expected {it.nbytes}")
                tick(it.name)
    return os.path.getsize(path)


def _format_for(out: str | os.PathLike, hf: bool) -> str:
    p = Path(out)
    if hf:
        return "hf"
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix == ".npz":
        return "npz"
    raise ExportError(f"{out}: the output name must end in .safetensors or .npz (or use --hf for a "
                      "Hugging Face directory)", code="bad-arguments")


def export(source: str | os.PathLike, output: str | os.PathLike, *, raw: bool = False, hf: bool = False,
           tokenizer: bool = True, progress: bool | Callable[[int, int, str], None] = False,
           overwrite: bool = False) -> ExportResult:
    """Export ``source`` (.sbs) to ``output`` (.safetensors / .npz, or a directory with ``hf=True``).

    The output policy applies (:mod:`sbs_tools.output`): never the input, an existing file or a
    non-empty directory only with ``overwrite=True``, and then only the files written are replaced."""
    import sbs_tools

    t0 = time.perf_counter()
    if not hf:
        check_output_file(output, [source], force=overwrite)
    fmt = _format_for(output, hf)
    if raw and hf:
        raise ExportError("--raw and --hf exclude each other", code="bad-arguments")
    with sbs_tools.open(source) as f:
        if f.config is None and hf:
            raise ExportError(f"{source}: no config blob, so no Hugging Face config can be written",
                              code="no-config")
        n = len(f.tensors)
        done = [0]
        bar = _progress(progress, n, f"export {Path(source).name}")

        def tick(name: str) -> None:
            done[0] += 1
            bar(done[0], n, name)

        try:
            if fmt == "hf":
                from .convert.hf_export import write_hf

                size = write_hf(f, output, tokenizer=tokenizer, tick=tick, overwrite=overwrite)
            else:
                kind = "raw" if raw else "decoded"
                items = _items(f, raw, tokenizer)
                md = export_metadata(f, kind)
                if fmt == "safetensors":
                    from .convert.safetensors_io import write_safetensors

                    size = write_safetensors(output, items, md, progress=lambda it: tick(it.name))
                else:
                    size = _write_npz(os.fspath(output), items, md, tick)
        finally:
            bar(None, n, "")
        kind = "hf" if hf else ("raw" if raw else "decoded")
        return ExportResult(os.fspath(source), os.fspath(output), fmt, kind, n, size, time.perf_counter() - t0)


def _progress(progress, total: int, label: str) -> Callable:
    if callable(progress):
        return lambda done, n, name: done is not None and progress(done, n, name)
    if not progress:
        return lambda *a: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[tensor]}"), console=Console(stderr=True))
    bar.start()
    task = bar.add_task(label, total=total, tensor="")

    def update(done, n, name):
        if done is None:
            bar.stop()
        else:
            bar.update(task, completed=done, tensor=name)
    return update


# -- reading exports back ------------------------------------------------------------------------------

def load_export(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, arrays) of an export (safetensors or npz); for tests and scripts. Loads everything."""
    p = Path(path)
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["__metadata__"]))
            arrays = {k: z[k] for k in z.files if k != "__metadata__"}
        return meta, arrays
    from .convert.safetensors_io import SafetensorsFile

    st = SafetensorsFile(p)
    try:
        arrays = {k: np.array(st.array(k)) for k in st.entries}
        return dict(st.metadata), arrays
    finally:
        st.close()
