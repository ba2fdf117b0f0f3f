"""Metadata checks: config, toc, blob sizes, weight type, tokenizer and vocabulary.

Works on an :class:`~sbs_tools.sbsfile.SbsFile` opened with ``strict=False``
and decodes ``config`` and ``toc`` itself so that every finding carries the
absolute file offset of the word that is wrong.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import (CURRENT, GEMMA3_LM_MODELS, LAYER_FIELDS_3ED403E, LAYER_TYPE, MLA_TYPE, MODEL_FIELDS_3ED403E,
                      SCHEMAS, ModelConfig, decode_config, llm_layer_types)
from ..errors import SbsError
from ..fields import NFIELDS, Field, Schema, as_words, encode_string
from ..sbsfile import METADATA_KEYS, MOCK_TOKENIZER, SbsFile
from ..tensors import MAX_TENSOR_NAME, expected_tensors, max_experts
from ..toc import TocRecord, decode_toc
from ..types import TYPE_BITS, Type, element_bytes, num_elements, packed_bytes, type_name
from .findings import Finding, finding

#: Blobs that are not tensors and need no toc record.
NON_TENSOR_KEYS = frozenset(METADATA_KEYS) | {"Fscales", "scales"}
#: Largest metadata blob this checker decodes (a real config is ~4 KiB, a toc ~100 KiB).
MAX_METADATA_BYTES = 64 << 20
MAX_QKV_DIM = 1024


@dataclass
class Metadata:
    """What the metadata checks learned, for the layer, compat and deep checks."""

    config: ModelConfig | None = None
    config_ok: bool = False  # decoded and consistent enough for layer checks
    toc: list[TocRecord] | None = None
    field_offsets: dict[str, int] = field(default_factory=dict)  # config field path -> absolute offset
    tokenizer_pieces: int | None = None


# -- config field positions --------------------------------------------------------------------------------
def _field_words(f: Field, value: Any) -> int:
    k = f.kind
    if k == "u64":
        return 2
    if k == "string":
        return 1 + -(-len(encode_string(value)) // 4)
    if k == "vector":
        assert f.elem is not None
        return 1 + sum(_field_words(f.elem, v) for v in value)
    if k == "struct":
        assert f.schema is not None
        return 1 + sum(_field_words(g, value[g.name]) for g in f.schema.visited(value)[:value.get(NFIELDS)])
    return 1


def config_field_offsets(cfg: ModelConfig, base: int, nwords: int) -> dict[str, int]:
    """Absolute byte offset of every serialized field of ``cfg`` (paths like
    ``vit_config.layer_configs[1].type``), assuming the blob at ``base`` holds
    exactly the fields this tool knows (no extra words)."""
    out: dict[str, int] = {}
    schema = SCHEMAS[cfg.schema_revision]
    values = cfg.to_values()

    def walk_struct(s: Schema, vals: dict, path: str, pos: int) -> int:
        pos += 1  # length prefix
        for f in s.visited(vals)[:vals.get(NFIELDS)]:
            pos = walk_field(f, vals[f.name], f"{path}.{f.name}" if path else f.name, pos)
        return pos

    def walk_field(f: Field, v: Any, path: str, pos: int) -> int:
        if pos < nwords:
            out[path] = base + 4 * pos
        if f.kind == "struct":
            assert f.schema is not None
            return walk_struct(f.schema, v, path, pos)
        if f.kind == "vector":
            assert f.elem is not None
            pos += 1
            for i, e in enumerate(v):
                pos = walk_field(f.elem, e, f"{path}[{i}]", pos)
            return pos
        return pos + _field_words(f, v)

    walk_struct(schema, values, "", 0)
    return out


# -- checks ----------------------------------------------------------------------------------------------------
def _blob_words(f: SbsFile, key: str, out: list[Finding], code: str) -> np.ndarray | None:
    e = f.blobs[key]
    if e.size > MAX_METADATA_BYTES:
        out.append(finding(code, f"the {key} blob is {e.size} bytes, implausibly large for {key}",
                           offset=e.offset, blob=key))
        return None
    if e.offset + e.size > f.file_bytes:
        return None  # blob-out-of-bounds already reported by the container checks
    raw = f.read(e.offset, e.size)
    try:
        return as_words(raw, key)
    except SbsError:
        out.append(finding(code, f"the {key} blob has {e.size} bytes, not a multiple of 4: it cannot be a "
                                 "serialized gemma.cpp structure", offset=e.offset, blob=key))
        return None


_DIM_FIELDS = ("model_dim", "vocab_size", "heads", "kv_heads", "qkv_dim", "ff_hidden_dim", "seq_len", "patch_width")


def _check_config_values(cfg: ModelConfig, pos: dict[str, int], cfg_offset: int) -> tuple[list[Finding], bool]:
    """Value checks; returns (findings, dims_ok) where dims_ok says shapes can be derived."""
    out: list[Finding] = []
    dims_ok = [True]

    def bad(msg: str, path: str | None = None, **where: Any) -> None:
        if path and path.rsplit(".", 1)[-1] in _DIM_FIELDS:
            dims_ok[0] = False
        off = pos.get(path, cfg_offset) if path else cfg_offset
        out.append(finding("config-invalid", msg, offset=off, blob="config",
                           hint=where.pop("hint", "the config is damaged or was written by a foreign tool; "
                                                  "`sbs repair` can rebuild a canonical config"), **where))

    if cfg.model == 0:
        bad("model is UNKNOWN (0): gemma.cpp asserts a known model ('model != Model::UNKNOWN')", "model")
    if cfg.weight == 0:
        bad("weight type is kUnknown (0): gemma.cpp asserts a weight type", "weight")
    n = cfg.num_layers
    if len(cfg.layer_configs) != n:
        bad(f"num_layers is {n} but layer_configs has {len(cfg.layer_configs)} entries", "layer_configs")
    if len(cfg.attention_window_sizes) != n:
        bad(f"attention_window_sizes has {len(cfg.attention_window_sizes)} entries for {n} layers "
            "(one window per LLM layer)", "attention_window_sizes")
    for i, w in enumerate(cfg.attention_window_sizes):
        if w == 0:
            bad(f"attention window of layer {i} is 0", f"attention_window_sizes[{i}]", layer=i, layer_type="kGemma")
    for name in ("model_dim", "vocab_size", "max_seq_len"):
        if getattr(cfg, name) == 0:
            bad(f"{name} is 0", name)
    for name in ("att_cap", "final_cap"):
        v = getattr(cfg, name)
        if not math.isfinite(v) or v < 0:
            bad(f"{name} is {v}: a soft-cap must be a finite value >= 0", name)
    vit_num = cfg.vit_type
    llm_types = llm_layer_types(cfg)
    newer_type = LAYER_TYPE[cfg.schema_revision].is_newer
    for i, lc in enumerate(cfg.layer_configs):
        p = f"layer_configs[{i}]"
        where = {"layer": i, "layer_type": "kGemma"}
        if lc.type not in llm_types and not newer_type(lc.type):
            bad(f"LLM layer {i} has type {cfg.layer_type_name(lc.type)} ({lc.type}); every entry of "
                "layer_configs must be kGemma (0)" + (" or kDeepSeekMLA (2)" if len(llm_types) > 1 else ""),
                f"{p}.type", **where)
        _layer_dims(lc, i, p, cfg.model_dim, "LLM layer", bad, where)
        _layer_links(cfg.layer_configs, lc, i, p, "LLM layer", bad, where)
        _layer_experts(lc, i, p, "LLM layer", bad, where)
    for stack in ("encoder", "decoder"):
        lcs = getattr(cfg, f"{stack}_layer_configs")
        for i, lc in enumerate(lcs):
            _layer_dims(lc, i, f"{stack}_layer_configs[{i}]", cfg.model_dim, f"{stack} layer", bad,
                        {"layer": i, "layer_type": "kGemma"})
    if cfg.is_encoder_decoder:
        for stack in ("encoder", "decoder"):
            n_st = getattr(cfg, f"{stack}_num_layers")
            lcs, ws = getattr(cfg, f"{stack}_layer_configs"), getattr(cfg, f"{stack}_attention_window_sizes")
            if len(lcs) != n_st:
                bad(f"{stack}_num_layers is {n_st} but {stack}_layer_configs has {len(lcs)} entries",
                    f"{stack}_layer_configs")
            if len(ws) != len(lcs):
                bad(f"{stack}_attention_window_sizes has {len(ws)} entries for {len(lcs)} {stack} layers",
                    f"{stack}_attention_window_sizes")
    vit = cfg.vit_config
    for i, lc in enumerate(vit.layer_configs):
        p = f"vit_config.layer_configs[{i}]"
        where = {"layer": i, "layer_type": "kVit"}
        if cfg.schema_revision == CURRENT and lc.type == MLA_TYPE:
            bad(f"ViT layer {i} has type 2: the pre-September-2025 kVit, which gemma.cpp since 2026 reads as "
                "kDeepSeekMLA; the config parses but loading the weights aborts ('type == kVit'); rewrite it to "
                "1 (`sbs repair`)", f"{p}.type", **where)
        elif lc.type not in cfg.vit_types and not newer_type(lc.type):
            bad(f"ViT layer {i} has type {cfg.layer_type_name(lc.type)} ({lc.type}); entries of "
                f"vit_config.layer_configs must be kVit ({vit_num} in this config's numbering)", f"{p}.type",
                **where)
        _layer_dims(lc, i, p, vit.model_dim, "ViT layer", bad, where)
        if lc.heads != lc.kv_heads:
            bad(f"ViT layer {i}: heads {lc.heads} != kv_heads {lc.kv_heads} (the ViT is multi-head attention; "
                "gemma.cpp asserts)", f"{p}.kv_heads", **where)
    if vit.layer_configs:
        for name in ("model_dim", "seq_len", "patch_width"):
            if getattr(vit, name) == 0:
                bad(f"vit_config.{name} is 0 although the model has ViT layers", f"vit_config.{name}")
    return out, dims_ok[0]


def _layer_links(layers, lc, i: int, p: str, tag: str, bad, where: dict) -> None:
    """``kv_share_layer_idx`` (Gemma 4): negative (-1 as written), or an earlier layer with the same kv_heads and
    qkv_dim. gemma.cpp's
    ``KVCache`` constructor (kv_cache.cc, the version with ``HasOwnKVCache``) asserts ``source < i`` and both
    equalities, and copies the source's cache offsets -- so a source that itself shares resolves to the layer it
    reads (the addendum's "with its own KV cache" is not asserted)."""
    j = lc.kv_share_layer_idx
    if j < 0:  # gemma.cpp tests ``kv_share_layer_idx >= 0`` everywhere: any negative value is the layer's own cache
        return
    if j >= i:
        bad(f"{tag} {i}: kv_share_layer_idx {j} must be negative (own KV cache) or an earlier layer",
            f"{p}.kv_share_layer_idx", **where)
        return
    src = layers[j]
    if (src.kv_heads, src.qkv_dim) != (lc.kv_heads, lc.qkv_dim):
        bad(f"{tag} {i}: shares the KV cache of layer {j}, whose kv_heads x qkv_dim "
            f"({src.kv_heads} x {src.qkv_dim}) differs from its own ({lc.kv_heads} x {lc.qkv_dim}); gemma.cpp "
            "asserts both are equal when it allocates the KV cache", f"{p}.kv_share_layer_idx", **where)


def _layer_experts(lc, i: int, p: str, tag: str, bad, where: dict) -> None:
    """``num_experts`` whose per-expert tensor names exceed 16 characters: gemma.cpp aborts naming them."""
    if lc.num_experts > max_experts(i):
        bad(f"{tag} {i}: num_experts {lc.num_experts}: expert tensor names such as "
            f"gating1_w_{i}_{lc.num_experts - 1} exceed {MAX_TENSOR_NAME} characters (gemma.cpp aborts in "
            f"MatPtr::SetName; at most {max_experts(i)} experts at this layer)", f"{p}.num_experts", **where)


def _layer_dims(lc, i: int, p: str, model_dim: int, tag: str, bad, where: dict) -> None:
    for name in ("model_dim", "heads", "qkv_dim", "ff_hidden_dim"):
        if getattr(lc, name) == 0:
            bad(f"{tag} {i}: {name} is 0", f"{p}.{name}", **where)
    if lc.model_dim and model_dim and lc.model_dim != model_dim:
        bad(f"{tag} {i}: model_dim {lc.model_dim} differs from the model's {model_dim}", f"{p}.model_dim", **where)
    if lc.qkv_dim > MAX_QKV_DIM:
        bad(f"{tag} {i}: qkv_dim {lc.qkv_dim} > {MAX_QKV_DIM} (gemma.cpp kMaxQKVDim aborts)", f"{p}.qkv_dim",
            **where)
    if lc.kv_heads and lc.heads % lc.kv_heads:
        bad(f"{tag} {i}: heads {lc.heads} is not a multiple of kv_heads {lc.kv_heads}", f"{p}.kv_heads", **where)
    if lc.kv_heads == 0 and lc.heads:
        bad(f"{tag} {i}: kv_heads is 0", f"{p}.kv_heads", **where)


def check_config(f: SbsFile, md: Metadata) -> list[Finding]:
    out: list[Finding] = []
    e = f.blobs["config"]
    words = _blob_words(f, "config", out, "config-undecodable")
    if words is None:
        return out
    try:
        cfg = decode_config(words)
    except SbsError as err:
        off = e.offset + (err.offset or 0)
        what = ("its structure is broken (length prefixes do not fit)" if err.code == "config-undecodable"
                else "it holds a value no gemma.cpp revision accepts")
        out.append(finding(err.code if err.code in ("config-undecodable", "config-invalid") else
                           "config-undecodable",
                           f"the config cannot be decoded: {what}: {err.message.removeprefix('config blob: ')}",
                           offset=off, blob="config",
                           hint="gemma.cpp aborts ('Error deserializing config'); `sbs repair` can rebuild a "
                                "canonical config for known models"))
        return out
    md.config = cfg
    md.field_offsets = config_field_offsets(cfg, e.offset, int(words.shape[0]))
    out += _format_findings(cfg, md, e.offset)
    problems, md.config_ok = _check_config_values(cfg, md.field_offsets, e.offset)
    out += problems
    return out


def _format_findings(cfg: ModelConfig, md: Metadata, cfg_offset: int) -> list[Finding]:
    """What the config's format says: newer elements, fields an older writer left out, the Gemma 3
    global RoPE flag."""
    out: list[Finding] = []
    pos = md.field_offsets
    if cfg.extra_u32:
        where = ", ".join(f"{path or 'ModelConfig'}: {n}" for path, n in cfg.extra_at[:4]) + \
            (" ..." if len(cfg.extra_at) > 4 else "")
        nested = [p for p, _ in cfg.extra_at if p]
        out.append(finding("config-extra-fields",
                           f"the config has {cfg.extra_u32} word(s) this tool does not know ({where}): skipped by "
                           "their objects' length prefixes, as gemma.cpp skips unknown trailing fields"
                           + ("; gemma.cpp <= 3ed403e does not skip them inside nested objects and crashes "
                              "('Assert end_.empty()')" if nested else ""),
                           offset=cfg_offset, blob="config"))
        out.append(finding("newer-format", f"the config has {cfg.extra_u32} word(s) of fields newer than this "
                                           "release (written by a newer gemma.cpp): everything known is checked, "
                                           "the new fields are not", offset=cfg_offset, blob="config",
                           hint="update sbs_tools"))
    for path, enum, value in cfg.newer_values[:8]:
        out.append(finding("newer-format", f"config {path} is {value}, a {enum} value newer than this release "
                                           "(shown as its number; the parts this tool knows are still checked)",
                           offset=pos.get(path, cfg_offset), blob="config", hint="update sbs_tools"))
    short_top = cfg.stored_fields is not None and cfg.stored_fields < MODEL_FIELDS_3ED403E
    lays = cfg.layer_configs + cfg.vit_config.layer_configs
    short_layers = [lc for lc in lays if lc.stored_fields is not None and lc.stored_fields < LAYER_FIELDS_3ED403E]
    if short_top or short_layers:
        what = []
        if short_top:
            what.append(f"the config stops after field {cfg.stored_fields}")
        if short_layers:
            what.append(f"{len(short_layers)} layer config(s) hold fewer than {LAYER_FIELDS_3ED403E} fields")
        out.append(finding("config-missing-fields",
                           f"{' and '.join(what)} (older writer); defaults apply", offset=cfg_offset, blob="config"))
    if cfg.needs_global_timescale and global_layers(cfg):
        stored = cfg.stored_fields is None or cfg.stored_fields > MODEL_FIELDS_3ED403E
        state = "is false" if stored else "is absent (written before 2025-10-24)"
        out.append(finding(
            "global-timescale-missing",
            f"{cfg.model_name}: use_global_timescale {state}. gemma.cpp since 2025-10-24 (1bdde1a) then runs the "
            f"global-attention layers ({', '.join(map(str, global_layers(cfg)[:8]))}"
            f"{' ...' if len(global_layers(cfg)) > 8 else ''}) with RoPE base 10,000 instead of 1,000,000 -- "
            "silently: the file loads and generates, but its output diverges from the trained model (3ed403e and "
            "older used 1e6 for this model)", offset=pos.get("use_global_timescale", cfg_offset), blob="config",
            hint="`sbs repair --target current` sets the flag (one word appended after scale_base_names; "
                 "3ed403e still reads the file, tensors untouched)"))
    elif cfg.model in GEMMA3_LM_MODELS and not cfg.use_global_timescale:
        out.append(finding(
            "global-timescale-lm",
            f"{cfg.model_name} (text-only Gemma 3): use_global_timescale is false, as gemma.cpp's canonical config "
            "for this model has it (likely an upstream bug, addendum §1.2): its global layers run with RoPE base "
            "10,000, whereas the VLM config of the same size uses 1,000,000", offset=pos.get("use_global_timescale",
                                                                                        cfg_offset),
            blob="config", hint="if 1e6 global RoPE is wanted, set use_global_timescale (a one-word config edit)"))
    return out


def global_layers(cfg: ModelConfig) -> list[int]:
    return [i for i in range(min(len(cfg.layer_configs), len(cfg.attention_window_sizes))) if cfg.is_global_layer(i)]


def check_toc(f: SbsFile, md: Metadata) -> list[Finding]:
    out: list[Finding] = []
    e = f.blobs["toc"]
    words = _blob_words(f, "toc", out, "toc-undecodable")
    if words is None:
        return out
    try:
        recs = decode_toc(words, max_records=len(f.directory.entries))  # each record names a distinct blob
    except SbsError as err:
        out.append(finding("toc-undecodable", f"the toc cannot be decoded: {err.message}",
                           offset=e.offset + (err.offset or 0), blob="toc",
                           hint="gemma.cpp aborts reading the tensor table; the file is damaged"))
        return out
    md.toc = recs
    seen: dict[str, TocRecord] = {}
    for r in recs:
        at = e.offset + 4 * r.word_pos
        if r.name in seen:
            out.append(finding("toc-duplicate", f"the toc describes {r.name!r} twice (gemma.cpp asserts unique "
                                                "names)", offset=at, blob="toc", tensor=r.name))
            continue
        seen[r.name] = r
        blob = f.blobs.get(r.name)
        if blob is None:
            out.append(finding("toc-blob-missing",
                               f"the toc describes tensor {r.name!r} ({type_name(r.type)} {r.rows}x{r.cols}) but "
                               "the file has no blob with that name: gemma.cpp aborts while reading the toc",
                               offset=at, blob="toc", tensor=r.name,
                               hint="the file is incomplete; re-export it or remove the record (`sbs repair`)"))
            continue
        try:
            t = Type(r.type)
        except ValueError:
            t = None
        if t is None and r.type >= len(Type):
            out.append(finding("newer-format", f"tensor {r.name!r} has element type {r.type}, newer than this release: "
                                               "its size and values cannot be checked", offset=at, blob="toc",
                               tensor=r.name, hint="update sbs_tools"))
            continue
        if t is None or t == Type.UNKNOWN:
            continue  # type-unsupported is reported by the layer checks
        want = packed_bytes(t, r.rows * r.cols)
        if blob.size != want:
            out.append(finding("tensor-size-mismatch",
                               f"tensor {r.name!r}: {t.name} {r.rows}x{r.cols} needs {want} bytes but its blob has "
                               f"{blob.size} ({'truncated' if blob.size < want else 'too long'}); gemma.cpp "
                               "asserts the sizes agree", offset=blob.offset, blob=r.name, tensor=r.name,
                               hint="the tensor was written with a different shape or type than the toc says; "
                                    "re-export it"))
        bad = []
        if r.element_bytes != element_bytes(t):
            bad.append(f"element_bytes {r.element_bytes} (expected {element_bytes(t)})")
        if r.num_elements != num_elements(t, r.rows * r.cols):
            bad.append(f"num_elements {r.num_elements} (expected {num_elements(t, r.rows * r.cols)})")
        if r.stride != r.cols:
            bad.append(f"stride {r.stride} (expected cols = {r.cols})")
        if bad:
            out.append(finding("toc-field-mismatch",
                               f"toc record of {r.name!r}: " + ", ".join(bad) + "; current gemma.cpp recomputes "
                               "these, older tools may trust them", offset=at, blob="toc", tensor=r.name,
                               hint="`sbs repair` rewrites the toc"))
        if r.scale == 0.0:
            out.append(finding("scale-invalid", f"tensor {r.name!r} has scale 0: every value decodes to 0",
                               offset=at, blob="toc", tensor=r.name,
                               hint="re-export the tensor; the scale should be max|x|/1.875 (SFP/NUQ) or 1"))
    needed = _expected_names(md.config)
    for b in f.directory.entries:
        if b.key not in NON_TENSOR_KEYS and b.key not in seen:
            hint = ("a tensor the config needs: `sbs repair` restores its toc record" if b.key in needed else
                    "harmless; `sbs repair` can drop it")
            out.append(finding("blob-not-in-toc", f"blob {b.key!r} ({b.size} bytes) has no toc record: gemma.cpp "
                                                  "ignores it", offset=b.offset, blob=b.key, hint=hint))
    return out


def _expected_names(cfg: ModelConfig | None) -> set[str]:
    """Tensor names the config implies (empty when there is no usable config)."""
    if cfg is None:
        return set()
    try:
        return {t.name for t in expected_tensors(cfg)}
    except Exception:  # noqa: BLE001 - absurd dims in a config verify reports elsewhere
        return set()


def check_weight_type(md: Metadata, f: SbsFile) -> list[Finding]:
    """HEAD ``ReadMatPtrs``: the smallest-TypeBits toc type (first wins ties) must equal config.weight."""
    cfg, recs = md.config, md.toc
    if cfg is None or not recs:
        return []
    def bits(r: TocRecord) -> int:
        try:
            return TYPE_BITS[Type(r.type)]
        except ValueError:
            return 0

    if cfg.weight >= len(Type) or any(r.type >= len(Type) for r in recs):
        return []  # a type newer than this release: its bits are unknown (newer-format says so)

    smallest: TocRecord | None = None
    for r in recs:
        if smallest is None or bits(r) < bits(smallest):
            smallest = r
    assert smallest is not None
    if smallest.type != cfg.weight:
        off = md.field_offsets.get("weight", f.blobs["config"].offset)
        return [finding("weight-type-mismatch",
                        f"config.weight is {cfg.weight_name} but the smallest tensor type is "
                        f"{type_name(smallest.type).lower()} (first: {smallest.name}); gemma.cpp asserts they agree",
                        offset=off, blob="config", tensor=smallest.name,
                        hint="set config.weight to the type of the big matrices (`sbs repair`), or re-export")]
    return []


def check_tokenizer(f: SbsFile, md: Metadata) -> list[Finding]:
    e = f.blobs.get("tokenizer")
    if e is None:
        return [finding("tokenizer-missing", "the file has no tokenizer blob: gemma.cpp needs --tokenizer "
                                             "PATH.spm, otherwise it loads but cannot encode text",
                        hint="pass --tokenizer to gemma.cpp, or embed the model with `sbs repair --tokenizer`")]
    if e.offset + e.size > f.file_bytes:
        return []  # blob-out-of-bounds already reported by the container checks
    data = f.read(e.offset, e.size).tobytes()
    cfg = md.config
    bpe = cfg is not None and cfg.tokenizer_kind == 1
    if bpe and data != MOCK_TOKENIZER:
        return _check_bpe(data, e, md)
    if bpe:
        return [finding("tokenizer-missing", "config.tokenizer_kind is kHfBpe but the tokenizer blob is the "
                                             "placeholder 'unavailable': gemma.cpp falls back to its mock tokenizer "
                                             "and ignores --tokenizer for HF BPE models", offset=e.offset,
                        blob="tokenizer", hint="re-export the model with its tokenizer.json")]
    if data == MOCK_TOKENIZER:
        return [finding("tokenizer-missing", "the tokenizer blob is the placeholder 'unavailable' (written without "
                                             "a tokenizer): gemma.cpp needs --tokenizer PATH.spm, otherwise it "
                                             "loads but cannot encode text", offset=e.offset, blob="tokenizer",
                        hint="pass --tokenizer to gemma.cpp, or embed the model with `sbs repair --tokenizer`")]
    try:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_proto=data)
        pieces = int(sp.get_piece_size())
    except Exception as err:  # noqa: BLE001 - sentencepiece raises RuntimeError/OSError/TypeError
        msg = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        from .. import bpe

        if not bpe.problems(data)[0]:
            return [finding("tokenizer-invalid", f"the tokenizer blob ({e.size} bytes) is an HF-BPE tokenizer but "
                                                 "config.tokenizer_kind is kSentencePiece: gemma.cpp hands it to "
                                                 "SentencePiece and aborts", offset=e.offset, blob="tokenizer",
                            hint="set config.tokenizer_kind to kHfBpe (1), or embed the SentencePiece model")]
        return [finding("tokenizer-invalid", f"the tokenizer blob ({e.size} bytes) is not a SentencePiece model "
                                             f"({msg}); gemma.cpp aborts loading it", offset=e.offset,
                        blob="tokenizer", hint="embed the right tokenizer.spm (`sbs repair --tokenizer`)")]
    md.tokenizer_pieces = pieces
    cfg = md.config
    if cfg is not None and cfg.vocab_size and pieces > cfg.vocab_size:
        return [finding("vocab-mismatch", f"the tokenizer has {pieces} pieces but config.vocab_size is "
                                          f"{cfg.vocab_size}: token ids beyond {cfg.vocab_size - 1} index past the "
                                          "embedding", offset=e.offset, blob="tokenizer",
                        hint="the tokenizer belongs to another model; embed the matching one")]
    return []


