"""Highway's float32 ``hn::Log2``, bit for bit, as gemma.cpp's MXFP4 encoder calls it.

gemma.cpp picks an MXFP4 block's exponent as ``ceil(hn::Log2(max_abs / 6))``
(``compression/mxfp4-inl.h``). Highway's ``Log2`` is ``Log(x) * 1.442695f`` with
a musl-style ``Log`` (``hwy/contrib/math/math-inl.h``): split ``x`` into an
exponent ``k`` and a mantissa ``y`` in [sqrt(2)/2, sqrt(2)), then
``k*ln2_hi - ((z*(y-1 - P(z)) - k*ln2_lo) - (y-1))`` with ``z = (y-1)/(y+1)`` and a
4-term polynomial ``P``. It is not exact near integers: at 23 powers of two in
the float32 range (2**-13, 2**-15, 2**-26, ...) it returns slightly more than
the integer, so gemma.cpp's ceil gives one more than the exact value, and just
above some powers of two it returns slightly less.

Each float32 operation is emulated in float64 and rounded once (exact for +, -,
*, / since 53 >= 2*24 + 2); ``MulAdd``/``MulSub`` are fused on FMA targets (AVX2,
AVX-512, Arm) and emulated with a round-to-odd float64 sum. Checked bit for bit
against Highway compiled for AVX2, SSE4 and SSE2 (``fixtures/hwy_log2.npz``,
made by ``fixtures/hwy_log2/make.sh``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["hwy_log2", "fma32"]

_F = np.float32
_MIN_NORMAL = _F(1.175494351e-38)
_SCALE = _F(3.355443200e+7)  # 2**25: lifts a subnormal into the normal range
_MAGIC = 0x3F3504F3  # float32 bits of sqrt(2)/2
_LN2_HI, _LN2_LO = _F(0.69313812256), _F(9.0580006145e-6)
_K0, _K1, _K2, _K3 = _F(0.66666662693), _F(0.40000972152), _F(0.28498786688), _F(0.24279078841)
_INV_LN2 = _F(1.44269504088896340735992)


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a*b + c`` rounded once (a fused multiply-add)."""
    p = a.astype(np.float64) * b.astype(np.float64)  # exact: 24 + 24 significant bits
    c64 = np.broadcast_to(np.asarray(c, dtype=np.float64), p.shape)
    s = p + c64
    v = s - p
    err = (p - (s - v)) + (c64 - v)  # TwoSum: s + err is exactly p + c
    inexact = err != 0
    # Round to odd (truncate toward zero, set the last bit when inexact): a later rounding to
    # float32 then equals the single rounding of the exact sum.
    overshoot = inexact & (np.signbit(err) != np.signbit(s))
    t = np.where(overshoot, np.nextafter(s, 0.0), s)
    bits = t.view(np.int64) | inexact.astype(np.int64)
    return bits.view(np.float64).astype(np.float32)


def _mul_add(fused: bool, a, b, c) -> np.ndarray:
    if fused:
        return fma32(np.asarray(a, _F), np.asarray(b, _F), np.asarray(c, _F))
    return ((np.asarray(a, _F) * b).astype(_F) + c).astype(_F)


def hwy_log2(x: np.ndarray, fused: bool = True) -> np.ndarray:
    """``hn::Log2`` of positive finite float32 values (``fused=False``: targets without FMA, e.g. SSE4)."""
    x = np.array(x, dtype=_F)
    sub = x < _MIN_NORMAL
    x[sub] *= _SCALE
    exp_bits = x.view(np.int32) + np.int32(0x3F800000 - _MAGIC)
    k = (exp_bits.view(np.uint32) >> 23).astype(np.int32) - 0x7F - np.where(sub, 25, 0).astype(np.int32)
    exp = k.astype(_F)
    y = ((exp_bits & 0x7FFFFF) + np.int32(_MAGIC)).view(_F)
    ym1 = (y - _F(1)).astype(_F)
    z = (ym1 / (y + _F(1))).astype(_F)
    z2 = (z * z).astype(_F)
    z4 = (z2 * z2).astype(_F)
    odd = (_mul_add(fused, _K3, z4, _K1) * z4).astype(_F)
    poly = _mul_add(fused, _mul_add(fused, _K2, z4, _K0), z2, odd)
    inner = _mul_add(fused, z, (ym1 - poly).astype(_F), -(exp * _LN2_LO).astype(_F))
    inner = (inner - ym1).astype(_F)
    log = _mul_add(fused, exp, _LN2_HI, -inner)
    return (log * _INV_LN2).astype(_F)
