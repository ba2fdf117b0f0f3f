"""BF16 (spec §6.1): one little-endian u16 per value, ``f32_bits = u16 << 16``.

Encoding rounds to nearest, ties to even, on the float32 bit pattern (Highway
``OrderedDemote2To``), bit-identical to gemma.cpp.

Error bound (finite input ``x`` of float32): ``|dec(enc(x)) - x| <= 2**-8 * |x|``
(half an ulp of an 8-bit significand), and ``<= 2**-134`` for float32
subnormals. Values that round beyond the largest bf16 (``|x| >= 0x1.ff8p127``)
are rejected with ``out-of-range`` instead of becoming infinity.
"""
from __future__ import annotations

import sys

import ml_dtypes
import numpy as np

from ..errors import CodecError
from ._buffers import CHUNK

__all__ = ["decode", "encode", "bf16_bits"]


def decode(u8: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """Decode ``2*n`` bytes (already size-checked) into float32 ``out``.

    ml_dtypes' bfloat16 -> float32 cast is the exact ``u16 << 16`` (NaN
    payloads included; tested on all 65536 patterns) and the fastest numpy path.
    """
    if sys.byteorder != "little":
        np.left_shift(u8.view("<u2"), 16, out=out.view(np.uint32), dtype=np.uint32)
        return out
    src = u8.view(ml_dtypes.bfloat16)
    step = 16 * CHUNK
    for i in range(0, n, step):
        np.copyto(out[i:i + step], src[i:i + step], casting="unsafe")
    return out


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round finite float32 ``x`` to bf16, returned as uint16 bit patterns (RNE)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
    return (rounded >> 16).astype(np.uint16)


def encode(x: np.ndarray) -> bytes:
    """Encode finite float32 ``x`` (1-D) as little-endian bf16 bytes."""
    u16 = bf16_bits(x)
    if np.any((u16 & 0x7FFF) == 0x7F80):
        raise CodecError("BF16: values round beyond the largest bfloat16", code="out-of-range")
    return u16.astype("<u2", copy=False).tobytes()
