"""Which tensors a model needs, derived from its :class:`~sbs_tools.config.ModelConfig` alone.

These are gemma.cpp's loading rules (spec §5; ``gemma/weights.h`` and
``gemma/tensor_info.cc`` at 3ed403e) as pure functions, shared by ``verify``,
``repair``, the inference engine and reports:

* :func:`expected_tensors` lists every tensor the config asks for: per-model
  tensors (embedding, final norm, the ViT/image tensors when there are ViT
  layers), then per LLM layer (``config.layer_configs[i]``, Gemma attention
  rules) and per ViT layer (``config.vit_config.layer_configs[i]``, ViT rules),
  each with its shape, layer index, layer type, whether it is required, and
  which element types gemma.cpp accepts for it.
* :func:`choices` lists the "exactly one of" groups of a Gemma layer
  (``att_ein`` / ``att_w``, ``qkv_ein`` / ``qkv1_w`` + ``qkv2_w``,
  ``gating_ein`` / ``gating1_w`` + ``gating2_w``).

LLM layers and ViT layers share one ``_N`` suffix namespace: ViT layer 0's
tensors are ``qkv_ein_w_0``, ``attn_out_w_0``, ... next to LLM layer 0's
``qkv_ein_0``. A layer's kind is decided by *which list it is in* (the LLM
``layer_configs`` or ``vit_config.layer_configs``), never by its stored type
number, because that number changed meaning in September 2025 (ViT was 2, is
now 1); ``verify`` reports a type number that disagrees with the position.

Shapes are ``rows x cols`` as stored (packed, row-major). Notation as in the
spec: D model_dim, V vocab_size, H heads, K kv_heads, Dh qkv_dim, F
ff_hidden_dim; ViT: Dv, S seq_len, P patch_width.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .config import ModelConfig
from .types import Type

#: Element types gemma.cpp can hold in a weight tensor (F64/U32/U64 are never weights).
WEIGHT_TYPES: frozenset[Type] = frozenset({Type.F32, Type.BF16, Type.SFP, Type.NUQ, Type.I8, Type.Q4_0,
                                          Type.MXFP4})
F32_ONLY: frozenset[Type] = frozenset({Type.F32})

GEMMA = "kGemma"
VIT = "kVit"

#: Per-layer base names gemma.cpp registers but never loads (no warning-worthy harm, just ignored).
REGISTERED_UNUSED = frozenset({
    "q_ein", "k_ein", "v_ein", "q_ein_w", "k_ein_w", "v_ein_w", "q_ein_b", "k_ein_b", "v_ein_b", "attn_ob",
    "gr_lin_x_w", "gr_lin_y_w", "gr_lin_out_w", "gr_gate_w", "gr_gate_b", "gr_lin_x_b", "gr_lin_y_b",
    "gr_lin_out_b", "gr_a", "gr_conv_w", "gr_conv_b",
})

#: Base names of the tensors of a ViT layer (plus the registered but unused q/k/v ones).
VIT_LAYER_BASES = frozenset({
    "attn_out_w", "attn_out_b", "qkv_ein_w", "qkv_ein_b", "linear_0_w", "linear_0_b", "linear_1_w", "linear_1_b",
    "ln_0_bias", "ln_0_scale", "ln_1_bias", "ln_1_scale", "q_ein_w", "k_ein_w", "v_ein_w", "q_ein_b", "k_ein_b",
    "v_ein_b",
})

#: Base names of the tensors a Gemma (LLM) layer can have, whatever its flags.
GEMMA_LAYER_BASES = frozenset({
    "att_ein", "att_w", "qkv_ein", "qkv1_w", "qkv2_w", "gating_ein", "gating1_w", "gating2_w", "linear_w",
    "pre_att_ns", "pre_ff_ns", "post_att_ns", "post_ff_ns", "key_norm", "query_norm", "ffw_gat_b", "ffw_out_b",
})
#: Per-model tensor names (no layer suffix).
MODEL_TENSOR_NAMES = frozenset({
    "c_embedding", "c_final_norm", "enc_norm_bias", "enc_norm_scale", "img_emb_bias", "img_emb_kernel",
    "img_pos_emb", "img_head_bias", "img_head_kernel", "mm_embed_norm",
})
#: What every Gemma layer of a pre-2025 (E0) file holds: writers of that era always wrote the fused forms.
PRE2025_GEMMA_REQUIRED = ("att_ein", "qkv_ein", "gating_ein", "linear_w", "pre_att_ns", "pre_ff_ns")

#: Tensors whose values gemma.cpp uses as ``x * (1 + w)`` in an RMSNorm (LLM norms).
RMS_NORM_BASES = frozenset({"pre_att_ns", "pre_ff_ns", "post_att_ns", "post_ff_ns", "key_norm", "query_norm",
                            "c_final_norm"})

_SUFFIX = re.compile(r"^(.*)_(\d+)$")


@dataclass(frozen=True)
class TensorSpec:
    """One tensor the config calls for.

    ``required``: gemma.cpp aborts without it (``kMustRead``) — or, for
    ``linear_w``, crashes later. Tensors of a :class:`Choice` have
    ``required=False`` and ``choice`` set to the group's key; the group is
    what is required. ``types``: element types gemma.cpp accepts (biases are
    declared ``MatPtrT<float>`` and must be F32). ``kind``: "matrix",
    "embedding", "norm" (RMSNorm, used as 1+w), "layernorm" (ViT LayerNorm
    scale/bias, used as is), "bias".
    """

    name: str
    base: str
    rows: int
    cols: int
    layer: int | None  # None for per-model tensors
    layer_type: str | None  # "kGemma", "kVit", or None for per-model tensors
    required: bool = True
    choice: str | None = None
    types: frozenset[Type] = WEIGHT_TYPES
    kind: str = "matrix"
    meaning: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def where(self) -> str:
        """``layer 3 (kGemma)``, ``ViT layer 0 (kVit)`` or ``model``, for messages."""
        if self.layer is None:
            return "model"
        return f"{'ViT layer' if self.layer_type == VIT else 'layer'} {self.layer} ({self.layer_type})"


@dataclass(frozen=True)
class Choice:
    """An "exactly one of" group: exactly one ``forms[i]`` must be present, all of its names.

    ``forms[0]`` is the preferred (canonical) form, e.g. ``("att_ein_3",)``
    versus ``("att_w_3",)``.
    """

    key: str  # e.g. "att_3"
    what: str  # "attention output projection"
    layer: int
    layer_type: str
    forms: tuple[tuple[str, ...], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for form in self.forms for n in form)


def layer_suffix(i: int) -> str:
    """gemma.cpp's ``LayerSuffix``: ``_N``."""
    return f"_{i}"


