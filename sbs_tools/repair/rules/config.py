"""Rules for the config: where it comes from, and the values the tensors determine.

:func:`config_source` runs once (it may replace the config); :func:`fix_config`
is state-driven and runs again while the simulated output still reports
``config-invalid``, ``shape-mismatch`` or ``vocab-mismatch``.
"""
from __future__ import annotations

import copy

from ...canonical import canonical_config
from ...config import VIT_TYPE, ModelConfig
from ...errors import SbsError
from ...tensors import VIT_LAYER_BASES, by_name, expected_tensors, split_name
from ...types import Type
from ..actions import size_ok, weight_type
from ..context import Ctx
from ..migrate import deduce_from_names
from .dims import fix_layer_dims, period, piece_count, uniform


def config_source(p: Ctx) -> None:
    """The config to write: --config-from/--model, else the file's own, else the canonical config of a
    published model size deduced from the layer count (as gemma.cpp does)."""
    a, s, o = p.a, p.s, p.opts
    if o.config is not None and s.config is not None and o.config == s.config and not a.config_error:
        pass  # same config: nothing to replace
    elif o.config is not None and not p.migrated:
        fixes = [("config-missing", None), ("config-undecodable", None), ("config-invalid", None)]
        what = "replace the config" if "config" in a.chosen else "add the config"
        s.config = copy.deepcopy(o.config)
        s.config_dirty = True
        p.act("set-config", f"{what} from {o.config_source}", *fixes, source=o.config_source)
        try:
            specs = by_name(expected_tensors(s.config))
        except Exception:  # noqa: BLE001
            specs = {}
        bad = [(r, specs[p.tensor_name(r.name)]) for r in s.toc or []
               if p.tensor_name(r.name) in specs and (r.rows, r.cols) != specs[p.tensor_name(r.name)].shape]
        if bad:
            r, spec = bad[0]
            p.refuse("shape-mismatch", None, f"the config from {o.config_source} does not describe these "
                     f"tensors: {len(bad)} disagree, e.g. {r.name} is {r.rows} x {r.cols} but that config "
                     f"implies {spec.rows} x {spec.cols}", forceable=False)
    elif s.config is None and not p.migrated:
        if a.config_error is not None:
            code = a.config_error.code if a.config_error.code in ("config-undecodable", "config-invalid") \
                else "config-undecodable"
            p.refuse(code, "config", f"the config cannot be decoded ({a.config_error.message}); pass "
                     "--config-from OTHER.sbs or --model NAME", forceable=False)
            return
        cfg, why = deduce_config(p)
        if cfg is None:
            p.refuse("config-missing", "config", f"the file has no config and {why}; pass --config-from "
                     "OTHER.sbs or --model NAME", forceable=False)
            return
        s.config, s.config_dirty = cfg, True
        p.act("add-config", f"add the canonical config of {why}", ("config-missing", None))


def deduce_config(p: Ctx) -> tuple[ModelConfig | None, str]:
    """Canonical config from the layer count, checked against every toc shape."""
    model, layers = deduce_from_names(p, [p.tensor_name(b.key) for b in p.s.blobs if b.kind == "tensor"])
    if not model:
        return None, f"its {layers} layers match no model gemma.cpp knows"
    recs = {r.name: r for r in (p.s.toc or [])}
    wt = weight_type(list(recs.values())) or Type.BF16
    try:
        cfg = canonical_config(model, wt, generation=p.target.key if p.target else None)
    except SbsError as e:
        return None, e.message
    specs = by_name(expected_tensors(cfg))
    bad = [n for n, r in recs.items() if n in specs and (r.rows, r.cols) != specs[n].shape]
    if bad:
        return None, f"the deduced {cfg.model_name} does not match the tensor shapes ({bad[0]})"
    return cfg, f"{cfg.model_name} (deduced from {layers} layers, as gemma.cpp does)"


def llm_layers_in_file(p: Ctx) -> int | None:
    """1 + the highest LLM layer number among the tensor keys."""
    names = [b.key for b in p.s.blobs if b.kind == "tensor"]
    idx = [split_name(n)[1] for n in names]
    idx = [i for n, i in zip(names, idx) if i is not None and split_name(n)[0] not in VIT_LAYER_BASES]
    return max(idx) + 1 if idx else None


