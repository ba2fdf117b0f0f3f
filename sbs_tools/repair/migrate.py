"""Pre-2025 multi-file files <-> single-file files (what gemma.cpp's ``migrate_weights`` does, without its bugs).

Pre-2025 files (era E0, spec §0) hold type-prefixed tensor blobs
(``$att_ein_0``: SFP), an optional ``Fscales`` array and nothing else: the
model, weight type and tokenizer were command-line flags. Migration
(:func:`migrate_pre2025`):

* config: ``--config-from OTHER.sbs`` / ``--model NAME``, else gemma.cpp's own
  deduction from the keys (``DeduceModel``, by the target generation's rules,
  :mod:`sbs_tools.deduce`) with its canonical config;
  either way every tensor's blob size must match the shape the config implies;
* keys: the prefix is dropped; the prefix gives the element type;
* toc: one record per tensor (name, type, config shape, packed, stride = cols),
  scales from ``Fscales`` assigned the way gemma.cpp consumes them (tensors
  whose base name is in ``config.scale_base_names``, per-model tensors first,
  then layers ascending, within a layer att_ein, qkv_ein, gating_ein,
  linear_w; only tensors present in the file);
* tokenizer: ``--tokenizer``, else the ``unavailable`` placeholder;
* output: gemma.cpp's single-file layout, tensors in their original order,
  then ``config``, ``tokenizer``, ``toc`` (V2 unless ``--layout v1``).

Unlike gemma.cpp's ``migrate_weights`` (spec §9), the tensors are copied
byte for byte: no ``att_w`` is derived (its row-padded copy is corrupt in
gemma.cpp's output), and ``qkv_ein`` / ``gating_ein`` are not split.

:func:`to_pre2025` is the reverse, for ``--target pre-2025``.
"""
from __future__ import annotations

import copy

import numpy as np

from ..canonical import SCALE_BASE_NAMES, canonical_config
from ..config import ModelConfig
from ..errors import SbsError
from ..deduce import GENERATION_RULES, deduce_weight_type, for_generation
from ..sbsfile import TYPE_PREFIX
from ..tensors import by_name, expected_tensors
from ..toc import TocRecord
from ..types import Type, packed_bytes
from .actions import OutBlob, weight_type
from .analyze import strip_prefix
from .targets import get_target

#: Prefixes pre-2025 readers know ("I" and "4" were never written to pre-2025 files; 2026 readers know them).
PREFIX_OF = {t: c for c, t in TYPE_PREFIX.items() if t not in (Type.I8, Type.Q4_0)}


def _scale_consumers(cfg, present: set[str]) -> list[str]:
    bases = set(cfg.scale_base_names or SCALE_BASE_NAMES)
    return [t.name for t in expected_tensors(cfg) if t.base in bases and t.name in present]


def deduced_config(p, weight: Type) -> tuple[ModelConfig | None, str]:
    """The canonical config of the model gemma.cpp deduces from the input's keys (``DeduceModel``), by the
    rules of the repair's target generation (current gemma.cpp without a target), and how it was found."""
    g = p.target.key if p.target is not None and GENERATION_RULES[p.target.key] else get_target("current").key
    d = for_generation(g, [(b.key, b.size) for b in p.s.blobs], str(p.a.path))[-1]
    if not d.model:
        return None, f"gemma.cpp {g} deduces no model from its keys ({d.basis})"
    try:
        cfg = canonical_config(d.model, weight, generation=p.target.key if p.target is not None else None)
    except SbsError as e:
        return None, f"gemma.cpp {g} deduces {d.name} from its keys ({d.basis}), but {e.message}"
    return cfg, f"{cfg.model_name} (deduced from {d.basis}, as gemma.cpp {g} does)"


def _deduce(p, types: dict[str, Type]) -> tuple[ModelConfig | None, str]:
    cfg, why = deduced_config(p, deduce_weight_type(types.values()) or Type.BF16)
    return cfg, (f"the canonical config of {why}" if cfg is not None else why)


