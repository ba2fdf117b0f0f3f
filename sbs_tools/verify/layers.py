"""Per-layer checks: does every LLM and ViT layer have the tensors its layer type needs?

The rules come from :mod:`sbs_tools.tensors` (derived from the config only).
Each finding names the tensor, the layer index and the layer type (kGemma
for ``config.layer_configs[i]``, kVit for ``config.vit_config.layer_configs[i]``).
"""
from __future__ import annotations

from ..config import ModelConfig
from ..sbsfile import TYPE_PREFIX, SbsFile, TensorInfo
from ..tensors import (F32_ONLY, GEMMA, GEMMA_LAYER_BASES, MODEL_TENSOR_NAMES, PRE2025_GEMMA_REQUIRED,
                       REGISTERED_UNUSED, VIT, VIT_GEMMA4_LAYER_BASES, VIT_LAYER_BASES, WEIGHT_TYPES, Choice, TensorSpec, choices,
                       expected_tensors, split_name)
from ..types import BLOCK_TYPES, NON_WEIGHT_TYPES, Type, type_name
from .findings import Finding, finding

#: What gemma.cpp prints when an exactly-one-of group has neither form (HEAD ``LayerWeightsPtrs::Fixup``).
_XOR_ASSERT = {
    "att": "Assert attn_vec_einsum_w.HasPtr() ^ att_weights.HasPtr()",
    "qkv": "Assert qkv_einsum_w.HasPtr() ^ qkv_einsum_w1.HasPtr()",
    "gating": "Assert gating_einsum_w.HasPtr() ^ gating_einsum_w1.HasPtr()",
}


def _xor_assert(key: str) -> str:
    """The Fixup assert of a choice group; T5Gemma (``e_``/``d_``/``dc_``) and ViT (``vit_``) groups use the same
    XOR checks on their own tensors."""
    kind = key.rsplit("_", 1)[0]
    if kind in _XOR_ASSERT:
        return _XOR_ASSERT[kind]
    for short in ("qkv", "att", "gat"):
        if short in kind:
            return _XOR_ASSERT["gating" if short == "gat" else short]
    return "exactly one of the forms"


def _shape(t: TensorSpec) -> str:
    return f"{t.rows} x {t.cols}"


def _loc(t: TensorSpec, info: TensorInfo | None = None) -> dict:
    return {"tensor": t.name, "layer": t.layer, "layer_type": t.layer_type,
            "offset": info.offset if info else None, "blob": info.key if info else None}


def _unlisted(names: list[str], f: SbsFile) -> list[str]:
    """Those of ``names`` whose blob is in the file although the toc has no record for them."""
    return [n for n in names if n in f.blobs and n not in f.tensors]


def _missing_hint(names: list[str], f: SbsFile, default: str) -> str:
    """The fix for missing tensors: `sbs repair` when the bytes are all there and only the toc records are not."""
    unlisted = _unlisted(names, f)
    if unlisted and len(unlisted) == len(names):
        return (f"the blob of {' + '.join(unlisted)} is in the file but the toc has no record for it: `sbs repair` "
                "restores the record (from the config's shape and the blob size)")
    return default


def _missing_choice(c: Choice, specs: dict[str, TensorSpec], f: SbsFile) -> Finding:
    kind = c.key.rsplit("_", 1)[0]
    alts = " or ".join(" + ".join(f"{n} ({_shape(specs[n])})" for n in form) for form in c.forms)
    msg = (f"layer {c.layer} ({c.layer_type}): missing {c.what}: need {alts}. gemma.cpp loads the file but aborts "
           f"when it prepares the weights ('{_xor_assert(c.key)}')")
    if kind == "att":
        msg += (" — the reshape of the attention einsum into att_weights; May-2025 builds fail the same way with "
                "'Assert att_weights.HasPtr()'")
    first = specs[c.forms[0][0]]
    form = next((form for form in c.forms if _unlisted(list(form), f) == list(form)), c.forms[0])
    return finding("missing-tensor", msg, **_loc(first),
                   hint=_missing_hint(list(form), f, f"re-export layer {c.layer} from the source checkpoint; the "
                                                      "tensor cannot be recreated from the others"))


