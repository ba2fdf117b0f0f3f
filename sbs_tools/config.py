"""ModelConfig / LayerConfig / VitConfig: schemas, enums per gemma.cpp revision, and dataclasses.

Enum numbering changed over gemma.cpp's history (spec §3.2): most notably the
ViT layer type was 2 before 2025-09-05 and is 1 since. A config is decoded
with the newest schema first; if that rejects it, with the May-2025 schema
(gemma.cpp ``e9ecb77``). :attr:`ModelConfig.schema_revision` records which one
succeeded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields as dc_fields
from typing import Any

import numpy as np

from .errors import ConfigError, FieldsError
from .fields import NFIELDS, EnumSpec, Field, ReadResult, Schema, read_struct, write_struct
from .types import GEMMA_TYPE_NAMES, Type

#: Schema revisions this tool knows, newest first: name -> gemma.cpp commit and date. A revision is an
#: enum numbering; the field list of "2025-10" also holds every field appended since (through 0224dcbd,
#: 2026-08-27): older data simply stops earlier and keeps the defaults (addendum §4).
REVISIONS = {
    "2025-10": "3ed403e (2025-10-23; ViT layer type 1, Type up to kI8) and the fields appended through "
               "0224dcbd (2026-08-27; Type up to kMXFP4, Model up to GEMMA4_E4B_LM)",
    "2025-05": "e9ecb77 (2025-05-07; ViT layer type 2, Griffin fields live)",
}
CURRENT = "2025-10"

MODEL_NAMES = {
    0: "UNKNOWN", 1: "GEMMA_2B", 2: "GEMMA_7B", 3: "GEMMA2_9B", 4: "GEMMA2_27B", 5: "GRIFFIN_2B",
    6: "GEMMA_TINY", 7: "GEMMA2_2B", 8: "PALIGEMMA_224", 9: "PALIGEMMA_448",
    10: "PALIGEMMA2_3B_224", 11: "PALIGEMMA2_3B_448", 12: "PALIGEMMA2_10B_224",
    13: "PALIGEMMA2_10B_448", 14: "GEMMA3_4B", 15: "GEMMA3_1B", 16: "GEMMA3_12B",
    17: "GEMMA3_27B", 18: "GEMMA3_270M",
    # addendum §1.1 (gemma/configs.h@0224dcbd)
    19: "CUSTOM", 20: "GEMMA3_4B_LM", 21: "GEMMA3_12B_LM", 22: "GEMMA3_27B_LM", 23: "GEMMA4_26B_MOE",
    24: "GEMMA4_2B", 25: "DEEPSEEK4_FLASH", 26: "T5GEMMA_S_S", 27: "QWEN3_600M", 28: "QWEN3_2B",
    29: "QWEN3_4B", 30: "GEMMA4_2B_LM", 31: "GEMMA4_E4B", 32: "GEMMA4_E4B_LM",
}
#: ``Model::kSentinel`` at 0224dcbd: values from here on are newer than this release.
MODEL_SENTINEL = 33
#: Enum aliases gemma.cpp declares (no numbers of their own).
MODEL_ALIASES = {"GEMMA4_E2B": 24, "GEMMA4_E2B_LM": 30}
MODEL_PREFIX = {
    1: "2b", 2: "7b", 3: "9b", 4: "27b", 5: "gr2b", 6: "tiny", 7: "gemma2-2b", 8: "paligemma-224",
    9: "paligemma-448", 10: "paligemma2-3b-224", 11: "paligemma2-3b-448", 12: "paligemma2-10b-224",
    13: "paligemma2-10b-448", 14: "gemma3-4b", 15: "gemma3-1b", 16: "gemma3-12b", 17: "gemma3-27b",
    18: "gemma3-270m", 20: "gemma3-4b-lm", 21: "gemma3-12b-lm", 22: "gemma3-27b-lm", 23: "gemma4-26b-moe",
    24: "gemma4-2b", 25: "deepseek4-flash", 26: "t5gemma-s-s", 27: "qwen3-0_6b", 28: "qwen3-2b", 29: "qwen3-4b",
    30: "gemma4-2b-lm", 31: "gemma4-e4b", 32: "gemma4-e4b-lm",
}
OBSOLETE_MODELS = {1, 2, 5, 6, 8, 9}
#: The 2026 architectures (Gemma 4, DeepSeek V4, T5Gemma, Qwen3): not Gemma 2/3 in another size.
NEW_ARCHITECTURE_MODELS = frozenset(range(23, 33))
#: Gemma 3 sizes whose canonical config has ``use_global_timescale`` true since 1bdde1a (2025-10-24).
GLOBAL_TIMESCALE_MODELS = frozenset({14, 15, 16, 17})
#: Text-only Gemma 3 variants (TranslateGemma): same math as Gemma 3, canonical ``use_global_timescale`` false.
GEMMA3_LM_MODELS = frozenset({20, 21, 22})
WRAPPING_NAMES = {0: "GEMMA_IT", 1: "GEMMA_PT", 2: "GEMMA_VLM", 3: "PALIGEMMA"}
LAYER_TYPE_NAMES = {
    "2025-10": {0: "kGemma", 1: "kVit", 2: "kDeepSeekMLA", 3: "kVitGemma4"},
    "2025-05": {0: "kGemma", 1: "kGriffinRecurrentBlock", 2: "kVit"},
}
#: Numeric value of the ViT layer type per revision.
VIT_TYPE = {"2025-10": 1, "2025-05": 2}
GEMMA_TYPE = 0
MLA_TYPE = 2  # kDeepSeekMLA (2025-10 numbering)
VIT_GEMMA4_TYPE = 3  # kVitGemma4
# Enum values the canonical configs use (gemma/configs.h; the 2026 ones from 0224dcbd).
GEMMA_IT, GEMMA_PT, GEMMA_VLM, PALIGEMMA = 0, 1, 2, 3  # PromptWrapping
SQRT_KEY_SIZE, SQRT_MODEL_DIM_DIV_NUM_HEADS, QUERY_SCALE_ONE = 0, 1, 2  # QueryScaleType
POST_NORM_NONE, POST_NORM_SCALE = 0, 1  # PostNormType
GELU, SILU = 0, 1  # ActivationType
NORM_LOCAL_ROPE = 8  # PostQKType
KDENSE, KCSA, KHCA = 0, 1, 2  # AttentionVariant
SQRT_SOFTPLUS = 3  # RouterScoreFunc::kSqrtSoftplus
#: ``ConfigNoSSM``'s scale_base_names: the tensors whose scales pre-2025 files keep in ``Fscales``.
SCALE_BASE_NAMES = ("att_ein", "qkv_ein", "gr_lin_x_w", "gr_lin_y_w", "gr_lin_out_w", "gr_gate_w",
                    "gating_ein", "linear_w")


def _enum(name: str, names: dict[int, str], valid=None, sentinel: int | None = None) -> EnumSpec:
    return EnumSpec(name, names, valid or (lambda v, n=len(names): 0 <= v < n), sentinel)


def _type_enum(rev: str) -> EnumSpec:
    if rev == "2025-10":
        return _enum("Type", dict(GEMMA_TYPE_NAMES), sentinel=len(GEMMA_TYPE_NAMES))
    names = {k: v for k, v in GEMMA_TYPE_NAMES.items() if k < 6}
    names.update({6: "c64", 7: "u128"})
    return _enum("Type", names)


def _model_enum(rev: str) -> EnumSpec:
    if rev == "2025-10":
        return _enum("Model", MODEL_NAMES,
                     lambda v: v == 0 or (3 <= v < MODEL_SENTINEL and v not in (5, 6, 8, 9)), MODEL_SENTINEL)
    return _enum("Model", {k: v for k, v in MODEL_NAMES.items() if k < 18})


POST_NORM = _enum("PostNormType", {0: "None", 1: "Scale"}, sentinel=2)
POST_QK = _enum("PostQKType", {0: "Rope", 1: "HalfRope", 8: "NormLocalRope"}, lambda v: v in (0, 1, 8), 9)
ACTIVATION = _enum("ActivationType", {0: "Gelu", 1: "Silu"}, sentinel=2)
QUERY_SCALE = _enum("QueryScaleType", {0: "SqrtKeySize", 1: "SqrtModelDimDivNumHeads", 2: "One"}, sentinel=3)
WRAPPING = _enum("PromptWrapping", WRAPPING_NAMES, sentinel=4)
ATTENTION_VARIANT = _enum("AttentionVariant", {0: "kDense", 1: "kCSA", 2: "kHCA"}, sentinel=3)
ROUTER_SCORE = _enum("RouterScoreFunc", {0: "kSigmoidGatingCompat", 1: "kSoftmax", 2: "kSigmoid",
                                         3: "kSqrtSoftplus"}, sentinel=4)
TOKENIZER_KIND = _enum("TokenizerKind", {0: "kSentencePiece", 1: "kHfBpe"}, sentinel=2)
LAYER_TYPE = {"2025-10": _enum("LayerAttentionType", LAYER_TYPE_NAMES["2025-10"], sentinel=4),
              "2025-05": _enum("LayerAttentionType", LAYER_TYPE_NAMES["2025-05"])}
#: Enum fields of LayerConfig / ModelConfig and their specs (for rendering by name).
LAYER_ENUMS = {"post_norm": POST_NORM, "activation": ACTIVATION, "post_qk": POST_QK,
               "attention_variant": ATTENTION_VARIANT, "router_score": ROUTER_SCORE}

#: LayerConfig fields 1-15 (3ed403e), then 16-38 (addendum §4.1).
LAYER_FIELDS_3ED403E = 15
_NEW_LAYER_FIELDS = (
    Field("norm_v", "bool", False),
    Field("num_experts", "u32", 0),
    Field("num_experts_per_datapoint", "u32", 0),
    Field("ple_dim", "u32", 0),
    Field("kv_share_layer_idx", "i32", -1),
    Field("kv_lora_rank", "u32", 0),
    Field("q_lora_rank", "u32", 0),
    Field("rope_head_dim", "u32", 0),
    Field("v_head_dim", "u32", 0),
    Field("attention_variant", "enum", 0, ATTENTION_VARIANT),
    Field("kv_compression_rate", "u32", 1),
    Field("indexer_heads", "u32", 0),
    Field("indexer_head_dim", "u32", 0),
    Field("indexer_top_k", "u32", 0),
    Field("num_shared_experts", "u32", 0),
    Field("sigmoid_gating", "bool", False),
    Field("use_routing_bias", "bool", False),
    Field("o_lora_rank", "u32", 0),
    Field("o_groups", "u32", 1),
    Field("swiglu_limit", "f32", 0.0),
    Field("route_scale", "f32", 1.0),
    Field("router_score", "enum", 0, ROUTER_SCORE),
    Field("hash_routing", "bool", False),
)
#: Names of LayerConfig fields 16-38 (none of them known to gemma.cpp <= 1bdde1a).
NEW_LAYER_FIELD_NAMES = tuple(f.name for f in _NEW_LAYER_FIELDS)
HC_EPS = float(np.float32(1e-6))
#: ModelConfig fields 1-23 (3ed403e), then 24.. (addendum §4.3).
MODEL_FIELDS_3ED403E = 23


def _layer_schema(rev: str) -> Schema:
    return Schema("LayerConfig", (
        Field("model_dim", "u32"),
        Field("unused_griffin_dim", "u32"),
        Field("ff_hidden_dim", "u32"),
        Field("heads", "u32"),
        Field("kv_heads", "u32"),
        Field("qkv_dim", "u32"),
        Field("unused_conv1d_width", "u32"),
        Field("ff_biases", "bool", False),
        Field("unused_softmax_attn_output_biases", "bool", False),
        Field("optimized_gating", "bool", True),
        Field("post_norm", "enum", 0, POST_NORM),
        Field("type", "enum", 0, LAYER_TYPE[rev]),
        Field("activation", "enum", 0, ACTIVATION),
        Field("post_qk", "enum", 0, POST_QK),
        Field("use_qk_norm", "bool", False),
    ) + _NEW_LAYER_FIELDS)


def _schemas(rev: str) -> Schema:
    layer = Field("layer", "struct", schema=_layer_schema(rev))
    layers = Field("layer_configs", "vector", [], elem=layer)
    windows = Field("attention_window_sizes", "vector", [], elem=Field("window", "u32"))
    vit = Schema("VitConfig", (
        Field("model_dim", "u32"),
        Field("seq_len", "u32"),
        Field("num_scales", "u32"),
        Field("patch_width", "u32", 14),
        Field("image_size", "u32", 224),
        layers,
        Field("pool_dim", "u32", 1),
    ))
    enc = "is_encoder_decoder"
    return Schema("ModelConfig", (
        Field("model_family_version", "u32", 1),
        Field("display_name", "string", ""),
        Field("model", "enum", 0, _model_enum(rev)),
        Field("wrapping", "enum", 1, WRAPPING),
        Field("weight", "enum", 0, _type_enum(rev)),
        Field("num_layers", "u32"),
        Field("model_dim", "u32"),
        Field("vocab_size", "u32"),
        Field("max_seq_len", "u32"),
        Field("unused_num_tensor_scales", "u32"),
        Field("att_cap", "f32", 0.0),
        Field("final_cap", "f32", 0.0),
        Field("absolute_pe", "bool", False),
        Field("unused_use_local_attention", "bool", False),
        Field("query_scale", "enum", 0, QUERY_SCALE),
        layers,
        windows,
        Field("norm_num_groups", "u32", 1),
        Field("vit_config", "struct", schema=vit),
        Field("pool_dim", "u32", 1),
        Field("eos_id", "i32", 1),
        Field("secondary_eos_id", "i32", 1),
        Field("scale_base_names", "vector", [], elem=Field("name", "string", "")),
        # -- appended after 3ed403e (addendum §4.3) --
        Field("use_global_timescale", "bool", False),
        Field("partial_rotary_factor", "f32", 1.0),
        Field("ple_dim", "u32", 0),
        Field("hc_mult", "u32", 0),
        Field("rope_theta", "f32", 10000.0),
        Field("compress_rope_theta", "f32", 0.0),
        Field("yarn_orig_seq_len", "u32", 0),
        Field("yarn_factor", "f32", 1.0),
        Field("yarn_beta_fast", "f32", 32.0),
        Field("yarn_beta_slow", "f32", 1.0),
        Field("hc_sinkhorn_iters", "u32", 20),
        Field("hc_eps", "f32", HC_EPS),
        Field("num_mtp_layers", "u32", 0),
        Field("tokenizer_kind", "enum", 0, TOKENIZER_KIND),
        Field(enc, "bool", False),
        Field("encoder_num_layers", "u32", 0, cond=enc),
        Field("encoder_layer_configs", "vector", [], elem=layer, cond=enc),
        Field("encoder_attention_window_sizes", "vector", [], elem=Field("window", "u32"), cond=enc),
        Field("decoder_num_layers", "u32", 0, cond=enc),
        Field("decoder_layer_configs", "vector", [], elem=layer, cond=enc),
        Field("decoder_attention_window_sizes", "vector", [], elem=Field("window", "u32"), cond=enc),
        Field("global_rope_theta", "f32", 1e6),
    ))


SCHEMAS = {rev: _schemas(rev) for rev in REVISIONS}


@dataclass
class LayerConfig:
    """One transformer layer (LLM or ViT), gemma.cpp field names."""

    model_dim: int = 0
    unused_griffin_dim: int = 0
    ff_hidden_dim: int = 0
    heads: int = 0
    kv_heads: int = 0
    qkv_dim: int = 0
    unused_conv1d_width: int = 0
    ff_biases: bool = False
    unused_softmax_attn_output_biases: bool = False
    optimized_gating: bool = True
    post_norm: int = 0
    type: int = 0
    activation: int = 0
    post_qk: int = 0
    use_qk_norm: bool = False
    # fields 16-38 (addendum §4.1)
    norm_v: bool = False
    num_experts: int = 0
    num_experts_per_datapoint: int = 0
    ple_dim: int = 0
    kv_share_layer_idx: int = -1
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    rope_head_dim: int = 0
    v_head_dim: int = 0
    attention_variant: int = 0
    kv_compression_rate: int = 1
    indexer_heads: int = 0
    indexer_head_dim: int = 0
    indexer_top_k: int = 0
    num_shared_experts: int = 0
    sigmoid_gating: bool = False
    use_routing_bias: bool = False
    o_lora_rank: int = 0
    o_groups: int = 1
    swiglu_limit: float = 0.0
    route_scale: float = 1.0
    router_score: int = 0
    hash_routing: bool = False
    #: How many fields are stored (None: all this tool knows). 15 writes what gemma.cpp <= 3ed403e reads.
    stored_fields: int | None = field(default=None, compare=False)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def is_v4_mla(self) -> bool:
        return self.is_mla and self.o_lora_rank > 0


@dataclass
class VitConfig:
    model_dim: int = 0
    seq_len: int = 0
    num_scales: int = 0
    patch_width: int = 14
    image_size: int = 224
    layer_configs: list[LayerConfig] = field(default_factory=list)
    pool_dim: int = 1
    stored_fields: int | None = field(default=None, compare=False)


@dataclass
class ModelConfig:
    """gemma.cpp's ``ModelConfig`` as stored in the ``config`` blob.

    Enum fields hold the stored numbers; :meth:`to_dict` renders them by name
    using the schema revision the config was decoded with (a number newer than
    this release stays a number). ``stored_fields`` (per struct) remembers how many
    fields an older writer stored, so that the config writes back to the same words.
    """

    model_family_version: int = 1
    display_name: str = ""
    model: int = 0
    wrapping: int = 1
    weight: int = 0
    num_layers: int = 0
    model_dim: int = 0
    vocab_size: int = 0
    max_seq_len: int = 0
    unused_num_tensor_scales: int = 0
    att_cap: float = 0.0
    final_cap: float = 0.0
    absolute_pe: bool = False
    unused_use_local_attention: bool = False
    query_scale: int = 0
    layer_configs: list[LayerConfig] = field(default_factory=list)
    attention_window_sizes: list[int] = field(default_factory=list)
    norm_num_groups: int = 1
    vit_config: VitConfig = field(default_factory=VitConfig)
    pool_dim: int = 1
    eos_id: int = 1
    secondary_eos_id: int = 1
    scale_base_names: list[str] = field(default_factory=list)
    # -- appended after 3ed403e (addendum §4.3) --
    use_global_timescale: bool = False
    partial_rotary_factor: float = 1.0
    ple_dim: int = 0
    hc_mult: int = 0
    rope_theta: float = 10000.0
    compress_rope_theta: float = 0.0
    yarn_orig_seq_len: int = 0
    yarn_factor: float = 1.0
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    hc_sinkhorn_iters: int = 20
    hc_eps: float = HC_EPS
    num_mtp_layers: int = 0
    tokenizer_kind: int = 0
    is_encoder_decoder: bool = False
    encoder_num_layers: int = 0
    encoder_layer_configs: list[LayerConfig] = field(default_factory=list)
    encoder_attention_window_sizes: list[int] = field(default_factory=list)
    decoder_num_layers: int = 0
    decoder_layer_configs: list[LayerConfig] = field(default_factory=list)
    decoder_attention_window_sizes: list[int] = field(default_factory=list)
    global_rope_theta: float = 1e6
    #: Top-level fields stored (None: all this tool knows; 23: a 3ed403e config, 24: + use_global_timescale).
    stored_fields: int | None = field(default=None, compare=False)
    # Not serialized: how it was decoded.
    schema_revision: str = field(default=CURRENT, compare=False)
    missing_fields: int = field(default=0, compare=False)
    extra_u32: int = field(default=0, compare=False)
    #: Where a newer writer's extra words were skipped: (struct path, words); "" is the top level.
    extra_at: list = field(default_factory=list, compare=False)
    #: Enum values newer than this release: (field path, enum name, value).
    newer_values: list = field(default_factory=list, compare=False)
    #: Paths of strings with non-ASCII (UTF-8) bytes.
    non_ascii: list = field(default_factory=list, compare=False)
    #: Vectors longer than 64 Ki elements: (path, count).
    long_vectors: list = field(default_factory=list, compare=False)

    # -- derived -----------------------------------------------------------
    @property
    def model_name(self) -> str:
        """gemma.cpp's enum name; the bare number for a model newer than this release."""
        if self.model in MODEL_NAMES:
            return MODEL_NAMES[self.model]
        return str(self.model) if self.model >= MODEL_SENTINEL else f"<invalid {self.model}>"

    @property
    def weight_name(self) -> str:
        names = SCHEMA_WEIGHT_NAMES[self.schema_revision]
        if self.weight in names:
            return names[self.weight]
        return str(self.weight) if self.schema_revision == CURRENT and self.weight >= len(names) \
            else f"<invalid {self.weight}>"

    @property
    def wrapping_name(self) -> str:
        return str(WRAPPING.render(self.wrapping))

    @property
    def vit_type(self) -> int:
        """The number that means kVit in this config's schema revision."""
        return VIT_TYPE[self.schema_revision]

    @property
    def vit_types(self) -> frozenset[int]:
        """Type numbers a ViT layer may hold in this config's revision (kVit, and kVitGemma4 since 2026)."""
        return frozenset({1, VIT_GEMMA4_TYPE}) if self.schema_revision == CURRENT else frozenset({2})

    def layer_type_name(self, value: int) -> str:
        return str(LAYER_TYPE[self.schema_revision].render(value))

    @property
    def has_newer_values(self) -> bool:
        return bool(self.newer_values)

    @property
    def specifier(self) -> str:
        """``ModelConfig::Specifier()``: prefix-type[-it|-pt] (no suffix for VLM/PaliGemma)."""
        prefix = MODEL_PREFIX.get(self.model, "unknown")
        spec = f"{prefix}-{self.weight_name}"
        if self.wrapping == 0:
            spec += "-it"
        elif self.wrapping == 1:
            spec += "-pt"
        return spec

    @property
    def family(self) -> str:
        """Human family name derived from the model enum."""
        name = self.model_name
        for prefix, fam in (("GEMMA4", "Gemma 4"), ("GEMMA3", "Gemma 3"), ("GEMMA2", "Gemma 2"),
                            ("PALIGEMMA2", "PaliGemma 2"), ("PALIGEMMA", "PaliGemma"), ("T5GEMMA", "T5Gemma"),
                            ("GEMMA", "Gemma"), ("GRIFFIN", "Griffin"), ("QWEN3", "Qwen3"),
                            ("DEEPSEEK4", "DeepSeek V4"), ("CUSTOM", "custom")):
            if name.startswith(prefix):
                return fam
        return "unknown"

    @property
    def needs_global_timescale(self) -> bool:
        """Gemma 3 1B/4B/12B/27B without ``use_global_timescale``: gemma.cpp since 1bdde1a (2025-10-24) runs
        its global layers with RoPE base 1e4 instead of 1e6 (addendum §6.3)."""
        return (self.model in GLOBAL_TIMESCALE_MODELS and not self.use_global_timescale
                and any(self.is_global_layer(i) for i in range(len(self.layer_configs))))

    def is_global_layer(self, i: int) -> bool:
        """A layer whose window covers the whole context (gemma.cpp's IsGlobalLayer)."""
        w = self.attention_window_sizes
        return i < len(w) and w[i] == self.max_seq_len

    # -- (de)serialization ---------------------------------------------------
    def to_values(self) -> dict[str, Any]:
        """Plain nested dict of stored values (enums as numbers), for the writer."""

        def lay(lc: LayerConfig) -> dict[str, Any]:
            d = {f.name: getattr(lc, f.name) for f in dc_fields(lc) if f.compare}
            if lc.stored_fields is not None:
                d[NFIELDS] = lc.stored_fields
            return d

        d = {f.name: getattr(self, f.name) for f in dc_fields(self) if f.compare}
        for key in ("layer_configs", "encoder_layer_configs", "decoder_layer_configs"):
            d[key] = [lay(lc) for lc in getattr(self, key)]
        vc = self.vit_config
        v = {f.name: getattr(vc, f.name) for f in dc_fields(vc) if f.compare}
        v["layer_configs"] = [lay(lc) for lc in vc.layer_configs]
        if vc.stored_fields is not None:
            v[NFIELDS] = vc.stored_fields
        d["vit_config"] = v
        if self.stored_fields is not None:
            d[NFIELDS] = self.stored_fields
        return d

    def to_dict(self) -> dict[str, Any]:
        """Every field by its gemma.cpp name with enums rendered as names (for JSON output); a value
        newer than this release is shown as its number."""
        lt = LAYER_TYPE[self.schema_revision]

        def layer(lc: LayerConfig) -> dict[str, Any]:
            d = {f.name: getattr(lc, f.name) for f in dc_fields(lc) if f.compare}
            for name, spec in LAYER_ENUMS.items():
                d[name] = spec.render(d[name])
            d["type"] = lt.render(lc.type)
            return d

        d = self.to_values()
        d.pop(NFIELDS, None)
        d["vit_config"].pop(NFIELDS, None)
        d["model"] = self.model_name if self.model in MODEL_NAMES else _model_enum(CURRENT).render(self.model)
        d["wrapping"] = WRAPPING.render(self.wrapping)
        d["weight"] = self.weight_name if not self.weight_name.isdigit() else self.weight
        d["query_scale"] = QUERY_SCALE.render(self.query_scale)
        d["tokenizer_kind"] = TOKENIZER_KIND.render(self.tokenizer_kind)
        for key in ("layer_configs", "encoder_layer_configs", "decoder_layer_configs"):
            d[key] = [layer(lc) for lc in getattr(self, key)]
        d["vit_config"]["layer_configs"] = [layer(lc) for lc in self.vit_config.layer_configs]
        d["specifier"] = self.specifier
        d["schema_revision"] = self.schema_revision
        return d

    @classmethod
    def from_values(cls, values: dict[str, Any], *, revision: str = CURRENT,
                    missing_fields: int = 0, extra_u32: int = 0, **decoded: Any) -> "ModelConfig":
        def lay(d: dict[str, Any]) -> LayerConfig:
            d = dict(d)
            n = d.pop(NFIELDS, None)
            return LayerConfig(**d, stored_fields=n)

        v = dict(values)
        n = v.pop(NFIELDS, None)
        for key in ("layer_configs", "encoder_layer_configs", "decoder_layer_configs"):
            v[key] = [lay(lc) for lc in v.get(key, [])]
        vit = dict(v["vit_config"])
        vn = vit.pop(NFIELDS, None)
        vit["layer_configs"] = [lay(lc) for lc in vit["layer_configs"]]
        v["vit_config"] = VitConfig(**vit, stored_fields=vn)
        return cls(**v, stored_fields=n, schema_revision=revision, missing_fields=missing_fields,
                   extra_u32=extra_u32, **decoded)

    def to_words(self) -> list[int]:
        cfg = self
        if self.schema_revision != CURRENT:  # the May-2025 numbering: only the fields its writers knew
            cfg = self.legacy_form()
            n = self.stored_fields
            cfg.stored_fields = MODEL_FIELDS_3ED403E if n is None else n
        return write_struct(SCHEMAS[self.schema_revision], cfg.to_values())

    def to_bytes(self) -> bytes:
        return np.asarray(self.to_words(), dtype="<u4").tobytes()

    def compact_form(self) -> "ModelConfig":
        """The compatible-writer recipe (addendum §4.4) applied where it loses nothing: LayerConfigs as 15
        fields when every field 16-38 holds its default (readable by gemma.cpp <= 3ed403e), and top-level
        fields only up to the last one that differs from its default (never fewer than 3ed403e wrote)."""
        out = self
        lays = self.layer_configs + self.vit_config.layer_configs
        default = LayerConfig()
        if all(getattr(lc, n) == getattr(default, n) for lc in lays for n in NEW_LAYER_FIELD_NAMES):
            out = self.legacy_form()
        schema = SCHEMAS[CURRENT]
        values = out.to_values()
        visited = schema.visited(values)
        keep = MODEL_FIELDS_3ED403E
        for i, f in enumerate(visited[MODEL_FIELDS_3ED403E:], start=MODEL_FIELDS_3ED403E + 1):
            if values[f.name] != f.default:
                keep = i
        if out is self:
            from dataclasses import replace as _replace
            out = _replace(self)
        out.stored_fields = keep
        return out

    def legacy_form(self) -> "ModelConfig":
        """This config as gemma.cpp <= 3ed403e can read it (addendum §4.4, compatible-writer recipe):
        15-field LayerConfigs, new information only as top-level trailing fields. Loses nothing when
        every LayerConfig field 16-38 holds its default."""
        from dataclasses import replace as _replace

        out = _replace(self)
        def cut(lc: LayerConfig) -> LayerConfig:
            n = lc.stored_fields
            return _replace(lc, stored_fields=LAYER_FIELDS_3ED403E if n is None else min(n, LAYER_FIELDS_3ED403E))

        out.layer_configs = [cut(lc) for lc in self.layer_configs]
        out.vit_config = _replace(self.vit_config, layer_configs=[cut(lc) for lc in self.vit_config.layer_configs])
        return out


