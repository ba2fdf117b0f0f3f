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
from .fields import EnumSpec, Field, ReadResult, Schema, read_struct, write_struct
from .types import GEMMA_TYPE_NAMES, Type

#: Schema revisions this tool knows, newest first: name -> gemma.cpp commit and date.
REVISIONS = {
    "2025-10": "3ed403e (2025-10-23; ViT layer type 1, Type up to kI8)",
    "2025-05": "e9ecb77 (2025-05-07; ViT layer type 2, Griffin fields live)",
}
CURRENT = "2025-10"

MODEL_NAMES = {
    0: "UNKNOWN", 1: "GEMMA_2B", 2: "GEMMA_7B", 3: "GEMMA2_9B", 4: "GEMMA2_27B", 5: "GRIFFIN_2B",
    6: "GEMMA_TINY", 7: "GEMMA2_2B", 8: "PALIGEMMA_224", 9: "PALIGEMMA_448",
    10: "PALIGEMMA2_3B_224", 11: "PALIGEMMA2_3B_448", 12: "PALIGEMMA2_10B_224",
    13: "PALIGEMMA2_10B_448", 14: "GEMMA3_4B", 15: "GEMMA3_1B", 16: "GEMMA3_12B",
    17: "GEMMA3_27B", 18: "GEMMA3_270M",
}
MODEL_PREFIX = {
    1: "2b", 2: "7b", 3: "9b", 4: "27b", 5: "gr2b", 6: "tiny", 7: "gemma2-2b", 8: "paligemma-224",
    9: "paligemma-448", 10: "paligemma2-3b-224", 11: "paligemma2-3b-448", 12: "paligemma2-10b-224",
    13: "paligemma2-10b-448", 14: "gemma3-4b", 15: "gemma3-1b", 16: "gemma3-12b", 17: "gemma3-27b",
    18: "gemma3-270m",
}
OBSOLETE_MODELS = {1, 2, 5, 6, 8, 9}
WRAPPING_NAMES = {0: "GEMMA_IT", 1: "GEMMA_PT", 2: "GEMMA_VLM", 3: "PALIGEMMA"}
LAYER_TYPE_NAMES = {
    "2025-10": {0: "kGemma", 1: "kVit"},
    "2025-05": {0: "kGemma", 1: "kGriffinRecurrentBlock", 2: "kVit"},
}
#: Numeric value of the ViT layer type per revision.
VIT_TYPE = {"2025-10": 1, "2025-05": 2}
GEMMA_TYPE = 0


def _enum(name: str, names: dict[int, str], valid=None) -> EnumSpec:
    return EnumSpec(name, names, valid or (lambda v, n=len(names): 0 <= v < n))


def _type_enum(rev: str) -> EnumSpec:
    if rev == "2025-10":
        return _enum("Type", dict(GEMMA_TYPE_NAMES))
    names = {k: v for k, v in GEMMA_TYPE_NAMES.items() if k < 6}
    names.update({6: "c64", 7: "u128"})
    return _enum("Type", names)


def _model_enum(rev: str) -> EnumSpec:
    if rev == "2025-10":
        return _enum("Model", MODEL_NAMES, lambda v: v == 0 or (3 <= v < 19 and v not in (5, 6, 8, 9)))
    return _enum("Model", {k: v for k, v in MODEL_NAMES.items() if k < 18})


POST_NORM = _enum("PostNormType", {0: "None", 1: "Scale"})
POST_QK = _enum("PostQKType", {0: "Rope", 1: "HalfRope"})
ACTIVATION = _enum("ActivationType", {0: "Gelu"})
QUERY_SCALE = _enum("QueryScaleType", {0: "SqrtKeySize", 1: "SqrtModelDimDivNumHeads"})
WRAPPING = _enum("PromptWrapping", WRAPPING_NAMES)


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
        Field("type", "enum", 0, _enum("LayerAttentionType", LAYER_TYPE_NAMES[rev])),
        Field("activation", "enum", 0, ACTIVATION),
        Field("post_qk", "enum", 0, POST_QK),
        Field("use_qk_norm", "bool", False),
    ))


def _schemas(rev: str) -> Schema:
    layer = Field("layer", "struct", schema=_layer_schema(rev))
    vit = Schema("VitConfig", (
        Field("model_dim", "u32"),
        Field("seq_len", "u32"),
        Field("num_scales", "u32"),
        Field("patch_width", "u32", 14),
        Field("image_size", "u32", 224),
        Field("layer_configs", "vector", [], elem=layer),
        Field("pool_dim", "u32", 1),
    ))
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
        Field("layer_configs", "vector", [], elem=layer),
        Field("attention_window_sizes", "vector", [], elem=Field("window", "u32")),
        Field("norm_num_groups", "u32", 1),
        Field("vit_config", "struct", schema=vit),
        Field("pool_dim", "u32", 1),
        Field("eos_id", "i32", 1),
        Field("secondary_eos_id", "i32", 1),
        Field("scale_base_names", "vector", [], elem=Field("name", "string", "")),
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


@dataclass
class VitConfig:
    model_dim: int = 0
    seq_len: int = 0
    num_scales: int = 0
    patch_width: int = 14
    image_size: int = 224
    layer_configs: list[LayerConfig] = field(default_factory=list)
    pool_dim: int = 1


