"""Property tests of the codecs: documented error bounds, exact sizes, input checks.

The bounds tested here are the ones stated in each codec module's docstring.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sbs_tools.codecs as codecs
from sbs_tools.codecs import sfp as sfp_mod
from sbs_tools.errors import CodecError

ALL_TYPES = ["F32", "BF16", "SFP", "NUQ", "I8", "F64", "U32", "U64"]
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def f32_arrays(lo: float, hi: float, max_size: int, min_size: int = 1):
    """float32 arrays with elements in [lo, hi], subnormals and zeros included."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    lo32 = lo32 if lo32 >= lo else np.nextafter(lo32, np.float32(np.inf))
    hi32 = hi32 if hi32 <= hi else np.nextafter(hi32, np.float32(-np.inf))
    elems = st.floats(float(lo32), float(hi32), width=32, allow_nan=False, allow_infinity=False)
    return hnp.arrays(np.float32, st.integers(min_size, max_size), elements=elems)


def roundtrip(type_name: str, x: np.ndarray) -> np.ndarray:
    blob = codecs.encode(type_name, x)
    assert len(blob) == codecs.packed_size(type_name, x.size)
    y = codecs.decode(type_name, blob, x.size)
    assert y.dtype == np.float32 and y.shape == (x.size,)
    return y.astype(np.float64)


# ---------------------------------------------------------------- BF16

@SETTINGS
@given(f32_arrays(-3.38e38, 3.38e38, 300))
def test_bf16_relative_error(x):
    y = roundtrip("BF16", x)
    xd = x.astype(np.float64)
    assert np.all(np.abs(y - xd) <= 2.0 ** -8 * np.abs(xd) + 2.0 ** -134)


@SETTINGS
@given(f32_arrays(-3.38e38, 3.38e38, 100))
def test_bf16_encode_is_round_to_nearest_even(x):
    import ml_dtypes
    want = x.astype(ml_dtypes.bfloat16).view(np.uint16).astype("<u2").tobytes()
    assert codecs.encode("BF16", x) == want


# ---------------------------------------------------------------- SFP

def sfp_bound(a: np.ndarray) -> np.ndarray:
    """sfp.py docstring: error bound of gemma's encoder at magnitude a."""
    return np.where(a >= 2.0 ** -7, (2.0 ** -4 + 2.0 ** -6) * a,
                    np.where(a >= 2.0 ** -22, (2.0 ** -3 + 2.0 ** -6) * a, 2.0 ** -22))


@SETTINGS
@given(f32_arrays(-1.875, 1.875, 500))
def test_sfp_error_bound(x):
    y = roundtrip("SFP", x)
    xd = x.astype(np.float64)
    assert np.all(np.abs(y - xd) <= sfp_bound(np.abs(xd)))
    assert b"\x80" not in codecs.encode("SFP", x)  # reserved -0 never produced


@SETTINGS
@given(f32_arrays(-1.875, 1.875, 500))
def test_sfp_nearest_error_bound(x):
    xd = x.astype(np.float64)
    y = sfp_mod.lut()[sfp_mod.encode_nearest(xd)].astype(np.float64)
    a = np.abs(xd)
    bound = np.maximum(np.where(a >= 2.0 ** -7, a / 16, a / 8), 2.0 ** -23)
    assert np.all(np.abs(y - xd) <= bound)
    # and it is really the nearest SFP value
    table = sfp_mod.lut().astype(np.float64)
    best = np.abs(xd[:, None] - table[None, :]).min(axis=1)
    np.testing.assert_array_equal(np.abs(y - xd), best)


def test_sfp_error_bound_exhaustive_over_bf16_intervals():
    """gemma's encoder only sees the truncated bf16 bits: check both ends of every interval."""
    u = np.arange(65536, dtype=np.uint32)
    for x in ((u << 16).view(np.float32), ((u << 16) | 0xFFFF).view(np.float32)):
        x = x[np.abs(x) <= 1.875]
        y = roundtrip("SFP", x)
        xd = x.astype(np.float64)
        assert np.all(np.abs(y - xd) <= sfp_bound(np.abs(xd)))


