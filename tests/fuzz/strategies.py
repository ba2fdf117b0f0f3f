"""Hypothesis strategies: (a) valid ``.sbs`` files, (b) mutations of valid files.

(a) :func:`model_plans` draws a random config of every family the schema allows (Gemma 2,
Gemma 3 text, Gemma 3 + ViT, PaliGemma 2; current and May-2025 schema revisions; obsolete
models only where the old schema allows them), a random but complete tensor set (each
"exactly one of" form, optional biases), random element types, tokenizer, layout (V1/V2)
and era (single-file, pre-2025 E0, prefixed E1). :func:`model.build` turns a plan into bytes.

(b) :func:`mutations` draws a stack of 1-3 mutations of a base file, aimed at the file's
structure through a :class:`FileMap` (which byte is header, directory, padding, config word,
toc word, tokenizer or tensor payload): bit flips, byte runs, truncation at every region
boundary, extension, header/directory field overwrites with boundary values (0, 1, 2^31,
2^32-1, 2^63, file size +- 1, ...), swapped and duplicated directory entries, key corruption,
config/toc word overwrites, length-prefix inflation and string corruption.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from sbs_tools.blobstore import read_directory
from sbs_tools.config import SCHEMAS, LayerConfig, ModelConfig, VitConfig
from sbs_tools.fields import Schema
from sbs_tools.toc import MATPTR

from . import model as M

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
SP256 = (FIXTURES / "corpus" / "tiny_sp256.model").read_bytes()
SP512 = (FIXTURES / "corpus" / "tiny_sp512.model").read_bytes()
#: gemma.cpp-written and project fixtures used as mutation bases (small ones first).
FIXTURE_FILES = sorted([*FIXTURES.glob("corpus/v*/*.sbs"), *FIXTURES.glob("legacy/*.sbs")],
                       key=lambda p: p.stat().st_size)
BROKEN_FILES = sorted(FIXTURES.glob("corpus/broken/*.sbs"))


# -- (a) valid files ------------------------------------------------------------------------------

#: family -> (models allowed at HEAD, models allowed only by the May-2025 schema)
FAMILIES = {
    "gemma2": ((7, 3, 4), (1, 2, 6)),  # + obsolete GEMMA_2B/7B/TINY (Gemma 1 style) in 2025-05
    "gemma3": ((15, 18), ()),
    "gemma3-vlm": ((14, 16, 17), ()),
    "paligemma2": ((10, 11, 12, 13), (8, 9)),  # + PaliGemma 1 in 2025-05
}


@st.composite
def layer_configs(draw, D: int, *, vit: bool, family: str, vit_type: int) -> LayerConfig:
    H = draw(st.sampled_from([1, 2, 4]))
    K = H if vit else draw(st.sampled_from([k for k in (1, 2, 4) if H % k == 0]))
    return LayerConfig(
        model_dim=D, ff_hidden_dim=draw(st.sampled_from([8, 16, 24])), heads=H, kv_heads=K,
        qkv_dim=draw(st.sampled_from([4, 8])),
        ff_biases=False if vit else draw(st.sampled_from([False, False, False, False, True])),
        optimized_gating=True, post_norm=0 if vit else 1, type=vit_type if vit else 0,
        use_qk_norm=(family.startswith("gemma3") and not vit))


@st.composite
def configs(draw, *, family: str | None = None, revision: str | None = None,
            vocab: int | None = None) -> ModelConfig:
    """A self-consistent ModelConfig of one family (dims tiny)."""
    family = family or draw(st.sampled_from(sorted(FAMILIES)))
    revision = revision or draw(st.sampled_from(["2025-10", "2025-10", "2025-10", "2025-05"]))
    current, old = FAMILIES[family]
    models = current + (old if revision == "2025-05" else ())
    if revision == "2025-05":
        models = tuple(m for m in models if m < 18)  # GEMMA3_270M (18) came after that schema
    model = draw(st.sampled_from(models))
    D = draw(st.sampled_from([8, 16, 32]))
    V = vocab or draw(st.sampled_from([16, 32, 48]))
    nl = draw(st.integers(1, 3))
    seq = draw(st.sampled_from([16, 32]))
    first = draw(layer_configs(D, vit=False, family=family, vit_type=0))
    # gemma.cpp's inference (and ours) assumes one kv_heads/qkv_dim across layers; vary the rest.
    layers = [first] + [LayerConfig(**{**vars(first), "ff_hidden_dim": draw(st.sampled_from([8, 16, 24]))})
                        for _ in range(nl - 1)]
    if family.startswith("gemma3"):
        windows = [seq if (i + 1) % 6 == 0 else draw(st.sampled_from([4, 8])) for i in range(nl)]
    else:
        windows = [draw(st.sampled_from([8, seq])) for _ in range(nl)]
    vit = VitConfig()
    if family in ("gemma3-vlm", "paligemma2"):
        vit_type = 1 if revision == "2025-10" else 2
        Dv = draw(st.sampled_from([8, 16]))
        P = draw(st.sampled_from([2, 4]))
        k = draw(st.sampled_from([2, 4]))
        vlc = draw(layer_configs(Dv, vit=True, family=family, vit_type=vit_type))
        vit = VitConfig(model_dim=Dv, seq_len=k * k, num_scales=0, patch_width=P, image_size=P * k,
                        layer_configs=[vlc] * draw(st.integers(1, 2)), pool_dim=1)
    gemma2 = family in ("gemma2", "paligemma2")
    wrapping = {"gemma3-vlm": 2, "paligemma2": 3}.get(family) or draw(st.sampled_from([0, 1]))
    cfg = ModelConfig(
        # Printable ASCII, including rich markup ("[/]") and format characters ("%s", "{}").
        display_name=draw(st.one_of(st.text("abcdefghijklmnopqrstuvwxyz_0123456789", max_size=20),
                                    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24))),
        model=model, wrapping=wrapping, weight=0, num_layers=nl, model_dim=D, vocab_size=V, max_seq_len=seq,
        att_cap=50.0 if gemma2 else 0.0, final_cap=30.0 if gemma2 else 0.0,
        query_scale=draw(st.sampled_from([0, 1])), layer_configs=layers, attention_window_sizes=windows,
        vit_config=vit, eos_id=1, secondary_eos_id=107 if gemma2 else 106,
        scale_base_names=draw(st.sampled_from([[], ["att_ein", "qkv_ein", "gating_ein", "linear_w"]])),
        schema_revision=revision)
    if revision == "2025-10":
        _fields_2026(draw, cfg, family)
    else:  # the May-2025 schema: its writers knew 23 fields and 15-field layers
        cfg.stored_fields = 23
        for lc in cfg.layer_configs + cfg.vit_config.layer_configs:
            lc.stored_fields = 15
    return cfg


def _fields_2026(draw, cfg: ModelConfig, family: str) -> None:
    """The fields, enum values and model numbers gemma.cpp added after 3ed403e (addendum §1-§4), in the
    forms writers produce: 3ed403e's (no new field), the compatible recipe (15-field layers, trailing
    top-level fields) or the newest writer's (every field)."""
    form = draw(st.sampled_from(["3ed403e", "compact", "full"]))
    if form == "3ed403e":
        cfg.stored_fields = 23
        for lc in cfg.layer_configs + cfg.vit_config.layer_configs:
            lc.stored_fields = 15
        return
    cfg.use_global_timescale = cfg.model in (14, 15, 16, 17) or draw(st.booleans())
    if family == "gemma3" and draw(st.booleans()):
        cfg.model = draw(st.sampled_from([20, 21, 22]))  # text-only Gemma 3 (_LM)
    cfg.rope_theta = draw(st.sampled_from([10000.0, 1e6]))
    cfg.global_rope_theta = draw(st.sampled_from([1e6, 10000.0]))
    cfg.partial_rotary_factor = draw(st.sampled_from([1.0, 0.25]))
    cfg.query_scale = draw(st.sampled_from([cfg.query_scale, 2]))  # 2: QueryScaleType::One
    if form == "full":
        for lc in cfg.layer_configs:
            lc.post_qk = draw(st.sampled_from([0, 1, 8]))  # 8: NormLocalRope
            lc.activation = draw(st.sampled_from([0, 1]))  # 1: Silu
            lc.norm_v = draw(st.booleans())
            lc.route_scale = draw(st.sampled_from([1.0, 1.5]))
    else:
        # at least up to the last field that differs from its default (a writer never drops those)
        lo = max(24, cfg.compact_form().stored_fields)
        cfg.stored_fields = draw(st.integers(lo, 38)) if lo <= 38 else None  # 39: all (global_rope_theta)
        for lc in cfg.layer_configs + cfg.vit_config.layer_configs:
            lc.stored_fields = 15