SCHEMA_WEIGHT_NAMES = {rev: _type_enum(rev).names for rev in REVISIONS}


def _decoded(r: ReadResult) -> dict[str, Any]:
    return {"extra_at": list(r.extra_at), "newer_values": list(r.newer), "non_ascii": list(r.non_ascii),
            "long_vectors": list(r.long_vectors)}


def _old_form(r: ReadResult) -> bool:
    """No LayerConfig holds a field appended after 3ed403e (new top-level trailing fields such as
    use_global_timescale may be there: old readers skip those)."""
    v = r.values
    lays = list(v["layer_configs"]) + list(v["vit_config"]["layer_configs"])
    return all((lc.get(NFIELDS) or 99) <= LAYER_FIELDS_3ED403E for lc in lays)


def decode_config(words: np.ndarray, *, revision: str | None = None) -> ModelConfig:
    """Decode a ``config`` blob (as u32 words).

    Tries each known schema revision newest first (or only ``revision``).
    A config in the old field layout whose ViT layers hold 2 is the May-2025
    numbering (kVit was 2), not kDeepSeekMLA: it is decoded with "2025-05"
    when that schema accepts it. Raises :class:`ConfigError` with code
    ``config-undecodable`` (structure) or ``config-invalid`` (values no
    revision accepts), offset = byte in the blob.
    """
    revs = [revision] if revision else list(REVISIONS)
    first: FieldsError | None = None
    for rev in revs:
        try:
            r: ReadResult = read_struct(SCHEMAS[rev], words, 0, blob="config")
        except FieldsError as e:
            first = first or e
            if e.code == "fields-structure":
                break
            continue
        if (revision is None and rev == CURRENT and _old_form(r)
                and 2 in {lc["type"] for lc in r.values["vit_config"]["layer_configs"]}):
            try:
                old = read_struct(SCHEMAS["2025-05"], words, 0, blob="config")
            except FieldsError:
                old = None
            if old is not None:
                r, rev = old, "2025-05"
        return ModelConfig.from_values(r.values, revision=rev, missing_fields=r.missing_fields,
                                       extra_u32=r.extra_u32, **_decoded(r))
    assert first is not None
    code = "config-undecodable" if first.code == "fields-structure" else "config-invalid"
    raise ConfigError(f"config blob: {first.message}", code=code, offset=first.offset, blob="config")