def migrate_pre2025(p) -> None:
    """Turn the planner's pre-2025 state into a single-file state (see module doc)."""
    a, s, o = p.a, p.s, p.opts
    tensors = [b for b in s.blobs if b.kind == "tensor"]
    types: dict[str, Type] = {}
    for b in tensors:
        st = strip_prefix(b.key)
        if st is None:
            continue
        if st[1] in types:
            p.refuse("duplicate-key", st[1], f"two pre-2025 blobs become {st[1]!r} without their type prefix",
                     forceable=False)
            return
        types[st[1]] = st[0]
    if o.config is not None:
        cfg, source = copy.deepcopy(o.config), f"the config of {o.config_source}"
    else:
        cfg, source = _deduce(p, types)
        if cfg is None:
            p.refuse("pre-2025-format", None, f"pre-2025 file without a config: {source}; pass --config-from "
                     "OTHER.sbs (a file of the same architecture) or --model NAME", forceable=False)
            return
    specs = by_name(expected_tensors(cfg))
    present = set(types)
    consumers = _scale_consumers(cfg, present)
    scales, scale_note = _assign_scales(p, consumers)
    if scales is None:
        p.refuse("scales-invalid", a.scales_key, scale_note, forceable=False)
        return
    records = []
    keep = []
    for b in s.blobs:
        if b.kind == "scales":
            continue
        st = strip_prefix(b.key)
        if b.kind != "tensor" or st is None:
            keep.append(b)
            continue
        name, t = st[1], st[0]
        spec = specs.get(name)
        if spec is None:
            p.refuse("unexpected-tensor", b.key, f"{b.key}: {source} has no tensor {name}, so its shape is "
                     "unknown (--partial leaves it out)")
            p.dropped[name] = "unknown to the config"
            continue
        want = packed_bytes(t, spec.rows * spec.cols)
        if want != b.size:
            p.refuse("tensor-size-mismatch", b.key, f"{b.key}: {t.name} {spec.rows} x {spec.cols} (from "
                     f"{source}) needs {want} bytes, the blob has {b.size}: the config does not describe these "
                     "weights", forceable=False)
            continue
        p.renamed[name] = b.key
        b.key = name
        keep.append(b)
        records.append(TocRecord.make(name, t, spec.rows, spec.cols, scales.get(name, 1.0)))
    dropped_scales = [b for b in s.blobs if b.kind == "scales"]
    for b in dropped_scales:
        p.dropped[b.key] = "scales moved into the toc"
    s.blobs = keep
    s.invalidate()
    s.toc, s.toc_dirty = records, True
    s.config, s.config_dirty = cfg, True
    w = weight_type(records)
    if w is not None:
        cfg.weight = int(w)
    s.single_file = True
    s.pad_end = True
    s.tokenizer = o.tokenizer  # None: "unavailable"
    p.specs = specs
    p.migrated = True
    n_scaled = sum(1 for v in scales.values() if v != 1.0)
    p.act("migrate-pre-2025",
          f"convert the pre-2025 multi-file format to single-file: strip the type prefixes of {len(records)} "
          f"tensors, config from {source}, toc synthesized (shapes from the config, types from the prefixes, "
          f"{len(consumers)} scales from {a.scales_key or 'nothing (no scales blob: all 1.0)'}"
          f"{', ' + str(n_scaled) + ' of them != 1' if n_scaled else ''}), "
          + ("tokenizer from " + o.tokenizer_path if o.tokenizer is not None else
             "no tokenizer (pass --tokenizer to embed one)"),
          ("pre-2025-format", None), ("legacy-only", None), source=source)
    if scale_note:
        p.plan.notes.append(scale_note)


