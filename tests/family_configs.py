"""Miniature configs with the structure of each 2026 model enum (addendum §1.2), for the tensor-family tests.

Dimensions are tiny; what matters is which config fields switch a tensor family on (MoE, PLE, MLA V4 with
CSA/HCA layers and an indexer, hyper-connections, MTP, T5Gemma stacks, Gemma 4 ViT, Qwen3 lm_head).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from sbs_tools.config import LayerConfig, ModelConfig, VitConfig
from sbs_tools.tensors import F32_ONLY, canonical_tensors
from sbs_tools.toc import TocRecord
from sbs_tools.types import Type
from sbs_tools.writer import write_model

D, V, SEQ = 32, 64, 128
BASE = LayerConfig(model_dim=D, ff_hidden_dim=64, heads=2, kv_heads=1, qkv_dim=32, post_norm=1, use_qk_norm=True)


def _gemma4_layers(n: int, ple: int, moe: int = 0) -> list[LayerConfig]:
    out = []
    for i in range(n):
        glob = i % 3 == 2
        lc = replace(BASE, kv_heads=2 if glob and moe else 1, qkv_dim=64 if glob else 32, post_qk=8, norm_v=True,
                     ple_dim=ple, num_experts=moe, num_experts_per_datapoint=2 if moe else 0)
        if ple and i == 3:  # a later local layer shares the KV cache of an earlier local one
            lc = replace(lc, kv_share_layer_idx=1)
        out.append(lc)
    return out


def _vit() -> VitConfig:
    lc = LayerConfig(model_dim=32, ff_hidden_dim=64, heads=2, kv_heads=2, qkv_dim=16, type=3, use_qk_norm=True,
                     post_norm=1)
    return VitConfig(model_dim=32, seq_len=64, patch_width=4, image_size=32, layer_configs=[lc, lc], pool_dim=2)


def _deepseek_layers() -> list[LayerConfig]:
    mla = replace(BASE, type=2, heads=4, kv_heads=1, qkv_dim=32, post_norm=0, use_qk_norm=False, activation=1,
                  optimized_gating=False, kv_lora_rank=24, q_lora_rank=32, rope_head_dim=8, v_head_dim=32,
                  o_lora_rank=16, o_groups=2, num_experts=4, num_experts_per_datapoint=2, num_shared_experts=1,
                  router_score=3, route_scale=1.5, swiglu_limit=10.0, use_routing_bias=True)
    dense = replace(mla, hash_routing=True, use_routing_bias=False)
    csa = replace(mla, attention_variant=1, kv_compression_rate=4, indexer_heads=2, indexer_head_dim=16,
                  indexer_top_k=8)
    hca = replace(mla, attention_variant=2, kv_compression_rate=128)
    return [dense, csa, hca]


def tiny_config(model: int) -> ModelConfig:
    """A small config with the tensor-relevant structure of ``model`` (20..32, not CUSTOM)."""
    kw: dict = {}
    if model in (20, 21, 22):  # Gemma 3 text only
        layers = [BASE] * 3
    elif model == 23:  # Gemma 4 26B MoE
        layers = _gemma4_layers(3, 0, moe=4)
        kw = dict(model_family_version=4, query_scale=2, use_global_timescale=True, partial_rotary_factor=0.25)
    elif model in (24, 30, 31, 32):  # Gemma 4 E2B / E4B (+ ViT)
        layers = _gemma4_layers(4, 8)
        kw = dict(model_family_version=4, query_scale=2, ple_dim=8, use_global_timescale=True)
        if model in (24, 31):
            kw["vit_config"] = _vit()
    elif model == 25:  # DeepSeek V4 Flash
        layers = _deepseek_layers()
        kw = dict(hc_mult=4, num_mtp_layers=1, compress_rope_theta=160000.0, global_rope_theta=1e4)
    elif model == 26:  # T5Gemma S/S
        layers = [replace(BASE, use_qk_norm=False, optimized_gating=False)] * 2
        kw = dict(is_encoder_decoder=True, encoder_num_layers=2, encoder_layer_configs=layers,
                  encoder_attention_window_sizes=[64, SEQ], decoder_num_layers=2, decoder_layer_configs=layers,
                  decoder_attention_window_sizes=[64, SEQ], wrapping=1)
    elif model in (27, 28, 29):  # Qwen3
        layers = [replace(BASE, post_norm=0, activation=1, optimized_gating=False)] * 3
        kw = dict(use_global_timescale=True, rope_theta=1e6)
    else:
        raise ValueError(model)
    windows = [SEQ if model in (25, 27, 28, 29) or i % 2 else 64 for i in range(len(layers))]
    kw.setdefault("wrapping", 0)
    return ModelConfig(model=model, weight=int(Type.BF16), num_layers=len(layers), model_dim=D, vocab_size=V,
                       max_seq_len=SEQ, layer_configs=list(layers), attention_window_sizes=windows, **kw)


#: LayerConfig / ModelConfig fields that are sizes (shrunk by :func:`shrink`); head, group and indexer-head
#: counts stay as they are.
_SIZES = ("model_dim", "ff_hidden_dim", "qkv_dim", "kv_lora_rank", "q_lora_rank", "rope_head_dim", "v_head_dim",
          "o_lora_rank", "indexer_head_dim", "ple_dim")


def _small(v: int) -> int:
    return max(1, v // 64) if v else 0


def _shrink_layer(lc: LayerConfig) -> LayerConfig:
    kw = {n: _small(getattr(lc, n)) for n in _SIZES}
    if lc.num_experts:
        kw.update(num_experts=2, num_experts_per_datapoint=min(lc.num_experts_per_datapoint, 2))
    return replace(lc, **kw)


def shrink(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with every size divided by 64, a 64-token vocabulary and two experts per MoE layer: the same
    layers, per-layer rules (KV sharing, attention variants, global layers) and tensor families, at a few MB."""
    lay = {k: [_shrink_layer(lc) for lc in getattr(cfg, k)]
           for k in ("layer_configs", "encoder_layer_configs", "decoder_layer_configs")}
    vit = replace(cfg.vit_config, model_dim=_small(cfg.vit_config.model_dim),
                  layer_configs=[_shrink_layer(lc) for lc in cfg.vit_config.layer_configs])
    return replace(cfg, model_dim=_small(cfg.model_dim), vocab_size=64, ple_dim=_small(cfg.ple_dim), vit_config=vit,
                   **lay)