def _check_bpe(data: bytes, e, md: Metadata) -> list[Finding]:
    """config.tokenizer_kind == kHfBpe: the blob must be a BpeTokenizerBlob gemma.cpp can load (addendum §7)."""
    from .. import bpe

    why, v = bpe.problems(data)
    if why:
        return [finding("tokenizer-invalid", f"the HF-BPE tokenizer blob ({e.size} bytes) is unusable: "
                                             + "; ".join(why) + " (gemma.cpp aborts: 'Failed to load BpeTokenizer "
                                             "from compact blob', or mis-tokenizes)", offset=e.offset,
                        blob="tokenizer", hint="re-export the tokenizer (pack_bpe_tokenizer of tokenizer.json)")]
    md.tokenizer_pieces = len(v["vocab"]) if v else None
    cfg = md.config
    if v and cfg is not None and cfg.vocab_size and len(v["vocab"]) > cfg.vocab_size:
        return [finding("bpe-vocab-size", f"the HF-BPE tokenizer has {len(v['vocab'])} token ids but config.vocab_size "
                                          f"is {cfg.vocab_size}: gemma.cpp does not compare them, and ids from "
                                          f"{cfg.vocab_size} on index past the embedding", offset=e.offset,
                        blob="tokenizer", hint="the tokenizer.json belongs to another model, or vocab_size is wrong; "
                                               "re-export with the matching pair")]
    return []


