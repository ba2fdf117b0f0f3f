"""Shared input/output plumbing for the codecs (not part of the public API)."""
from __future__ import annotations

from typing import Union

import numpy as np

from ..errors import CodecError
from ..types import Type, packed_bytes

RawBuffer = Union[bytes, bytearray, memoryview, np.ndarray]

#: Elements handled per inner step of the chunked decoders/encoders: large enough
#: to amortise numpy call overhead, small enough that temporaries stay in cache.
CHUNK = 1 << 16


def as_u8(raw: RawBuffer) -> np.ndarray:
    """View ``raw`` as a 1-D uint8 array without copying when possible."""
    if isinstance(raw, np.ndarray):
        arr = raw if raw.flags.c_contiguous else np.ascontiguousarray(raw)
        arr = arr.reshape(-1)
        return arr if arr.dtype == np.uint8 else arr.view(np.uint8)
    try:
        return np.frombuffer(raw, dtype=np.uint8)
    except (TypeError, ValueError):
        try:
            return np.ascontiguousarray(np.asarray(memoryview(raw))).reshape(-1).view(np.uint8)
        except (TypeError, ValueError) as exc:
            raise CodecError(f"cannot read raw bytes from {type(raw).__name__}",
                             code="bad-input") from exc


def checked_u8(t: Type, raw: RawBuffer, n: int) -> np.ndarray:
    """``as_u8(raw)`` after checking its length is ``packed_bytes(t, n)``."""
    u8 = as_u8(raw)
    want = packed_bytes(t, n)
    if u8.size != want:
        raise CodecError(f"{t.name}: {n} values need {want} bytes, got {u8.size}",
                         code="size-mismatch")
    return u8


def prepare_out(out: np.ndarray | None, n: int) -> np.ndarray:
    """Return a writable 1-D float32 array of length ``n`` (``out`` itself if given)."""
    if out is None:
        return np.empty(n, dtype=np.float32)
    if (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.ndim != 1
            or out.size != n or not out.flags.c_contiguous or not out.flags.writeable):
        raise CodecError(f"out must be a writable contiguous 1-D float32 array of length {n}",
                         code="bad-out")
    return out


def finite_f32(values: object, type_name: str) -> np.ndarray:
    """Flatten ``values`` (row-major) to contiguous float32, rejecting NaN/Inf.

    Finite inputs that overflow float32 raise ``out-of-range``.
    """
    arr = np.asarray(values)
    if arr.dtype == np.float32:
        x = arr
    elif arr.dtype.kind in "fiub":
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise CodecError(f"{type_name}: input contains NaN or Inf", code="non-finite")
        with np.errstate(over="ignore"):
            x = arr.astype(np.float32)
    else:
        raise CodecError(f"{type_name}: cannot encode values of dtype {arr.dtype}",
                         code="bad-input")
    x = np.ascontiguousarray(x).reshape(-1)
    if not np.isfinite(x).all():
        if arr.dtype == np.float32:
            raise CodecError(f"{type_name}: input contains NaN or Inf", code="non-finite")
        raise CodecError(f"{type_name}: values exceed the float32 range", code="out-of-range")
    return x


def padded_blocks(x: np.ndarray, block: int) -> np.ndarray:
    """``x`` (1-D float32) as rows of ``block`` values, the partial last row zero-padded: the input of
    the block encoders (Q4_0, MXFP4)."""
    nb = -(-x.size // block)
    padded = np.zeros(nb * block, dtype=np.float32)
    padded[:x.size] = x
    return padded.reshape(nb, block)
