"""Which gemma.cpp generations can load (and run) a file, and why not.

A file that was valid for the gemma.cpp that wrote it is not an error; this
module says which builds accept it. Generations are delimited by the
format-relevant commits of spec §0 (the verified behaviour of e9ecb77 and
3ed403e is in ``fixtures/corpus/README.md``). ``loads``/``runs`` describe the
*last* build of each generation; earlier builds inside a generation that
behave differently are named in the reasons ("builds before ...").
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import deduce
from ..blobstore import BLOB_ALIGN, END_ALIGN, MAX_BLOBS_2026, MAX_BLOBS_E2, MAX_BLOBS_HEAD, reads_blob_count, round_up
from ..canonical import canonical_config
from ..config import GEMMA3_LM_MODELS, VIT_TYPE
from ..errors import ConfigError
from ..sbsfile import SbsFile
from ..tensors import REGISTERED_UNUSED, choices, expected_tensors, split_name
from ..types import Type, packed_bytes, type_name
from .findings import Finding, Generation, finding
from .metadata import Metadata


@dataclass(frozen=True)
class GenerationInfo:
    key: str
    label: str


GENERATIONS = (
    GenerationInfo("pre-2025", "pre-2025 (<= 2025-05-05; multi-file, and Dec 2024 type-prefixed single-file)"),
    GenerationInfo("2025-05-06", "2025-05-06 single-file (8d0882b..c8d9294; ViT crash)"),
    GenerationInfo("2025-05-07", "2025-05-07..2025-07-30 (e9ecb77..; V1 only, ViT type 2)"),
    GenerationInfo("2025-07-31", "2025-07-31..2025-09-04 (50ee1a3..; V2 reader, ViT type 2)"),
    GenerationInfo("2025-09-05", "2025-09-05..2025-10-14 (2b4c16e..; ViT type 1)"),
    GenerationInfo("2025-10-15", "2025-10-15..2025-10-23 (503aadd..3ed403e; I8)"),
    GenerationInfo("2025-10-24", "2025-10-24..2026-07-09 (1bdde1a..; use_global_timescale; later builds in "
                                 "this range add the 2026 changes listed under 2026-07-10)"),
    GenerationInfo("2026-07-10", "2026-07-10..2026-08-26 (PR #947 T5Gemma..; 38-field LayerConfig, UTF-8, "
                                 "HF BPE, Gemma 4 / DeepSeek / Qwen3 models; Q4_0 and MXFP4 in later builds)"),
    GenerationInfo("2026-08-27", "2026-08-27 and later (PR #994..0224dcbd; global_rope_theta, GEMMA4_E4B)"),
)
#: Generations that read V2 files / ViT type 1 / I8, and those that know the 2026 formats.
V2_READERS = ("2025-07-31", "2025-09-05", "2025-10-15", "2025-10-24", "2026-07-10", "2026-08-27")
VIT1_READERS = ("2025-09-05", "2025-10-15", "2025-10-24", "2026-07-10", "2026-08-27")
FORMAT_2026 = ("2026-07-10", "2026-08-27")
#: gemma.cpp <= this generation: 15-field LayerConfig, ASCII strings, vectors <= 64 Ki.
_OLD_FIELDS = ("2025-05-06", "2025-05-07", "2025-07-31", "2025-09-05", "2025-10-15", "2025-10-24")
CURRENT = GENERATIONS[-1].key

#: Tensors that the May-2025 statically typed loader (spec §5.4) expects in the weight type.
_BIG = frozenset({"att_ein", "att_w", "qkv_ein", "qkv1_w", "qkv2_w", "gating_ein", "gating1_w", "gating2_w",
                  "linear_w"})
_F32_ALWAYS = frozenset({"img_pos_emb", "img_emb_bias", "img_head_bias", "ffw_gat_b", "ffw_out_b", "attn_out_b",
                         "qkv_ein_b", "linear_0_b", "linear_1_b"})
#: Model enum values each generation rejects ("Invalid enum").
_MODEL_INVALID = {
    "2025-05-06": lambda v: v >= 18,
    "2025-05-07": lambda v: v >= 18,
    "2025-07-31": lambda v: v >= 19 or v in (1, 2, 8, 9),
    "2025-09-05": lambda v: v >= 19 or v in (1, 2, 5, 6, 8, 9),
    "2025-10-15": lambda v: v >= 19 or v in (1, 2, 5, 6, 8, 9),
    "2025-10-24": lambda v: v >= 19 or v in (1, 2, 5, 6, 8, 9),
    "2026-07-10": lambda v: v >= 31 or v in (1, 2, 5, 6, 8, 9),  # kSentinel 31 at 3dd2961a
    "2026-08-27": lambda v: v >= 33 or v in (1, 2, 5, 6, 8, 9),
}
#: kMaxBlobs of each generation's last build (None: pre-2025 readers had no limit).
_MAX_BLOBS = {"pre-2025": None, "2025-05-06": MAX_BLOBS_E2, "2025-05-07": MAX_BLOBS_E2, "2025-07-31": MAX_BLOBS_HEAD,
              "2025-09-05": MAX_BLOBS_HEAD, "2025-10-15": MAX_BLOBS_HEAD, "2025-10-24": MAX_BLOBS_HEAD,
              "2026-07-10": MAX_BLOBS_2026, "2026-08-27": MAX_BLOBS_2026}
#: Key prefixes (``TypePrefix::TypeFromChar``) each generation knows: 'I' since 503aadd, '4' (Q4_0) in 2026.
_OLD_PREFIXES = (Type.F32, Type.BF16, Type.SFP, Type.NUQ)
_PREFIX_TYPES = {g: _OLD_PREFIXES for g in ("pre-2025", "2025-05-06", "2025-05-07", "2025-07-31", "2025-09-05")}
_PREFIX_TYPES.update({g: _OLD_PREFIXES + (Type.I8,) for g in ("2025-10-15", "2025-10-24")})
_PREFIX_TYPES.update({g: _OLD_PREFIXES + (Type.I8, Type.Q4_0) for g in FORMAT_2026})
_TYPE_LIMIT = {"2025-05-06": 8, "2025-05-07": 6, "2025-07-31": 8, "2025-09-05": 8, "2025-10-15": 9,
               "2025-10-24": 9, "2026-07-10": 14, "2026-08-27": 14}


class _Facts:
    """Everything the generation rules look at, computed once."""

    def __init__(self, f: SbsFile, md: Metadata, findings: list[Finding]) -> None:
        d = f.directory
        self.layout = d.layout
        self.era = f.era
        self.size = f.file_bytes
        self.num_blobs = len(d.entries)
        ends = [round_up(e.offset + e.size, BLOB_ALIGN) for e in d.entries]
        self.payload_end = max(ends) if ends else 0
        self.cfg = md.config
        self.blobs = [(e.key, e.size) for e in d.entries]
        self.path = str(f.path)
        self.tensors = f.tensors
        self.types = {n: t.type for n, t in f.tensors.items()}
        self.errors = [x for x in findings if x.severity == "error" and x.code != "both-forms"]
        self.has_vit = bool(self.cfg and self.cfg.vit_config.layer_configs)
        self.toc_non_ascii = [f"toc name {n!r}" for n in f.tensors if not n.isascii()]
        self.key_facts = deduce.KeyFacts.of(self.blobs) if f.era == "pre-2025" else None


def _container(g: str, x: _Facts, why: list[str], caveats: list[str]) -> None:
    if x.layout == "v2" and g in ("pre-2025", "2025-05-06", "2025-05-07"):
        why.append("V2 layout (directory at the end): readers before 2025-07-31 see the placeholder header with "
                   "0 blobs ('Invalid BlobStore (empty)'); needs gemma.cpp from 2025-07-31 or later, or "
                   "`sbs repair --layout v1`")
        return
    if x.layout == "v1":
        if g == "pre-2025" and x.size != x.payload_end:
            why.append("the file is padded to 64 KiB after the last blob; pre-2025 readers require it to end "
                       "right after the last blob")
        elif g in ("2025-05-06", "2025-05-07") and x.size not in (x.payload_end, round_up(x.payload_end, END_ALIGN)):
            why.append("trailing bytes after the last blob: May-2025 readers reject them (current gemma.cpp "
                       "accepts them)")
    _blob_count(g, x, why, caveats)


def _blob_count(g: str, x: _Facts, why: list[str], caveats: list[str]) -> None:
    """kMaxBlobs: 64 Ki (2025-05), 16 Ki (2025-07-31 on), 1 Mi since 0d8948f7 (2026); V1 counts must stay
    below it, V2 counts may reach it (:func:`reads_blob_count`)."""
    limit = _MAX_BLOBS[g]
    bound = "fewer than" if x.layout == "v1" else "at most"
    if not reads_blob_count(x.num_blobs, x.layout, limit):
        why.append(f"{x.num_blobs} blobs: this generation reads {bound} {limit} in a {x.layout.upper()} directory "
                   "(kMaxBlobs; 'Too many blobs', then 'Failed to read BlobStore header or directory'); gemma.cpp "
                   f"since 0d8948f7 (2026) reads {bound} {MAX_BLOBS_2026}")
    elif g == "2026-07-10" and not reads_blob_count(x.num_blobs, x.layout, MAX_BLOBS_HEAD):
        caveats.append(f"{x.num_blobs} blobs: builds before 0d8948f7 read {bound} {MAX_BLOBS_HEAD} in a "
                       f"{x.layout.upper()} directory ('Too many blobs')")


def _config(g: str, x: _Facts, why: list[str], caveats: list[str]) -> None:
    cfg = x.cfg
    if cfg is None:
        return
    vit_num = VIT_TYPE["2025-10"] if g in VIT1_READERS else VIT_TYPE["2025-05"]
    vit_types = {lc.type for lc in cfg.vit_config.layer_configs}
    if g in FORMAT_2026 and cfg.schema_revision == "2025-10":
        vit_types -= {3}  # kVitGemma4
    if vit_types and vit_types != {vit_num}:
        stored = ", ".join(str(v) for v in sorted(vit_types))
        if vit_num == 1:
            why.append(f"ViT layers stored with the pre-September-2025 type number {stored}: gemma.cpp since "
                       "2025-09-05 rejects the config ('Invalid enum 2', 'Error deserializing config'); "
                       "`sbs repair` can renumber them")
        else:
            why.append(f"ViT layers stored with type number {stored} (kVit since 2025-09-05): this generation "
                       "reads 1 as a Griffin layer and 2 as kVit; `sbs repair --target 2025-05` can renumber them")
    llm_ok = {0, 2} if g in FORMAT_2026 and cfg.schema_revision == "2025-10" else {0}
    if any(lc.type not in llm_ok for lc in cfg.layer_configs):
        why.append("LLM layers with a type this generation does not know" if g not in FORMAT_2026 else
                   "LLM layers with a non-Gemma type")
    _format_2026(g, x, why, caveats)
    if _MODEL_INVALID[g](cfg.model):
        why.append(f"model {cfg.model_name} ({cfg.model}) is not a valid Model value for this generation "
                   "('Invalid enum')")
    elif g == "2025-07-31" and cfg.model == 18:
        caveats.append("GEMMA3_270M is known only to builds from 2025-08-13 (d044801)")
    elif g == "2025-05-07" and cfg.model in (1, 2, 8, 9):
        caveats.append(f"{cfg.model_name} is obsolete since 2025-05-09 (252a4e9): later builds reject it")
    if cfg.weight >= _TYPE_LIMIT[g]:
        why.append(f"config.weight {cfg.weight_name} ({cfg.weight}) is not a valid Type for this generation")


def _format_2026(g: str, x: _Facts, why: list[str], caveats: list[str]) -> None:
    """What the readers before 2026 cannot parse, and what changed for the 2026 readers (addendum §4.4, §6)."""
    cfg = x.cfg
    assert cfg is not None
    nested = [p for p, _ in cfg.extra_at if p]
    lays = cfg.layer_configs + cfg.vit_config.layer_configs
    long_layers = any(lc.stored_fields is None or lc.stored_fields > 15 for lc in lays)
    if g in _OLD_FIELDS:
        if long_layers or nested:
            why.append("LayerConfigs with more than 15 fields (written after 3ed403e): readers up to 1bdde1a do "
                       "not skip a nested object's extra fields, read them as the next layer's length prefixes and "
                       "crash ('Assert end_.empty()'); `sbs repair --target 2025-10-15` writes 15-field layers "
                       "when the new fields hold their defaults")
        if cfg.non_ascii or x.toc_non_ascii:
            where = ", ".join((cfg.non_ascii + x.toc_non_ascii)[:3])
            why.append(f"non-ASCII (UTF-8) strings ({where}): readers before 4b26b039 reject them ('Invalid "
                       "characters')")
        if cfg.long_vectors:
            why.append(f"a vector of more than 65536 elements ({cfg.long_vectors[0][0]}): readers before "
                       "3dd2961a reject it")
        new_enums = []
        for i, lc in enumerate(lays):
            if lc.post_qk == 8 or lc.activation == 1 or (cfg.schema_revision == "2025-10" and lc.type in (2, 3)
                                                          and i < len(cfg.layer_configs)) or lc.type == 3:
                new_enums.append("layer enums (post_qk NormLocalRope, activation Silu or type 2/3)")
                break
        if cfg.query_scale == 2:
            new_enums.append("query_scale One")
        if new_enums:
            why.append("enum values added in 2026 (" + "; ".join(new_enums) + "): 'Invalid enum'")
        if g == "2025-10-24" and cfg.needs_global_timescale:
            caveats.append("use_global_timescale is missing: this build runs the global layers with RoPE base "
                           "1e4, not 1e6 (silent; `sbs repair` sets the flag)")
        return
    if g == "2026-07-10":
        if cfg.long_vectors:
            caveats.append("builds before 3dd2961a reject vectors of more than 65536 elements")
        if cfg.model == 19:
            caveats.append("CUSTOM loads only in builds without the wrapping override (4b26b039..0acc653c); "
                           "from 3dd2961a on ChooseWrapping aborts ('Model type 19 unknown')")
    if g == "2026-08-27" and cfg.model in (0, 19):
        why.append(f"model {cfg.model_name}: the wrapping override calls ConfigFromModel, which aborts ('Model "
                   f"type {cfg.model} unknown') (since 3dd2961a; whether a later build fixes it is unconfirmed)")
    if cfg.needs_global_timescale:
        caveats.append("use_global_timescale is missing: the global layers run with RoPE base 1e4, not 1e6 "
                       "(silent; `sbs repair` sets the flag)")
    if cfg.wrapping != 2 and cfg.model in (14, 15, 16, 17) or cfg.wrapping != 3 and cfg.model in (10, 11, 12, 13):
        caveats.append(f"config.wrapping {cfg.wrapping_name} is overridden at load with the model's VLM wrapping "
                       "(3dd2961a and later)")
    if any(lc.type == 3 for lc in cfg.vit_config.layer_configs):
        caveats.append("Gemma 4 ViT layers (kVitGemma4): how the newest loader maps their tensors is unconfirmed")


def _types(g: str, x: _Facts, why: list[str], caveats: list[str]) -> None:
    present = set(x.types.values())
    if g not in FORMAT_2026 and present & {Type.Q4_0, Type.MXFP4}:
        why.append("keys with the type prefix '4' (Q4_0): gemma.cpp before 2026 does not know it, skips those blobs "
                   "and aborts ('Tensor ... is required but not found')" if x.era == "pre-2025" else
                   "Q4_0/MXFP4 tensors: types 12/13 exist only in gemma.cpp from 2026 ('Invalid enum')")
    if g == "2026-07-10":
        if Type.Q4_0 in present:
            caveats.append("Q4_0 tensors: only builds with Q4_0 support (0acc653c, 3dd2961a and later) read them")
        if Type.MXFP4 in present:
            caveats.append("MXFP4 tensors: only builds from ee051c9c on read them")
    if g in FORMAT_2026 and Type.MXFP4 in present:
        caveats.append("an MXFP4 encoder bug of ee051c9c can zero blocks (`sbs verify --deep` finds them)")
    if Type.I8 in present and g not in ("2025-10-15", "2025-10-24") + FORMAT_2026:
        why.append("I8 tensors: gemma.cpp supports I8 only since 2025-10-15 (503aadd); older readers reject the "
                   "toc ('Invalid enum 8')")
    if g == "2025-05-06" and x.cfg is not None:
        bad = _static_type_mismatches(x)
        if bad:
            why.append("tensor types differ from what May-2025 builds hard-code (" + "; ".join(bad[:3])
                       + (" ..." if len(bad) > 3 else "") + "): they would misinterpret the bytes")
    if g == "2025-05-07" and x.cfg is not None and _static_type_mismatches(x):
        caveats.append("builds of early May 2025 (e9ecb77) hard-code tensor types and would misinterpret some "
                       "tensors of this file")


def _static_type_mismatches(x: _Facts) -> list[str]:
    w = x.cfg.weight
    out = []
    for name, t in x.types.items():
        base, _ = split_name(name)
        if base in _F32_ALWAYS:
            want = Type.F32
        elif base in _BIG:
            want = w
        else:
            want = Type.F32 if w == Type.F32 else Type.BF16
        if t != want:
            out.append(f"{name} is {type_name(t)}, expected {type_name(want)}")
    return out


def _forms(g: str, x: _Facts, run_why: list[str], caveats: list[str]) -> None:
    cfg = x.cfg
    if cfg is None:
        return
    t = x.tensors
    for c in choices(cfg):
        have = [all(n in t for n in form) for form in c.forms]
        fused = c.forms[0][0]
        if not have[0] and have[1]:
            if g == "2025-05-06":
                run_why.append(f"{fused} absent ({' + '.join(c.forms[1])} instead): builds before 2025-05-13 "
                               f"(8a312e9) require {fused}")
            elif g == "2025-05-07":
                caveats.append(f"builds 2025-05-07..05-12 require {c.forms[0][0].rsplit('_', 1)[0]}_N "
                               "(the split/transposed form is accepted since 8a312e9)")
        if have[0] and have[1] and g in ("2025-05-07",) + V2_READERS:
            run_why.append(f"both {fused} and {' + '.join(c.forms[1])}: gemma.cpp since 2025-06-02 aborts "
                           "('exactly one of' check)")
        extra = [n for n in c.companions if n in t]
        if have[0] and extra and not have[1]:
            caveats.append(f"{' + '.join(extra)} beside {fused}: " + (
                f"2026 builds take K/V from {extra[0]} (and only the query rows from {fused})" if g in FORMAT_2026
                else f"ignored: the K/V rows come from {fused} (2026 builds use {extra[0]} instead)"))
    # Deduplicate the per-layer messages.
    for lst in (run_why, caveats):
        seen: list[str] = []
        for s in lst:
            if s not in seen:
                seen.append(s)
        lst[:] = seen


def _nuq(g: str, x: _Facts, run_why: list[str], caveats: list[str]) -> None:
    nuq = [n for n, t in x.types.items() if t == Type.NUQ]
    if not nuq:
        return
    att = [n for n in nuq if split_name(n)[0] == "att_ein"]
    if g in FORMAT_2026:
        if att:
            run_why.append("NUQ attention weights: gemma.cpp reads the file but cannot run it (it aborts preparing "
                           "them: 'Assert attn_vec_einsum_w.GetType() != Type::kNUQ')")
        return  # GEMMA_ENABLE_NUQ defaults to 1 again since 3dd2961a
    if g in ("2025-07-31", "2025-09-05", "2025-10-15", "2025-10-24"):
        if att:
            run_why.append("NUQ attention weights: gemma.cpp reads the file but cannot run it (it aborts preparing "
                           "them: 'Assert attn_vec_einsum_w.GetType() != Type::kNUQ'); NUQ is also compiled out by "
                           "default (GEMMA_ENABLE_NUQ=0)")
        else:
            run_why.append("NUQ tensors: default builds since June 2025 are compiled without NUQ "
                           "(GEMMA_ENABLE_NUQ=0)")
    elif g == "2025-05-07":
        caveats.append("builds since June 2025 are compiled without NUQ by default (GEMMA_ENABLE_NUQ=0)")


def _no_config(g: str, x: _Facts, why: list[str], caveats: list[str]) -> None:
    """Pre-2025 (E0) files: each generation deduces a model from the keys (base §7, addendum §1.4) and
    builds its canonical config, which the tensors must then fit."""
    found = deduce.for_generation(g, x.blobs, x.path, x.key_facts)
    if not found:
        caveats.append("needs the model, weight type and tokenizer given on the command line")
        return
    d = found[-1]
    for old, nxt in zip(found, found[1:]):
        if old.model != d.model:
            caveats.append(f"builds from {old.rules.since} until {nxt.rules.commit} ({nxt.rules.since}) deduce "
                           f"{old.name} ({old.basis})")
    if not d.model:
        why.append(f"no config: gemma.cpp deduces the model from the keys ({d.basis}), finds none and aborts on "
                   "the deduced UNKNOWN")
        return
    known = {int(t) for t in _PREFIX_TYPES[g]}
    if deduce.deduce_weight_type(t for t in x.types.values() if t in known) is None:
        why.append(f"no config: gemma.cpp assumes {d.name} ({d.basis}) but no element type is held by 4 or more "
                   "blobs, so it cannot deduce the weight type and aborts")
        return
    what = f"no config: gemma.cpp assumes {d.name} ({d.basis}) and its canonical config"
    emb, sizes = x.tensors.get("c_embedding"), deduce.EMBEDDING_VALUES.get(d.model, ())
    if sizes and emb is not None and emb.num_values not in sizes:
        why.append(f"{what}, which the tensors do not fit: c_embedding holds {emb.num_values} values, "
                   f"{d.name}'s {' or '.join(map(str, sizes))}")
        return
    try:
        cfg = canonical_config(d.model, "bf16")
    except ConfigError:
        caveats.append(f"{what}; sbs has no canonical config of {d.name} to check the tensors against (converting "
                       "the file needs `sbs repair --config-from OTHER.sbs` or `--model NAME`)")
        return
    problem = _misfit(x, cfg, known)
    if problem:
        why.append(f"{what}, which the tensors do not fit: {problem}")
    elif d.model in GEMMA3_LM_MODELS:
        caveats.append(f"{what}, whose use_global_timescale is false: the global layers run with RoPE base 1e4, "
                       "not 1e6 (builds before 2026 assume the vision model of the same size)")
    else:
        caveats.append(what)


def _misfit(x: _Facts, cfg, known: set[int]) -> str | None:
    """The first thing that makes gemma.cpp abort when it loads the pre-2025 tensors with ``cfg``: an unknown
    name, a tensor of the wrong size, or a missing required one (blobs with unknown prefixes are skipped)."""
    have = {n: t for n, t in x.tensors.items() if t.type in known}
    specs = {s.name: s for s in expected_tensors(cfg)}
    for name, t in have.items():
        s = specs.get(name)
        if s is None:
            if split_name(name)[0] in REGISTERED_UNUSED:
                continue
            return f"{cfg.model_name} has no tensor {name} ('Unknown tensor {name}')"
        want = packed_bytes(t.type, s.rows * s.cols)
        if want != t.bytes:
            return (f"{t.key} has {t.bytes} bytes, {cfg.model_name}'s {name} ({s.rows} x {s.cols} "
                    f"{type_name(t.type)}) needs {want} bytes")
    missing = next((s.name for s in specs.values() if s.required and s.name not in have), None)
    return f"{missing} is absent ('Tensor {missing} is required but not found')" if missing else None


def evaluate(f: SbsFile | None, md: Metadata | None, findings: list[Finding]) -> list[Generation]:
    """One :class:`Generation` per entry of :data:`GENERATIONS`."""
    out: list[Generation] = []
    if f is None or md is None:
        for gi in GENERATIONS:
            out.append(Generation(gi.key, gi.label, False, None, ["the file cannot be read as a BlobStore"]))
        return out
    x = _Facts(f, md, findings)
    for gi in GENERATIONS:
        g = gi.key
        why: list[str] = []
        run_why: list[str] = []
        caveats: list[str] = []
        if x.errors:
            codes = sorted({e.code for e in x.errors})
            why.append("the errors reported above (" + ", ".join(codes) + ")")
        _container(g, x, why, caveats)
        if x.era == "pre-2025":
            _no_config(g, x, why, caveats)
        elif x.era == "single-file-prefixed":
            if g != "pre-2025":
                why.append("type-prefixed tensor names (Dec 2024 - May 2025 single-file): gemma.cpp since 2025-05-06 "
                           "aborts ('Tensor c_embedding is required but not found'); `sbs repair` strips the "
                           "prefixes")
            else:
                caveats.append("only builds from 2024-12-19 (9d40f01) read the embedded config and toc")
        else:
            if g == "pre-2025":
                why.append("single-file format with plain tensor names: needs gemma.cpp from 2025-05-06 or later")
            else:
                _config(g, x, why, caveats)
        _types(g, x, why, caveats)
        _forms(g, x, run_why, caveats)
        _nuq(g, x, run_why, caveats)
        if g == "2025-05-06" and x.has_vit:
            run_why.append("any model with ViT layers aborts in the weight reshape ('Assert att_weights.HasPtr()', "
                           "fixed 2025-05-07 in e9ecb77)")
        if g in V2_READERS and x.size % END_ALIGN and not why:
            caveats.append("file size not a multiple of 64 KiB: gemma.cpp reads it instead of memory-mapping it")
        loads = not why
        runs = (not run_why) if loads else None
        out.append(Generation(g, gi.label, loads, runs, why + run_why + [f"caveat: {c}" for c in caveats]))
    return out


def compat_findings(gens: list[Generation], findings: list[Finding]) -> list[Finding]:
    """``legacy-only`` / ``runtime-unsupported`` warnings for files without errors, or ``unloadable``
    when no generation loads the file at all (nothing else would say so)."""
    if any(x.severity == "error" for x in findings):
        return []
    cur = gens[-1]
    if cur.loads and cur.runs:
        return []
    older = [g for g in gens[:-1] if g.loads and g.runs]
    reasons = [r for r in cur.reasons if not r.startswith("caveat:")]
    if cur.loads:
        return [finding("runtime-unsupported", "current gemma.cpp reads this file but cannot run it: "
                        + "; ".join(reasons),
                        hint=("gemma.cpp builds of " + ", ".join(g.key for g in older) + " run it") if older else
                        "re-export the model in a supported type (SFP, BF16, F32 or I8)")]
    if older:
        return [finding("legacy-only", "valid for older gemma.cpp (" + ", ".join(g.key for g in older)
                        + ") but current gemma.cpp cannot load it: " + "; ".join(reasons),
                        hint="use a matching gemma.cpp build, or convert the file with `sbs repair`")]
    readers = [g for g in gens[:-1] if g.loads]
    if readers:
        return [finding("runtime-unsupported", "no gemma.cpp generation runs this file: "
                        + ", ".join(g.key for g in readers) + " read it but cannot run it; current gemma.cpp: "
                        + "; ".join(reasons),
                        hint="re-export the model in a supported type (SFP, BF16, F32 or I8)")]
    return [finding("unloadable", "no gemma.cpp generation loads this file; current gemma.cpp: "
                    + "; ".join(reasons),
                    hint="see the compatibility table; `sbs repair --dry-run` shows what it can fix")]