def check_layers(f: SbsFile, cfg: ModelConfig) -> list[Finding]:
    """Missing / unexpected / wrongly shaped or typed tensors, per layer type."""
    out: list[Finding] = []
    tensors = f.tensors
    specs = expected_tensors(cfg)
    by_name = {t.name: t for t in specs}
    V, D = cfg.vocab_size, cfg.model_dim

    for t in specs:
        info = tensors.get(t.name)
        if info is None:
            if t.required:
                if t.base == "linear_w":
                    msg = (f"layer {t.layer} ({t.layer_type}): missing FFW down projection {t.name} ({_shape(t)}). "
                           "gemma.cpp (since 2025-05-29) loads the file without it and crashes when it runs the "
                           "feed-forward block; older builds abort 'Tensor ... is required but not found'")
                else:
                    msg = (f"{t.where}: missing {t.name} ({_shape(t)}, {t.meaning}): gemma.cpp aborts "
                           f"'Tensor {t.name} is required but not found'")
                out.append(finding("missing-tensor", msg, **_loc(t),
                                   hint=_missing_hint([t.name], f, "re-export the model from its source checkpoint")))
            continue
        if (info.rows, info.cols) != (t.rows, t.cols):
            if t.name == "c_embedding" and info.cols == D and info.rows != V:
                out.append(finding("vocab-mismatch",
                                   f"c_embedding has {info.rows} rows but config.vocab_size is {V}: gemma.cpp "
                                   "aborts ('Tensor c_embedding shape ... mismatches file')", **_loc(t, info),
                                   hint="the config and the weights come from different models (PaliGemma drops "
                                        "the 64 extra HF rows, 257216 -> 257152)"))
            else:
                out.append(finding("shape-mismatch",
                                   f"{t.where}: {t.name} is {info.rows} x {info.cols} but the config implies "
                                   f"{_shape(t)} ({t.meaning}); gemma.cpp aborts ('Tensor {t.name} shape ... "
                                   "mismatches file')", **_loc(t, info),
                                   hint="the config does not describe these weights; fix the config or "
                                        "re-export the tensor"))
        _check_type(t, info, out)
        if t.kind in ("norm", "bias", "layernorm") and info.scale != 1.0 and info.scale != 0.0:
            out.append(finding("scale-ignored",
                               f"{t.where}: {t.name} has scale {info.scale}, but gemma.cpp ignores the scale of "
                               f"{t.kind} tensors: its values are used as stored", **_loc(t, info),
                               hint="re-export the tensor with the scale multiplied into the values (BF16/F32)"))

    for c in choices(cfg):
        present = [[n in tensors for n in form] for form in c.forms]
        if all(present[0]):  # a companion beside the complete first form is no second form
            present = [present[0]] + [[here and n not in c.companions for n, here in zip(form, p)]
                                      for form, p in zip(c.forms[1:], present[1:])]
        complete = [i for i, p in enumerate(present) if all(p)]
        partial = [i for i, p in enumerate(present) if any(p) and not all(p)]
        if c.fused_only and 0 not in complete:
            t = by_name[c.forms[0][0]]
            other = [n for form in c.forms[1:] for n in form if n in tensors]
            instead = f" ({' + '.join(other)} present instead, which gemma.cpp does not accept here)" if other else ""
            out.append(finding("missing-tensor",
                               f"{t.where}: missing {t.name} ({_shape(t)}, {t.meaning}){instead}: gemma.cpp "
                               f"aborts 'Tensor {t.name} is required but not found'", **_loc(t),
                               hint=_missing_hint([t.name], f, "re-export the model from its source checkpoint")))
            continue
        if c.optional and not complete and not partial:
            continue
        if len(complete) + len(partial) >= 2 and complete:
            first, second = c.forms[0], c.forms[1]
            t = by_name[second[0]]
            out.append(finding(
                "both-forms",
                f"layer {c.layer} ({c.layer_type}): both {' + '.join(first)} and {' + '.join(second)} are present; "
                f"gemma.cpp since 2025-06-02 aborts ('{_xor_assert(c.key)}'). gemma.cpp's own "
                "migrate_weights writes files like this (and its att_w_N is corrupted by row padding)",
                **_loc(t, tensors.get(t.name)),
                hint=f"drop {' + '.join(second)} and keep {' + '.join(first)} (`sbs repair`)"))
        elif not complete and partial:
            for i in partial:
                for n, here in zip(c.forms[i], present[i]):
                    if not here:
                        other = [m for m in c.forms[i] if m != n]
                        out.append(finding(
                            "missing-tensor",
                            f"layer {c.layer} ({c.layer_type}): {' + '.join(other)} present but {n} "
                            f"({_shape(by_name[n])}) missing: gemma.cpp needs both halves or the fused "
                            f"{c.forms[0][0]} ('{_xor_assert(c.key)}')", **_loc(by_name[n]),
                            hint=_missing_hint([n], f, "re-export the layer")))
        elif not complete:
            out.append(_missing_choice(c, by_name, f))

    n_llm, n_vit = len(cfg.layer_configs), len(cfg.vit_config.layer_configs)
    for name, info in tensors.items():
        if name in by_name:
            continue
        base, idx = split_name(name)
        is_vit = base in VIT_LAYER_BASES or base in VIT_GEMMA4_LAYER_BASES
        layer_type = (VIT if is_vit else GEMMA) if idx is not None else None
        if idx is None:
            why = "gemma.cpp does not know this per-model tensor" if not base.startswith(("enc_", "img_", "mm_")) \
                else "a ViT tensor, but the config has no ViT layers"
        elif base in REGISTERED_UNUSED:
            why = "gemma.cpp registers this name but never loads it"
        elif is_vit and idx >= n_vit:
            why = (f"a ViT tensor for ViT layer {idx}, but the config has {n_vit} ViT layer(s)" if n_vit else
                   "a ViT tensor, but the config has no ViT layers")
        elif not is_vit and idx >= n_llm:
            why = f"the config has {n_llm} LLM layer(s), there is no layer {idx}"
        else:
            why = f"layer {idx} ({layer_type}) does not use it with this config"
        out.append(finding("unexpected-tensor", f"tensor {name} ({info.type_name} {info.rows} x {info.cols}): {why}; "
                                                "gemma.cpp ignores it",
                           tensor=name, layer=idx, layer_type=layer_type, offset=info.offset, blob=info.key,
                           hint="harmless unless the config is wrong; `sbs repair` can drop it"))
    return out