def split_name(name: str) -> tuple[str, int | None]:
    """``"qkv_ein_w_12"`` -> ``("qkv_ein_w", 12)``; per-model names give ``(name, None)``."""
    m = _SUFFIX.match(name)
    if m:
        return m.group(1), int(m.group(2))
    return name, None


def _dim(lc_value: int, fallback: int) -> int:
    return lc_value if lc_value else fallback


def model_tensors(config: ModelConfig) -> list[TensorSpec]:
    """Per-model tensors (spec §5.1): embedding, final norm, and the image tensors if there are ViT layers."""
    D, V = config.model_dim, config.vocab_size
    out = [
        TensorSpec("c_embedding", "c_embedding", V, D, None, None, kind="embedding",
                   meaning="token embedding (also the tied output matrix)"),
        TensorSpec("c_final_norm", "c_final_norm", 1, D, None, None, kind="norm", meaning="final RMSNorm weight"),
    ]
    vit = config.vit_config
    if vit.layer_configs:
        Dv, S, P = vit.model_dim, vit.seq_len, vit.patch_width
        out += [
            TensorSpec("enc_norm_bias", "enc_norm_bias", 1, Dv, None, None, kind="layernorm",
                       meaning="ViT encoder final LayerNorm bias"),
            TensorSpec("enc_norm_scale", "enc_norm_scale", 1, Dv, None, None, kind="layernorm",
                       meaning="ViT encoder final LayerNorm scale"),
            TensorSpec("img_emb_bias", "img_emb_bias", 1, Dv, None, None, types=F32_ONLY, kind="bias",
                       meaning="patch embedding bias"),
            TensorSpec("img_emb_kernel", "img_emb_kernel", Dv, P * P * 3, None, None,
                       meaning="patch embedding kernel, cols ordered (h, w, channel)"),
            TensorSpec("img_pos_emb", "img_pos_emb", S, Dv, None, None,
                       types=frozenset({Type.F32, Type.BF16}), meaning="ViT position embedding"),
            TensorSpec("img_head_bias", "img_head_bias", 1, D, None, None, types=F32_ONLY, kind="bias",
                       meaning="image-to-text projection bias"),
            TensorSpec("img_head_kernel", "img_head_kernel", D, Dv, None, None,
                       meaning="image-to-text projection"),
        ]
        if config.wrapping == 2:  # GEMMA_VLM (Gemma 3)
            out.append(TensorSpec("mm_embed_norm", "mm_embed_norm", 1, Dv, None, None, kind="norm",
                                  meaning="Gemma 3 multimodal embedding RMSNorm"))
    return out


