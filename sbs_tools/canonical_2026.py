"""gemma.cpp's canonical configs for the models added in 2026 (addendum §1.2, §4).

Each model is one table row (:class:`Spec`): model-level fields on top of its family's base
(``ConfigBaseGemmaV4``, ``ConfigBaseT5Gemma``, ``ConfigBaseQwen3``, DeepSeek's plain
``ModelConfig()``), one LayerConfig repeated ``num_layers`` times, the attention-window pattern, and
per-layer rules ``rule(i, is_global) -> fields or None`` for what differs between layers.

Source: ``gemma/configs.cc`` (the version with ``GEMMA4_E4B`` and ``global_rope_theta``, i.e. 0224dcbd
or later) and ``gemma/configs_test.cc``; where the addendum differs, the source wins (see
``docs/verify.md``). :mod:`sbs_tools.canonical` adds the weight type, the wrapping and the form each
gemma.cpp generation writes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from .config import (GELU, GEMMA_IT, GEMMA_PT, KCSA, KDENSE, KHCA, MLA_TYPE, NORM_LOCAL_ROPE, POST_NORM_NONE,
                     POST_NORM_SCALE, QUERY_SCALE_ONE, SCALE_BASE_NAMES, SILU, SQRT_KEY_SIZE, SQRT_SOFTPLUS,
                     VIT_GEMMA4_TYPE, LayerConfig, ModelConfig, VitConfig)

Rule = Callable[[int, bool], "Mapping[str, Any] | None"]

# -- family bases (ConfigNoSSM and what each ConfigBase* adds) ------------------------------------------------
_NO_SSM = dict(scale_base_names=list(SCALE_BASE_NAMES), rope_theta=1e4, global_rope_theta=1e6)
_GEMMA4 = dict(_NO_SSM, model_family_version=4, att_cap=0.0, final_cap=0.0, eos_id=1, secondary_eos_id=106,
               vocab_size=262144, wrapping=GEMMA_IT, use_global_timescale=True, partial_rotary_factor=0.25,
               query_scale=QUERY_SCALE_ONE)  # ConfigBaseGemmaV4's vocab 262208 is overridden by every model
_T5GEMMA = dict(_NO_SSM, att_cap=50.0, final_cap=30.0, eos_id=1, secondary_eos_id=107, global_rope_theta=1e4)
_QWEN3 = dict(_NO_SSM, vocab_size=151936, max_seq_len=32768, eos_id=151645, secondary_eos_id=151643,
              wrapping=GEMMA_IT, rope_theta=1e6, use_global_timescale=True, query_scale=SQRT_KEY_SIZE)

_GEMMA4_LAYER = dict(optimized_gating=True, post_norm=POST_NORM_SCALE, activation=GELU, post_qk=NORM_LOCAL_ROPE,
                     use_qk_norm=True, norm_v=True)
_QWEN3_LAYER = dict(heads=16, kv_heads=8, qkv_dim=128, optimized_gating=False, post_norm=POST_NORM_NONE,
                    activation=SILU, use_qk_norm=True)


@dataclass(frozen=True)
class Spec:
    """One 2026 model as ``ConfigFromModel`` builds it."""

    fields: Mapping[str, Any]  # ModelConfig fields (num_layers included)
    layer: Mapping[str, Any]  # the repeated LayerConfig (model_dim comes from the model)
    windows: tuple[int, ...]  # repeating attention-window pattern; 0 stands for max_seq_len (a global layer)
    rules: tuple[Rule, ...] = ()
    vit: bool = False  # the Gemma 4 vision tower (16 kVitGemma4 layers)
    encoder_decoder: bool = False  # T5Gemma: the stack is also the encoder and the decoder


def _global(fields_: Mapping[str, Any]) -> Rule:
    """Global-attention layers get ``fields_`` (Gemma 4: Dh 512, and K 2 for the 26B MoE)."""
    return lambda i, is_global: fields_ if is_global else None


def _kv_share(first: int, global_src: int, local_src: int, **more: Any) -> Rule:
    """Layers from ``first`` on read the KV cache of the last global / local layer before it."""
    return lambda i, g: dict(more, kv_share_layer_idx=global_src if g else local_src) if i >= first else None


_DENSE_ATTENTION = dict(attention_variant=KDENSE, kv_compression_rate=1, indexer_heads=0, indexer_head_dim=0,
                        indexer_top_k=0)  # LayerConfig::SetDenseAttention
_CSA = dict(attention_variant=KCSA, kv_compression_rate=4, indexer_heads=64, indexer_head_dim=128, indexer_top_k=512)
_HCA = dict(attention_variant=KHCA, kv_compression_rate=128, indexer_heads=0, indexer_head_dim=0, indexer_top_k=0)


def _deepseek_attention(i: int, _: bool) -> Mapping[str, Any]:
    """DeepSeek V4 Flash ``compress_ratios``: layers 0-1 dense, then CSA on even and HCA on odd layers."""
    return _DENSE_ATTENTION if i < 2 else _CSA if i % 2 == 0 else _HCA


def _hash_routing(i: int, _: bool) -> Mapping[str, Any] | None:
    """The first three DeepSeek layers route by token id (hash table), without the routing bias."""
    return dict(hash_routing=True, use_routing_bias=False) if i < 3 else None


_GEMMA4_2B = Spec(
    dict(_GEMMA4, display_name="Gemma4_2B_LM", model_dim=1536, max_seq_len=131072, ple_dim=256, num_layers=35),
    dict(_GEMMA4_LAYER, ff_hidden_dim=6144, heads=8, kv_heads=1, qkv_dim=256, ple_dim=256),
    (512, 512, 512, 512, 0),
    (_global(dict(qkv_dim=512)), _kv_share(15, 14, 13, ff_hidden_dim=12288)))
_GEMMA4_E4B = Spec(
    dict(_GEMMA4, display_name="Gemma4_E4B_LM", model_dim=2560, max_seq_len=131072, ple_dim=256, num_layers=42),
    dict(_GEMMA4_LAYER, ff_hidden_dim=10240, heads=8, kv_heads=2, qkv_dim=256, ple_dim=256),
    (512, 512, 512, 512, 512, 0),
    (_global(dict(qkv_dim=512)), _kv_share(24, 23, 22)))


def _qwen3(name: str, model_dim: int, ff: int, layers: int, heads: int = 16) -> Spec:
    return Spec(dict(_QWEN3, display_name=name, model_dim=model_dim, num_layers=layers),
                dict(_QWEN3_LAYER, ff_hidden_dim=ff, heads=heads), (0,))


#: Model enum value -> its canonical config (configs.cc ``ConfigFromModel``).
SPECS: dict[int, Spec] = {
    23: Spec(dict(_GEMMA4, display_name="Gemma4_26B_MoE", model_dim=2816, max_seq_len=32768, num_layers=30),
             dict(_GEMMA4_LAYER, ff_hidden_dim=2112, heads=16, kv_heads=8, qkv_dim=256, num_experts=128,
                  num_experts_per_datapoint=8),
             (1024, 1024, 1024, 1024, 1024, 0), (_global(dict(qkv_dim=512, kv_heads=2)),)),
    30: _GEMMA4_2B,
    24: replace(_GEMMA4_2B, fields=dict(_GEMMA4_2B.fields, display_name="Gemma4_2B"), vit=True),
    32: _GEMMA4_E4B,
    31: replace(_GEMMA4_E4B, fields=dict(_GEMMA4_E4B.fields, display_name="Gemma4_E4B"), vit=True),
    25: Spec(dict(model_family_version=4, display_name="DeepSeek4_Flash", wrapping=GEMMA_IT, model_dim=4096,
                  vocab_size=129280, max_seq_len=131072, num_layers=43, hc_mult=4, eos_id=1, secondary_eos_id=1,
                  query_scale=SQRT_KEY_SIZE, rope_theta=1e4, global_rope_theta=1e4, compress_rope_theta=160000.0,
                  yarn_orig_seq_len=65536, yarn_factor=16.0, yarn_beta_fast=32.0, yarn_beta_slow=1.0,
                  hc_sinkhorn_iters=20, num_mtp_layers=1),
             dict(ff_hidden_dim=2048, heads=64, kv_heads=1, qkv_dim=512, optimized_gating=False,
                  post_norm=POST_NORM_NONE, type=MLA_TYPE, activation=SILU, use_qk_norm=False, kv_lora_rank=448,
                  q_lora_rank=1024, rope_head_dim=64, v_head_dim=512, o_lora_rank=1024, o_groups=8, **_CSA,
                  num_experts=256, num_experts_per_datapoint=6, num_shared_experts=1, sigmoid_gating=False,
                  router_score=SQRT_SOFTPLUS, route_scale=1.5, swiglu_limit=10.0, use_routing_bias=True),
             (128,), (_deepseek_attention, _hash_routing)),
    26: Spec(dict(_T5GEMMA, display_name="T5Gemma_S_S", wrapping=GEMMA_PT, model_dim=512, vocab_size=256000,
                  max_seq_len=8192, num_layers=8, query_scale=SQRT_KEY_SIZE),
             dict(ff_hidden_dim=1024, heads=8, kv_heads=8, qkv_dim=64, optimized_gating=False,
                  post_norm=POST_NORM_SCALE),
             (4096, 0), encoder_decoder=True),
    27: _qwen3("Qwen3_0.6B", 1024, 3072, 28),
    28: _qwen3("Qwen3_1.7B", 2048, 6144, 28),
    29: _qwen3("Qwen3_4B", 2560, 9728, 36, heads=32),
}


def gemma4_vit() -> VitConfig:
    """The Gemma 4 vision tower of GEMMA4_2B / GEMMA4_E4B: 16 kVitGemma4 layers, 896 px in 16 px patches."""
    lc = LayerConfig(model_dim=768, ff_hidden_dim=3072, heads=12, kv_heads=12, qkv_dim=64, type=VIT_GEMMA4_TYPE,
                     use_qk_norm=True, post_norm=POST_NORM_SCALE)
    return VitConfig(model_dim=768, seq_len=2520, num_scales=0, patch_width=16, image_size=896,
                     layer_configs=[replace(lc) for _ in range(16)], pool_dim=3)


def _layers(spec: Spec, model_dim: int, windows: list[int], max_seq_len: int) -> list[LayerConfig]:
    out = []
    for i, w in enumerate(windows):
        lc = LayerConfig(model_dim=model_dim, **spec.layer)
        for rule in spec.rules:
            lc = replace(lc, **(rule(i, w == max_seq_len) or {}))
        out.append(lc)
    return out


def build(model: int) -> ModelConfig:
    """``ConfigFromModel(model)`` for a 2026 model: every field, the model's own wrapping."""
    spec = SPECS[model]
    f = dict(spec.fields)
    n, seq = f["num_layers"], f["max_seq_len"]
    windows = [w or seq for w in (spec.windows * n)[:n]]
    layers = _layers(spec, f["model_dim"], windows, seq)
    cfg = ModelConfig(model=model, layer_configs=layers, attention_window_sizes=windows, **f)
    if spec.vit:
        cfg.vit_config = gemma4_vit()
    if spec.encoder_decoder:
        cfg.is_encoder_decoder = True
        for stack in ("encoder", "decoder"):
            setattr(cfg, f"{stack}_num_layers", n)
            setattr(cfg, f"{stack}_layer_configs", [replace(lc) for lc in layers])
            setattr(cfg, f"{stack}_attention_window_sizes", list(windows))
    return cfg
