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

import functools
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

#: safetensors dtype name -> numpy dtype of its storage. BF16 and the F8 types have no numpy dtype:
#: they are stored as their bit patterns (uint16 / uint8) and decoded by :data:`TO_F32`.
DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
          "F8_E4M3": np.dtype("u1"), "F8_E5M2": np.dtype("u1"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
          "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "U16": np.dtype("<u2"),
          "U32": np.dtype("<u4"), "U64": np.dtype("<u8"), "BOOL": np.dtype("?")}


@functools.lru_cache(maxsize=None)
def _f8_table(exp_bits: int, man_bits: int, ieee: bool) -> np.ndarray:
    """The float32 value of each of the 256 codes of an 8-bit float (OCP FP8: E4M3 'fn' has no
    infinities and one NaN per sign, S.1111.111; E5M2 follows IEEE: exponent all ones is Inf/NaN)."""
    codes = np.arange(256)
    bias = (1 << (exp_bits - 1)) - 1
    e = (codes >> man_bits) & ((1 << exp_bits) - 1)
    frac = (codes & ((1 << man_bits) - 1)) / float(1 << man_bits)
    val = np.where(e == 0, frac * 2.0 ** (1 - bias), (1.0 + frac) * 2.0 ** (e - bias))
    top = (1 << exp_bits) - 1
    if ieee:
        val = np.where(e == top, np.where(frac == 0, np.inf, np.nan), val)
    else:
        val = np.where((e == top) & (frac * (1 << man_bits) == (1 << man_bits) - 1), np.nan, val)
    return np.where(codes & 0x80, -val, val).astype(np.float32)


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    from ..codecs.bf16 import decode_bits

    return decode_bits(bits)


#: Stored bit patterns -> float32, for the dtypes numpy cannot cast itself.
TO_F32: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "BF16": _bf16_to_f32,
    "F8_E4M3": lambda codes: _f8_table(4, 3, False)[codes],
    "F8_E5M2": lambda codes: _f8_table(5, 2, True)[codes]}


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
        """Zero-copy, read-only view in the stored dtype and shape (BF16 and F8 tensors as their
        uint16 / uint8 bit patterns; :meth:`f32` decodes them)."""
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
        decode = TO_F32.get(self.entries[name].dtype)
        return decode(a) if decode is not None else np.array(a, dtype=np.float32)

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