def bf16(rows: int, cols: int, seed: int) -> bytes:
    x = np.random.default_rng(seed).standard_normal(rows * cols).astype(np.float32) * 0.05
    return (x.view(np.uint32) >> 16).astype("<u2").tobytes()


def family_tensors(cfg: ModelConfig, extra: tuple[str, ...] = ()) -> list[tuple[TocRecord, bytes]]:
    """Exactly what the config prescribes (required tensors + the fused form of each choice), plus ``extra``
    optional tensors by name."""
    from sbs_tools.tensors import expected_tensors
    specs = canonical_tensors(cfg) + [t for t in expected_tensors(cfg) if t.name in extra]
    out = []
    for i, t in enumerate(specs):
        if t.types == F32_ONLY:
            data = (np.random.default_rng(i).standard_normal(t.rows * t.cols) * 0.05).astype("<f4").tobytes()
            out.append((TocRecord.make(t.name, Type.F32, t.rows, t.cols), data))
        else:
            out.append((TocRecord.make(t.name, Type.BF16, t.rows, t.cols), bf16(t.rows, t.cols, i)))
    return out


def write_family_model(path, cfg: ModelConfig, *, drop: str | None = None, reshape: str | None = None,
                       extra: tuple[str, ...] = ()):
    tensors = []
    for rec, data in family_tensors(cfg, extra):
        if rec.name == drop:
            continue
        if rec.name == reshape:
            rec, data = TocRecord.make(rec.name, Type.BF16, rec.rows + 1, rec.cols), bf16(rec.rows + 1, rec.cols, 0)
        tensors.append((rec, data))
    write_model(path, cfg, tensors, None, overwrite=True)
    return path