def _check_type(t: TensorSpec, info: TensorInfo, out: list[Finding]) -> None:
    try:
        typ = Type(info.type)
    except ValueError:
        typ = None
    if typ is None and info.type >= len(Type):
        return  # a type newer than this release: newer-format (metadata) says so
    if typ is None or typ not in WEIGHT_TYPES:
        what = " (an activation / KV-cache type; gemma.cpp aborts 'Unhandled type')" if typ in NON_WEIGHT_TYPES else ""
        out.append(finding("type-unsupported",
                           f"{t.where}: {t.name} has element type {type_name(info.type)}{what}, which gemma.cpp "
                           "cannot use for weights (F32, BF16, SFP, NUQ, I8, Q4_0 or MXFP4)", **_loc(t, info),
                           hint="re-export the tensor in a weight type"))
    elif typ in BLOCK_TYPES and t.base in ("att_ein", "vit_att_ein") and t.cols % 32:
        out.append(finding("type-unsupported",
                           f"{t.where}: {t.name} is {typ.name} with qkv_dim {t.cols}, not a multiple of 32: gemma.cpp "
                           "copies packed att_ein blocks per head and asserts PackedEnd(H*Dh) == H*PackedEnd(Dh)",
                           **_loc(t, info), hint=f"re-export {t.name} as BF16 or SFP"))
    elif typ in BLOCK_TYPES and info.cols % 32:
        out.append(finding("block-straddle",
                           f"{t.where}: {t.name} is {typ.name} with {info.cols} columns, not a multiple of 32: its "
                           "32-value blocks straddle rows, which gemma.cpp's splits and SIMD decode assume never "
                           "happens", **_loc(t, info), hint="use a type without blocks for this tensor"))
    elif typ not in t.types:
        allowed = "/".join(sorted(x.name for x in t.types))
        why = ("gemma.cpp declares it as MatPtrT<float> and asserts the file type is F32" if t.types == F32_ONLY
               else f"gemma.cpp accepts {allowed} here")
        out.append(finding("type-unsupported", f"{t.where}: {t.name} is {typ.name} but {why}", **_loc(t, info),
                           hint=f"re-export {t.name} as {allowed}"))


