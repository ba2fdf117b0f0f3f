"""A fast, memory-mapped GGUF reader: metadata, tensor table, and dequantized rows.

The ``gguf`` package's ``GGUFReader`` builds a numpy view per array element,
which takes ~20 s for the 262,144-entry tokenizer arrays of a Gemma 3 GGUF.
This parser reads the same header in well under a second (numeric arrays
become numpy arrays, string arrays lists of ``str``) and leaves the tensor
data in the mapping; dequantization of any row range is delegated to
``gguf.quants.dequantize`` (Q4_0 … Q8_0, the K-quants, IQ types, F16/BF16).

GGUF layout (v2/v3, little-endian): magic ``GGUF``, u32 version, u64 tensor
count, u64 key/value count; key/value pairs (string key, u32 type, value);
tensor infos (string name, u32 n_dims, u64 dims[n_dims] with ``ne0`` the
fastest-varying, u32 ggml type, u64 offset); padding to
``general.alignment`` (default 32); tensor data. A tensor with dims
``[ne0, ne1, ...]`` is the row-major array of shape ``(..., ne1, ne0)``.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import ConvertError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# GGUF value types.
_SCALAR = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8",
           11: "<i8", 12: "<f8"}
_STRING, _ARRAY, _BOOL = 8, 9, 7


@dataclass(frozen=True)
class GgufTensor:
    """One tensor-info record: ``dims`` as stored (``ne0`` first), ``ggml_type`` number, data offset."""

    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int  # absolute file offset of the data
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy (row-major) shape: dims reversed."""
        return tuple(reversed(self.dims))

    @property
    def rows(self) -> int:
        n = 1
        for d in self.dims[1:]:
            n *= d
        return n

    @property
    def cols(self) -> int:
        return self.dims[0] if self.dims else 1

    @property
    def type_name(self) -> str:
        try:
            import gguf

            return gguf.GGMLQuantizationType(self.ggml_type).name
        except Exception:
            return f"ggml_type_{self.ggml_type}"


def _quant_sizes() -> dict[int, tuple[int, int]]:
    try:
        import gguf
    except ImportError:  # pragma: no cover - exercised only without the extra installed
        raise ConvertError("reading GGUF needs the 'gguf' package: pip install 'sbs-tools[convert]'",
                           code="missing-dependency") from None
    return {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()}