@dataclass
class ModelConfig:
    """gemma.cpp's ``ModelConfig`` as stored in the ``config`` blob.

    Enum fields hold the stored numbers; :meth:`to_dict` renders them by name
    using the schema revision the config was decoded with.
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
    # Not serialized: how it was decoded.
    schema_revision: str = field(default=CURRENT, compare=False)
    missing_fields: int = field(default=0, compare=False)
    extra_u32: int = field(default=0, compare=False)

    # -- derived -----------------------------------------------------------
    @property
    def model_name(self) -> str:
        return MODEL_NAMES.get(self.model, f"<invalid {self.model}>")

    @property
    def weight_name(self) -> str:
        return SCHEMA_WEIGHT_NAMES[self.schema_revision].get(self.weight, f"<invalid {self.weight}>")

    @property
    def wrapping_name(self) -> str:
        return WRAPPING_NAMES.get(self.wrapping, f"<invalid {self.wrapping}>")

    @property
    def vit_type(self) -> int:
        """The number that means kVit in this config's schema revision."""
        return VIT_TYPE[self.schema_revision]

    def layer_type_name(self, value: int) -> str:
        return LAYER_TYPE_NAMES[self.schema_revision].get(value, f"<invalid {value}>")

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
        if name.startswith("GEMMA3"):
            return "Gemma 3"
        if name.startswith("GEMMA2"):
            return "Gemma 2"
        if name.startswith("PALIGEMMA2"):
            return "PaliGemma 2"
        if name.startswith("PALIGEMMA"):
            return "PaliGemma"
        if name.startswith("GEMMA"):
            return "Gemma"
        if name.startswith("GRIFFIN"):
            return "Griffin"
        return "unknown"

    def is_global_layer(self, i: int) -> bool:
        """A layer whose window covers the whole context (gemma.cpp's IsGlobalLayer)."""
        w = self.attention_window_sizes
        return i < len(w) and w[i] == self.max_seq_len

    # -- (de)serialization ---------------------------------------------------
    def to_values(self) -> dict[str, Any]:
        """Plain nested dict of stored values (enums as numbers), for the writer."""
        d = {f.name: getattr(self, f.name) for f in dc_fields(self) if f.compare}
        d["layer_configs"] = [vars(lc).copy() for lc in self.layer_configs]
        v = vars(self.vit_config).copy()
        v["layer_configs"] = [vars(lc).copy() for lc in self.vit_config.layer_configs]
        d["vit_config"] = v
        return d

    def to_dict(self) -> dict[str, Any]:
        """Every field by its gemma.cpp name with enums rendered as names (for JSON output)."""

        def layer(lc: LayerConfig) -> dict[str, Any]:
            d = vars(lc).copy()
            d["post_norm"] = POST_NORM.name_of(lc.post_norm)
            d["type"] = self.layer_type_name(lc.type)
            d["activation"] = ACTIVATION.name_of(lc.activation)
            d["post_qk"] = POST_QK.name_of(lc.post_qk)
            return d

        d = self.to_values()
        d["model"] = self.model_name
        d["wrapping"] = self.wrapping_name
        d["weight"] = self.weight_name
        d["query_scale"] = QUERY_SCALE.name_of(self.query_scale)
        d["layer_configs"] = [layer(lc) for lc in self.layer_configs]
        d["vit_config"]["layer_configs"] = [layer(lc) for lc in self.vit_config.layer_configs]
        d["specifier"] = self.specifier
        d["schema_revision"] = self.schema_revision
        return d

    @classmethod
    def from_values(cls, values: dict[str, Any], *, revision: str = CURRENT,
                    missing_fields: int = 0, extra_u32: int = 0) -> "ModelConfig":
        v = dict(values)
        v["layer_configs"] = [LayerConfig(**lc) for lc in v["layer_configs"]]
        vit = dict(v["vit_config"])
        vit["layer_configs"] = [LayerConfig(**lc) for lc in vit["layer_configs"]]
        v["vit_config"] = VitConfig(**vit)
        return cls(**v, schema_revision=revision, missing_fields=missing_fields, extra_u32=extra_u32)

    def to_words(self) -> list[int]:
        return write_struct(SCHEMAS[self.schema_revision], self.to_values())

    def to_bytes(self) -> bytes:
        return np.asarray(self.to_words(), dtype="<u4").tobytes()


SCHEMA_WEIGHT_NAMES = {rev: _type_enum(rev).names for rev in REVISIONS}


def decode_config(words: np.ndarray, *, revision: str | None = None) -> ModelConfig:
    """Decode a ``config`` blob (as u32 words).

    Tries each known schema revision newest first (or only ``revision``).
    Raises :class:`ConfigError` with code ``config-undecodable`` (structure) or
    ``config-invalid`` (values no revision accepts), offset = byte in the blob.
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
        return ModelConfig.from_values(r.values, revision=rev, missing_fields=r.missing_fields,
                                       extra_u32=r.extra_u32)
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
        if lc.type != GEMMA_TYPE:
            out.append(f"layer {i}: LLM layer has type {cfg.layer_type_name(lc.type)}, expected kGemma")
        if lc.model_dim != cfg.model_dim:
            out.append(f"layer {i}: model_dim {lc.model_dim} != config model_dim {cfg.model_dim}")
    for i, lc in enumerate(cfg.vit_config.layer_configs):
        if lc.type != cfg.vit_type:
            out.append(f"vit layer {i}: type {cfg.layer_type_name(lc.type)}, expected kVit")
    for name in ("att_cap", "final_cap"):
        if not math.isfinite(getattr(cfg, name)):
            out.append(f"{name} is not finite")
    return out