def fix_config(p: Ctx) -> None:
    """Config values the rest of the file determines: layer counts, window sizes, layer types, wrapping,
    vocab_size (c_embedding rows), and layer dims (:func:`.dims.fix_layer_dims`)."""
    if p.s.config is None:
        return
    try:
        p.specs = by_name(expected_tensors(p.s.config))
    except Exception:  # noqa: BLE001 - absurd dims
        p.specs = {}
    cfg = p.s.config
    L = llm_layers_in_file(p)
    n, nl = cfg.num_layers, len(cfg.layer_configs)
    changed = []
    if n != nl:
        if L is not None and nl == L:
            cfg.num_layers = L
            changed.append(f"num_layers {n} -> {L} (layer_configs and the tensors both have {L} layers)")
        elif L is not None and n == L and uniform(cfg.layer_configs):
            cfg.layer_configs = [copy.deepcopy(cfg.layer_configs[0]) for _ in range(L)]
            changed.append(f"layer_configs resized {nl} -> {L} (all entries identical; num_layers and the "
                           f"tensors say {L})")
        else:
            p.refuse("config-invalid", "config", f"num_layers is {n}, layer_configs has {nl} entries and "
                     f"the tensors have {L} layers: which side is right is ambiguous", forceable=False)
            return
    want = cfg.num_layers
    w = cfg.attention_window_sizes
    if len(w) != want:
        per = period(w)
        if per is not None:
            cfg.attention_window_sizes = [w[i % per] for i in range(want)]
            changed.append(f"attention_window_sizes resized {len(w)} -> {want} following its repeating "
                           f"pattern of {per}")
        else:
            p.refuse("config-invalid", "config", f"attention_window_sizes has {len(w)} entries for {want} "
                     "layers and no repeating pattern says which windows are meant", forceable=False)
    for i, lc in enumerate(cfg.layer_configs):
        if lc.type != 0:
            changed.append(f"layer_configs[{i}].type {lc.type} -> 0 (an LLM layer is kGemma)")
            lc.type = 0
    vit_num = VIT_TYPE[cfg.schema_revision]
    if p.a.config_lenient:
        p.plan.notes.append("the config decodes only when layer types are read by position (a ViT layer "
                            "type that is invalid in the config's own numbering)")
    for i, lc in enumerate(cfg.vit_config.layer_configs):
        # In the May-2025 numbering 1 is a Griffin layer; in the current one 2 is renumbered below.
        if lc.type != vit_num and not (cfg.schema_revision == "2025-10" and lc.type == 2):
            changed.append(f"vit_config.layer_configs[{i}].type {lc.type} -> kVit (its position says ViT)")
            lc.type = vit_num
    if cfg.model in (10, 11, 12, 13) and cfg.wrapping == 2:
        cfg.wrapping = 3
        changed.append("wrapping 2 -> 3 (PALIGEMMA was 2 before 2025-03-11; 2 is now GEMMA_VLM)")
    emb = p.s.record("c_embedding")
    if emb is not None and emb.cols == cfg.model_dim and emb.rows != cfg.vocab_size:
        b = p.s.find("c_embedding")
        pieces = piece_count(p.opts.tokenizer or (p.a.tokenizer if p.a.tokenizer_status == "ok" else None))
        if b is not None and size_ok(emb, b.size) and (pieces is None or pieces <= emb.rows):
            changed.append(f"vocab_size {cfg.vocab_size} -> {emb.rows} (the rows of c_embedding, whose "
                           "blob size confirms them" + (f", and the tokenizer's {pieces} pieces fit"
                                                        if pieces else "") + ")")
            cfg.vocab_size = emb.rows
        elif b is not None and pieces is not None and pieces > emb.rows:
            p.refuse("vocab-mismatch", "c_embedding", f"c_embedding has {emb.rows} rows but the tokenizer "
                     f"has {pieces} pieces (config.vocab_size {cfg.vocab_size}): the embedding is "
                     "incomplete or belongs to another model", forceable=True)
    dims = fix_layer_dims(p)
    changed += dims
    if changed:
        p.s.config_dirty = True
        p.specs = by_name(expected_tensors(cfg))
        fixes = [("config-invalid", None), ("vocab-mismatch", "c_embedding")]
        if dims:
            fixes.append(("shape-mismatch", None))
        p.act("fix-config", "; ".join(changed), *fixes)