def gemma_layer_tensors(config: ModelConfig, i: int) -> list[TensorSpec]:
    """Tensors of LLM layer ``i`` (spec §5.2, HEAD ``LayerWeightsPtrs::ForEachTensor`` for kGemma)."""
    lc = config.layer_configs[i]
    D = _dim(lc.model_dim, config.model_dim)
    H, K, Dh, F = lc.heads, lc.kv_heads, lc.qkv_dim, lc.ff_hidden_dim
    s = layer_suffix(i)

    def t(base: str, rows: int, cols: int, **kw) -> TensorSpec:
        return TensorSpec(base + s, base, rows, cols, i, GEMMA, **kw)

    out = [
        t("att_ein", H * D, Dh, required=False, choice=f"att{s}",
          meaning="attention output einsum [H, D, Dh]; gemma.cpp transposes it into att_weights"),
        t("att_w", D, H * Dh, required=False, choice=f"att{s}", meaning="attention output, pre-transposed"),
        t("qkv_ein", (H + 2 * K) * Dh, D, required=False, choice=f"qkv{s}",
          meaning="Q heads, then K/V interleaved per kv head"),
        t("qkv1_w", H * Dh, D, required=False, choice=f"qkv{s}", meaning="query part of qkv_ein"),
    ]
    if K > 0:
        out.append(t("qkv2_w", 2 * K * Dh, D, required=False, choice=f"qkv{s}", meaning="key/value part of qkv_ein"))
    out += [
        t("gating_ein", 2 * F, D, required=False, choice=f"gating{s}", meaning="FFW gate rows then up rows"),
        t("gating1_w", F, D, required=False, choice=f"gating{s}", meaning="FFW gate half"),
        t("gating2_w", F, D, required=False, choice=f"gating{s}", meaning="FFW up half"),
        t("linear_w", D, F, meaning="FFW down projection"),
        t("pre_att_ns", 1, D, kind="norm", meaning="pre-attention RMSNorm weight"),
        t("pre_ff_ns", 1, D, kind="norm", meaning="pre-FFW RMSNorm weight"),
    ]
    if lc.post_norm == 1:
        out += [t("post_att_ns", 1, D, kind="norm", meaning="post-attention RMSNorm weight (post_norm=Scale)"),
                t("post_ff_ns", 1, D, kind="norm", meaning="post-FFW RMSNorm weight (post_norm=Scale)")]
    if lc.use_qk_norm:
        out += [t("key_norm", 1, Dh, kind="norm", meaning="key RMSNorm weight (use_qk_norm)"),
                t("query_norm", 1, Dh, kind="norm", meaning="query RMSNorm weight (use_qk_norm)")]
    if lc.ff_biases:
        out += [t("ffw_gat_b", 1, 2 * F, types=F32_ONLY, kind="bias", meaning="FFW gating bias (ff_biases)"),
                t("ffw_out_b", 1, D, types=F32_ONLY, kind="bias", meaning="FFW output bias (ff_biases)")]
    return out


