"""Rules that shape the output for its reader: tokenizer, config.weight, the target generation, layout."""
from __future__ import annotations

import copy

from ...errors import SbsError
from ...types import type_name
from ..actions import weight_type
from ..context import Ctx


def tokenizer(p: Ctx) -> None:
    """Embed ``--tokenizer``; without it a damaged tokenizer is a refusal."""
    a, s, o = p.a, p.s, p.opts
    if p.migrated:
        return  # the migration embedded --tokenizer already
    if o.tokenizer is not None:
        if a.tokenizer == o.tokenizer:
            return
        what = {"absent": "embed", "mock": "embed", "invalid": "replace the damaged tokenizer with",
                "lost": "replace the unrecoverable tokenizer with", "ok": "replace the tokenizer with"}
        s.tokenizer = o.tokenizer
        p.act("embed-tokenizer", f"{what[a.tokenizer_status]} {o.tokenizer_path} ({len(o.tokenizer)} bytes)",
              ("tokenizer-missing", None), ("tokenizer-invalid", None), ("vocab-mismatch", "tokenizer"))
        return
    if a.tokenizer_status in ("invalid", "lost"):
        p.refuse("tokenizer-invalid", "tokenizer", f"the embedded tokenizer is damaged "
                 f"({a.tokenizer_error}); pass --tokenizer FILE.spm (--partial keeps it as it is)")


def weight(p: Ctx) -> None:
    """config.weight := the smallest-TypeBits toc type, which gemma.cpp asserts."""
    s = p.s
    if s.config is None or not s.toc:
        return
    w = weight_type(s.toc)
    if w is not None and w != s.config.weight:
        old = s.config.weight_name
        s.config.weight = int(w)
        s.config_dirty = True
        p.act("set-weight-type", f"config.weight {old} -> {type_name(w).lower()} (the smallest tensor type, "
              "which gemma.cpp asserts)", ("weight-type-mismatch", None))


def target_config(p: Ctx) -> None:
    """What the target generation needs of the config: its ViT layer type number, a model and tensor types
    it knows, and a config it can encode."""
    s, t = p.s, p.target
    cfg = s.config
    if cfg is None:
        return
    want_vit = t.vit_type if t is not None else 1
    have = {lc.type for lc in cfg.vit_config.layer_configs}
    if have and have != {want_vit} and t is None:
        trial = copy.deepcopy(cfg)
        for lc in trial.vit_config.layer_configs:
            lc.type = want_vit
        trial.schema_revision = "2025-10"
        try:
            trial.to_bytes()
        except SbsError as e:
            # auto: current gemma.cpp could not read it anyway (e.g. an obsolete model): keep the file
            # for the generation that reads it.
            p.plan.notes.append(f"ViT layer types left at {sorted(have)}: renumbering would not make it "
                                f"loadable by current gemma.cpp ({e.message}); the file is kept for the "
                                "generation that reads it")
            have = {want_vit}
    if have and have != {want_vit}:
        for lc in cfg.vit_config.layer_configs:
            lc.type = want_vit
        cfg.schema_revision = "2025-10" if want_vit == 1 else "2025-05"
        s.config_dirty = True
        when = ("gemma.cpp since 2025-09-05 reads kVit as 1" if want_vit == 1 else
                "gemma.cpp before 2025-09-05 reads kVit as 2")
        p.act("renumber-vit", f"ViT layer type {', '.join(map(str, sorted(have)))} -> {want_vit} in "
              f"{len(cfg.vit_config.layer_configs)} ViT layer configs ({when})", ("legacy-only", None),
              ("config-invalid", None))
    if t is not None:
        if cfg.model >= t.max_model or (t.schema == "2025-10" and cfg.model in (1, 2, 5, 6, 8, 9)):
            p.refuse("legacy-only", "config", f"model {cfg.model_name} does not exist for {t.label}",
                     forceable=False)
        bad = [r.name for r in (s.toc or []) if r.type > t.max_type]
        if bad or cfg.weight > t.max_type:
            p.refuse("type-unsupported", bad[0] if bad else "config",
                     f"{len(bad)} tensors use a type {t.label} does not know (e.g. {bad[0] if bad else ''}"
                     f" {type_name(s.record(bad[0]).type) if bad else ''}); converting them means "
                     "re-encoding, which repair never does", forceable=False)
    try:
        cfg.to_bytes()
    except SbsError as e:
        p.refuse("config-invalid", "config", f"the config cannot be written for this target: {e.message}",
                 forceable=False)


def layout(p: Ctx) -> None:
    """V1 or V2: --layout, else the target's, else V2 for a migration, else the input's."""
    s, t, o = p.s, p.target, p.opts
    want = o.layout or (t.layout if t is not None else None) or \
        ("v2" if p.migrated else p.a.layout)
    if s.single_file:
        s.pad_end = True
    if want != p.a.layout:
        why = {"v1": "gemma.cpp before 2025-07-31 reads only V1", "v2": "the layout gemma.cpp writes since "
               "2025-07-31"}[want]
        p.act("convert-layout", f"{p.a.layout.upper()} -> {want.upper()} ({why})", ("legacy-only", None))
    s.layout = want
    if not s.single_file and s.layout == "v2":
        p.refuse("legacy-only", None, "the pre-2025 multi-file format exists only as V1", forceable=False)
