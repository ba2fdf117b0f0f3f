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
from typing import Any, Callable, Iterable

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
    # QAT ClippedEinsum bounds (1 x 1): registered per layer, not read by gemma.cpp's weights.h (spec §5.2)
    *(f"{p}_{d}_{m}" for p in ("gtc", "linc", "aoc") for d in ("in", "out") for m in ("min", "max")),
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
    #: gemma.cpp reads only ``forms[0]`` (MustRead) and asserts the others are absent (T5Gemma ``e_``/``d_``).
    fused_only: bool = False
    #: No form is needed (MoE layers: the dense/shared FFN is MaybeRead); two forms at once still abort.
    optional: bool = False
    #: Names of ``forms[1]`` that may sit beside a complete ``forms[0]``: gemma.cpp's exclusive-or is with
    #: the rest of the form (``qkv2_w`` beside ``qkv_ein``: ignored before 2026, used by 2026 builds).
    companions: tuple[str, ...] = ()

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


# -- 2026 tensor families (addendum §5), one table per family ------------------------------------------------
# A family applies to the model (``lc`` None) or to one LLM layer when its predicate holds for the config fields
# that switch it on (as gemma.cpp's registry / ``ReadMatPtrs`` decide); each row may carry its own condition.
Shape = Callable[[ModelConfig, Any], tuple[int, int]]
Cond = Callable[[ModelConfig, Any], bool]

#: GEMMA4_26B_MOE hard-codes the per-expert FFW width (``tensor_info.cc``); others use ``ff_hidden_dim``.
MOE_EXPERT_FF = {23: 704}
#: Gemma 4 ViT ``img_pos_emb`` rows: x embeddings at 2x, y embeddings at 2y+1 (``vit_gemma4.cc``).
VIT_GEMMA4_POS_ROWS = 20480
VIT_GEMMA4_TYPE = 3  # LayerAttentionType kVitGemma4


@dataclass(frozen=True)
class Row:
    """One tensor of a family: base name, shape from (config, layer config), optional extra condition."""

    base: str
    shape: Shape
    meaning: str
    cond: Cond | None = None
    kind: str = "matrix"
    required: bool = True

    def spec_kw(self) -> dict:
        return {"kind": self.kind, "required": self.required, "meaning": self.meaning}


@dataclass(frozen=True)
class Family:
    name: str
    applies: Cond
    rows: tuple[Row, ...]


def _norm(base: str, n: Callable[[ModelConfig, Any], int], meaning: str, cond: Cond | None = None,
          kind: str = "norm", required: bool = True) -> Row:
    return Row(base, lambda c, lc: (1, n(c, lc)), meaning, cond, kind, required)


def _D(c: ModelConfig, lc: Any = None) -> int:
    return lc.model_dim if lc is not None and lc.model_dim else c.model_dim


def is_mla(lc: Any) -> bool:
    """``LayerConfig::IsMLA``: a latent KV rank (DeepSeek)."""
    return lc.kv_lora_rank > 0


def is_v4_mla(lc: Any) -> bool:
    """``IsV4MLA``: MLA with a grouped low-rank output projection."""
    return is_mla(lc) and lc.o_lora_rank > 0


def is_moe(lc: Any) -> bool:
    return lc.num_experts > 0


def shares_kv(lc: Any) -> bool:
    """A Gemma 4 layer that reads another layer's KV cache (``kv_share_layer_idx >= 0``) and computes only Q.

    What gemma.cpp accepts for its QKV projection (settled from the sources, not the addendum):
    ``tensor_info.cc`` (0acc653c) registers ``qkv_ein`` ((H+2K)*Dh rows), ``qkv1_w`` and ``qkv2_w`` for every
    Gemma layer whatever ``kv_share_layer_idx`` says, and ``FindAndUpdateMatPtr`` aborts on any other shape, so a
    fused ``qkv_ein`` keeps its K/V rows; ``weights.h`` reads all three as MaybeRead; ``weights.cc``
    ``SplitAttW1`` asserts only ``qkv_ein`` XOR ``qkv1_w`` and returns early for the split form without looking
    at ``qkv2_w``; the attention (``ComputeQKVTransposedTile``: ``skip_kv``) multiplies only by
    ``qkv_einsum_w1`` when ``kv_share_layer_idx >= 0``. So such a layer needs ``qkv_ein`` or ``qkv1_w``, and
    ``qkv2_w`` is optional (other layers use it and need it with ``qkv1_w``)."""
    return lc.kv_share_layer_idx >= 0


def has_mla(c: ModelConfig) -> bool:
    return any(is_mla(lc) for lc in c.layer_configs)


