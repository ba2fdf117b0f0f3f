"""Pin each step of the decoder math that the tiny random reference models cannot tell apart.

Their logits are small and nearly flat, so soft-caps are almost the identity, positions stay
below 13 and every query scale / embedding multiplier variant lands within the noise; these tests
fix the formulas gemma.cpp uses (spec §8) independently of the corpus.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inference import ops

F32 = np.float32
GEMMA2_ATT_CAP, GEMMA2_FINAL_CAP = 50.0, 30.0


# -- soft-capping ---------------------------------------------------------------------
@pytest.mark.parametrize("cap", [GEMMA2_ATT_CAP, GEMMA2_FINAL_CAP])
def test_softcap_gemma2_values(cap):
    x = np.array([-1000.0, -2 * cap, -cap, 0.0, 1.0, cap, 2 * cap, 1000.0], F32)
    got = ops.softcap(x, cap)
    np.testing.assert_allclose(got, cap * np.tanh(x / cap), rtol=1e-6)
    assert got[5] == pytest.approx(cap * math.tanh(1.0), rel=1e-6)  # 22.85 for 30, 38.08 for 50
    assert np.all(np.abs(got) < cap + 1e-4) and got[0] == pytest.approx(-cap)
    assert got[4] == pytest.approx(1.0, abs=1.0 / cap**2)  # nearly the identity for small logits


def test_softcap_zero_is_off():
    x = np.array([-1e4, 3.0, 1e4], F32)
    assert ops.softcap(x, 0.0) is x


@given(arrays(F32, 16, elements=st.floats(-1e4, 1e4, width=32)), st.sampled_from([30.0, 50.0]))
@settings(max_examples=50, deadline=None)
def test_softcap_monotone_and_bounded(x, cap):
    y = ops.softcap(np.sort(x), cap)
    assert np.all(np.diff(y) >= 0) and np.all(np.abs(y) <= cap)


def test_attention_softcap_applies_to_scores_before_softmax():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(0, 4, (1, 3, 8)).astype(F32) for _ in range(3))
    mask = ops.attention_mask(np.arange(3), np.arange(3), 3)
    for cap in (0.0, GEMMA2_ATT_CAP, 2.0):
        s = q[0] @ k[0].T
        s = cap * np.tanh(s / cap) if cap else s
        s = np.where(mask, s, -np.inf)
        p = np.exp(s - s.max(1, keepdims=True))
        want = (p / p.sum(1, keepdims=True)) @ v[0]
        np.testing.assert_allclose(ops.attention(q, k, v, mask, cap), want, rtol=1e-5, atol=1e-6)
    # a small cap flattens the attention distribution: the output moves toward the plain mean
    loose, tight = ops.attention(q, k, v, mask, 0.0), ops.attention(q, k, v, mask, 1e-4)
    np.testing.assert_allclose(tight[2], v[0].mean(0), atol=1e-3)
    assert not np.allclose(loose[2], tight[2], atol=1e-3)


# -- embedding multiplier --------------------------------------------------------------
@pytest.mark.parametrize("dim, want", [
    (2304, 48.0),  # Gemma 2 2B: sqrt is exact
    (2560, 50.5),  # Gemma 3 4B: sqrt = 50.596 -> bf16 50.5 (not 50.596, not 50.75)
    (3584, 59.75),  # Gemma 2 9B: 59.866 -> 59.75
    (1152, 34.0),  # Gemma 3 1B: 33.941 -> 34.0
    (640, 25.25),  # Gemma 3 270M: 25.298 -> 25.25
    (128, 11.3125),  # the tiny corpus models: 11.3137 -> 11.3125
])
def test_embedding_multiplier_is_bf16_rounded_sqrt(dim, want):
    got = ops.embedding_multiplier(dim)
    assert got == want and isinstance(got, np.float32)
    if dim != 2304:
        assert got != F32(math.sqrt(dim))


def test_bf16_round_ties_to_even():
    # 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0)
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 1 + 2**-8 + 2**-20], F32)
    np.testing.assert_array_equal(ops.bf16_round(x), np.array([1.0, 1 + 2**-6, -1.0, 1 + 2**-7], F32))


# -- query scaling --------------------------------------------------------------------
def test_query_scale_sqrt_key_size():
    assert ops.query_scale(0, 2304, 8, 256) == F32(1 / 16)  # Gemma 2 2B
    assert ops.query_scale(0, 640, 4, 256) == F32(1 / 16)  # Gemma 3 270M: Dh, not D/H = 160


def test_query_scale_model_dim_div_heads():
    assert ops.query_scale(1, 4608, 32, 128) == F32(1 / 12)  # Gemma 2 27B: D/H = 144, not Dh = 128
    # integer division, as gemma.cpp: 100 // 3 = 33
    assert ops.query_scale(1, 100, 3, 64) == F32(1) / np.sqrt(F32(33))
    assert ops.query_scale(1, 100, 3, 64) != F32(1) / np.sqrt(F32(100 / 3))


def test_query_scale_unknown():
    with pytest.raises(ValueError):
        ops.query_scale(2, 128, 4, 32)


# -- RoPE -----------------------------------------------------------------------------------
GEMMA3_WINDOWS = [512] * 5 + [32768]


@pytest.mark.parametrize("model, rope, want", [
    (15, "gemmacpp", [1e4] * 5 + [1e6]),  # Gemma 3 1B: global layer at 1e6
    (14, "gemmacpp", [1e4] * 5 + [1e6]),  # 4B (windows differ in real files; only equality matters)
    (18, "gemmacpp", [1e4] * 6),  # 270M: gemma.cpp uses 10,000 on every layer (spec §8, §12)
    (18, "reference", [1e4] * 5 + [1e6]),  # 270M as the original model
    (15, "reference", [1e4] * 5 + [1e6]),
])
def test_rope_base_per_layer_gemma3(model, rope, want):
    assert [ops.rope_base(model, w, 32768, rope) for w in GEMMA3_WINDOWS] == want


@pytest.mark.parametrize("rope", ops.ROPE_MODES)
def test_rope_base_gemma2_is_always_1e4(rope):
    # Gemma 2 alternates 4096 / 8192 with max_seq_len 8192: the "global" layers still use 10,000
    assert [ops.rope_base(7, w, 8192, rope) for w in [4096, 8192, 4096, 8192]] == [1e4] * 4


def test_rope_base_bad_mode():
    with pytest.raises(ValueError, match="rope"):
        ops.rope_base(15, 512, 32768, "llama")


def test_rope_inv_freq():
    f = ops.rope_inv_freq(8, 1e4)
    np.testing.assert_array_equal(f, np.array([1.0, 0.1, 0.01, 0.001], F32))
    assert ops.rope_inv_freq(256, 1e6)[-1] == F32(1e6 ** (-254 / 256))


def test_rope_pairs_half_split_elements():
    dim, pos, base = 8, 3, 1e4
    x = np.arange(1, dim + 1, dtype=F32)[None, :]
    got = ops.rope(x, np.array([pos]), base)[0]
    f = ops.rope_inv_freq(dim, base)
    want = np.empty(dim, F32)
    for i in range(dim // 2):  # element i rotates with element i + dim/2, not i + 1
        t = pos * f[i]
        want[i] = x[0, i] * math.cos(t) - x[0, i + dim // 2] * math.sin(t)
        want[i + dim // 2] = x[0, i] * math.sin(t) + x[0, i + dim // 2] * math.cos(t)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_rope_position_zero_is_identity_and_norm_preserving():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 16)).astype(F32)
    y = ops.rope(x, np.arange(5), 1e4)
    np.testing.assert_array_equal(y[:, 0], x[:, 0])
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)


def test_rope_scores_depend_on_relative_position_only():
    rng = np.random.default_rng(2)
    q, k = rng.normal(size=(2, 1, 32)).astype(F32)
    for base in (1e4, 1e6):
        s = [float(ops.rope(q, [m + 7], base)[0] @ ops.rope(k, [m], base)[0]) for m in (0, 5, 40)]
        assert s == pytest.approx([s[0]] * 3, rel=1e-4)


# -- sliding-window masks ---------------------------------------------------------------
def test_window_mask_edge():
    m = ops.attention_mask(np.array([10]), np.arange(12), window=8)[0]
    # position 10 sees exactly the 8 positions 3..10: 2 is one past the edge, 11 is the future
    assert np.flatnonzero(m).tolist() == list(range(3, 11))


def test_window_mask_small_positions_and_window_one():
    m = ops.attention_mask(np.arange(4), np.arange(4), window=8)
    np.testing.assert_array_equal(m, np.tril(np.ones((4, 4), bool)))  # window not reached: causal
    m1 = ops.attention_mask(np.arange(4), np.arange(4), window=1)
    np.testing.assert_array_equal(m1, np.eye(4, dtype=bool))


@given(st.integers(0, 200), st.integers(1, 64))
@settings(max_examples=100, deadline=None)
def test_window_mask_counts(pos, window):
    m = ops.attention_mask(np.array([pos]), np.arange(pos + 5), window)[0]
    visible = np.flatnonzero(m)
    assert visible.size == min(window, pos + 1) and visible.max() == pos
    assert visible.min() == max(0, pos - window + 1)


def test_window_mask_continues_after_a_prefilled_cache():
    # a decode step at position 20 against 21 cached keys, window 8
    m = ops.attention_mask(np.array([20]), np.arange(21), 8)[0]
    assert np.flatnonzero(m).tolist() == list(range(13, 21))


# -- norms and activation ------------------------------------------------------------------
def test_rmsnorm_applies_one_plus_weight_once():
    x = np.array([[3.0, -4.0, 0.0, 12.0]], F32)
    rms = math.sqrt((9 + 16 + 144) / 4 + 1e-6)
    np.testing.assert_allclose(ops.rmsnorm(x, np.zeros(4, F32)), x / rms, rtol=1e-6)
    w = np.array([0.5, -1.0, 2.0, 0.0], F32)
    np.testing.assert_allclose(ops.rmsnorm(x, w), x / rms * (1 + w), rtol=1e-6)


def test_rmsnorm_epsilon():
    np.testing.assert_allclose(ops.rmsnorm(np.full((1, 4), 1e-4, F32), np.zeros(4, F32)),
                               1e-4 / math.sqrt(1e-8 + 1e-6), rtol=1e-5)


def test_gelu_tanh_approximation():
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0], F32)
    want = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(ops.gelu(x), want, rtol=1e-6, atol=1e-7)


def test_grouped_query_attention_head_mapping():
    # 4 query heads, 2 kv heads: heads 0,1 use kv head 0 and heads 2,3 use kv head 1
    rng = np.random.default_rng(3)
    q = rng.normal(size=(4, 2, 8)).astype(F32)
    k = rng.normal(size=(2, 2, 8)).astype(F32)
    v = rng.normal(size=(2, 2, 8)).astype(F32)
    mask = ops.attention_mask(np.arange(2), np.arange(2), 2)
    out = ops.attention(q, k, v, mask, 0.0).reshape(2, 4, 8)
    for h in range(4):
        j = h // 2
        one = ops.attention(q[h:h + 1], k[j:j + 1], v[j:j + 1], mask, 0.0)
        np.testing.assert_allclose(out[:, h], one, rtol=1e-5)


# -- cross-check with the canonical configs (sbs_tools.canonical) -------------------------------
CANONICAL_MODELS = [3, 4, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18]


@pytest.mark.parametrize("model", CANONICAL_MODELS)
@pytest.mark.parametrize("rope", ops.ROPE_MODES)
def test_rope_bases_agree_with_canonical_configs(model, rope):
    canonical = pytest.importorskip("sbs_tools.canonical")
    cfg = canonical.canonical_config(model, "sfp")
    ours = [ops.rope_base(cfg.model, w, cfg.max_seq_len, rope) for w in cfg.attention_window_sizes]
    assert ours == canonical.rope_bases(cfg, rope)
    if model == 18 and rope == "gemmacpp":
        assert set(ours) == {1e4}  # gemma.cpp's 270M: one base for all 18 layers


@pytest.mark.parametrize("model", CANONICAL_MODELS)
def test_canonical_configs_are_supported(model):
    canonical = pytest.importorskip("sbs_tools.canonical")
    from inference.weights import check_supported

    cfg = canonical.canonical_config(model, "sfp")
    notes = check_supported(cfg)
    assert bool(cfg.vit_config.layer_configs) == any("ViT" in n for n in notes)
    lc = cfg.layer_configs[0]
    scale = ops.query_scale(cfg.query_scale, cfg.model_dim, lc.heads, lc.qkv_dim)
    assert scale == (F32(1 / 12) if model == 4 else F32(1) / np.sqrt(F32(lc.qkv_dim)))  # 27B: D/H = 144
