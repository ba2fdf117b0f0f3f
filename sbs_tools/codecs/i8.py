"""I8 (spec §6.4): groups of 128 values, each ``[inv_scale bf16][zeropoint bf16][int8 * n_g]``.

Decode (gemma.cpp ``IntCodec::DequantizeGroup``): ``x = fma(inv, q, zs)`` with
``zs = f32(-zp * inv)``. Both ``inv`` and ``zp`` are bf16 (8 significant bits)
and ``|q| <= 128``, so ``-zp*inv`` and ``inv*q`` are exact in float32 and
``f32(inv*q) + zs`` rounds exactly once: float32 numpy arithmetic reproduces the
fused result (and the spec's float64 emulation) bit for bit.

Encode (gemma.cpp ``IntCodec::QuantizeGroup``, bit-exact): ``range = max-min``
(1 if 0), ``s = 255/range``, ``zp = trunc(-s*min - 128)``; store
``bf16(1/s)``, ``bf16(zp)``; ``q = clamp(rint(fma(bf16(s), x, bf16(zp))), -128, 127)``.
Groups for which gemma.cpp would overflow (``s`` or ``1/s`` not a finite non-zero
bf16, or ``|-s*min - 128| >= 2**31``, which is undefined behaviour in C++) raise
``out-of-range``.

Error bound, group of finite float32 with ``R = max - min`` (``h = R/255``,
``1/255`` if ``R == 0``) and ``M = max(|min|, |max|)``:
``|dec(enc(x)) - x| <= 1.3*h + 2**-7 * M``. Derivation: ``inv*q`` inverts
``s*x`` up to the bf16 rounding of ``s`` and ``1/s`` (relative ``<= 2**-8``
together, hence the ``M`` term, which dominates for groups far from zero);
rounding to an integer costs ``h/2``; at the group ends the truncated zeropoint
and the bf16 scale can push ``q`` one step past the int8 range, so the clamp
costs up to one more step, plus ``2**-9`` of the zeropoint's magnitude.
"""
from __future__ import annotations

import numpy as np

from ..errors import CodecError
from ..types import I8_GROUP
from ._buffers import CHUNK
from .bf16 import bf16_bits

__all__ = ["decode", "encode", "GROUP", "GROUP_BYTES"]

GROUP = I8_GROUP
GROUP_BYTES = 4 + GROUP


def _header(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inv, zs) float32 column vectors of groups ``g`` (rows starting with the header)."""
    u = g[:, :4].astype(np.uint32)
    inv = ((u[:, 0] | (u[:, 1] << 8)) << 16).view(np.float32)
    zp = ((u[:, 2] | (u[:, 3] << 8)) << 16).view(np.float32)
    zs = -zp * inv  # exact: both have 8 significant bits
    return inv[:, None], zs[:, None]


def _decode_groups(g: np.ndarray, out2d: np.ndarray) -> None:
    inv, zs = _header(g)
    np.multiply(g[:, 4:].view(np.int8), inv, out=out2d)  # exact products
    np.add(out2d, zs, out=out2d)  # the single rounding


def decode(u8: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """Decode ``n`` I8 values (size-checked bytes) into float32 ``out``."""
    full = n // GROUP
    step = max(1, 4 * CHUNK // GROUP)
    with np.errstate(all="ignore"):  # garbage headers may give inf/nan; not our call
        if full:
            groups = u8[:full * GROUP_BYTES].reshape(full, GROUP_BYTES)
            dst = out[:full * GROUP].reshape(full, GROUP)
            for i in range(0, full, step):
                _decode_groups(groups[i:i + step], dst[i:i + step])
        tail = n - full * GROUP
        if tail:
            _decode_groups(u8[full * GROUP_BYTES:].reshape(1, 4 + tail),
                           out[full * GROUP:].reshape(1, tail))
    return out


def _quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Header bytes (G, 4) and int8 codes (G, L) of float32 groups ``x`` (G, L)."""
    f32 = np.float32
    with np.errstate(all="ignore"):
        mn = x.min(axis=1)
        mx = x.max(axis=1)
        rng = mx - mn
        rng = np.where(rng == 0, f32(1.0), rng).astype(f32)
        s = (f32(255.0) / rng).astype(f32)
        a = ((-s) * mn).astype(f32) - f32(128.0)
        bad = ~np.isfinite(a) | (np.abs(a) >= f32(2.0**31)) | ~np.isfinite(rng) | (s == 0)
        inv_bits = bf16_bits((f32(1.0) / s).astype(f32))
        s_bits = bf16_bits(s)
        bad |= ((inv_bits & 0x7FFF) == 0) | ((inv_bits & 0x7F80) == 0x7F80)
        bad |= (s_bits & 0x7F80) == 0x7F80
        if bad.any():
            g = int(np.flatnonzero(bad)[0])
            raise CodecError(f"I8: group {g} (min {mn[g]!r}, max {mx[g]!r}) cannot be "
                             f"quantized: scale or zeropoint overflows", code="out-of-range")
        # static_cast<float>(static_cast<int32_t>(a)): truncation, and never -0.0
        zp = np.trunc(a).astype(np.int64).astype(f32)
        zp_bits = bf16_bits(zp)
        sb = (s_bits.astype(np.uint32) << 16).view(f32).astype(np.float64)
        zpb = (zp_bits.astype(np.uint32) << 16).view(f32).astype(np.float64)
        # fma(bf16(s), x, bf16(zp)): the product is exact in float64.
        y = (sb[:, None] * x + zpb[:, None]).astype(f32)
        q = np.clip(np.rint(y), -128, 127).astype(np.int8)
    hdr = np.empty((x.shape[0], 4), dtype=np.uint8)
    hdr[:, 0:2] = inv_bits.astype("<u2").view(np.uint8).reshape(-1, 2)
    hdr[:, 2:4] = zp_bits.astype("<u2").view(np.uint8).reshape(-1, 2)
    return hdr, q


def encode(x: np.ndarray) -> bytes:
    """I8 bytes of finite float32 ``x`` (1-D), bit-identical to gemma.cpp."""
    n = x.size
    full = n // GROUP
    tail = n - full * GROUP
    buf = np.empty(full * GROUP_BYTES + (4 + tail if tail else 0), dtype=np.uint8)
    step = max(1, 16 * CHUNK // GROUP)
    if full:
        groups = buf[:full * GROUP_BYTES].reshape(full, GROUP_BYTES)
        xs = x[:full * GROUP].reshape(full, GROUP)
        for i in range(0, full, step):
            hdr, q = _quantize(xs[i:i + step])
            groups[i:i + step, :4] = hdr
            groups[i:i + step, 4:] = q.view(np.uint8)
    if tail:
        hdr, q = _quantize(x[full * GROUP:].reshape(1, tail))
        buf[full * GROUP_BYTES:full * GROUP_BYTES + 4] = hdr[0]
        buf[full * GROUP_BYTES + 4:] = q.view(np.uint8)[0]
    return buf.tobytes()
