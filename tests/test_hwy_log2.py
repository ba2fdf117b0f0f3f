"""Highway's approximate float32 Log2, which picks gemma.cpp's MXFP4 block exponent, against the values
Highway itself computed (fixtures/hwy_log2.npz, made by fixtures/hwy_log2/make.sh on AVX2, SSE4, SSE2)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from sbs_tools import codecs
from sbs_tools.codecs import mxfp4
from sbs_tools.codecs.hwy_log2 import fma32, hwy_log2

FIXTURE = np.load(Path(__file__).resolve().parents[1] / "fixtures" / "hwy_log2.npz")


@pytest.mark.parametrize("target, fused", [("avx2", True), ("sse4", False), ("sse2", False)])
def test_bit_identical_to_compiled_highway(target, fused):
    x = FIXTURE["x"]
    assert str(FIXTURE[f"target_{target}"]) == target.upper()
    got = hwy_log2(x, fused=fused)
    assert np.array_equal(got.view(np.int32), FIXTURE[f"log2_{target}"].view(np.int32))
    assert np.array_equal(np.ceil(got).astype(np.int32), FIXTURE[f"ceil_{target}"])


def test_not_exact_at_some_powers_of_two():
    """Why emulating matters: Highway's ceil exceeds the exact one at 2**-13 (and 22 other powers of two)."""
    k = np.arange(-126, 128)
    x = np.ldexp(np.float32(1), k).astype(np.float32)
    up = k[np.ceil(hwy_log2(x)).astype(int) > k]
    assert len(up) == 23 and -13 in up and 1 not in up
    i = np.searchsorted(FIXTURE["x"], np.float32(2.0 ** -13))
    assert FIXTURE["x"][i] == np.float32(2.0 ** -13) and FIXTURE["ceil_avx2"][i] == -12


def test_encoder_uses_gemmacpp_exponent():
    """A block whose maximum is 6 * 2**-13 gets exponent -12 (byte 115) as in gemma.cpp; its max then
    encodes as 3 (code 5) instead of 6 (code 7). Max 12 (worked example 4) still gets exponent 1."""
    v = np.zeros(32, np.float32)
    v[0] = np.float32(6 * 2.0 ** -13)
    b = codecs.encode("MXFP4", v)
    assert b[0] == 127 - 12 and b[1] & 0x0F == 5
    assert codecs.decode("MXFP4", b, 32)[0] == v[0]  # 3 * 2**-12: still exact
    v[0] = 12.0
    assert codecs.encode("MXFP4", v)[0] == 0x80
    assert mxfp4.FP4_VALUES[5] == 3.0


def test_fma32_rounds_once():
    rng = np.random.default_rng(7)
    n = 3000
    a = (rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n)).astype(np.float32)
    b = (rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n)).astype(np.float32)
    near = (-(a.astype(np.float64) * b)).astype(np.float32)  # cancellation
    tiny = (rng.standard_normal(n) * 2.0 ** rng.integers(-90, -40, n)).astype(np.float32)  # inexact float64 sums
    for c in (near, tiny):
        got = fma32(a, b, c)
        for i in range(0, n, 5):
            exact = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
            f = np.float32(float(exact))
            cands = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
            want = min(cands, key=lambda v: (abs(Fraction(float(v)) - exact), int(np.float32(v).view(np.int32)) & 1))
            assert got[i] == want, (a[i], b[i], c[i])


def test_q4_0_and_mxfp4_encoders_match_gemmacpp():
    """654 blocks (weights, 60 decades of magnitude, rounding midpoints, exact grids, every power of two as
    a block maximum, zeros and subnormals, a partial final block) encoded by gemma.cpp's own block encoders
    compiled with Highway (fixtures/gemmacpp_encoders.npz): our encoders give the same bytes."""
    ref = np.load(Path(__file__).resolve().parents[1] / "fixtures" / "gemmacpp_encoders.npz")
    x = ref["x"]
    assert len(x) % 32 and len(ref["mxfp4"]) == 17 * -(-len(x) // 32)
    assert codecs.encode("Q4_0", x) == ref["q4_0"].tobytes()
    assert codecs.encode("MXFP4", x) == ref["mxfp4"].tobytes()