def _block_dims(draw, cfg: ModelConfig) -> None:
    """Dimensions for Q4_0/MXFP4 weights: qkv_dim 32 (att_ein's per-head blocks need it), and model_dim
    and ff_hidden_dim mostly multiples of 32 -- sometimes not, so some matrices' 32-value blocks straddle
    rows (verify: ``block-straddle``)."""
    D = draw(st.sampled_from([32, 32, 64, 48]))
    ff = [draw(st.sampled_from([32, 64, 64, 40])) for _ in cfg.layer_configs]
    cfg.model_dim = D
    for lc, f in zip(cfg.layer_configs, ff):
        lc.model_dim, lc.qkv_dim, lc.ff_hidden_dim = D, 32, f


@st.composite
def model_plans(draw, *, eras=("single", "single", "single", "e0", "e1"), layouts=("v1", "v2"),
                families=None, weights=(M.F32, M.BF16, M.SFP, M.NUQ, M.I8, M.Q4_0, M.MXFP4),
                revision: str | None = None) -> M.ModelPlan:
    """A random valid model: config, complete tensor set, types, tokenizer, layout, era."""
    era = draw(st.sampled_from(eras))
    tok_choice = draw(st.sampled_from(["sp256", "sp256", "none", "sp512"]))
    tokenizer, vocab = {"sp256": (SP256, 256), "sp512": (SP512, 512), "none": (None, None)}[tok_choice]
    family = draw(st.sampled_from(families)) if families else None
    cfg = draw(configs(family=family, vocab=vocab, revision=revision))
    weight = draw(st.sampled_from(weights))
    if (era != "single" or cfg.schema_revision != "2025-10") and weight in (M.I8, M.Q4_0, M.MXFP4):
        weight = M.SFP  # I8 (2025-10), Q4_0 and MXFP4 (2026) never existed in earlier eras / schemas
    if weight in M.BLOCK_BYTES:
        _block_dims(draw, cfg)
    cfg.weight = weight
    forms = [(draw(st.sampled_from(["ein", "w"])), draw(st.sampled_from(["ein", "split"])),
              draw(st.sampled_from(["ein", "split"]))) for _ in cfg.layer_configs]
    if era == "e0":
        forms = [("ein", "ein", "ein")] * len(forms)
    tensors = M.tensor_plan(cfg, weight, forms)
    for tp in tensors:
        if tp.t in (M.SFP, M.NUQ) and tp.kind == "matrix" and draw(st.booleans()):
            tp.scale = draw(st.sampled_from([0.5, 1.5, 3.0, 1.0 / 3]))
    order = draw(st.permutations(range(len(tensors)))) if draw(st.booleans()) else range(len(tensors))
    tensors = [tensors[i] for i in order]
    layout = draw(st.sampled_from(layouts)) if era == "single" else "v1"
    seed = draw(st.integers(0, 2**32 - 1))
    return M.ModelPlan(cfg, tensors, tokenizer, layout, era, seed)


