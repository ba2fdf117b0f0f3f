"""BF16 (spec §6.1): one little-endian u16 per value, ``f32_bits = u16 << 16``.

Encoding rounds to nearest, ties to even, on the float32 bit pattern (Highway
``OrderedDemote2To``), bit-identical to gemma.cpp.

Error bound (finite input ``x`` of float32): ``|dec(enc(x)) - x| <= 2**-8 * |x|``
(half an ulp of an 8-bit significand), and ``<= 2**-134`` for float32
subnormals. Values that round beyond the largest bf16 (``|x| >= 0x1.ff8p127``)
are rejected with ``out-of-range`` instead of becoming infinity.
"""
from __future__ import annotations

import numpy as np

from ..errors import CodecError

__all__ = ["decode", "decode_bits", "encode", "bf16_bits", "round_f32"]


def decode(u8: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """Decode ``2*n`` bytes (already size-checked) into float32 ``out``: ``f32_bits = u16 << 16``,
    NaN payloads included (plain integer arithmetic, no bfloat16 dtype needed)."""
    return decode_bits(u8.view("<u2"), out)


def decode_bits(u16: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """bf16 bit patterns (any shape, any byte order) as float32 (``out`` if given, same shape)."""
    if out is None:
        out = np.empty(u16.shape, dtype=np.float32)
    np.left_shift(u16, 16, out=out.view(np.uint32), dtype=np.uint32)
    return out


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round finite float32 ``x`` to bf16, returned as uint16 bit patterns (RNE)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
    return (rounded >> 16).astype(np.uint16)


def round_f32(x: np.ndarray) -> np.ndarray:
    """float32 ``x`` (any shape) rounded to the nearest bf16, ties to even, returned as float32:
    bit for bit what a cast to bfloat16 and back gives (overflow becomes +-Inf, NaN the quiet NaN of its sign)."""
    a = np.asarray(x, dtype=np.float32)
    bits = a.view(np.uint32)
    r = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    r &= np.uint32(0xFFFF0000)
    nan = np.isnan(a)
    if nan.any():  # as a cast does: the quiet NaN of its sign (rounding could carry a payload into the sign)
        r = np.where(nan, (bits & np.uint32(0x80000000)) | np.uint32(0x7FC00000), r)
    return r.view(np.float32)


def encode(x: np.ndarray) -> bytes:
    """Encode finite float32 ``x`` (1-D) as little-endian bf16 bytes."""
    u16 = bf16_bits(x)
    if np.any((u16 & 0x7FFF) == 0x7F80):
        raise CodecError("BF16: values round beyond the largest bfloat16", code="out-of-range")
    return u16.astype("<u2", copy=False).tobytes()
