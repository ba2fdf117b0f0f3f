"""SFP, "switched floating point" (spec §6.2): one byte per value.

Bit 7 is the sign, ``e = b & 0x7F``: ``e == 0`` is zero; ``e >= 64`` is
``2**((e-64)>>3 - 7) * (1 + (e&7)/8)`` (range [2**-7, 1.875]); ``1 <= e <= 63``
is ``2**((e>>2) - 23) * (1 + (e&3)/4)`` (range [1.25*2**-23, 1.75*2**-8]).
Byte 0x80 is reserved; it decodes to -0.0 (gemma.cpp release behaviour).

``encode`` is gemma.cpp's ``SfpCodec::Enc`` bit for bit: truncate float32 to
bf16, keep the top 6 bf16 mantissa bits, round half to even. Inputs must obey
``|x| <= 1.875`` (scale first with :func:`scale_for_sfp`); larger magnitudes
raise ``out-of-range``.

Error bound of ``encode`` (gemma's rounding; ``x`` finite, ``|x| <= 1.875``):
``|dec(enc(x)) - x| <= (2**-4 + 2**-6) * |x|`` when ``|x| >= 2**-7`` (3-bit
mantissa: half a step plus the two truncated bits), ``<= (2**-3 + 2**-6) * |x|``
for ``2**-22 <= |x| < 2**-7``, and ``<= 2**-22`` for smaller ``|x|`` (which
mostly flush to +0). :func:`encode_nearest` rounds to the nearest SFP value
(half a step: ``2**-4 * |x|``, ``2**-3 * |x|`` in the small range); it is what
the NUQ encoder uses for its cluster centres.
"""
from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np

from ..errors import CodecError
from ._buffers import CHUNK, finite_f32

__all__ = ["SFP_MAX", "lut", "decode", "decode_bytes", "encode", "encode_array",
           "encode_nearest", "scale_for_sfp"]

#: Largest SFP magnitude (``SfpStream::kMax``).
SFP_MAX = 1.875


@lru_cache(maxsize=None)
def lut() -> np.ndarray:
    """float32[256]: decoded value of every SFP byte (read-only)."""
    b = np.arange(256)
    e = b & 0x7F
    large = e >= 64
    exp = np.where(large, ((e - 64) >> 3) - 7, (e >> 2) - 23)
    mant = np.where(large, 1 + (e & 7) / 8, 1 + (e & 3) / 4)
    mag = np.where(e == 0, 0.0, np.ldexp(mant, exp))
    table = np.where(b & 0x80, -mag, mag).astype(np.float32)
    table.flags.writeable = False
    return table


@lru_cache(maxsize=None)
def _pair_lut() -> np.ndarray:
    """uint64[65536]: two decoded floats for each little-endian byte pair."""
    bits = lut().view(np.uint32).astype(np.uint64)
    v = np.arange(65536)
    table = bits[v & 0xFF] | (bits[v >> 8] << np.uint64(32))
    table.flags.writeable = False
    return table


def decode_bytes(codes: np.ndarray) -> np.ndarray:
    """Decode an array of SFP bytes (any shape) to float32 of the same shape."""
    return lut().take(codes, mode="clip")


