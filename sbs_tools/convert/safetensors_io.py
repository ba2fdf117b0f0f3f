"""Read and write the safetensors format directly over mmap, streaming.

A safetensors file is ``u64 header_len`` (little-endian), a JSON header of
that many bytes (``name -> {"dtype", "shape", "data_offsets": [begin, end]}``
plus an optional ``"__metadata__"`` of string -> string), then the raw
little-endian tensor bytes (offsets relative to the end of the header).

Reading maps the file and hands out zero-copy numpy views; writing computes
the header from the declared sizes first, then streams each tensor's bytes,
so neither needs the whole checkpoint in memory (the ``safetensors`` package
itself is not required; its files and ours are interchangeable, which the
tests check when it is installed).
"""
from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..errors import SbsError
from ..output import PendingFile
from . import ConvertError

#: safetensors dtype name -> numpy dtype (BF16/F8 through ml_dtypes).
def _dtypes() -> dict[str, np.dtype]:
    import ml_dtypes

    return {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
            "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
            "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
            "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "U16": np.dtype("<u2"),
            "U32": np.dtype("<u4"), "U64": np.dtype("<u8"), "BOOL": np.dtype("?")}


DTYPES = _dtypes()
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 << 20


@dataclass(frozen=True)
class StEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute file offsets
    end: int


class SafetensorsFile:
    """One ``.safetensors`` file: ``entries`` (name -> :class:`StEntry`), ``metadata`` (str -> str)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < 8:
                    raise ConvertError(f"{self.path}: too small for a safetensors file", code="safetensors-invalid")
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise ConvertError(f"cannot open {self.path}: {e.strerror}", code="io-error") from None
        (n,) = struct.unpack_from("<Q", self._mm, 0)
        if n > MAX_HEADER or 8 + n > size:
            raise ConvertError(f"{self.path}: header length {n} is implausible", code="safetensors-invalid")
        try:
            header = json.loads(bytes(self._mm[8:8 + n]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConvertError(f"{self.path}: header is not JSON ({e})", code="safetensors-invalid") from None
        if not isinstance(header, dict):
            raise ConvertError(f"{self.path}: header is not a JSON object", code="safetensors-invalid")
        self.metadata: dict[str, str] = dict(header.pop("__metadata__", None) or {})
        base = 8 + n
        self.entries: dict[str, StEntry] = {}
        for name, info in header.items():
            try:
                dtype, shape, (b, e) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
            except (KeyError, TypeError, ValueError):
                raise ConvertError(f"{self.path}: bad header entry for {name}", code="safetensors-invalid") from None
            if dtype not in DTYPES:
                raise ConvertError(f"{self.path}: {name} has unsupported dtype {dtype}", code="safetensors-invalid")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if e - b != count * DTYPES[dtype].itemsize or b < 0 or base + e > size:
                raise ConvertError(f"{self.path}: {name}: data offsets [{b}, {e}) do not fit {dtype}{list(shape)}",
                                   code="safetensors-invalid")
            self.entries[name] = StEntry(name, dtype, shape, base + b, base + e)
        self.size = size

    def array(self, name: str) -> np.ndarray:
        """Zero-copy, read-only view in the stored dtype and shape."""
        e = self.entries[name]
        dt = DTYPES[e.dtype]
        count = (e.end - e.begin) // dt.itemsize
        return np.frombuffer(self._mm, dtype=dt, count=count, offset=e.begin).reshape(e.shape)

    def raw(self, name: str) -> np.ndarray:
        e = self.entries[name]
        return np.frombuffer(self._mm, dtype=np.uint8, count=e.end - e.begin, offset=e.begin)

    def f32(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """The tensor (or rows ``[start, stop)`` of its first axis) as a fresh float32 array."""
        a = self.array(name)
        if start is not None or stop is not None:
            a = a[start:stop]
        return np.array(a, dtype=np.float32)

    def close(self) -> None:
        try:
            self._mm.close()
        except BufferError:
            pass  # views still alive; released with them


# -- writing -----------------------------------------------------------------------------------------

@dataclass
class StItem:
    """A tensor to write: name, dtype name, shape, and a callable yielding its bytes (possibly in pieces)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    chunks: Callable[[], Iterable[bytes | np.ndarray | memoryview]]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * DTYPES[self.dtype].itemsize


def write_chunks(fh, chunks: Iterable[bytes | np.ndarray | memoryview]) -> int:
    """Write byte pieces (arrays as their raw bytes, no copy when contiguous); returns the byte count."""
    n = 0
    for c in chunks:
        mv = memoryview(np.ascontiguousarray(c).view(np.uint8).reshape(-1)
                        if isinstance(c, np.ndarray) else c).cast("B")
        fh.write(mv)
        n += mv.nbytes
    return n


def write_safetensors(path: str | os.PathLike | PendingFile, items: list[StItem],
                      metadata: dict[str, str] | None = None,
                      progress: Callable[[StItem], None] | None = None) -> int:
    """Write ``items`` in order; returns the file size. Atomic (temporary file + rename); given a
    :class:`~sbs_tools.output.PendingFile`, it is only fsynced and the caller commits it."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    pos = 0
    for it in items:
        if it.name in header or it.name == "__metadata__":
            raise SbsError(f"duplicate tensor name {it.name!r}", code="duplicate-name")
        header[it.name] = {"dtype": it.dtype, "shape": list(it.shape), "data_offsets": [pos, pos + it.nbytes]}
        pos += it.nbytes
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    pending = path if isinstance(path, PendingFile) else PendingFile(path)
    try:
        fh = pending.file
        fh.write(struct.pack("<Q", len(hb)) + hb)
        for it in items:
            n = write_chunks(fh, it.chunks())
            if n != it.nbytes:
                raise SbsError(f"{it.name}: wrote {n} bytes, declared {it.nbytes}", code="stream-size-mismatch")
            if progress:
                progress(it)
        pending.close()
        if pending is not path:
            pending.commit()
    except BaseException:
        pending.discard()
        raise
    return 8 + len(hb) + pos