def is_vit_gemma4(c: ModelConfig) -> bool:
    vl = c.vit_config.layer_configs
    return bool(vl) and vl[0].type == VIT_GEMMA4_TYPE and c.schema_revision == "2025-10"


def _lat(lc: Any) -> int:
    return lc.kv_lora_rank + lc.rope_head_dim  # KVLatentDim


def _coff(lc: Any) -> int:
    return 2 if lc.kv_compression_rate == 4 else 1


def _hc(c: ModelConfig) -> int:
    return c.hc_mult


#: HasLmHead(): Qwen3 0.6B / 1.7B (untied) and every MLA model; MustRead only with MLA.
LM_HEAD_MODELS = frozenset({27, 28})

MODEL_FAMILIES: tuple[Family, ...] = (
    Family("lm_head", lambda c, _: has_mla(c), (  # MustRead with MLA
        Row("lm_head", lambda c, _: (c.vocab_size, c.model_dim), "untied output projection (MLA model)"),)),
    Family("lm_head_registered", lambda c, _: not has_mla(c) and c.model in LM_HEAD_MODELS, (
        Row("lm_head", lambda c, _: (c.vocab_size, c.model_dim), "untied output projection (HasLmHead; "
            "registered, not read by the weights.h the addendum read)", required=False),)),
    Family("ple", lambda c, _: c.ple_dim > 0, (
        Row("ple_embeddings", lambda c, _: (c.vocab_size, len(c.layer_configs) * c.ple_dim),
            "per-layer embeddings (Gemma 4 PLE), L*ple_dim per token", kind="embedding"),
        Row("ple_model_proj", lambda c, _: (len(c.layer_configs) * c.ple_dim, c.model_dim),
            "PLE projection from the model dimension"),
        _norm("ple_proj_norm", lambda c, _: c.ple_dim, "PLE projection RMSNorm"),)),
    Family("t5gemma", lambda c, _: c.is_encoder_decoder, (
        Row("enc_embedding", lambda c, _: (c.vocab_size, c.model_dim), "T5Gemma encoder token embedding",
            kind="embedding"),
        Row("dec_embedding", lambda c, _: (c.vocab_size, c.model_dim), "T5Gemma decoder token embedding",
            kind="embedding"),
        _norm("enc_final_norm", lambda c, _: c.model_dim, "T5Gemma encoder final RMSNorm"),
        _norm("dec_final_norm", lambda c, _: c.model_dim, "T5Gemma decoder final RMSNorm"),)),
    Family("hyper_connections", lambda c, _: c.hc_mult > 1, (
        Row("hc_head_fn", lambda c, _: (_hc(c), _hc(c) * c.model_dim), "hyper-connection head mix"),
        _norm("hc_head_base", lambda c, _: _hc(c), "hyper-connection head base", kind="matrix"),
        _norm("hc_head_scale", lambda c, _: 1, "hyper-connection head scale", kind="matrix"),)),
    Family("mtp", lambda c, _: c.num_mtp_layers > 0, (
        Row("mtp_e_proj", lambda c, _: (c.model_dim, c.model_dim), "MTP embedding projection"),
        Row("mtp_h_proj", lambda c, _: (c.model_dim, c.model_dim), "MTP hidden-state projection"),
        _norm("mtp_enorm", lambda c, _: c.model_dim, "MTP embedding RMSNorm"),
        _norm("mtp_hnorm", lambda c, _: c.model_dim, "MTP hidden-state RMSNorm"),
        _norm("mtp_norm", lambda c, _: c.model_dim, "MTP final RMSNorm"),
        Row("mtp_hc_fn", lambda c, _: (_hc(c), _hc(c) * c.model_dim), "MTP hyper-connection mix",
            cond=lambda c, _: c.hc_mult > 1),
        _norm("mtp_hc_base", lambda c, _: _hc(c), "MTP hyper-connection base", lambda c, _: c.hc_mult > 1,
              kind="matrix"),
        _norm("mtp_hc_scale", lambda c, _: 1, "MTP hyper-connection scale", lambda c, _: c.hc_mult > 1,
              kind="matrix"),)),
)


def _ple_rows() -> tuple[Row, ...]:
    return (Row("ple_gate", lambda c, lc: (lc.ple_dim, _D(c, lc)), "PLE gate"),
            Row("ple_proj", lambda c, lc: (_D(c, lc), lc.ple_dim), "PLE projection back to D"),
            _norm("post_ple_ns", _D, "post-PLE RMSNorm"))


def _expert_ff(c: ModelConfig, lc: Any) -> int:
    return MOE_EXPERT_FF.get(c.model, lc.ff_hidden_dim)