def check_metadata(f: SbsFile) -> tuple[list[Finding], Metadata]:
    """All metadata findings plus what was learned."""
    md = Metadata()
    out: list[Finding] = []
    keys = set(f.blobs)
    has_config, has_toc = "config" in keys, "toc" in keys
    if not has_config and not has_toc:
        out.append(finding("pre-2025-format",
                           "pre-2025 multi-file format: type-prefixed keys, no config or toc; the tokenizer is a "
                           "separate .spm file, so only the container can be checked",
                           hint="`sbs repair` can convert it to the current single-file format"))
        return out, md
    if f.era == "single-file-prefixed":
        out.append(finding("prefixed-names", "single-file format of Dec 2024 - May 2025: tensor names carry a "
                                             "type prefix (e.g. '$att_ein_0')",
                           hint="current gemma.cpp cannot load it; `sbs repair` strips the prefixes"))
    if has_config:
        out += check_config(f, md)
    else:
        out.append(finding("config-missing", "the file has a toc but no config blob: gemma.cpp then guesses the "
                                             "model from the layer count, which only works for the published "
                                             "sizes", hint="`sbs repair --model NAME` adds the canonical config"))
    if has_toc:
        out += check_toc(f, md)
    else:
        out.append(finding("toc-missing", "the file has a config but no toc blob: gemma.cpp cannot find any "
                                          "tensor ('Tensor c_embedding is required but not found')",
                           hint="re-export the model; `sbs repair` can rebuild a toc from the config"))
    out += check_weight_type(md, f)
    out += check_tokenizer(f, md)
    return out, md