class GgufFile:
    """A GGUF file opened read-only. ``metadata`` (key -> value), ``tensors`` (name -> :class:`GgufTensor`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < 24:
                    raise ConvertError(f"{self.path}: too small to be a GGUF file", code="gguf-invalid")
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise ConvertError(f"cannot open {self.path}: {e.strerror}", code="io-error") from None
        self.buf = memoryview(self._mm)
        self.size = size
        try:
            self._parse()
        except (struct.error, UnicodeDecodeError, IndexError, ValueError, OverflowError) as e:
            raise ConvertError(f"{self.path}: malformed GGUF header ({e})", code="gguf-invalid") from None

    # -- parsing -----------------------------------------------------------------------------
    def _parse(self) -> None:
        b = self.buf
        if bytes(b[:4]) != GGUF_MAGIC:
            raise ConvertError(f"{self.path}: not a GGUF file (magic {bytes(b[:4])!r})", code="gguf-invalid")
        self.version, n_tensors, n_kv = struct.unpack_from("<IQQ", b, 4)
        if self.version not in (2, 3):
            raise ConvertError(f"{self.path}: GGUF version {self.version} is not supported (2 or 3)",
                               code="gguf-invalid")
        self._pos = 24
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._str()
            vtype = self._u32()
            self.metadata[key] = self._value(vtype)
        sizes = _quant_sizes()
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            nd = self._u32()
            dims = struct.unpack_from(f"<{nd}Q", b, self._pos)
            self._pos += 8 * nd
            gtype, off = struct.unpack_from("<IQ", b, self._pos)
            self._pos += 12
            infos.append((name, dims, gtype, off))
        align = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        if align <= 0:
            raise ConvertError(f"{self.path}: general.alignment {align}", code="gguf-invalid")
        data_start = -(-self._pos // align) * align
        self.tensors: dict[str, GgufTensor] = {}
        for name, dims, gtype, off in infos:
            if gtype not in sizes:
                raise ConvertError(f"{self.path}: tensor {name} has unknown ggml type {gtype}", code="gguf-invalid")
            block, tsize = sizes[gtype]
            ne0 = dims[0] if dims else 1
            if ne0 % block:
                raise ConvertError(f"{self.path}: tensor {name}: ne0 {ne0} not a multiple of the block size {block}",
                                   code="gguf-invalid")
            n = 1
            for d in dims[1:]:
                n *= d
            nbytes = n * (ne0 // block) * tsize
            start = data_start + off
            if start + nbytes > self.size:
                raise ConvertError(f"{self.path}: tensor {name} ends past the end of the file (truncated?)",
                                   code="gguf-truncated")
            self.tensors[name] = GgufTensor(name, tuple(int(d) for d in dims), gtype, start, nbytes)

    def _u32(self) -> int:
        (v,) = struct.unpack_from("<I", self.buf, self._pos)
        self._pos += 4
        return v

    def _u64(self) -> int:
        (v,) = struct.unpack_from("<Q", self.buf, self._pos)
        self._pos += 8
        return v

    def _str(self) -> str:
        n = self._u64()
        s = bytes(self.buf[self._pos:self._pos + n])
        if len(s) != n:
            raise ValueError("string past end of file")
        self._pos += n
        return s.decode("utf-8", errors="surrogateescape")

    def _value(self, vtype: int) -> Any:
        if vtype in _SCALAR:
            dt = np.dtype(_SCALAR[vtype])
            v = np.frombuffer(self.buf, dtype=dt, count=1, offset=self._pos)[0].item()
            self._pos += dt.itemsize
            return bool(v) if vtype == _BOOL else v
        if vtype == _STRING:
            return self._str()
        if vtype == _ARRAY:
            etype = self._u32()
            count = self._u64()
            if etype in _SCALAR:
                dt = np.dtype(_SCALAR[etype])
                arr = np.frombuffer(self.buf, dtype=dt, count=count, offset=self._pos).copy()
                self._pos += dt.itemsize * count
                return arr.astype(bool) if etype == _BOOL else arr
            if etype == _STRING:
                return self._str_array(count)
            return [self._value(etype) for _ in range(count)]
        raise ValueError(f"unknown GGUF value type {vtype}")

    def _str_array(self, count: int) -> list[str]:
        b, pos, out = self.buf, self._pos, []
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(count):
            (n,) = unpack(b, pos)
            pos += 8
            out.append(bytes(b[pos:pos + n]).decode("utf-8", errors="surrogateescape"))
            pos += n
        self._pos = pos
        return out

    # -- access ----------------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def get(self, key: str, default: Any = None) -> Any:
        """Metadata value; ``{arch}`` in ``key`` is replaced by the architecture name."""
        return self.metadata.get(key.replace("{arch}", self.architecture), default)

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as a (rows, bytes_per_row) uint8 view of the mapping (no copy)."""
        t = self.tensors[name]
        rows = max(t.rows, 1)
        return np.frombuffer(self.buf, dtype=np.uint8, count=t.nbytes, offset=t.offset).reshape(rows, -1)

    def dequantize(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of the tensor as float32 ``(rows, ne0)`` (a fresh array)."""
        from gguf import GGMLQuantizationType, quants

        t = self.tensors[name]
        data = self.raw(name)[start:stop]
        try:
            qtype = GGMLQuantizationType(t.ggml_type)
            out = quants.dequantize(data, qtype)
        except NotImplementedError:
            raise ConvertError(f"tensor {name}: the gguf package cannot dequantize {t.type_name}",
                               code="unsupported-quant") from None
        out = np.asarray(out, dtype=np.float32).reshape(data.shape[0], t.cols)
        if not out.flags.owndata or not out.flags.writeable:
            out = out.copy()
        return out

    def close(self) -> None:
        self.buf.release()
        try:
            self._mm.close()
        except BufferError:
            pass

    def __enter__(self) -> "GgufFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