def vit_layer_tensors(config: ModelConfig, i: int) -> list[TensorSpec]:
    """Tensors of ViT layer ``i`` (spec §5.3): the 12 MustRead ViT tensors, nothing of a Gemma layer."""
    lc = config.vit_config.layer_configs[i]
    Dv = _dim(lc.model_dim, config.vit_config.model_dim)
    H, K, Dh, F = lc.heads, lc.kv_heads, lc.qkv_dim, lc.ff_hidden_dim
    s = layer_suffix(i)

    def t(base: str, rows: int, cols: int, **kw) -> TensorSpec:
        return TensorSpec(base + s, base, rows, cols, i, VIT, **kw)

    return [
        t("attn_out_w", Dv, H * Dh, meaning="ViT attention output"),
        t("attn_out_b", 1, Dv, types=F32_ONLY, kind="bias", meaning="ViT attention output bias"),
        t("qkv_ein_w", H * 3 * Dh, Dv, meaning="ViT q,k,v per head"),
        t("qkv_ein_b", H + 2 * K, Dh, types=F32_ONLY, kind="bias", meaning="ViT q,k,v bias, [q,k,v] per head"),
        t("linear_0_w", F, Dv, meaning="ViT MLP up"),
        t("linear_0_b", 1, F, types=F32_ONLY, kind="bias", meaning="ViT MLP up bias"),
        t("linear_1_w", Dv, F, meaning="ViT MLP down"),
        t("linear_1_b", 1, Dv, types=F32_ONLY, kind="bias", meaning="ViT MLP down bias"),
        t("ln_0_bias", 1, Dv, kind="layernorm", meaning="ViT pre-attention LayerNorm bias"),
        t("ln_0_scale", 1, Dv, kind="layernorm", meaning="ViT pre-attention LayerNorm scale"),
        t("ln_1_bias", 1, Dv, kind="layernorm", meaning="ViT pre-MLP LayerNorm bias"),
        t("ln_1_scale", 1, Dv, kind="layernorm", meaning="ViT pre-MLP LayerNorm scale"),
    ]


def expected_tensors(config: ModelConfig) -> list[TensorSpec]:
    """Every tensor ``config`` calls for, in gemma.cpp's ``ForEachTensor`` order.

    Per-model tensors, then LLM layers 0..num_layers-1 (from
    ``config.layer_configs``), then ViT layers (from
    ``config.vit_config.layer_configs``). Alternatives of a :class:`Choice`
    are all listed with ``required=False``.
    """
    out = model_tensors(config)
    for i in range(len(config.layer_configs)):
        out += gemma_layer_tensors(config, i)
    for i in range(len(config.vit_config.layer_configs)):
        out += vit_layer_tensors(config, i)
    return out


def choices(config: ModelConfig) -> list[Choice]:
    """The "exactly one of" groups of every Gemma layer (HEAD ``LayerWeightsPtrs::Fixup``)."""
    out = []
    for i, lc in enumerate(config.layer_configs):
        s = layer_suffix(i)
        qkv_split = ("qkv1_w" + s, "qkv2_w" + s) if lc.kv_heads > 0 else ("qkv1_w" + s,)
        out += [
            Choice(f"att{s}", "attention output projection", i, GEMMA, (("att_ein" + s,), ("att_w" + s,))),
            Choice(f"qkv{s}", "query/key/value projection", i, GEMMA, (("qkv_ein" + s,), qkv_split)),
            Choice(f"gating{s}", "FFW gating projection", i, GEMMA,
                   (("gating_ein" + s,), ("gating1_w" + s, "gating2_w" + s))),
        ]
    return out


def by_name(specs: Iterable[TensorSpec]) -> dict[str, TensorSpec]:
    """Index a spec list by tensor name."""
    return {t.name: t for t in specs}


def canonical_tensors(config: ModelConfig) -> list[TensorSpec]:
    """What a fresh gemma.cpp ``SbsWriter`` export contains: required tensors plus the
    preferred form of each choice (``att_ein``, ``qkv_ein``, ``gating_ein``)."""
    preferred = {n for c in choices(config) for n in c.forms[0]}
    return [t for t in expected_tensors(config) if t.required or t.name in preferred]