def consistency_problems(cfg: ModelConfig) -> list[str]:
    """Count/shape inconsistencies gemma.cpp would trip on later (not decoding errors)."""
    out = []
    if len(cfg.layer_configs) != cfg.num_layers:
        out.append(f"num_layers is {cfg.num_layers} but layer_configs has {len(cfg.layer_configs)} entries")
    if len(cfg.attention_window_sizes) != cfg.num_layers:
        out.append(f"attention_window_sizes has {len(cfg.attention_window_sizes)} entries for "
                   f"{cfg.num_layers} layers")
    for tag, layers in (("layer", cfg.layer_configs), ("vit layer", cfg.vit_config.layer_configs)):
        for i, lc in enumerate(layers):
            if lc.qkv_dim > 1024:
                out.append(f"{tag} {i}: qkv_dim {lc.qkv_dim} > 1024 (gemma.cpp kMaxQKVDim)")
            if lc.kv_heads and lc.heads % lc.kv_heads:
                out.append(f"{tag} {i}: heads {lc.heads} not a multiple of kv_heads {lc.kv_heads}")
    for i, lc in enumerate(cfg.layer_configs):
        if lc.type not in llm_layer_types(cfg):
            out.append(f"layer {i}: LLM layer has type {cfg.layer_type_name(lc.type)}, expected kGemma")
        if lc.model_dim != cfg.model_dim:
            out.append(f"layer {i}: model_dim {lc.model_dim} != config model_dim {cfg.model_dim}")
    for i, lc in enumerate(cfg.vit_config.layer_configs):
        if lc.type not in cfg.vit_types and not LAYER_TYPE[cfg.schema_revision].is_newer(lc.type):
            out.append(f"vit layer {i}: type {cfg.layer_type_name(lc.type)}, expected kVit")
    for name in ("att_cap", "final_cap"):
        if not math.isfinite(getattr(cfg, name)):
            out.append(f"{name} is not finite")
    return out


def llm_layer_types(cfg: ModelConfig) -> frozenset[int]:
    """Type numbers an LLM layer may hold: kGemma, and kDeepSeekMLA in the current numbering."""
    return frozenset({GEMMA_TYPE, MLA_TYPE}) if cfg.schema_revision == CURRENT else frozenset({GEMMA_TYPE})
