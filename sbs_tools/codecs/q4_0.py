"""Q4_0 (addendum §2.2, gemma.cpp ``compression/q4_0-inl.h@3dd2961a``): blocks of 32 values, 18 bytes each.

Block ``b`` starts at byte ``18*b``: ``d`` as bf16 (little-endian), then 16 bytes
``qs[j]`` whose low nibble is value ``j`` and high nibble value ``j+16``. The
stream runs over all values of a tensor in row-major order (blocks cross row
boundaries); a partial final block is zero-padded before encoding and stored
whole.

Decode: ``(nibble - 8) * f32(d)`` in float32 (exact: a small integer times a bf16).

Encode (``QuantizeBlock``, bit-exact as read at 3dd2961a): ``max_val`` is the first
value of largest magnitude (strict ``>``, sign kept); ``d = max_val / -8`` and
``id = 1/d`` (0 if ``d == 0``) in float32; ``bf16(d)`` is stored (round to nearest
even); ``q = clamp(round_half_away(f32(x*id) + 8), 0, 15)`` with ``id`` from the
float32 ``d``, not the rounded one. The largest-magnitude value always gets nibble
0; an all-zero block is ``00 80`` + 16 x ``88``. (Whether a compiler fuses
``x*id + 8`` into one FMA is a build matter; this follows the source's two
statements, as the addendum does.)

Error bound: ``|dec(enc(x)) - x| <= |d|/2 + 7*|d - bf16(d)|`` plus, for values of
the sign opposite to ``max_val``, saturation at ``7|d|`` (``|x| <= 8|d|``, so at most
``|d|``); with ``|d - bf16(d)| <= 2**-9 |d|`` the bound is ``1.02*|d| = 0.127 * max|x|``.
"""
from __future__ import annotations

import numpy as np

from ..errors import CodecError
from ._buffers import padded_blocks
from .bf16 import bf16_bits

__all__ = ["decode", "encode", "BLOCK", "BLOCK_BYTES"]

BLOCK = 32
BLOCK_BYTES = 18
_STEP = 1 << 14  # blocks per chunk


def _blocks(u8: np.ndarray, n: int) -> np.ndarray:
    return u8[:BLOCK_BYTES * -(-n // BLOCK)].reshape(-1, BLOCK_BYTES)


def scales(u8: np.ndarray, n: int) -> np.ndarray:
    """The float32 ``d`` of every block."""
    b = _blocks(u8, n)
    return (b[:, 0].astype(np.uint32) | (b[:, 1].astype(np.uint32) << 8)).__lshift__(16).view(np.float32)


def nibbles(block_bytes: np.ndarray) -> np.ndarray:
    """(B, 32) nibble codes of (B, 16) ``qs`` bytes: value j is the low nibble of byte j, value j+16 the high."""
    return np.concatenate([block_bytes & 0x0F, block_bytes >> 4], axis=1)


def decode(u8: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """Decode ``n`` Q4_0 values (size-checked bytes) into float32 ``out``."""
    blocks = _blocks(u8, n)
    nb = blocks.shape[0]
    full = n // BLOCK
    with np.errstate(all="ignore"):
        for i in range(0, nb, _STEP):
            b = blocks[i:i + _STEP]
            d = ((b[:, 0].astype(np.uint32) | (b[:, 1].astype(np.uint32) << 8)) << 16).view(np.float32)
            vals = (nibbles(b[:, 2:]).astype(np.float32) - np.float32(8)) * d[:, None]
            hi = min(i + _STEP, full)
            if hi > i:
                out[i * BLOCK:hi * BLOCK] = vals[:hi - i].reshape(-1)
            if i + b.shape[0] > full:  # the partial final block
                out[full * BLOCK:] = vals[full - i, :n - full * BLOCK]
    return out


def _quantize(x: np.ndarray) -> np.ndarray:
    """(B, 18) block bytes of float32 blocks ``x`` (B, 32)."""
    f32 = np.float32
    idx = np.argmax(np.abs(x), axis=1)  # first of the largest magnitude (strict >)
    max_val = x[np.arange(x.shape[0]), idx]
    max_val = np.where(max_val != 0, max_val, np.float32(0.0)).astype(f32)  # the C++ starts from +0.0
    with np.errstate(all="ignore"):
        d = (max_val / f32(-8.0)).astype(f32)
        inv = np.where(d != 0, f32(1.0) / np.where(d != 0, d, f32(1)), f32(0)).astype(f32)
        y = ((x * inv[:, None]).astype(f32) + f32(8.0)).astype(f32)
        r = np.sign(y) * np.floor(np.abs(y) + 0.5)  # std::round: half away from zero
    # 0 * inf (a subnormal d makes 1/d infinite) is NaN; int32(NaN) is INT_MIN on x86, clamped to 0.
    q = np.clip(np.where(np.isnan(r), 0, r), 0, 15).astype(np.uint8)
    bits = bf16_bits(d)
    out = np.empty((x.shape[0], BLOCK_BYTES), dtype=np.uint8)
    out[:, 0] = bits & 0xFF
    out[:, 1] = bits >> 8
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return out


def encode(x: np.ndarray) -> bytes:
    """Encode finite float32 ``x`` (1-D) as Q4_0 blocks (bit-identical to gemma.cpp's encoder)."""
    blocks = padded_blocks(x, BLOCK)
    nb = blocks.shape[0]
    with np.errstate(all="ignore"):
        if np.any(np.abs(blocks) / np.float32(8.0) > np.float32(3.3895314e38)):
            raise CodecError("Q4_0: values whose scale overflows bfloat16", code="out-of-range")
    parts = [_quantize(blocks[i:i + _STEP]) for i in range(0, nb, _STEP)]
    out = np.concatenate(parts) if parts else np.empty((0, BLOCK_BYTES), np.uint8)
    if np.any((out[:, 1] & 0x7F) == 0x7F) and np.any(((out[:, 0].astype(np.uint16) | (out[:, 1].astype(np.uint16) << 8)) & 0x7FFF) == 0x7F80):
        raise CodecError("Q4_0: a block scale rounds beyond the largest bfloat16", code="out-of-range")
    return out.tobytes()