def check_pre2025_names(f: SbsFile) -> list[Finding]:
    """Pre-2025 (E0) files have no config or toc; gemma.cpp synthesizes the tensor table from the keys.

    Checks what holds for every model: each key (minus its type prefix) is a
    name gemma.cpp knows (HEAD aborts on unknown names), ``c_embedding`` and
    ``c_final_norm`` exist, and every LLM layer index up to the highest one
    has the tensors every pre-2025 writer wrote (fused forms, FFW, norms);
    with ViT tensors, every ViT layer has its 12.
    """
    out: list[Finding] = []
    tensors = f.tensors
    gemma_idx: set[int] = set()
    vit_idx: set[int] = set()
    for name, info in tensors.items():
        base, idx = split_name(name)
        loc = {"tensor": name, "offset": info.offset, "blob": info.key}
        if idx is None:
            if name in MODEL_TENSOR_NAMES:
                continue
        elif base in GEMMA_LAYER_BASES:
            if idx < 999:  # >= 999 is a bad-key (gemma.cpp asserts); never enumerate layers up to it
                gemma_idx.add(idx)
            continue
        elif base in VIT_LAYER_BASES:
            if idx < 999:
                vit_idx.add(idx)
            continue
        elif base in REGISTERED_UNUSED:
            continue
        out.append(finding("unknown-tensor", f"key {info.key!r}: gemma.cpp knows no tensor named {name!r}; for "
                                             "files without a toc it aborts on unknown names",
                           layer=idx, **loc, hint="rename or drop the blob (`sbs repair`)"))
    keys = {info.key for info in tensors.values()}
    for e in f.directory.entries:
        if e.key not in keys and e.key not in ("Fscales", "scales", "config", "toc", "tokenizer"):
            prefixes = ", ".join(TYPE_PREFIX)
            out.append(finding("unexpected-tensor", f"key {e.key!r} has no type prefix ({prefixes}): gemma.cpp "
                                                    "ignores it", offset=e.offset, blob=e.key,
                               hint="harmless unless it was meant to be a tensor"))
    for name in ("c_embedding", "c_final_norm"):
        if name not in tensors:
            out.append(finding("missing-tensor", f"model: missing {name}: gemma.cpp aborts 'Tensor {name} is "
                                                 "required but not found'", tensor=name,
                               hint="the file is incomplete; re-export it"))
    for kind, idxs, need in ((GEMMA, gemma_idx, PRE2025_GEMMA_REQUIRED),
                             (VIT, vit_idx, tuple(sorted(VIT_LAYER_BASES - REGISTERED_UNUSED)))):
        if not idxs:
            continue
        for i in range(max(idxs) + 1):
            tag = "ViT layer" if kind == VIT else "layer"
            if i not in idxs:
                out.append(finding("missing-tensor", f"{tag} {i} ({kind}): no tensors at all, although {tag} "
                                                     f"{max(idxs)} exists; gemma.cpp counts layers up to the highest "
                                                     "number and aborts on the first missing tensor", layer=i,
                                   layer_type=kind, hint="the file is incomplete, or a key was renamed"))
                continue
            for base in need:
                name = f"{base}_{i}"
                if name in tensors:
                    continue
                if kind == GEMMA and base in ("att_ein", "qkv_ein", "gating_ein"):
                    alt = {"att_ein": ("att_w",), "qkv_ein": ("qkv1_w",), "gating_ein": ("gating1_w", "gating2_w")}
                    if all(f"{a}_{i}" in tensors for a in alt[base]):
                        continue
                out.append(finding("missing-tensor", f"{tag} {i} ({kind}): missing {name} (pre-2025 file: every "
                                                     f"{tag} up to {max(idxs)} has one); gemma.cpp aborts 'Tensor "
                                                     f"{name} is required but not found'", tensor=name, layer=i,
                                   layer_type=kind, hint="the file is incomplete; re-export it"))
    return out