# -- file maps -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Region:
    start: int
    end: int
    kind: str  # header | placeholder | keys | ranges | padding | config | toc | tokenizer | tensor | blob
    name: str = ""


@dataclass
class FileMap:
    """Where everything of a *valid* file is; built once per base file."""

    data: bytes
    layout: str
    regions: list[Region]
    header_at: int  # offset of the effective header
    front_at: int | None  # V2: the placeholder
    dir_at: int
    n: int
    entries: list[tuple[str, int, int]]  # key, offset, size
    config_words: list[tuple[int, str]] = field(default_factory=list)  # (byte offset in file, role)
    toc_words: list[tuple[int, str]] = field(default_factory=list)
    kind_of_key: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.data)

    def of(self, kind: str) -> list[Region]:
        return [r for r in self.regions if r.kind == kind]

    def boundaries(self) -> list[int]:
        return sorted({b for r in self.regions for b in (r.start, r.end)})

    def region_at(self, pos: int) -> Region:
        for r in self.regions:
            if r.start <= pos < r.end:
                return r
        return Region(pos, pos + 1, "outside")


def walk_words(schema: Schema, words: np.ndarray, pos: int = 0) -> tuple[list[tuple[int, str]], int]:
    """(word index, role) for every word of one valid serialized object; and the end position.

    Roles: prefix, strlen, str, count, u32, i32, f32, bool, enum (an independent walker for
    *valid* data, used only to aim mutations)."""
    out: list[tuple[int, str]] = []

    def field_(f, p: int) -> int:
        if f.kind == "struct":
            return struct_(f.schema, p)
        if f.kind == "string":
            k = int(words[p])
            out.append((p, "strlen"))
            out.extend((p + 1 + i, "str") for i in range(k))
            return p + 1 + k
        if f.kind == "vector":
            c = int(words[p])
            if c > len(words) - p - 1:  # every element takes a word: a count past the end is no valid object
                raise ValueError(f"vector of {c} elements at word {p} overruns the {len(words)}-word object")
            out.append((p, "count"))
            p += 1
            for _ in range(c):
                p = field_(f.elem, p)
            return p
        if f.kind == "u64":
            out.extend([(p, "u32"), (p + 1, "u32")])
            return p + 2
        out.append((p, f.kind))
        return p + 1

    def struct_(s: Schema, p: int) -> int:
        m = int(words[p])
        out.append((p, "prefix"))
        end = p + 1 + m
        q = p + 1
        flags: dict[str, int] = {}
        for f in s.fields:
            if q >= end:
                break
            if f.cond is not None and not flags.get(f.cond):
                continue  # a conditional block (is_encoder_decoder) that is not stored
            if f.kind == "bool":
                flags[f.name] = int(words[q])
            q = field_(f, q)
        return end

    end = struct_(schema, pos)
    return out, end