_V4: Cond = lambda c, lc: is_v4_mla(lc)  # noqa: E731
_V3: Cond = lambda c, lc: not is_v4_mla(lc)  # noqa: E731

#: Per-LLM-layer families (spec §5.2). Experts are not rows: :func:`_expert_specs` lists E x 3 of them.
LAYER_FAMILIES: tuple[Family, ...] = (
    Family("skip_scale", lambda c, lc: c.model_family_version >= 4, (
        _norm("skip_scale", lambda c, lc: 1, "Gemma 4 per-layer output scalar (MaybeRead)", kind="matrix",
              required=False),)),
    Family("ple", lambda c, lc: lc.ple_dim > 0, _ple_rows()),
    Family("moe", lambda c, lc: is_moe(lc), (
        Row("moe_router", lambda c, lc: (lc.num_experts, _D(c, lc)), "MoE router"),
        _norm("router_scale", _D, "MoE router input scale", lambda c, lc: not is_mla(lc)),
        _norm("p_expert_sc", lambda c, lc: lc.num_experts, "MoE per-expert output scale",
              lambda c, lc: not is_mla(lc), kind="matrix"),
        _norm("post_ffw1_ns", _D, "post dense-FFW RMSNorm (MoE)", lambda c, lc: not is_mla(lc)),
        _norm("post_ffw2_ns", _D, "post expert-FFW RMSNorm (MoE)", lambda c, lc: not is_mla(lc)),
        _norm("pre_ffw2_ns", _D, "pre expert-FFW RMSNorm (MoE)", lambda c, lc: not is_mla(lc)),
        Row("moe_gate_ein", lambda c, lc: (lc.num_experts * 2 * _expert_ff(c, lc), _D(c, lc)),
            "fused expert gates (registered, not read)", required=False),
        Row("moe_linear_w", lambda c, lc: (lc.num_experts * _D(c, lc), _expert_ff(c, lc)),
            "fused expert down projections (registered, not read)", required=False),
        _norm("moe_r_bias", lambda c, lc: lc.num_experts, "MoE routing bias", lambda c, lc: lc.use_routing_bias,
              kind="matrix"),
        Row("hash_tid2eid", lambda c, lc: (c.vocab_size, lc.num_experts_per_datapoint),
            "hash routing: token id -> expert ids", cond=lambda c, lc: lc.hash_routing),)),
    Family("mla", lambda c, lc: is_mla(lc), (
        Row("mla_q_a", lambda c, lc: (lc.q_lora_rank, _D(c, lc)), "MLA query down projection",
            cond=lambda c, lc: lc.q_lora_rank > 0),
        _norm("mla_q_a_ns", lambda c, lc: lc.q_lora_rank, "MLA query latent RMSNorm",
              lambda c, lc: lc.q_lora_rank > 0),
        Row("mla_q_b", lambda c, lc: (lc.heads * lc.qkv_dim, lc.q_lora_rank or _D(c, lc)),
            "MLA query up projection"),
        Row("mla_kv_a", lambda c, lc: (_lat(lc), _D(c, lc)), "MLA KV down projection (latent + rope)"),
        _norm("mla_kv_a_ns", lambda c, lc: _lat(lc) if is_v4_mla(lc) else lc.kv_lora_rank,
              "MLA KV latent RMSNorm"),
        Row("mla_o_a", lambda c, lc: (lc.o_groups * lc.o_lora_rank, lc.heads // max(lc.o_groups, 1) * lc.qkv_dim),
            "MLA grouped output down projection (V4)", cond=_V4),
        Row("mla_o_b", lambda c, lc: (_D(c, lc), lc.o_groups * lc.o_lora_rank), "MLA output up projection (V4)",
            cond=_V4),
        _norm("attn_sink", lambda c, lc: lc.heads, "attention sink logits (V4)", _V4, kind="matrix"),
        Row("mla_kv_b", lambda c, lc: (lc.heads * (lc.qkv_dim - lc.rope_head_dim + lc.v_head_dim), lc.kv_lora_rank),
            "MLA KV up projection (V3)", cond=_V3),
        Row("att_w", lambda c, lc: (_D(c, lc), lc.heads * lc.v_head_dim), "MLA attention output (V3)", cond=_V3),
        Row("comp_wkv", lambda c, lc: (_coff(lc) * _lat(lc), _D(c, lc)), "KV compressor (V4, rate > 1)",
            cond=lambda c, lc: is_v4_mla(lc) and lc.kv_compression_rate > 1),
        Row("comp_wgate", lambda c, lc: (_coff(lc) * _lat(lc), _D(c, lc)), "KV compressor gate (V4, rate > 1)",
            cond=lambda c, lc: is_v4_mla(lc) and lc.kv_compression_rate > 1),
        Row("comp_ape", lambda c, lc: (lc.kv_compression_rate, _coff(lc) * _lat(lc)),
            "KV compressor position bias (V4, rate > 1)",
            cond=lambda c, lc: is_v4_mla(lc) and lc.kv_compression_rate > 1),
        _norm("comp_ns", lambda c, lc: _lat(lc), "KV compressor RMSNorm (V4, rate > 1)",
              lambda c, lc: is_v4_mla(lc) and lc.kv_compression_rate > 1),
        _norm("mla_pool_w", lambda c, lc: _lat(lc), "KV pooling weight (V3, rate > 1)",
              lambda c, lc: not is_v4_mla(lc) and lc.kv_compression_rate > 1, kind="matrix"),
        _norm("mla_pool_b", lambda c, lc: lc.kv_compression_rate, "KV pooling bias (V3, rate > 1)",
              lambda c, lc: not is_v4_mla(lc) and lc.kv_compression_rate > 1, kind="matrix"),
        Row("idx_q_w", lambda c, lc: (lc.indexer_heads * lc.indexer_head_dim,
                                      lc.q_lora_rank if is_v4_mla(lc) else _D(c, lc)),
            "sparse-attention indexer query", cond=lambda c, lc: lc.indexer_heads > 0),
        Row("idx_w_proj", lambda c, lc: (lc.indexer_heads, _D(c, lc)), "indexer head weights (V4)",
            cond=lambda c, lc: lc.indexer_heads > 0 and is_v4_mla(lc)),
        Row("idxc_wkv", lambda c, lc: (_coff(lc) * lc.indexer_head_dim, _D(c, lc)), "indexer KV compressor (V4)",
            cond=lambda c, lc: lc.indexer_heads > 0 and is_v4_mla(lc)),
        Row("idxc_wgate", lambda c, lc: (_coff(lc) * lc.indexer_head_dim, _D(c, lc)),
            "indexer compressor gate (V4)", cond=lambda c, lc: lc.indexer_heads > 0 and is_v4_mla(lc)),
        Row("idxc_ape", lambda c, lc: (lc.kv_compression_rate, _coff(lc) * lc.indexer_head_dim),
            "indexer compressor position bias (V4)", cond=lambda c, lc: lc.indexer_heads > 0 and is_v4_mla(lc)),
        _norm("idxc_ns", lambda c, lc: lc.indexer_head_dim, "indexer compressor RMSNorm (V4)",
              lambda c, lc: lc.indexer_heads > 0 and is_v4_mla(lc)),
        Row("idx_k_w", lambda c, lc: (lc.indexer_heads * lc.indexer_head_dim, lc.kv_lora_rank),
            "indexer key projection (V3)", cond=lambda c, lc: lc.indexer_heads > 0 and not is_v4_mla(lc)),)),
    Family("hyper_connections", lambda c, lc: c.hc_mult > 1, tuple(
        r for p in ("att", "ffw") for r in (
            Row(f"hc_{p}_fn", lambda c, lc: ((2 + _hc(c)) * _hc(c), _hc(c) * _D(c, lc)), f"hyper-connection {p} mix"),
            _norm(f"hc_{p}_base", lambda c, lc: (2 + _hc(c)) * _hc(c), f"hyper-connection {p} base", kind="matrix"),
            _norm(f"hc_{p}_scale", lambda c, lc: 3, f"hyper-connection {p} scale", kind="matrix")))),
)

#: Per-expert base names (``MoESuffix``: ``base_L_E``).
EXPERT_BASES = ("gating1_w", "gating2_w", "linear_w")


def _family_specs(families: tuple[Family, ...], config: ModelConfig, lc: Any, i: int, layer_type: str,
                  prefix: str = "") -> list[TensorSpec]:
    s = layer_suffix(i)
    out = []
    for fam in families:
        if not fam.applies(config, lc):
            continue
        for r in fam.rows:
            if r.cond is None or r.cond(config, lc):
                rows, cols = r.shape(config, lc)
                out.append(TensorSpec(prefix + r.base + s, prefix + r.base, rows, cols, i, layer_type,
                                      **r.spec_kw()))
    return out


#: gemma.cpp's tensor names hold at most 16 characters (``MatPtr::SetName`` aborts beyond).
MAX_TENSOR_NAME = 16


def max_experts(layer: int) -> int:
    """The most experts layer ``layer`` can name: ``gating1_w_L_E`` must fit :data:`MAX_TENSOR_NAME`
    (addendum §5.2: 128 experts at layer 29 and 256 at layer 43 are exactly 16 characters)."""
    digits = MAX_TENSOR_NAME - len(f"gating1_w_{layer}_")
    return 10 ** digits if digits > 0 else 0


def _expert_specs(config: ModelConfig, lc: Any, i: int) -> list[TensorSpec]:
    """``gating1_w_L_E``, ``gating2_w_L_E`` (Fe x D), ``linear_w_L_E`` (D x Fe) for every expert: MustRead.
    None when the names cannot exist (more experts than :func:`max_experts`: the config is invalid, and a
    count from the file must not decide how much is allocated)."""
    if not is_moe(lc) or lc.num_experts > max_experts(i):
        return []
    D, Fe = _D(config, lc), _expert_ff(config, lc)
    out = []
    for e in range(lc.num_experts):
        sx = f"_{i}_{e}"
        out += [TensorSpec("gating1_w" + sx, "gating1_w", Fe, D, i, GEMMA, meaning=f"expert {e} gate"),
                TensorSpec("gating2_w" + sx, "gating2_w", Fe, D, i, GEMMA, meaning=f"expert {e} up"),
                TensorSpec("linear_w" + sx, "linear_w", D, Fe, i, GEMMA, meaning=f"expert {e} down projection")]
    return out


def model_tensors(config: ModelConfig) -> list[TensorSpec]:
    """Per-model tensors (spec §5.1): embedding, final norm, the image tensors if there are ViT layers, and
    the 2026 families (:data:`MODEL_FAMILIES`)."""
    D, V = config.model_dim, config.vocab_size
    encdec = config.is_encoder_decoder  # T5Gemma registers c_embedding / c_final_norm but does not read them
    out = [
        TensorSpec("c_embedding", "c_embedding", V, D, None, None, kind="embedding", required=not encdec,
                   meaning="token embedding (also the tied output matrix)"),
        TensorSpec("c_final_norm", "c_final_norm", 1, D, None, None, kind="norm", required=not encdec,
                   meaning="final RMSNorm weight"),
    ]
    vit = config.vit_config
    if vit.layer_configs:
        Dv, S, P = vit.model_dim, vit.seq_len, vit.patch_width
        if is_vit_gemma4(config):  # spec §5.1: 2-D position table, kernel Dv x (3 P P)
            S = VIT_GEMMA4_POS_ROWS
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
    for fam in MODEL_FAMILIES:
        if fam.applies(config, None):
            out += [TensorSpec(r.base, r.base, *r.shape(config, None), None, None, **r.spec_kw())
                    for r in fam.rows if r.cond is None or r.cond(config, None)]
    return out


def gemma_layer_tensors(config: ModelConfig, i: int) -> list[TensorSpec]:
    """Tensors of LLM layer ``i`` (spec §5.2, HEAD ``LayerWeightsPtrs::ForEachTensor`` for kGemma/kDeepSeekMLA),
    ``i == len(layer_configs)`` being the MTP layer when ``num_mtp_layers > 0``."""
    return _llm_layer_tensors(config, _layer_config(config, i), i)


def _layer_config(config: ModelConfig, i: int) -> Any:
    if i < len(config.layer_configs):
        return config.layer_configs[i]
    return mtp_layer_config(config)


def mtp_layer_config(config: ModelConfig) -> Any:
    """``MTPLayerConfig()``: layer 0 made dense, hash routing off, routing bias on (spec §5.2)."""
    from dataclasses import replace
    lc = config.layer_configs[0]
    return replace(lc, attention_variant=0, kv_compression_rate=1, indexer_heads=0, indexer_head_dim=0,
                   indexer_top_k=0, hash_routing=False, use_routing_bias=is_moe(lc))


def _llm_layer_tensors(config: ModelConfig, lc: Any, i: int) -> list[TensorSpec]:
    D = _dim(lc.model_dim, config.model_dim)
    H, K, Dh, F = lc.heads, lc.kv_heads, lc.qkv_dim, lc.ff_hidden_dim
    s = layer_suffix(i)
    moe = is_moe(lc)  # the dense / shared-expert FFW is MaybeRead (SplitW1 returns early for MoE layers)

    def t(base: str, rows: int, cols: int, **kw) -> TensorSpec:
        return TensorSpec(base + s, base, rows, cols, i, GEMMA, **kw)

    out = []
    if not is_mla(lc):  # MLA layers have their own attention tensors (LAYER_FAMILIES "mla")
        out += [
            t("att_ein", H * D, Dh, required=False, choice=f"att{s}",
              meaning="attention output einsum [H, D, Dh]; gemma.cpp transposes it into att_weights"),
            t("att_w", D, H * Dh, required=False, choice=f"att{s}", meaning="attention output, pre-transposed"),
            t("qkv_ein", (H + 2 * K) * Dh, D, required=False, choice=f"qkv{s}",
              meaning="Q heads, then K/V interleaved per kv head"),
            t("qkv1_w", H * Dh, D, required=False, choice=f"qkv{s}", meaning="query part of qkv_ein"),
        ]
        if K > 0 and shares_kv(lc):
            out.append(t("qkv2_w", 2 * K * Dh, D, required=False, meaning="key/value part of qkv_ein (MaybeRead; "
                         f"unused: layer {i} reads the KV cache of layer {lc.kv_share_layer_idx})"))
        elif K > 0:
            out.append(t("qkv2_w", 2 * K * Dh, D, required=False, choice=f"qkv{s}",
                         meaning="key/value part of qkv_ein"))
    out += [
        t("gating_ein", 2 * F, D, required=False, choice=f"gating{s}", meaning="FFW gate rows then up rows"),
        t("gating1_w", F, D, required=False, choice=f"gating{s}", meaning="FFW gate half"),
        t("gating2_w", F, D, required=False, choice=f"gating{s}", meaning="FFW up half"),
        t("linear_w", D, F, required=not moe, meaning="FFW down projection"),
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
    return out + _family_specs(LAYER_FAMILIES, config, lc, i, GEMMA) + _expert_specs(config, lc, i)


# -- T5Gemma encoder / decoder stacks (spec §5.3) ------------------------------------------------------------
ENCODER = "kEncoder"
DECODER = "kDecoder"


def _rt(rows: Callable[[Any, int], int], cols: Callable[[Any, int], int], meaning: str, **kw) -> tuple:
    return rows, cols, meaning, kw


def _t5_attention(p: str) -> dict[str, tuple]:
    """Self-attention of a T5Gemma stack (prefix ``e_`` or ``d_``): fused forms MustRead, split ones forbidden."""
    return {
        f"{p}qkv": _rt(lambda lc, D: (lc.heads + 2 * lc.kv_heads) * lc.qkv_dim, lambda lc, D: D,
                       "self-attention Q, K, V (fused)"),
        f"{p}qkv1": _rt(lambda lc, D: lc.heads * lc.qkv_dim, lambda lc, D: D, "query half (must be absent)"),
        f"{p}qkv2": _rt(lambda lc, D: 2 * lc.kv_heads * lc.qkv_dim, lambda lc, D: D,
                        "key/value half (must be absent)"),
        f"{p}att": _rt(lambda lc, D: lc.heads * D, lambda lc, D: lc.qkv_dim, "self-attention output einsum"),
        f"{p}att_w": _rt(lambda lc, D: D, lambda lc, D: lc.heads * lc.qkv_dim,
                         "transposed attention output (must be absent)"),
        f"{p}gate": _rt(lambda lc, D: 2 * lc.ff_hidden_dim, lambda lc, D: D, "FFW gate + up (fused)"),
        f"{p}gate1": _rt(lambda lc, D: lc.ff_hidden_dim, lambda lc, D: D, "FFW gate half (must be absent)"),
        f"{p}gate2": _rt(lambda lc, D: lc.ff_hidden_dim, lambda lc, D: D, "FFW up half (must be absent)"),
        f"{p}lin": _rt(lambda lc, D: D, lambda lc, D: lc.ff_hidden_dim, "FFW down projection"),
    }


def _t5_norms(*bases: str) -> dict[str, tuple]:
    return {b: _rt(lambda lc, D: 1, lambda lc, D: D, "RMSNorm weight", kind="norm") for b in bases}


#: name -> (rows(lc, D), cols(lc, D), meaning, extra TensorSpec fields), per stack.
T5_ENCODER_LAYER = {**_t5_attention("e_"), **_t5_norms("e_pre_att", "e_post_att", "e_pre_ff", "e_post_ff")}
T5_DECODER_LAYER = {
    **_t5_attention("d_"),
    "dc_q": _rt(lambda lc, D: lc.heads * lc.qkv_dim, lambda lc, D: D, "cross-attention query"),
    "dc_k": _rt(lambda lc, D: lc.kv_heads * lc.qkv_dim, lambda lc, D: D, "cross-attention key"),
    "dc_v": _rt(lambda lc, D: lc.kv_heads * lc.qkv_dim, lambda lc, D: D, "cross-attention value"),
    "dc_att": _rt(lambda lc, D: lc.heads * D, lambda lc, D: lc.qkv_dim, "cross-attention output einsum"),
    "dc_att_w": _rt(lambda lc, D: D, lambda lc, D: lc.heads * lc.qkv_dim,
                    "transposed cross-attention output (must be absent)"),
    **_t5_norms("d_pre_sa", "d_post_sa", "d_pre_ca", "d_post_ca", "d_pre_ff", "d_post_ff"),
}
#: Fused base -> its forbidden split form (``Fixup`` XOR asserts; the fused form is MustRead).
T5_FUSED = {"e_qkv": ("e_qkv1", "e_qkv2"), "e_att": ("e_att_w",), "e_gate": ("e_gate1", "e_gate2"),
            "d_qkv": ("d_qkv1", "d_qkv2"), "d_att": ("d_att_w",), "d_gate": ("d_gate1", "d_gate2"),
            "dc_att": ("dc_att_w",)}
_T5_SPLIT = {n: f for f, split in T5_FUSED.items() for n in split}
T5_LAYER_BASES = frozenset(T5_ENCODER_LAYER) | frozenset(T5_DECODER_LAYER)


def _t5_stacks(config: ModelConfig) -> tuple[tuple[str, list, dict], ...]:
    if not config.is_encoder_decoder:
        return ()
    return ((ENCODER, config.encoder_layer_configs, T5_ENCODER_LAYER),
            (DECODER, config.decoder_layer_configs, T5_DECODER_LAYER))


def t5_layer_tensors(config: ModelConfig) -> list[TensorSpec]:
    out = []
    for kind, layers, table in _t5_stacks(config):
        for i, lc in enumerate(layers):
            D = _dim(lc.model_dim, config.model_dim)
            for base, (rows, cols, meaning, kw) in table.items():
                fused = base if base in T5_FUSED else _T5_SPLIT.get(base)
                extra = {"required": False, "choice": f"{fused}_{i}"} if fused else {}
                out.append(TensorSpec(f"{base}_{i}", base, rows(lc, D), cols(lc, D), i, kind, meaning=meaning,
                                      **extra, **kw))
    return out


# -- Gemma 4 ViT layers (kVitGemma4, spec §5.4) ----------------------------------------------------------------
VIT_GEMMA4_LAYER = {
    "vit_qkv1_w": _rt(lambda lc, D: lc.heads * lc.qkv_dim, lambda lc, D: D, "ViT query projection"),
    "vit_qkv2_w": _rt(lambda lc, D: 2 * lc.kv_heads * lc.qkv_dim, lambda lc, D: D, "ViT key/value projection"),
    "vit_gate_ein": _rt(lambda lc, D: 2 * lc.ff_hidden_dim, lambda lc, D: D, "ViT FFW gate + up (fused)",
                        required=False, choice="vit_gating"),
    "vit_gating1_w": _rt(lambda lc, D: lc.ff_hidden_dim, lambda lc, D: D, "ViT FFW gate half",
                         required=False, choice="vit_gating"),
    "vit_gating2_w": _rt(lambda lc, D: lc.ff_hidden_dim, lambda lc, D: D, "ViT FFW up half",
                         required=False, choice="vit_gating"),
    "vit_linear_w": _rt(lambda lc, D: D, lambda lc, D: lc.ff_hidden_dim, "ViT FFW down projection"),
    "vit_att_ein": _rt(lambda lc, D: D, lambda lc, D: lc.heads * lc.qkv_dim,
                       "ViT attention output einsum (cols take the head dims)", required=False, choice="vit_att"),
    "vit_att_w": _rt(lambda lc, D: D, lambda lc, D: lc.heads * lc.qkv_dim, "ViT attention output",
                     required=False, choice="vit_att"),
    **{b: _rt(lambda lc, D: 1, lambda lc, D: D, "ViT RMSNorm weight", kind="norm")
       for b in ("vit_pr_att", "vit_po_att", "vit_pr_ff", "vit_po_ff")},
    **{b: _rt(lambda lc, D: 1, lambda lc, D: lc.qkv_dim, "ViT query/key RMSNorm weight", kind="norm")
       for b in ("vit_q_norm", "vit_key_norm")},
}
VIT_GEMMA4_LAYER_BASES = frozenset(VIT_GEMMA4_LAYER)


def _vit_gemma4_layer_tensors(config: ModelConfig, lc: Any, i: int) -> list[TensorSpec]:
    D = _dim(lc.model_dim, config.vit_config.model_dim)
    out = []
    for base, (rows, cols, meaning, kw) in VIT_GEMMA4_LAYER.items():
        if base in ("vit_q_norm", "vit_key_norm") and not lc.use_qk_norm:
            continue
        if base in ("vit_po_att", "vit_po_ff") and lc.post_norm != 1:
            continue
        kw = dict(kw)
        if "choice" in kw:
            kw["choice"] = f"{kw['choice']}_{i}"
        out.append(TensorSpec(f"{base}_{i}", base, rows(lc, D), cols(lc, D), i, VIT, meaning=meaning, **kw))
    return out


def vit_layer_tensors(config: ModelConfig, i: int) -> list[TensorSpec]:
    """Tensors of ViT layer ``i`` (spec §5.3): the 12 MustRead ViT tensors, nothing of a Gemma layer."""
    lc = config.vit_config.layer_configs[i]
    if lc.type == VIT_GEMMA4_TYPE and config.schema_revision == "2025-10":
        return _vit_gemma4_layer_tensors(config, lc, i)
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
    for i in llm_layer_indices(config):
        out += gemma_layer_tensors(config, i)
    out += t5_layer_tensors(config)
    for i in range(len(config.vit_config.layer_configs)):
        out += vit_layer_tensors(config, i)
    return out


def llm_layer_indices(config: ModelConfig) -> range:
    """LLM layers gemma.cpp builds: ``layer_configs`` plus the one MTP layer (``WeightsPtrs`` builds exactly one,
    at index L, when ``num_mtp_layers > 0``). T5Gemma reads its ``e_``/``d_`` stacks instead (spec §5.3)."""
    if config.is_encoder_decoder:
        return range(0)
    n = len(config.layer_configs)
    return range(n + (1 if config.num_mtp_layers > 0 and n else 0))


def choices(config: ModelConfig) -> list[Choice]:
    """The "exactly one of" groups of every layer (HEAD ``LayerWeightsPtrs::Fixup``)."""
    out = []
    for i in llm_layer_indices(config):
        lc = _layer_config(config, i)
        s = layer_suffix(i)
        if not is_mla(lc):
            qkv_split = ("qkv1_w" + s, "qkv2_w" + s) if lc.kv_heads > 0 and not shares_kv(lc) else ("qkv1_w" + s,)
            out += [
                Choice(f"att{s}", "attention output projection", i, GEMMA, (("att_ein" + s,), ("att_w" + s,))),
                Choice(f"qkv{s}", "query/key/value projection", i, GEMMA, (("qkv_ein" + s,), qkv_split),
                       companions=qkv_split[1:]),
            ]
        out.append(Choice(f"gating{s}", "FFW gating projection", i, GEMMA,
                          (("gating_ein" + s,), ("gating1_w" + s, "gating2_w" + s)), optional=is_moe(lc)))
    for kind, layers, _ in _t5_stacks(config):
        for i in range(len(layers)):
            for fused, split in T5_FUSED.items():
                if (fused in T5_ENCODER_LAYER) == (kind == ENCODER):
                    out.append(Choice(f"{fused}_{i}", T5_ENCODER_LAYER.get(fused, T5_DECODER_LAYER.get(fused))[2],
                                      i, kind, ((f"{fused}_{i}",), tuple(f"{n}_{i}" for n in split)),
                                      fused_only=True))
    for i, lc in enumerate(config.vit_config.layer_configs):
        if lc.type == VIT_GEMMA4_TYPE and config.schema_revision == "2025-10":
            out += [Choice(f"vit_att_{i}", "ViT attention output projection", i, VIT,
                           ((f"vit_att_ein_{i}",), (f"vit_att_w_{i}",))),
                    Choice(f"vit_gating_{i}", "ViT FFW gating projection", i, VIT,
                           ((f"vit_gate_ein_{i}",), (f"vit_gating1_w_{i}", f"vit_gating2_w_{i}")))]
    return out


def by_name(specs: Iterable[TensorSpec]) -> dict[str, TensorSpec]:
    """Index a spec list by tensor name."""
    return {t.name: t for t in specs}


def canonical_tensors(config: ModelConfig) -> list[TensorSpec]:
    """What a fresh gemma.cpp ``SbsWriter`` export contains: required tensors plus the
    preferred form of each choice (``att_ein``, ``qkv_ein``, ``gating_ein``)."""
    preferred = {n for c in choices(config) for n in c.forms[0]}
    # MoE layers: the dense / shared-expert FFW is MaybeRead but exported (Gemma 4 26B dense FFW, DeepSeek shared)
    preferred |= {f"linear_w{layer_suffix(c.layer)}" for c in choices(config) if c.optional}
    return [t for t in expected_tensors(config) if t.required or t.name in preferred]