def _assign_scales(p, consumers: list[str]) -> tuple[dict[str, float] | None, str]:
    a = p.a
    if a.scales is None:
        return {}, ""
    vals = np.asarray(a.scales, dtype=np.float32)
    n, k = len(consumers), int(vals.size)
    note = ""
    if a.scales_key == "scales":
        note = ("the scales are in a blob named 'scales' (writers of April-May 2025 misspelt 'Fscales'); "
                "gemma.cpp ignores that blob and runs the tensors unscaled, repair applies the scales as the "
                "writer intended")
    if k < n:
        return None, (f"{a.scales_key} holds {k} scales but {n} tensors take one: which tensor each scale belongs "
                      "to is ambiguous")
    if k == 4 * n and n:
        note += ("; " if note else "") + (f"{a.scales_key} is 4x too long ({k} floats for {n} tensors), the "
                                          "known bug of compress_weights from October 2024: the first "
                                          f"{n} are used, as gemma.cpp does")
    elif k > n:
        note += ("; " if note else "") + (f"{a.scales_key} holds {k} scales for {n} tensors: the first {n} are "
                                          "used, in gemma.cpp's order (gemma.cpp aborts at exit because the rest "
                                          "are unused)")
    bad = [c for c, v in zip(consumers, vals[:n]) if not np.isfinite(v) or v <= 0]
    if bad:
        return None, f"{a.scales_key} gives {bad[0]} a scale that is not a positive number"
    return {c: float(v) for c, v in zip(consumers, vals[:n])}, note


def to_pre2025(p) -> None:
    """Rewrite the planner's single-file state in the pre-2025 multi-file format (``--target pre-2025``)."""
    s = p.s
    if s.config is None or s.toc is None:
        p.refuse("config-missing", None, "converting to the pre-2025 format needs the config and toc",
                 forceable=False)
        return
    recs = {r.name: r for r in s.toc}
    consumers = _scale_consumers(s.config, set(recs))
    bad_scale = [n for n, r in recs.items() if n not in consumers and r.scale != 1.0]
    if bad_scale:
        p.refuse("scale-invalid", bad_scale[0], f"{bad_scale[0]} has scale {recs[bad_scale[0]].scale:g}, which the "
                 "pre-2025 format cannot hold (Fscales only covers " + ", ".join(s.config.scale_base_names
                                                                                 or SCALE_BASE_NAMES) + ")",
                 forceable=False)
        return
    for b in s.blobs:
        r = recs.get(b.key)
        if r is None:
            continue
        prefix = PREFIX_OF.get(Type(r.type)) if r.type in Type._value2member_map_ else None
        if prefix is None:
            p.refuse("type-unsupported", b.key, f"{b.key} is {Type(r.type).name}: the pre-2025 format has no key "
                     "prefix for it (F32, BF16, SFP, NUQ only)", forceable=False)
            return
        if len(b.key) + 1 > 16:
            p.refuse("bad-key", b.key, f"{prefix}{b.key} is longer than 16 characters", forceable=False)
            return
        p.renamed[prefix + b.key] = p.renamed.pop(b.key, b.key)
        b.key = prefix + b.key
    s.invalidate()
    scales = np.array([recs[c].scale for c in consumers], dtype="<f4")
    s.blobs = [b for b in s.blobs if b.kind != "scales"]
    if len(scales):
        s.blobs.append(OutBlob("Fscales", "scales", data=scales.tobytes()))
    s.single_file = False
    s.pad_end = False
    s.config = s.toc = None
    s.config_raw = s.toc_raw = None
    s.tokenizer = None
    p.act("export-pre-2025", f"write the pre-2025 multi-file format: type-prefixed keys, Fscales with "
          f"{len(scales)} scales, no config/toc/tokenizer, V1 ending right after the last blob (give gemma.cpp "
          "the model, weight type and tokenizer on the command line)")
    p.plan.notes.append("pre-2025 gemma.cpp deduces the model from the layer count and uses the canonical config: "
                        "only files of the published model sizes load")