@SETTINGS
@given(f32_arrays(-1e30, 1e30, 200))
def test_scale_for_sfp_properties(x):
    scaled, scale = codecs.scale_for_sfp(x)
    assert scaled.dtype == np.float32 and scaled.shape == x.shape
    assert np.all(np.abs(scaled) <= 1.875)
    assert np.all(np.signbit(scaled) == np.signbit(x))
    maxabs = float(np.abs(x).max())
    if maxabs <= 1.875:
        assert scale == 1.0 and np.array_equal(scaled, x)
    else:
        assert scale == float(np.float32(np.float32(maxabs) / np.float32(1.875)))
        np.testing.assert_allclose(scaled.astype(np.float64) * scale, x, rtol=1e-6,
                                   atol=1e-6 * maxabs)
    codecs.encode("SFP", scaled)  # always encodable


# ---------------------------------------------------------------- I8

def i8_groups(x: np.ndarray):
    for g in range(0, x.size, 128):
        yield g, x[g:g + 128].astype(np.float64)


def gemma_i8_overflows(x: np.ndarray) -> bool:
    """Independent check of the documented reject condition (int32 zeropoint overflow)."""
    for _, grp in i8_groups(x):
        rng = grp.max() - grp.min()
        rng = rng if rng > 0 else 1.0
        if not math.isfinite(rng) or rng > 3.4e38 or 255 / rng > 3.3e38:
            return True
        if abs(255 / rng * grp.min()) + 128 >= 0.99 * 2.0 ** 31:
            return True
    return False


i8_values = st.one_of(
    f32_arrays(-1.0, 1.0, 400),
    f32_arrays(-1e4, 1e4, 400),
    st.tuples(st.floats(-1000.0, 1000.0, width=32), st.floats(1e-3, 10), f32_arrays(-1, 1, 400))
    .map(lambda t: (np.float32(t[0]) + np.float32(t[1]) * t[2]).astype(np.float32)),
)


@SETTINGS
@given(i8_values)
def test_i8_error_bound(x):
    try:
        y = roundtrip("I8", x)
    except CodecError as exc:
        assert exc.code == "out-of-range"
        assert gemma_i8_overflows(x)
        assume(False)
    for g, grp in i8_groups(x):
        r = grp.max() - grp.min()
        h = r / 255 if r > 0 else 1 / 255
        m = np.abs(grp).max()
        assert np.all(np.abs(y[g:g + 128] - grp) <= 1.3 * h + 2.0 ** -7 * m)


@SETTINGS
@given(st.integers(1, 5000), st.integers(0, 2**31))
def test_i8_f32_decode_equals_f64_formula_random_bytes(groups, seed):
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (groups % 40 + 1, 132), dtype=np.uint8)
    # keep headers finite: clear the top exponent bit pattern 0xFF
    hdr = raw[:, :4].copy().view("<u2")
    hdr &= np.uint16(0xBFFF)  # exponent < 0x80: |value| < 2
    raw[:, :4] = hdr.view(np.uint8)
    n = raw.shape[0] * 128
    got = codecs.decode("I8", raw.reshape(-1), n)
    inv = (hdr[:, 0].astype(np.uint32) << 16).view(np.float32)
    zp = (hdr[:, 1].astype(np.uint32) << 16).view(np.float32)
    zs = (-zp * inv).astype(np.float64)
    q = raw[:, 4:].view(np.int8).astype(np.float64)
    want = (inv.astype(np.float64)[:, None] * q + zs[:, None]).astype(np.float32).reshape(-1)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


# ---------------------------------------------------------------- NUQ

def nuq_d(a: np.ndarray) -> np.ndarray:
    """nuq.py docstring: bound on the nearest-SFP rounding of a centre of magnitude <= a."""
    return np.maximum(a / 16, np.minimum(a, 2.0 ** -7) / 8) + 2.0 ** -23


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(f32_arrays(-1.875, 1.875, 600),
                 f32_arrays(-0.01, 0.01, 600),
                 st.tuples(f32_arrays(-1, 1, 600), st.floats(0, 0.8), st.floats(1e-4, 1))
                 .map(lambda t: (np.float32(t[1]) + np.float32(t[2]) * t[0]).astype(np.float32))))
