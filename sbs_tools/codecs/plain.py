"""Uncompressed types F32, F64, U32, U64 (spec §4.3): little-endian, packed.

``decode`` always returns float32: F32 exactly; F64 rounded to nearest float32;
U32/U64 converted to the nearest float32 (exact below 2**24).
``encode`` writes F32 exactly (float64 input is rounded to nearest float32;
overflow is ``out-of-range``), F64 exactly, and U32/U64 only for integral,
non-negative values that fit (else ``out-of-range``).
"""
from __future__ import annotations

import numpy as np

from ..errors import CodecError
from ..types import Type
from ._buffers import CHUNK, finite_f32

__all__ = ["decode", "encode", "DTYPES"]

DTYPES = {Type.F32: np.dtype("<f4"), Type.F64: np.dtype("<f8"),
          Type.U32: np.dtype("<u4"), Type.U64: np.dtype("<u8"),
          # activation / KV types (addendum §2.1): never weights, decoded as their integers
          Type.U16: np.dtype("<u2"), Type.U8: np.dtype("u1"), Type.INT8: np.dtype("i1")}


def decode(t: Type, u8: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """Decode ``n`` values of plain type ``t`` (size-checked bytes) into ``out``."""
    src = u8.view(DTYPES[t])
    step = 4 * CHUNK
    for i in range(0, n, step):
        np.copyto(out[i:i + step], src[i:i + step], casting="unsafe")
    return out


def encode(t: Type, values: object) -> bytes:
    """Encode ``values`` (any shape, flattened row-major) as plain type ``t``."""
    if t == Type.F32:
        return finite_f32(values, t.name).astype("<f4", copy=False).tobytes()
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind not in "fiub":
        raise CodecError(f"{t.name}: cannot encode values of dtype {arr.dtype}", code="bad-input")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise CodecError(f"{t.name}: input contains NaN or Inf", code="non-finite")
    if t == Type.F64:
        return arr.astype("<f8").tobytes()
    lo, hi = {Type.U32: (0, 2**32 - 1), Type.U64: (0, 2**64 - 1), Type.U16: (0, 2**16 - 1),
              Type.U8: (0, 255), Type.INT8: (-128, 127)}[t]
    if arr.size:
        if arr.dtype.kind == "f":
            ok = bool((arr == np.floor(arr)).all() and arr.min() >= lo and arr.max() <= hi)
            # float64 cannot hold 2**64 - 1; 2**64 itself must be refused.
            ok = ok and (t != Type.U64 or float(arr.max()) < 2.0**64)
        else:
            ok = bool(int(arr.min()) >= lo and int(arr.max()) <= hi)
        if not ok:
            raise CodecError(f"{t.name}: values must be integers in [{lo}, {hi}]", code="out-of-range")
    return arr.astype(DTYPES[t]).tobytes()
