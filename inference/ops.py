"""The numeric building blocks of a Gemma decoder, as gemma.cpp computes them (spec §8).

Pure functions on float32 numpy arrays; nothing here knows about files.
"""
from __future__ import annotations

import functools

import numpy as np

from sbs_tools.codecs.bf16 import round_f32

F32 = np.float32
EPS = 1e-6  # RMSNorm epsilon (gemma.cpp ops-inl.h)
GEMMA3_GLOBAL_1E6 = (14, 15, 16, 17)  # Model enum: GEMMA3_4B, 1B, 12B, 27B ("IsVLM" in gemma.cpp)
GEMMA3_MODELS = (14, 15, 16, 17, 18, 20, 21, 22)  # ... plus GEMMA3_270M and the text-only GEMMA3_*_LM
ROPE_MODES = ("gemmacpp", "reference")


def bf16_round(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bf16 (ties to even), returned as float32."""
    return round_f32(x)


def rmsnorm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """gemma.cpp's RMSNorm over the last axis: the stored weight is w, the applied gain is (1 + w)."""
    ms = np.add.reduce(x * x, axis=-1, keepdims=True) * F32(1.0 / x.shape[-1])  # mean of squares
    return (x * (F32(1.0) / np.sqrt(ms + F32(EPS)))) * (F32(1.0) + w)


def gelu(x: np.ndarray) -> np.ndarray:
    """The tanh approximation of GELU used by gemma.cpp."""
    return x * (F32(0.5) + F32(0.5) * np.tanh(x * (F32(0.7978845608) + F32(0.0356774081) * x * x)))


def softcap(x: np.ndarray, cap: float) -> np.ndarray:
    """``cap * tanh(x / cap)``; a cap of 0 means off (returns x unchanged)."""
    if not cap:
        return x
    c = F32(cap)
    return c * np.tanh(x * (F32(1.0) / c))


def embedding_multiplier(model_dim: int) -> np.float32:
    """gemma.cpp's ``EmbeddingScaling``: sqrt(D) in float32, rounded to bf16 (sqrt(2560) -> 50.5)."""
    return bf16_round(np.sqrt(F32(model_dim)))[()]


def query_scale(query_scale_type: int, model_dim: int, heads: int, qkv_dim: int) -> np.float32:
    """Multiplier of the queries: 0 = SqrtKeySize -> 1/sqrt(Dh); 1 = SqrtModelDimDivNumHeads ->
    1/sqrt(D // H) (integer division, as gemma.cpp's ``ChooseQueryScale``)."""
    if query_scale_type == 0:
        return F32(1.0) / np.sqrt(F32(qkv_dim))
    if query_scale_type == 1:
        return F32(1.0) / np.sqrt(F32(model_dim // heads))
    raise ValueError(f"query_scale {query_scale_type} is not a known QueryScaleType")


def rope_base(model: int, window: int, max_seq_len: int, rope: str = "gemmacpp") -> float:
    """RoPE base frequency of one layer. A layer is global when its window equals max_seq_len.

    ``gemmacpp``: 1e6 on global layers of Gemma 3 1B/4B/12B/27B only; 10,000 everywhere else,
    including the 270M's global layers (gemma.cpp 3ed403e, spec §8/§12).
    ``reference``: the original models' choice, 1e6 on every Gemma 3 global layer (270M too).
    """
    if rope not in ROPE_MODES:
        raise ValueError(f"rope must be one of {ROPE_MODES}, not {rope!r}")
    models = GEMMA3_GLOBAL_1E6 if rope == "gemmacpp" else GEMMA3_MODELS
    return 1e6 if (window == max_seq_len and model in models) else 1e4


@functools.lru_cache(maxsize=64)
def rope_inv_freq(dim: int, base: float) -> np.ndarray:
    """Inverse timescales 1/base**(2i/dim), i < dim/2, computed in float64 then cast to float32."""
    i = np.arange(dim // 2, dtype=np.float64)
    f = (1.0 / base ** (2.0 * i / dim)).astype(F32)
    f.flags.writeable = False  # shared by the cache
    return f


def rope(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """Rotary embedding of ``x`` (..., T, dim) at ``positions`` (T,): element i is rotated with
    element i + dim/2 (half-split, not interleaved pairs)."""
    dim = x.shape[-1]
    half = dim // 2
    theta = np.asarray(positions, dtype=F32)[:, None] * rope_inv_freq(dim, base)  # (T, half)
    cos, sin = np.cos(theta), np.sin(theta)
    x0, x1 = x[..., :half], x[..., half:]
    return np.concatenate([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1).astype(F32)


def attention_mask(q_pos: np.ndarray, k_pos: np.ndarray, window: int) -> np.ndarray:
    """Boolean (Tq, Tk): query at position p sees keys p - window + 1 .. p (causal, sliding)."""
    q = np.asarray(q_pos)[:, None]
    k = np.asarray(k_pos)[None, :]
    return (k <= q) & (k > q - window)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray, att_cap: float,
              probs: np.ndarray | None = None, stale: np.ndarray | None = None) -> np.ndarray:
    """Grouped-query attention. q (H, Tq, Dh) already scaled and rotated; k, v (K, Tk, Dh);
    mask (Tq, Tk). Query head h uses kv head h // (H/K). Returns (Tq, H*Dh).

    gemma.cpp's softmax (``attention.cc``) runs over its whole probability buffer row up to the
    last key, also the entries before a sliding window, which still hold what the row's previous
    use left there (zero at first), and ``WeightedSumV`` then uses the window only. With
    ``probs`` (Tq, H, Tk: that buffer, updated in place) the keys where ``stale`` (Tq, Tk) is
    true take part in the softmax with their buffer values."""
    heads, tq, dh = q.shape
    kv_heads = k.shape[0]
    qg = q.reshape(kv_heads, heads // kv_heads, tq, dh)
    s = np.einsum("kgtd,ksd->kgts", qg, k)
    if probs is not None:
        s = np.where(stale, probs.transpose(1, 0, 2).reshape(s.shape), s)
    s = softcap(s, att_cap)
    s = np.where(mask | stale if probs is not None else mask, s, F32(-np.inf))
    p = softmax(s)
    if probs is not None:
        seen = mask | stale
        probs[...] = np.where(seen[:, None], p.reshape(heads, tq, -1).transpose(1, 0, 2), probs)
        p = np.where(mask, p, F32(0))
    o = np.einsum("kgts,ksd->kgtd", p, v)  # (K, G, Tq, Dh)
    return o.reshape(heads, tq, dh).transpose(1, 0, 2).reshape(tq, heads * dh)


__all__ = ["bf16_round", "rmsnorm", "gelu", "softcap", "embedding_multiplier", "query_scale", "rope_base",
           "rope_inv_freq", "rope", "attention_mask", "softmax", "attention", "ROPE_MODES"]