def test_nuq_error_bound(x):
    y = roundtrip("NUQ", x)
    for g in range(0, x.size, 256):
        grp = x[g:g + 256].astype(np.float64)
        err = y[g:g + 256] - grp
        r = grp.max() - grp.min()
        m = np.abs(grp).max()
        rms = math.sqrt(np.mean(err ** 2))
        assert rms <= r / 30 + nuq_d(m) + 1e-12
        assert np.abs(err).max() <= r + nuq_d(m)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1.875, 1.875, width=32), min_size=1, max_size=16, unique=True),
       st.integers(1, 600), st.integers(0, 2**31))
def test_nuq_few_distinct_values_only_lose_sfp_rounding(levels, n, seed):
    rng = np.random.default_rng(seed)
    x = np.array(levels, dtype=np.float32)[rng.integers(0, len(levels), n)]
    y = roundtrip("NUQ", x)
    xd = x.astype(np.float64)
    for g in range(0, n, 256):
        grp = xd[g:g + 256]
        slack = 2.0 ** -20 * (grp.max() - grp.min())
        assert np.all(np.abs(y[g:g + 256] - grp) <= nuq_d(np.abs(grp)) + slack)


# ---------------------------------------------------------------- sizes and input checks

def expected_size(type_name: str, n: int) -> int:
    """Spec §4.3, written out independently of sbs_tools.types."""
    ceil = lambda a, b: -(-a // b)  # noqa: E731
    return {"F32": 4 * n, "BF16": 2 * n, "SFP": n, "F64": 8 * n, "U32": 4 * n, "U64": 8 * n,
            "NUQ": 16 * ceil(n, 256) + ceil(n, 2), "I8": 4 * ceil(n, 128) + n}[type_name]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1000), st.sampled_from(ALL_TYPES), st.integers(0, 2**31))
def test_sizes_exact_for_every_n(n, type_name, seed):
    rng = np.random.default_rng(seed)
    if type_name in ("U32", "U64"):
        x = rng.integers(0, 1000, n)
    else:
        x = rng.uniform(-1.875, 1.875, n).astype(np.float32)
    assert codecs.packed_size(type_name, n) == expected_size(type_name, n)
    blob = codecs.encode(type_name, x)
    assert len(blob) == expected_size(type_name, n)
    y = codecs.decode(type_name, blob, n)
    assert y.shape == (n,) and y.dtype == np.float32
    if type_name in ("F32", "F64", "U32", "U64"):
        np.testing.assert_array_equal(y, np.asarray(x, dtype=np.float32))


def test_sizes_exact_for_all_small_n():
    for n in range(0, 1030):
        for t in ALL_TYPES:
            assert codecs.packed_size(t, n) == expected_size(t, n)


@pytest.mark.parametrize("n", [1, 127, 128, 129, 255, 256, 257, 511, 513])
def test_group_boundaries_roundtrip(n):
    x = np.linspace(-1, 1, n, dtype=np.float32)
    for t in ("NUQ", "I8"):
        y = roundtrip(t, x)
        assert np.abs(y - x).max() <= (0.1 if t == "NUQ" else 2 / 255)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(ALL_TYPES), st.integers(1, 700), st.data())
def test_non_finite_input_rejected(type_name, n, data):
    pos = data.draw(st.integers(0, n - 1))
    bad = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    x = np.zeros(n, dtype=data.draw(st.sampled_from([np.float32, np.float64])))
    x[pos] = bad
    with pytest.raises(CodecError) as ei:
        codecs.encode(type_name, x)
    assert ei.value.code == "non-finite"


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(ALL_TYPES), st.integers(0, 700), st.integers(-3, 3))
def test_size_mismatch_rejected(type_name, n, delta):
    assume(delta != 0 and codecs.packed_size(type_name, n) + delta >= 0)
    with pytest.raises(CodecError) as ei:
        codecs.decode(type_name, bytes(codecs.packed_size(type_name, n) + delta), n)
    assert ei.value.code == "size-mismatch"
