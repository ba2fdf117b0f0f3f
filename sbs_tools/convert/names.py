"""Tensor names, layouts and element types: how checkpoint tensors become gemma.cpp tensors.

Layouts (spec §5.2, §9, §12; all matrices ``[out, in]`` as in Hugging Face):

* ``qkv_ein_N`` ((H+2K)*Dh x D): all query heads, then for each kv head its
  K rows followed by its V rows — :func:`qkv_ein`.
* ``att_ein_N`` (H*D x Dh): the output projection ``o`` (D x H*Dh) viewed as
  (D, H, Dh) and transposed to (H, D, Dh) — :func:`att_ein` (inverse:
  :func:`o_proj_from_att_ein`).
* ``gating_ein_N`` (2F x D): gate rows, then up rows — :func:`gating_ein`.
* ``linear_w_N`` (D x F): the down projection as is.
* RMSNorm weights are stored raw (gemma.cpp multiplies by ``1 + w``), as in
  Hugging Face checkpoints; GGUF files store ``1 + w`` and need 1 subtracted.
* ViT (SigLIP, spec §5.3): ``qkv_ein_w`` rows per head [q; k; v] and
  ``qkv_ein_b`` as (H+2K) x Dh holding [H, 3, Dh]; ``img_emb_kernel`` columns
  ordered (h, w, channel).

Element types (:func:`tensor_type`) follow gemma.cpp's exporters: with
``--type f32`` everything is F32; otherwise the large per-layer matrices of
the language model get the requested type, tensors gemma.cpp declares as
``float`` (biases) and the ViT position embedding are F32, and everything else
— embedding, norms, the vision tower and image projection — is BF16.
"""
from __future__ import annotations

import numpy as np

from ..tensors import TensorSpec
from ..types import BLOCK_TYPES, Type

#: Base names of the per-layer matrices that take the requested weight type.
BIG_MATRICES = frozenset({"att_ein", "att_w", "qkv_ein", "qkv1_w", "qkv2_w", "gating_ein", "gating1_w",
                          "gating2_w", "linear_w"})
#: Always F32 in gemma.cpp's exports (besides every ``kind == "bias"`` tensor).
F32_ALWAYS = frozenset({"img_pos_emb"})
#: Types ``sbs convert --type`` accepts.
WEIGHT_TYPES = {"f32": Type.F32, "bf16": Type.BF16, "sfp": Type.SFP, "nuq": Type.NUQ, "i8": Type.I8,
                "q4_0": Type.Q4_0, "mxfp4": Type.MXFP4}


def tensor_type(spec: TensorSpec, weight: Type) -> Type:
    """Element type gemma.cpp's exporter uses for ``spec`` when asked for ``weight``."""
    weight = Type(weight)
    if spec.kind == "bias" or spec.base in F32_ALWAYS or Type.F32 in spec.types and len(spec.types) == 1:
        return Type.F32
    if weight == Type.F32:
        return Type.F32
    if spec.base in BIG_MATRICES and spec.layer_type == "kGemma":
        if weight in BLOCK_TYPES and spec.cols % 32:
            # 32-value blocks must not straddle rows (and att_ein needs qkv_dim % 32 == 0): addendum §2.2
            return Type.BF16
        return weight
    return Type.BF16


def qkv_ein(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, kv_heads: int, qkv_dim: int) -> np.ndarray:
    """Stack ``q`` (H*Dh x D), ``k`` and ``v`` (K*Dh x D) into gemma.cpp's ``qkv_ein`` row order."""
    D = q.shape[1]
    if q.shape != (heads * qkv_dim, D) or k.shape != (kv_heads * qkv_dim, D) or v.shape != k.shape:
        raise ValueError(f"q/k/v shapes {q.shape}/{k.shape}/{v.shape} do not fit H={heads} K={kv_heads} "
                         f"Dh={qkv_dim}")
    kv = np.stack([k.reshape(kv_heads, qkv_dim, D), v.reshape(kv_heads, qkv_dim, D)], axis=1)
    return np.concatenate([q, kv.reshape(2 * kv_heads * qkv_dim, D)], axis=0)


def split_qkv_ein(w: np.ndarray, heads: int, kv_heads: int, qkv_dim: int) -> tuple[np.ndarray, ...]:
    """Inverse of :func:`qkv_ein`: ``(q, k, v)``."""
    D = w.shape[1]
    q = w[:heads * qkv_dim]
    kv = w[heads * qkv_dim:].reshape(kv_heads, 2, qkv_dim, D)
    return q, kv[:, 0].reshape(-1, D), kv[:, 1].reshape(-1, D)


def att_ein(o: np.ndarray, heads: int, qkv_dim: int) -> np.ndarray:
    """``o_proj`` (D x H*Dh) -> ``att_ein`` (H*D x Dh)."""
    D = o.shape[0]
    if o.shape[1] != heads * qkv_dim:
        raise ValueError(f"output projection {o.shape} does not fit H={heads} Dh={qkv_dim}")
    return np.ascontiguousarray(o.reshape(D, heads, qkv_dim).transpose(1, 0, 2)).reshape(heads * D, qkv_dim)


def o_proj_from_att_ein(w: np.ndarray, heads: int, model_dim: int) -> np.ndarray:
    """Inverse of :func:`att_ein`: (H*D x Dh) -> (D x H*Dh); equals gemma.cpp's ``att_w``."""
    Dh = w.shape[1]
    return np.ascontiguousarray(w.reshape(heads, model_dim, Dh).transpose(1, 0, 2)).reshape(model_dim, heads * Dh)


def gating_ein(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Gate rows (GELU input) then up rows."""
    if gate.shape != up.shape:
        raise ValueError(f"gate {gate.shape} and up {up.shape} projections differ in shape")
    return np.concatenate([gate, up], axis=0)


# -- ViT (SigLIP) -------------------------------------------------------------------------------------

def vit_qkv_w(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """q/k/v (H*Dh x Dv each) -> ``qkv_ein_w`` (H*3*Dh x Dv), per head [q_h; k_h; v_h]."""
    Dv = q.shape[1]
    Dh = q.shape[0] // heads
    return np.stack([x.reshape(heads, Dh, Dv) for x in (q, k, v)], axis=1).reshape(heads * 3 * Dh, Dv)


def vit_qkv_b(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """q/k/v biases (H*Dh each) -> ``qkv_ein_b`` ((3H) x Dh), per head [q_h, k_h, v_h]."""
    Dh = q.shape[-1] // heads
    return np.stack([x.reshape(heads, Dh) for x in (q, k, v)], axis=1).reshape(3 * heads, Dh)


def patch_kernel(w: np.ndarray) -> np.ndarray:
    """Conv2d patch embedding (Dv, C, P, P) -> ``img_emb_kernel`` (Dv, P*P*C), columns (h, w, c)."""
    Dv = w.shape[0]
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(Dv, -1)


def row(x: np.ndarray) -> np.ndarray:
    """A vector as the 1 x N matrix gemma.cpp stores."""
    return np.asarray(x, dtype=np.float32).reshape(1, -1)