def decode(u8: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """Decode ``n`` SFP bytes (size-checked) into float32 ``out``."""
    table = lut()
    pairs = n // 2
    if sys.byteorder == "little" and pairs:
        src = u8[:2 * pairs].view(np.uint16)
        dst = out[:2 * pairs].view(np.uint64)
        ptable = _pair_lut()
        for i in range(0, pairs, CHUNK):
            np.take(ptable, src[i:i + CHUNK], out=dst[i:i + CHUNK], mode="clip")
        start = 2 * pairs
    else:
        start = 0
    for i in range(start, n, CHUNK):
        np.take(table, u8[i:i + CHUNK], out=out[i:i + CHUNK], mode="clip")
    return out


def _check_range(x: np.ndarray) -> None:
    if x.size and float(np.abs(x).max()) > SFP_MAX:
        raise CodecError(f"SFP: |x| must be <= {SFP_MAX}; scale the tensor first "
                         f"(scale_for_sfp)", code="out-of-range")


def _encode_chunk(x: np.ndarray) -> np.ndarray:
    """gemma.cpp ``SfpCodec::Enc`` on float32 ``x`` with ``|x| <= 1.875``."""
    u16 = (x.view(np.uint32) >> 16).astype(np.int32)  # truncate f32 -> bf16
    hi = u16 >> 8
    lo = u16 & 0xFF
    sign = hi & 0x80
    be = ((2 * hi) & 0xFF) | (lo >> 7)  # biased exponent
    m6 = ((2 * lo) & 0xFF) >> 2  # top 6 of 7 mantissa bits
    large0 = (be > 119) | ((be == 119) & (m6 > 59))
    t = np.where(large0, (2 * m6) & 0xFF, m6)
    r = (t + ((t >> 4) & 1) + 7) & 0xFF  # round half to even at bit 4
    c = r & ~np.where(large0, 0x80, 0x40) & 0xFF
    be = be + (c != r)  # mantissa overflow
    m = c >> 4
    m = np.where(be == 104, np.maximum(m, 1), m)  # 2^-23 rounds up to 1.25*2^-23
    em = np.where(be > 119, ((be - 112) << 3) | m, ((be - 104) << 2) | m)
    return np.where(be < 104, 0, sign | (em & 0x7F)).astype(np.uint8)


@lru_cache(maxsize=None)
def _bf16_code_lut() -> np.ndarray:
    """uint8[65536]: gemma.cpp's SFP byte for every truncated-bf16 pattern ``|x| < 2``."""
    bits = (np.arange(65536, dtype=np.uint32) << 16).view(np.float32)
    table = np.zeros(65536, dtype=np.uint8)
    ok = np.abs(bits) < 2.0  # the algorithm is only defined below 2; inf/nan excluded
    table[ok] = _encode_chunk(np.ascontiguousarray(bits[ok]))
    table.flags.writeable = False
    return table


def encode_array(x: np.ndarray) -> np.ndarray:
    """SFP bytes (uint8 array) of finite float32 ``x`` (1-D), gemma.cpp-exact.

    The encoder only looks at the truncated bf16 bits, so it is a 64 Ki-entry
    table lookup on ``bits >> 16`` (the table is built by :func:`_encode_chunk`).
    """
    _check_range(x)
    table = _bf16_code_lut()
    hi16 = np.ascontiguousarray(x, dtype=np.float32).view(np.uint16)[1::2] \
        if sys.byteorder == "little" else (x.view(np.uint32) >> 16).astype(np.uint16)
    out = np.empty(x.size, dtype=np.uint8)
    for i in range(0, x.size, 4 * CHUNK):
        np.take(table, hi16[i:i + 4 * CHUNK], out=out[i:i + 4 * CHUNK], mode="clip")
    return out


def encode(x: np.ndarray) -> bytes:
    """SFP bytes of finite float32 ``x`` (1-D), bit-identical to gemma.cpp."""
    return encode_array(x).tobytes()


@lru_cache(maxsize=None)
def _positive_values() -> np.ndarray:
    return lut()[:128].astype(np.float64)  # ascending: 0, small range, large range


def encode_nearest(x: np.ndarray) -> np.ndarray:
    """SFP bytes (uint8 array, same shape) of the SFP value nearest to each ``x``.

    ``|x| <= 1.875`` is required; ties go to the smaller magnitude; zero and
    values rounding to zero give +0 (0x00), never the reserved 0x80.
    """
    x = np.asarray(x, dtype=np.float64)
    _check_range(x)
    pos = _positive_values()
    a = np.abs(x)
    hi = np.clip(np.searchsorted(pos, a, side="left"), 1, 127)
    lo = hi - 1
    e = np.where(pos[hi] - a < a - pos[lo], hi, lo)
    return np.where((x < 0) & (e != 0), e | 0x80, e).astype(np.uint8)


def scale_for_sfp(values: object) -> tuple[np.ndarray, float]:
    """gemma.cpp ``ScaleWeights`` (spec §6.5) for SFP and NUQ tensors.

    Returns ``(scaled, scale)``: ``scaled`` is float32 with the shape of
    ``values`` and ``|scaled| <= 1.875``; ``scale`` (a float32 value) goes in
    the MatPtr so that ``scaled * scale`` approximates ``values``. If
    ``max|x| <= 1.875`` the values are returned unchanged with scale 1.0.
    """
    arr = np.asarray(values)
    x = finite_f32(arr, "SFP").reshape(arr.shape)
    maxabs = np.float32(np.abs(x).max()) if x.size else np.float32(0.0)
    if maxabs <= np.float32(SFP_MAX):
        return x.copy(), 1.0
    scale = np.float32(maxabs / np.float32(SFP_MAX))
    inv = np.float32(1.0 / np.float64(scale))
    magn = np.minimum(np.float32(SFP_MAX), np.abs(x * inv))
    return np.copysign(magn, x).astype(np.float32), float(scale)