def _blob_kind(key: str) -> str:
    return key if key in ("config", "toc", "tokenizer") else ("blob" if key == "Fscales" else "tensor")


def file_map(data: bytes) -> FileMap:
    """Map a valid file (parsed with the read path, which is tested against gemma.cpp files)."""
    return _file_map_cached(hashlib.sha1(data).hexdigest(), data)


@lru_cache(maxsize=64)
def _file_map_cached(_digest: str, data: bytes) -> FileMap:
    buf = np.frombuffer(data, dtype=np.uint8)
    d = read_directory(buf)
    n = len(d.entries)
    regions: list[Region] = []
    if d.layout == "v1":
        regions.append(Region(0, 16, "header"))
        front = None
    else:
        regions.append(Region(0, 16, "placeholder"))
        front = 0
    regions += [Region(d.dir_offset, d.dir_offset + 16 * n, "keys"),
                Region(d.dir_offset + 16 * n, d.dir_offset + 32 * n, "ranges")]
    if d.layout == "v2":
        regions.append(Region(len(data) - 16, len(data), "header"))
    entries = []
    for e in d.entries:
        regions.append(Region(e.offset, e.offset + e.size, _blob_kind(e.key), e.key))
        entries.append((e.key, e.offset, e.size))
    regions.sort(key=lambda r: r.start)
    filled, pos = [], 0
    for r in regions:
        if r.start > pos:
            filled.append(Region(pos, r.start, "padding"))
        filled.append(r)
        pos = max(pos, r.end)
    if pos < len(data):
        filled.append(Region(pos, len(data), "padding"))
    fm = FileMap(data, d.layout, filled, d.header.offset, front, d.dir_offset, n, entries,
                 kind_of_key={k: _blob_kind(k) for k, _, _ in entries})
    by_key = {k: (o, s) for k, o, s in entries}
    if "config" in by_key:
        o, s = by_key["config"]
        words = buf[o:o + s].view("<u4")
        for rev in ("2025-10", "2025-05"):
            try:
                roles, _ = walk_words(SCHEMAS[rev], words)
                fm.config_words = [(o + 4 * i, role) for i, role in roles]
                break
            except (IndexError, ValueError):
                continue
    if "toc" in by_key:
        o, s = by_key["toc"]
        words = buf[o:o + s].view("<u4")
        p = 0
        while p < len(words):
            roles, p = walk_words(MATPTR, words, p)
            fm.toc_words += [(o + 4 * i, role) for i, role in roles]
    return fm


