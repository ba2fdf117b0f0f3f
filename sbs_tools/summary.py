"""At-a-glance facts about an opened file (what ``sbs inspect`` shows)."""
from __future__ import annotations

from collections import Counter
from typing import Any

from .sbsfile import ERA_DESCRIPTIONS, SbsFile


def summarize(f: SbsFile) -> dict[str, Any]:
    """Model identity, layout, layer counts by type, dims and bytes per element type."""
    cfg = f.config
    by_type: Counter[str] = Counter()
    count_by_type: Counter[str] = Counter()
    for t in f.tensors.values():
        by_type[t.type_name] += t.bytes
        count_by_type[t.type_name] += 1
    s: dict[str, Any] = {
        "path": f.path,
        "file_bytes": f.file_bytes,
        "layout": f.layout,
        "format": f.format,
        "era": f.era,
        "era_description": ERA_DESCRIPTIONS[f.era],
        "num_blobs": len(f.directory.entries),
        "num_tensors": len(f.tensors),
        "tensor_bytes": sum(t.bytes for t in f.tensors.values()),
        "bytes_by_type": dict(by_type.most_common()),
        "tensors_by_type": dict(count_by_type.most_common()),
    }
    tok = f.tokenizer_size()
    s["tokenizer"] = {"present": tok > 0, "bytes": tok}
    if cfg is not None:
        layer_types = Counter(cfg.layer_type_name(lc.type) for lc in cfg.layer_configs)
        vit_types = Counter(cfg.layer_type_name(lc.type) for lc in cfg.vit_config.layer_configs)
        l0 = cfg.layer_configs[0] if cfg.layer_configs else None
        s.update({
            "model": cfg.model_name,
            "display_name": cfg.display_name,
            "specifier": cfg.specifier,
            "family": cfg.family,
            "weight": cfg.weight_name,
            "wrapping": cfg.wrapping_name,
            "schema_revision": cfg.schema_revision,
            "num_layers": cfg.num_layers,
            "layers_by_type": dict(layer_types),
            "vit_layers": len(cfg.vit_config.layer_configs),
            "vit_layers_by_type": dict(vit_types),
            "model_dim": cfg.model_dim,
            "vocab_size": cfg.vocab_size,
            "max_seq_len": cfg.max_seq_len,
            # Over the stored windows, not range(num_layers): num_layers is a raw u32 from the file.
            "global_layers": [i for i in range(min(cfg.num_layers, len(cfg.attention_window_sizes)))
                              if cfg.is_global_layer(i)],
        })
        if l0 is not None:
            s.update({"heads": l0.heads, "kv_heads": l0.kv_heads, "qkv_dim": l0.qkv_dim,
                      "ff_hidden_dim": l0.ff_hidden_dim})
        if cfg.vit_config.layer_configs:
            v = cfg.vit_config
            s["vit"] = {"model_dim": v.model_dim, "seq_len": v.seq_len, "patch_width": v.patch_width,
                        "image_size": v.image_size}
    if cfg is not None:
        from .canonical import rope_discrepancy, vision_discrepancy, vit_pool_grid_problem

        pool = vit_pool_grid_problem(cfg)
        timescale = None
        if cfg.needs_global_timescale:
            timescale = (f"use_global_timescale is missing or false: gemma.cpp since 2025-10-24 (1bdde1a) runs the "
                         f"global layers of {cfg.model_name} with RoPE base 1e4 instead of 1e6 (silently); "
                         "`sbs repair --target current` sets it")
        s["notes"] = [n for n in (rope_discrepancy(cfg), timescale, pool and pool[0].upper() + pool[1:] + ".",
                                  vision_discrepancy(cfg)) if n]
    if cfg is None and f.era == "pre-2025":
        s["deduced"] = deduced_model(f)
    s["problems"] = [{"code": p.code, "severity": p.severity, "message": p.message, **p.location()}
                     for p in f.problems]
    return s


def deduced_model(f: SbsFile) -> dict[str, Any]:
    """What current gemma.cpp assumes for a file without a config (``DeduceModel``, ``DeduceWeightType``);
    ``sbs verify`` says what each older generation assumes."""
    from .deduce import GENERATION_RULES, deduce_weight_type, for_generation
    from .types import type_name

    current = list(GENERATION_RULES)[-1]
    blobs = [(e.key, e.size) for e in f.directory.entries]
    d = for_generation(current, blobs, str(f.path))[-1]
    weight = deduce_weight_type(t.type for t in f.tensors.values())
    return {"model": d.name if d.model else "UNKNOWN", "basis": d.basis, "generation": current,
            "weight": type_name(weight) if weight is not None else None}
