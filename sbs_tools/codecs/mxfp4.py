"""MXFP4 (addendum §2.3, gemma.cpp ``compression/mxfp4-inl.h@ee051c9c``): blocks of 32 values, 17 bytes each.

Block ``b`` starts at byte ``17*b``: ``e``, an E8M0 exponent, then 16 bytes ``qs[j]``
(low nibble = value ``j``, high nibble = value ``j+16``, as Q4_0). A nibble is an
FP4 E2M1 value (0, 0.5, 1, 1.5, 2, 3, 4, 6; bit 3 = sign). Blocks cross row
boundaries; a partial final block is zero-padded (nibble 0).

Decode (the float32 path): ``fp4(nibble) * 2**(e-127)``, with ``e`` 0x00 or 0xFF
meaning scale 0. (gemma.cpp's AVX-512 bf16 path adds ``(e-127) << 7`` to the bf16
pattern instead; it agrees only for ``2 <= e <= 252`` -- see :func:`avx512_bf16_agrees`.)

Encode (``QuantizeBlock``): ``max_abs = max|x|``; 0 gives an all-zero block.
Otherwise ``exp = ceil(log2(f32(max_abs / 6)))`` clamped to [-126, 127], ``e = exp +
127``; each value ``v = f32(x * 2**-exp)`` gets sign 8 if ``v < 0`` and magnitude code
``LUT[min(31, trunc(4|v|))]`` (midpoints round to the larger magnitude; >= 5
saturates to 6). The logarithm is Highway's approximate ``hn::Log2``, emulated bit for
bit (:mod:`.hwy_log2`): it differs from the exact ceil near powers of two (e.g. a
block maximum of ``6 * 2**-13`` gets exponent -12, not -13), which settles the
addendum's UNCONFIRMED item by running Highway. The whole encoder is bit-exact.

Error bound: with ``s = 2**exp`` and ``max_abs/s`` in (3, 6], every value is within
``s/4`` for ``|v| < 2``, ``s/2`` for ``|v| < 4`` and ``s`` above, i.e. at most
``max_abs/3``; nothing clips.
"""
from __future__ import annotations

import numpy as np

from ._buffers import padded_blocks

__all__ = ["decode", "encode", "BLOCK", "BLOCK_BYTES", "FP4_VALUES"]

BLOCK = 32
BLOCK_BYTES = 17
_STEP = 1 << 14
FP4_VALUES = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32)
_LUT = np.array([0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6] + [7] * 12, dtype=np.uint8)


def _blocks(u8: np.ndarray, n: int) -> np.ndarray:
    return u8[:BLOCK_BYTES * -(-n // BLOCK)].reshape(-1, BLOCK_BYTES)


def scale_of(e: np.ndarray) -> np.ndarray:
    """``DecodeE8M0ScaleToF32``: 2**(e-127), and 0 for e = 0x00 or 0xFF."""
    e32 = e.astype(np.uint32)
    s = (e32 << 23).view(np.float32)
    return np.where((e32 == 0) | (e32 == 0xFF), np.float32(0), s).astype(np.float32)


def decode(u8: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """Decode ``n`` MXFP4 values (size-checked bytes) into float32 ``out``."""
    blocks = _blocks(u8, n)
    nb = blocks.shape[0]
    full = n // BLOCK
    for i in range(0, nb, _STEP):
        b = blocks[i:i + _STEP]
        codes = np.concatenate([b[:, 1:] & 0x0F, b[:, 1:] >> 4], axis=1)
        vals = FP4_VALUES[codes] * scale_of(b[:, 0])[:, None]
        hi = min(i + _STEP, full)
        if hi > i:
            out[i * BLOCK:hi * BLOCK] = vals[:hi - i].reshape(-1)
        if i + b.shape[0] > full:
            out[full * BLOCK:] = vals[full - i, :n - full * BLOCK]
    return out


def _exponent(max_abs: np.ndarray) -> np.ndarray:
    """``ceil(hn::Log2(f32(max_abs / 6)))`` clamped to [-126, 127], as gemma.cpp computes it."""
    from .hwy_log2 import hwy_log2

    v = (max_abs.astype(np.float32) / np.float32(6.0)).astype(np.float32)
    return np.clip(np.ceil(hwy_log2(v)), -126, 127).astype(np.int32)


def nibble_codes(v: np.ndarray) -> np.ndarray:
    """``EncodeNibble`` of float32 values already divided by the block scale."""
    sign = np.where(v < 0, np.uint8(8), np.uint8(0))
    idx = np.minimum(31, np.trunc(np.abs(v) * np.float32(4.0))).astype(np.int64)
    return sign | _LUT[idx]


def _quantize(x: np.ndarray) -> np.ndarray:
    out = np.zeros((x.shape[0], BLOCK_BYTES), dtype=np.uint8)
    max_abs = np.abs(x).max(axis=1)
    nz = max_abs != 0
    if not nz.any():
        return out
    xs = x[nz]
    exp = _exponent(max_abs[nz])
    inv = np.ldexp(np.float32(1.0), -exp).astype(np.float32)
    codes = nibble_codes((xs * inv[:, None]).astype(np.float32))
    blk = np.empty((xs.shape[0], BLOCK_BYTES), dtype=np.uint8)
    blk[:, 0] = (exp + 127).astype(np.uint8)
    blk[:, 1:] = codes[:, :16] | (codes[:, 16:] << 4)
    out[nz] = blk
    return out


def encode(x: np.ndarray) -> bytes:
    """Encode finite float32 ``x`` (1-D) as MXFP4 blocks (gemma.cpp's encoder; see the module doc)."""
    blocks = padded_blocks(x, BLOCK)
    nb = blocks.shape[0]
    parts = [_quantize(blocks[i:i + _STEP]) for i in range(0, nb, _STEP)]
    return (np.concatenate(parts) if parts else np.empty((0, BLOCK_BYTES), np.uint8)).tobytes()


def avx512_bf16_agrees(e: np.ndarray) -> np.ndarray:
    """Whether gemma.cpp's AVX-512 bf16 decode (exponent added to the bf16 pattern) gives the float32
    path's values for blocks with exponent byte ``e``: only for 2 <= e <= 252."""
    return (e >= 2) & (e <= 252)


def clobbered(u8: np.ndarray, n: int) -> np.ndarray:
    """Indices of blocks the encoder never writes: ``e == 0xFF``, or ``e == 0`` with a non-zero nibble byte
    (the parallel zero-block overwrite of ee051c9c leaves ``e = 0`` and the last nibble bytes)."""
    b = _blocks(u8, n)
    e = b[:, 0]
    return np.nonzero((e == 0xFF) | ((e == 0) & b[:, 1:].any(axis=1)))[0]