# -- (b) mutations -------------------------------------------------------------------------------

U64_BOUNDARY = (0, 1, 2, 15, 16, 255, 256, 257, 4096, 65535, 65536, 65537, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
                2**63 - 1, 2**63, 2**64 - 1)
U32_BOUNDARY = (0, 1, 2, 3, 4, 7, 8, 11, 12, 15, 16, 63, 64, 65, 255, 256, 1024, 16383, 16384, 65535, 65536,
                65537, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1,
                0x7FC00000, 0x7F800000, 0xFF800000, 0x3F800000, 0x80000000, 0x80808080)


@dataclass
class Mutated:
    data: bytes
    ops: list[str]

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))

    def __repr__(self) -> str:
        return f"Mutated({len(self.data)} bytes, ops={self.ops})"


def _put(data: bytearray, at: int, fmt: str, value: int) -> None:
    size = struct.calcsize(fmt)
    if 0 <= at and at + size <= len(data):
        data[at:at + size] = struct.pack(fmt, value & ((1 << (8 * size)) - 1))


def _u64_values(fm: FileMap, draw, current: int) -> int:
    size = len(fm.data)
    others = [o for _, o, _ in fm.entries] + [s for _, _, s in fm.entries]
    return draw(st.one_of(
        st.sampled_from(U64_BOUNDARY),
        st.sampled_from([size - 1, size, size + 1, size - 16, size + 65536, current - 1, current + 1,
                         current + 256, current - 256, current * 2, current + 2**32]),
        st.sampled_from(others),
        st.integers(0, 2**64 - 1)))


def op_bitflip(fm: FileMap, data: bytearray, draw) -> str:
    kinds = sorted({r.kind for r in fm.regions if r.end > r.start})  # (a zero-size blob has no bit to flip)
    if not kinds:
        return "bitflip: no region holds a byte"
    kind = draw(st.sampled_from(kinds))
    r = draw(st.sampled_from([x for x in fm.of(kind) if x.end > x.start]))
    pos = draw(st.integers(r.start, r.end - 1))
    bit = draw(st.integers(0, 7))
    if pos < len(data):
        data[pos] ^= 1 << bit
    return f"bitflip {kind}:{r.name} @{pos} bit {bit}"


def op_byte_run(fm: FileMap, data: bytearray, draw) -> str:
    pos = draw(st.one_of(st.integers(0, max(len(data) - 1, 0)), st.sampled_from(fm.boundaries())))
    n = draw(st.sampled_from([1, 2, 4, 8, 16, 31, 64, 300]))
    fill = draw(st.sampled_from(["00", "ff", "80", "7f", "random"]))
    chunk = draw(st.binary(min_size=n, max_size=n)) if fill == "random" else bytes.fromhex(fill) * n
    end = min(pos + n, len(data))
    data[pos:end] = chunk[:end - pos]
    return f"byte-run {fill} x{n} @{pos} ({fm.region_at(pos).kind})"


def op_truncate(fm: FileMap, data: bytearray, draw) -> str:
    cut = draw(st.sampled_from(fm.boundaries())) + draw(st.sampled_from([-1, 0, 0, 1, 16]))
    cut = min(max(cut, 0), len(data))
    del data[cut:]
    return f"truncate to {cut}"


def op_extend(fm: FileMap, data: bytearray, draw) -> str:
    n = draw(st.sampled_from([1, 4, 15, 16, 255, 256, 4096, 65536]))
    fill = draw(st.sampled_from(["zeros", "random", "copy-tail"]))
    if fill == "zeros":
        data += bytes(n)
    elif fill == "random":
        data += draw(st.binary(min_size=min(n, 256), max_size=min(n, 256))) * (n // min(n, 256))
    else:
        data += bytes(data[-n:]) if len(data) >= n else bytes(n)
    return f"extend +{n} {fill}"


def op_header_field(fm: FileMap, data: bytearray, draw) -> str:
    at = draw(st.sampled_from([fm.header_at] + ([fm.front_at] if fm.front_at is not None else [])))
    which = draw(st.sampled_from(["magic", "num_blobs", "file_bytes"]))
    if which == "file_bytes":
        cur = struct.unpack_from("<Q", fm.data, at + 8)[0]
        v = _u64_values(fm, draw, cur)
        _put(data, at + 8, "<Q", v)
    else:
        v = draw(st.sampled_from(U32_BOUNDARY + (fm.n - 1, fm.n + 1, 0x0A534253 ^ 1, 0x0A534252)))
        _put(data, at + (0 if which == "magic" else 4), "<I", v)
    return f"header@{at}.{which} = {v}"


def op_dir_field(fm: FileMap, data: bytearray, draw) -> str:
    i = draw(st.integers(0, fm.n - 1))
    which = draw(st.sampled_from(["offset", "size"]))
    at = fm.dir_at + 16 * fm.n + 16 * i + (0 if which == "offset" else 8)
    cur = fm.entries[i][1 if which == "offset" else 2]
    v = _u64_values(fm, draw, cur)
    _put(data, at, "<Q", v)
    return f"entry {i} ({fm.entries[i][0]}).{which} = {v}"


def op_dir_swap(fm: FileMap, data: bytearray, draw) -> str:
    if fm.n < 2:
        return "swap (no-op: one entry)"
    i, j = draw(st.lists(st.integers(0, fm.n - 1), min_size=2, max_size=2, unique=True))
    what = draw(st.sampled_from(["key", "range", "both"]))
    parts = []
    if what in ("key", "both"):
        parts.append((fm.dir_at + 16 * i, fm.dir_at + 16 * j))
    if what in ("range", "both"):
        parts.append((fm.dir_at + 16 * (fm.n + i), fm.dir_at + 16 * (fm.n + j)))
    for a, b in parts:
        if b + 16 <= len(data) and a + 16 <= len(data):
            data[a:a + 16], data[b:b + 16] = bytes(data[b:b + 16]), bytes(data[a:a + 16])
    return f"swap entries {i}<->{j} ({what})"


def op_dir_dup(fm: FileMap, data: bytearray, draw) -> str:
    if fm.n < 2:
        return "dup (no-op: one entry)"
    i, j = draw(st.lists(st.integers(0, fm.n - 1), min_size=2, max_size=2, unique=True))
    what = draw(st.sampled_from(["key", "both"]))
    spans = [(fm.dir_at + 16 * i, fm.dir_at + 16 * j)]
    if what == "both":
        spans.append((fm.dir_at + 16 * (fm.n + i), fm.dir_at + 16 * (fm.n + j)))
    for src, dst in spans:
        if max(src, dst) + 16 <= len(data):
            data[dst:dst + 16] = bytes(data[src:src + 16])
    return f"duplicate entry {i} onto {j} ({what})"


def op_key_corrupt(fm: FileMap, data: bytearray, draw) -> str:
    i = draw(st.integers(0, fm.n - 1))
    key = fm.entries[i][0].encode("latin-1")
    at = fm.dir_at + 16 * i
    stem, _, digits = key.rpartition(b"_")
    if digits.isdigit() and draw(st.booleans()):  # a new layer number (gemma.cpp asserts < 999)
        room = 16 - len(stem) - 1
        n = draw(st.sampled_from([1, 9, 998, 999, 1000, 10**room - 1]) | st.integers(0, 10**room - 1))
        new = (stem + b"_" + str(n).encode())[:16].ljust(16, b"\0")
        if at + 16 <= len(data):
            data[at:at + 16] = new
        return f"key {i} ({fm.entries[i][0]}) layer number -> {n}"
    pos = draw(st.integers(0, 15))
    v = draw(st.sampled_from([0x00, 0x01, 0x20, 0x5F, 0x7F, 0x80, 0xFF, ord("x"), ord("["), ord("]"), ord("/")]))
    if at + pos < len(data):
        data[at + pos] = v
    where = "after-NUL" if pos >= len(key) else "in-name"
    return f"key {i} ({fm.entries[i][0]}) byte {pos} ({where}) = {v:#x}"


def _word_op(words: list[tuple[int, str]], roles, fm, data, draw, label: str) -> str:
    pool = [w for w in words if w[1] in roles] or words
    if not pool:
        return f"{label}: no words"
    at, role = draw(st.sampled_from(pool))
    cur = struct.unpack_from("<I", fm.data, at)[0]
    v = draw(st.one_of(st.sampled_from(U32_BOUNDARY),
                       st.sampled_from([(cur + 1) & 0xFFFFFFFF, (cur - 1) & 0xFFFFFFFF, cur ^ 0x80, cur * 2]),
                       st.integers(0, 2**32 - 1)))
    _put(data, at, "<I", v)
    return f"{label} word @{at} ({role}) {cur} -> {v}"


def op_config_word(fm, data, draw) -> str:
    roles = draw(st.sampled_from([("prefix", "count", "strlen"), ("enum", "bool", "f32"), ("u32", "i32"),
                                  ("str",), ("prefix", "count", "strlen", "enum", "bool", "f32", "u32", "i32", "str")]))
    return _word_op(fm.config_words, roles, fm, data, draw, "config")


def op_toc_word(fm, data, draw) -> str:
    roles = draw(st.sampled_from([("prefix", "strlen"), ("enum", "f32"), ("u32",), ("str",),
                                  ("prefix", "strlen", "enum", "f32", "u32", "str")]))
    return _word_op(fm.toc_words, roles, fm, data, draw, "toc")


def op_length_inflate(fm, data, draw) -> str:
    pool = [w for w in fm.config_words + fm.toc_words if w[1] in ("prefix", "count", "strlen")]
    if not pool:
        return "inflate: no length words"
    at, role = draw(st.sampled_from(pool))
    cur = struct.unpack_from("<I", fm.data, at)[0]
    k = draw(st.sampled_from([1, 2, 3, 7, 64, 65, 1000, 65536, 65537, 2**31, 2**32 - 1 - cur]))
    sign = draw(st.sampled_from([1, 1, -1]))
    v = (cur + sign * k) & 0xFFFFFFFF
    _put(data, at, "<I", v)
    return f"length {role} @{at}: {cur} -> {v}"


def op_string_corrupt(fm, data, draw) -> str:
    pool = [w for w in fm.config_words + fm.toc_words if w[1] == "str"]
    if not pool:
        return "string: none"
    at, _ = draw(st.sampled_from(pool))
    pos = at + draw(st.integers(0, 3))
    v = draw(st.sampled_from([0x00, 0x80, 0xC3, 0xFF, 0x7F, 0x01, ord("A"), ord("_"), ord("["), ord("/")]))
    if pos < len(data):
        data[pos] = v
    return f"string byte @{pos} = {v:#x}"


def op_payload(fm, data, draw) -> str:
    regions = fm.of("tensor") or fm.of("blob") or fm.regions
    r = draw(st.sampled_from(regions))
    pos = draw(st.integers(r.start, r.end - 1))
    pat = draw(st.sampled_from(["nan32", "inf16", "80", "zero-scale", "flip"]))
    if pat == "nan32":
        chunk = struct.pack("<I", 0x7FC00000)
        pos -= (pos - r.start) % 4
    elif pat == "inf16":
        chunk = struct.pack("<H", 0x7F80)
        pos -= (pos - r.start) % 2
    elif pat == "80":
        chunk = b"\x80"
    elif pat == "zero-scale":
        chunk, pos = b"\0\0", r.start + 132 * ((pos - r.start) // 132)
    else:
        chunk = bytes([data[pos] ^ (1 << draw(st.integers(0, 7)))]) if pos < len(data) else b""
    end = min(pos + len(chunk), r.end, len(data))
    data[pos:end] = chunk[:end - pos]
    return f"payload {r.name} @{pos} {pat}"


OPS = {
    "bitflip": op_bitflip, "byte-run": op_byte_run, "truncate": op_truncate, "extend": op_extend,
    "header": op_header_field, "dir-field": op_dir_field, "dir-swap": op_dir_swap, "dir-dup": op_dir_dup,
    "key": op_key_corrupt, "config-word": op_config_word, "toc-word": op_toc_word,
    "inflate": op_length_inflate, "string": op_string_corrupt, "payload": op_payload,
}


@st.composite
def mutations(draw, base: bytes, *, ops: tuple[str, ...] | None = None, max_ops: int = 3) -> Mutated:
    """1..max_ops stacked mutations of ``base``; ``ops`` limits which kinds are drawn."""
    fm = file_map(base)
    data = bytearray(base)
    names = ops or tuple(OPS)
    done = []
    for _ in range(draw(st.integers(1, max_ops))):
        done.append(OPS[draw(st.sampled_from(names))](fm, data, draw))
    return Mutated(bytes(data), done)


# -- bases --------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def fixture_bytes(path: Path) -> bytes:
    return path.read_bytes()


class Base(bytes):
    """File bytes with a short repr (what hypothesis prints for a failing example)."""

    label: str = ""

    def __repr__(self) -> str:
        return f"<{self.label}: {len(self)} bytes>"


def _base(data: bytes, label: str) -> Base:
    b = Base(data)
    b.label = label
    return b


def fixture_bases(max_bytes: int = 2 << 20) -> st.SearchStrategy[bytes]:
    paths = [p for p in FIXTURE_FILES if p.stat().st_size <= max_bytes]
    return st.sampled_from(paths).map(lambda p: _base(fixture_bytes(p), f"fixture {p.parent.name}/{p.name}"))


def generated_bases(**kw) -> st.SearchStrategy[bytes]:
    return model_plans(**kw).map(lambda plan: _base(M.build(plan), repr(plan)))


def bases(fixture_weight: int = 1, generated_weight: int = 3, max_fixture_bytes: int = 2 << 20):
    return st.one_of(*([fixture_bases(max_fixture_bytes)] * fixture_weight),
                     *([generated_bases()] * generated_weight))
