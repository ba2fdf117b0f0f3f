"""The data behind ``sbs report``: byte regions, layer stacks and value statistics of one file.

Everything here is plain data (dataclasses) computed from an opened
:class:`~sbs_tools.sbsfile.SbsFile`, its config (via :mod:`sbs_tools.tensors`)
and the :func:`sbs_tools.verify` report; :mod:`.html` only draws it.

* :func:`byte_regions` cuts the file into header, directory, blobs, expected
  alignment padding and unexpected gaps, so that every byte belongs to exactly
  one drawn region.
* :func:`layer_towers` lays the tensors out as a text tower and a vision
  tower: one row per layer, one column per tensor slot of that layer type,
  with a hole where the config calls for a tensor the file lacks (for an
  exactly-one-of pair such as ``att_ein_N`` / ``att_w_N`` the hole is named by
  the canonical form).
* :func:`value_stats` decodes a tensor in bounded chunks and returns
  min/max/mean/std, zero and non-finite counts and a histogram.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..blobstore import BLOB_ALIGN, HEADER_BYTES, Directory, round_up
from ..config import ModelConfig
from ..errors import FileChangedError, SbsError
from ..sbsfile import METADATA_KEYS, SbsFile, TensorInfo, read_buffer
from ..source import stat_input
from ..tensors import (VIT_LAYER_BASES, TensorSpec, choices, gemma_layer_tensors, model_tensors, split_name,
                       vit_layer_tensors)
from ..types import Type, packed_bytes

SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}

#: Colour categories of the byte map and the layer stack, in legend order.
TYPE_CATEGORIES = ("F32", "BF16", "SFP", "NUQ", "I8")
CATEGORY_LABELS = {
    "F32": "F32 tensor", "BF16": "BF16 tensor", "SFP": "SFP tensor", "NUQ": "NUQ tensor", "I8": "I8 tensor",
    "other": "other element type", "meta": "metadata (config, toc, tokenizer)", "blob": "blob not in the toc",
    "header": "header", "directory": "directory", "pad": "alignment padding (zeros)", "gap": "unexpected gap",
}

#: Text-tower columns: (column key, bases that may fill it, header label, what it is).
TEXT_COLUMNS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("att", ("att_ein", "att_w"), "att_ein", "attention output: att_ein (or the pre-transposed att_w)"),
    ("qkv", ("qkv_ein", "qkv1_w", "qkv2_w"), "qkv_ein", "Q/K/V projection: qkv_ein (or qkv1_w + qkv2_w)"),
    ("gating", ("gating_ein", "gating1_w", "gating2_w"), "gating_ein",
     "FFW gate/up: gating_ein (or gating1_w + gating2_w)"),
    ("linear_w", ("linear_w",), "linear_w", "FFW down projection"),
    ("pre_att_ns", ("pre_att_ns",), "pre_att_ns", "pre-attention RMSNorm"),
    ("pre_ff_ns", ("pre_ff_ns",), "pre_ff_ns", "pre-FFW RMSNorm"),
    ("post_att_ns", ("post_att_ns",), "post_att_ns", "post-attention RMSNorm (post_norm=Scale)"),
    ("post_ff_ns", ("post_ff_ns",), "post_ff_ns", "post-FFW RMSNorm (post_norm=Scale)"),
    ("query_norm", ("query_norm",), "query_norm", "query RMSNorm (use_qk_norm)"),
    ("key_norm", ("key_norm",), "key_norm", "key RMSNorm (use_qk_norm)"),
    ("ffw_gat_b", ("ffw_gat_b",), "ffw_gat_b", "FFW gating bias (ff_biases)"),
    ("ffw_out_b", ("ffw_out_b",), "ffw_out_b", "FFW output bias (ff_biases)"),
)
VIT_COLUMNS: tuple[tuple[str, tuple[str, ...], str, str], ...] = tuple(
    (b, (b,), b, what) for b, what in (
        ("qkv_ein_w", "ViT q,k,v per head"), ("qkv_ein_b", "ViT q,k,v bias"),
        ("attn_out_w", "ViT attention output"), ("attn_out_b", "ViT attention output bias"),
        ("ln_0_scale", "pre-attention LayerNorm scale"), ("ln_0_bias", "pre-attention LayerNorm bias"),
        ("linear_0_w", "MLP up"), ("linear_0_b", "MLP up bias"),
        ("linear_1_w", "MLP down"), ("linear_1_b", "MLP down bias"),
        ("ln_1_scale", "pre-MLP LayerNorm scale"), ("ln_1_bias", "pre-MLP LayerNorm bias"),
    ))
OTHER_COLUMN = ("other", (), "other", "tensors with this layer number that the config does not use")
#: Per-model tensors of the vision tower (everything else per-model belongs to the text tower).
VISION_GLOBAL_PREFIXES = ("enc_", "img_", "mm_")


def worst(severities: list[str]) -> str | None:
    s = [x for x in severities if x in SEVERITY_RANK]
    return min(s, key=SEVERITY_RANK.__getitem__) if s else None


def category_of(info: TensorInfo | None, key: str) -> str:
    if info is not None:
        name = info.type_name
        return name if name in TYPE_CATEGORIES else "other"
    if key in METADATA_KEYS or key == "Fscales":
        return "meta"
    return "blob"


# ---------------------------------------------------------------------------------------------------------------
# Byte map
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Region:
    """A byte range ``[start, end)`` of the file, drawn as one band of the byte map."""

    kind: str  # "blob", "header", "directory", "pad", "gap"
    start: int
    end: int
    category: str  # colour: a type name, "other", "meta", "blob", "header", "directory", "pad", "gap"
    label: str
    key: str | None = None  # blob key
    index: int | None = None  # directory index
    size: int | None = None  # stored blob size (may reach past ``end`` when the blob is cut off)
    tensor: TensorInfo | None = None
    severity: str | None = None
    codes: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.end - self.start


def byte_regions(d: Directory, size: int, tensors_by_key: dict[str, TensorInfo],
                 findings_by_blob: dict[str, list] | None = None) -> list[Region]:
    """Every byte of the file, sorted by offset: header(s), directory, blobs, padding and gaps.

    Uncovered bytes right after a blob up to the next 256-byte boundary, between the
    front header/directory and the first blob, and after the last blob (the 64 KiB end
    padding) are "pad"; any other uncovered range is a "gap" (a layout error).
    Overlapping blobs are all kept (the later drawn over the earlier).
    """
    findings_by_blob = findings_by_blob or {}
    fixed: list[Region] = []
    n = len(d.entries)
    if d.layout == "v1":
        fixed.append(Region("header", 0, min(HEADER_BYTES, size), "header", "header (16 B: magic, num_blobs, "
                                                                            "file_bytes)"))
        fixed.append(Region("directory", HEADER_BYTES, min(d.dir_offset + 32 * n, size), "directory",
                            f"directory ({n} keys + {n} offset/size pairs)"))
    else:
        fixed.append(Region("header", 0, min(HEADER_BYTES, size), "header", "V2 placeholder header (num_blobs 0)"))
        fixed.append(Region("directory", d.dir_offset, max(size - HEADER_BYTES, d.dir_offset), "directory",
                            f"directory ({n} keys + {n} offset/size pairs)"))
        fixed.append(Region("header", max(size - HEADER_BYTES, 0), size, "header",
                            "header (16 B: magic, num_blobs, file_bytes)"))
    blobs: list[Region] = []
    for e in d.entries:
        start = min(e.offset, size)
        end = min(e.offset + e.size, size)
        info = tensors_by_key.get(e.key)
        found = findings_by_blob.get(e.key, [])
        cat = category_of(info, e.key)
        blobs.append(Region("blob", start, end, cat, e.key, key=e.key, index=e.index, size=e.size, tensor=info,
                            severity=worst([f.severity for f in found]), codes=sorted({f.code for f in found})))
    # Empty blobs and blobs past the end of the file stay in the list (zero length, drawn as a mark):
    # every directory entry appears exactly once.
    covered = sorted([r for r in fixed if r.end > r.start] + blobs, key=lambda r: (r.start, r.end))
    out: list[Region] = []
    pos = 0
    prev: Region | None = None
    for r in covered + [Region("end", size, size, "", "")]:
        if r.start > pos and (r.end > r.start or r.kind == "end"):
            out += _fill(pos, r.start, prev, r, d.first_blob_offset)
        if r.kind != "end":
            out.append(r)
            if r.end > r.start and r.end >= pos:
                pos, prev = r.end, r
    return out


def _fill(a: int, b: int, prev: Region | None, nxt: Region, first_blob_offset: int) -> list[Region]:
    """Classify the uncovered bytes ``[a, b)`` between ``prev`` and ``nxt``."""
    if prev is not None and prev.kind == "blob":
        aligned = min(round_up(a, BLOB_ALIGN), b)
        out = []
        if aligned > a:
            out.append(Region("pad", a, aligned, "pad", f"padding after {prev.key} to a {BLOB_ALIGN}-byte boundary"))
        if b > aligned:
            if nxt.kind == "blob":
                out.append(Region("gap", aligned, b, "gap", f"unexpected gap before {nxt.key}: gemma.cpp requires "
                                                            "blobs back to back"))
            else:
                out.append(Region("pad", aligned, b, "pad", "end padding (zeros up to a 64 KiB multiple)"))
        return out
    if nxt.kind == "blob":
        if b == first_blob_offset:
            return [Region("pad", a, b, "pad", "padding before the first blob")]
        return [Region("gap", a, b, "gap", f"unexpected bytes before {nxt.key} (the first blob belongs at "
                                           f"offset {first_blob_offset})")]
    return [Region("pad", a, b, "pad", "padding (zeros)")]


# ---------------------------------------------------------------------------------------------------------------
# Layer stack
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Chip:
    """One tensor in the layer stack: present, or a hole where a needed tensor is missing."""

    name: str
    state: str  # "present", "alt" (valid non-canonical form), "extra" (not used by the config), "missing"
    info: TensorInfo | None = None
    spec: TensorSpec | None = None
    note: str = ""
    severity: str | None = None
    codes: list[str] = field(default_factory=list)

    @property
    def category(self) -> str:
        if self.info is None:
            return "missing"
        return category_of(self.info, self.info.key)


@dataclass
class Column:
    key: str
    label: str
    title: str


@dataclass
class Row:
    id: str
    label: str  # "L3", "V0"
    index: int
    layer_type: str | None
    tags: list[str]  # "global", "local 512", "not in config"
    slots: dict[str, list[Chip]]
    applicable: set[str]  # columns the config fills in for this layer

    @property
    def missing(self) -> int:
        return sum(c.state == "missing" for chips in self.slots.values() for c in chips)

    @property
    def severity(self) -> str | None:
        return worst([c.severity for chips in self.slots.values() for c in chips if c.severity])


@dataclass
class Tower:
    key: str  # "text" / "vision"
    title: str
    columns: list[Column]
    rows: list[Row]
    globals: list[Chip]  # per-model tensors of this tower

    @property
    def missing(self) -> int:
        return sum(r.missing for r in self.rows) + sum(c.state == "missing" for c in self.globals)


def layer_towers(f: SbsFile, cfg: ModelConfig | None, findings_by_tensor: dict[str, list]) -> tuple[
        list[Tower], list[Chip]]:
    """(towers, stray chips): the text and vision towers, and per-model tensors nobody uses."""
    tensors = f.tensors

    def chip(name: str, state: str, spec: TensorSpec | None = None, note: str = "") -> Chip:
        found = findings_by_tensor.get(name, [])
        return Chip(name, state, tensors.get(name), spec, note, worst([x.severity for x in found]),
                    sorted({x.code for x in found}))

    used: set[str] = set()
    text_rows: dict[int, Row] = {}
    vit_rows: dict[int, Row] = {}
    text_globals: list[Chip] = []
    vit_globals: list[Chip] = []
    if cfg is not None:
        for spec in model_tensors(cfg):
            target = vit_globals if spec.name.startswith(VISION_GLOBAL_PREFIXES) else text_globals
            if spec.name in tensors:
                target.append(chip(spec.name, "present", spec))
            elif spec.required:
                target.append(chip(spec.name, "missing", spec, f"needs {spec.name} ({spec.rows} x {spec.cols}, "
                                                                f"{spec.meaning})"))
            used.add(spec.name)
        choice_by_key = {c.key: c for c in choices(cfg)}
        for i, lc in enumerate(cfg.layer_configs):
            row = _row("text", i, cfg.layer_type_name(lc.type), _text_tags(cfg, i))
            specs = {s.name: s for s in gemma_layer_tensors(cfg, i)}
            for key, bases, _, _ in TEXT_COLUMNS:
                c = choice_by_key.get(f"{key}_{i}")
                if c is not None:
                    row.applicable.add(key)
                    row.slots[key] = _choice_chips(c, specs, tensors, chip)
                    used.update(c.names)
                    continue
                s = specs.get(f"{bases[0]}_{i}")
                if s is None:
                    continue
                row.applicable.add(key)
                used.add(s.name)
                if s.name in tensors:
                    row.slots[key] = [chip(s.name, "present", s)]
                elif s.required:
                    row.slots[key] = [chip(s.name, "missing", s, f"needs {s.name} ({s.rows} x {s.cols}, "
                                                                   f"{s.meaning})")]
            text_rows[i] = row
        for i, lc in enumerate(cfg.vit_config.layer_configs):
            row = _row("vision", i, cfg.layer_type_name(lc.type), [])
            for s in vit_layer_tensors(cfg, i):
                row.applicable.add(s.base)
                used.add(s.name)
                if s.name in tensors:
                    row.slots[s.base] = [chip(s.name, "present", s)]
                else:
                    row.slots[s.base] = [chip(s.name, "missing", s, f"needs {s.name} ({s.rows} x {s.cols}, "
                                                                     f"{s.meaning})")]
            vit_rows[i] = row
    stray: list[Chip] = []
    text_cols = {b: k for k, bases, _, _ in TEXT_COLUMNS for b in bases}
    for name in tensors:
        if name in used:
            continue
        base, idx = split_name(name)
        state = "extra" if cfg is not None else "present"
        if idx is None:
            target = vit_globals if base.startswith(VISION_GLOBAL_PREFIXES) else text_globals
            if cfg is None or name in ("c_embedding", "c_final_norm") or target is vit_globals:
                target.append(chip(name, state))
            else:
                stray.append(chip(name, state))
            continue
        if base in VIT_LAYER_BASES:
            rows, tower, col = vit_rows, "vision", base if base in dict((k, 1) for k, *_ in VIT_COLUMNS) else "other"
        else:
            rows, tower, col = text_rows, "text", text_cols.get(base, "other")
        if idx not in rows:
            rows[idx] = _row(tower, idx, None, ["not in config"] if cfg is not None else [])
        rows[idx].slots.setdefault(col, []).append(chip(name, state))
    towers = []
    for key, title, rows, globs, spec_cols in (("text", "Text layers", text_rows, text_globals, TEXT_COLUMNS),
                                              ("vision", "Vision (ViT) layers", vit_rows, vit_globals, VIT_COLUMNS)):
        if not rows and not globs:
            continue
        ordered = [rows[i] for i in sorted(rows)]
        cols = [Column(k, label, what) for k, _, label, what in spec_cols + (OTHER_COLUMN,)
                if any(k in r.slots or k in r.applicable for r in ordered)]
        towers.append(Tower(key, title, cols, ordered, globs))
    return towers, stray


def _row(tower: str, i: int, layer_type: str | None, tags: list[str]) -> Row:
    prefix = "L" if tower == "text" else "V"
    return Row(f"row-{tower}-{i}", f"{prefix}{i}", i, layer_type, tags, {}, set())


def _text_tags(cfg: ModelConfig, i: int) -> list[str]:
    w = cfg.attention_window_sizes
    if i >= len(w) or not cfg.max_seq_len:
        return []
    if cfg.is_global_layer(i):
        return ["global"]
    return [f"local {w[i]}"]


def _choice_chips(c, specs: dict[str, TensorSpec], tensors: dict[str, TensorInfo],
                  chip: Callable[..., Chip]) -> list[Chip]:
    """Chips of an exactly-one-of slot: the form present (canonical or not), or holes."""
    present = [[n in tensors for n in form] for form in c.forms]
    complete = [i for i, p in enumerate(present) if all(p)]
    out: list[Chip] = []
    if complete:
        for i, form in enumerate(c.forms):
            if i == complete[0]:
                out += [chip(n, "present" if i == 0 else "alt", specs.get(n)) for n in form]
            else:
                out += [chip(n, "present" if i == 0 else "alt", specs.get(n)) for n, here in zip(form, present[i])
                        if here]
        return out
    partial = [i for i, p in enumerate(present) if any(p)]
    if partial:
        for i in partial:
            for n, here in zip(c.forms[i], present[i]):
                s = specs.get(n)
                out.append(chip(n, "present" if here else "missing", s,
                                "" if here else f"{' + '.join(m for m in c.forms[i] if m != n)} present, "
                                                f"{n} missing: needs both halves or {c.forms[0][0]}"))
        return out
    alts = " or ".join(" + ".join(f"{n} ({specs[n].rows} x {specs[n].cols})" if n in specs else n for n in form)
                       for form in c.forms)
    return [chip(c.forms[0][0], "missing", specs.get(c.forms[0][0]), f"missing {c.what}: needs {alts}")]


# ---------------------------------------------------------------------------------------------------------------
# Values (--deep)
# ---------------------------------------------------------------------------------------------------------------

#: Values decoded per chunk: bounds memory whatever the tensor size (a multiple of the NUQ/I8 group sizes).
CHUNK_VALUES = 1 << 22
HIST_BINS = 48


@dataclass
class ValueStats:
    count: int = 0
    zeros: int = 0
    non_finite: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    hist: list[int] = field(default_factory=list)  # HIST_BINS counts over [min, max] of the finite values
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("count", "zeros", "non_finite", "min", "max", "mean", "std", "hist",
                                              "error")}


def _chunks(f: SbsFile, info: TensorInfo, chunk: int, out: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The tensor's values (scale applied) in pieces of at most ``chunk`` values.

    Reads with ``SbsFile.read_into`` (``pread``) into one reusable buffer (the file's memory map
    is not touched, so its pages do not pile up in the process and a file truncated meanwhile
    raises ``file-changed``) and decodes into ``out`` when given; each yielded array is only
    valid until the next one.
    """
    from .. import codecs

    t = Type(info.type)
    n = info.num_values
    raw = read_buffer(packed_bytes(t, min(chunk, n)) if n else 1)
    start = 0
    while start < n:
        count = min(chunk, n - start)
        b0, b1 = packed_bytes(t, start), packed_bytes(t, start + count)
        buf = raw[:b1 - b0]
        f.read_into(info.offset + b0, buf)
        vals = codecs.decode(t, buf, count, out=None if out is None else out[:count])
        if info.scale != 1.0:
            with np.errstate(over="ignore", invalid="ignore"):
                vals *= np.float32(info.scale)
        yield vals
        start += count


def value_stats(f: SbsFile, info: TensorInfo, bins: int = HIST_BINS, chunk: int = CHUNK_VALUES) -> ValueStats:
    """Statistics of one tensor's decoded values; ``error`` says why a tensor could not be decoded.

    Streams in chunks: one pass for min/max/mean/std (chunks combined with Chan's
    formula, sums in float64), a second pass for the histogram only when the tensor
    spans several chunks. Memory stays at a few chunk-sized buffers whatever the size.
    """
    st = ValueStats(count=info.num_values)
    try:
        t = Type(info.type)
    except ValueError:
        st.error = f"unknown element type {info.type}"
        return st
    want = info.expected_bytes
    if t == Type.UNKNOWN or want is None or want != info.bytes or info.offset + info.bytes > f.file_bytes:
        st.error = f"blob does not hold a {info.type_name} {info.rows} x {info.cols} tensor"
        return st
    chunk = round_up(max(chunk, 256), 256)
    try:
        if t in _CODE_TYPES:
            _stats_from_codes(f, info, t, chunk, bins, st)
        else:
            _stats_streaming(f, info, chunk, bins, st)
    except FileChangedError:
        raise  # not a property of the tensor: the whole report would describe a file that no longer exists
    except (SbsError, ValueError, OSError) as e:
        st.error = f"could not be decoded: {e}"
    return st


#: Types whose every value is one of few codes (one byte or one bf16 word): counted, not decoded.
_CODE_TYPES = {Type.SFP: np.uint8, Type.BF16: np.dtype("<u2")}


def _stats_from_codes(f: SbsFile, info: TensorInfo, t: Type, chunk: int, bins: int, st: ValueStats) -> None:
    """SFP/BF16: count each code over the raw bytes (one cheap pass), then compute everything exactly from
    the (value, count) table; the values are those :meth:`SbsFile.tensor` returns (scale applied in float32)."""
    from .. import codecs

    dt = np.dtype(_CODE_TYPES[t])
    ncodes = 1 << (8 * dt.itemsize)
    counts = np.zeros(ncodes, dtype=np.int64)
    raw = read_buffer(min(chunk * dt.itemsize, max(info.bytes, 1)))
    for piece in f.chunks(info.offset, info.bytes, buf=raw):
        counts += np.bincount(piece.view(dt), minlength=ncodes)
    table = codecs.decode(t, np.arange(ncodes, dtype=dt).view(np.uint8), ncodes)
    if info.scale != 1.0:
        with np.errstate(over="ignore", invalid="ignore"):
            table *= np.float32(info.scale)
    used = counts > 0
    fin = np.isfinite(table)
    st.zeros = int(counts[table == 0].sum())
    st.non_finite = int(counts[~fin].sum())
    sel = used & fin
    if not sel.any():
        return
    v = table[sel].astype(np.float64)
    c = counts[sel].astype(np.float64)
    n = c.sum()
    mean = float((v * c).sum() / n)
    st.min, st.max, st.mean = float(v.min()), float(v.max()), mean
    st.std = float(((v - mean) ** 2 * c).sum() / n) ** 0.5
    st.hist = [int(x) for x in np.bincount(_bin_index(v, st.min, st.max, bins), weights=c, minlength=bins)]


def _bin_index(v: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin of each finite value: ``bins`` equal bins over ``[lo, hi]``, the last one closed."""
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    idx = ((v - lo) * (bins / (hi - lo))).astype(np.intp)
    return np.clip(idx, 0, bins - 1, out=idx)


def _stats_streaming(f: SbsFile, info: TensorInfo, chunk: int, bins: int, st: ValueStats) -> None:
    """Other types: decode in chunks; one pass for min/max/mean/std (chunks combined with Chan's formula,
    float64 sums), a second for the histogram when the tensor spans several chunks."""
    n = info.num_values
    out = np.empty(max(min(chunk, n), 1), dtype=np.float32)
    work = np.empty(max(min(chunk, n), 1), dtype=np.float64)
    n_fin = 0
    mean = m2 = 0.0
    lo, hi = np.inf, -np.inf
    chunks = 0
    for vals in _chunks(f, info, chunk, out):
        chunks += 1
        st.zeros += int(vals.size - np.count_nonzero(vals))
        fin = np.isfinite(vals)
        k = int(np.count_nonzero(fin))
        st.non_finite += vals.size - k
        fv = vals if k == vals.size else vals[fin]
        if not k:
            continue
        lo, hi = min(lo, float(fv.min())), max(hi, float(fv.max()))
        cm = float(np.add.reduce(fv, dtype=np.float64)) / k
        d = work[:k]
        np.subtract(fv, cm, out=d, dtype=np.float64)
        cm2 = float(np.dot(d, d))
        delta = cm - mean
        tot = n_fin + k
        mean += delta * k / tot
        m2 += cm2 + delta * delta * n_fin * k / tot
        n_fin = tot
    if not n_fin:
        return
    st.min, st.max, st.mean, st.std = lo, hi, mean, (m2 / n_fin) ** 0.5
    hist = np.zeros(bins, dtype=np.int64)
    for vals in ([out[:n]] if chunks == 1 else _chunks(f, info, chunk, out)):
        fin = np.isfinite(vals)
        fv = vals if fin.all() else vals[fin]
        hist += np.bincount(_bin_index(fv.astype(np.float64), lo, hi, bins), minlength=bins)
    st.hist = [int(x) for x in hist]


# ---------------------------------------------------------------------------------------------------------------
# One file
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class FileModel:
    """Everything the report shows about one file."""

    path: str
    name: str
    size: int
    verify: Any  # sbs_tools.verify.Report
    summary: dict[str, Any] = field(default_factory=dict)
    open_error: str | None = None
    regions: list[Region] = field(default_factory=list)
    blob_count: int = 0
    towers: list[Tower] = field(default_factory=list)
    stray: list[Chip] = field(default_factory=list)
    tensors: list[TensorInfo] = field(default_factory=list)  # in file order
    stats: dict[str, ValueStats] = field(default_factory=dict)
    config: ModelConfig | None = None
    deep: bool = False

    @property
    def tensor_names(self) -> set[str]:
        return {t.name for t in self.tensors}

    def chip_names(self) -> set[str]:
        out = {c.name for c in self.stray}
        for t in self.towers:
            out |= {c.name for c in t.globals}
            out |= {c.name for r in t.rows for chips in r.slots.values() for c in chips}
        return out


def build_file_model(path: str | os.PathLike, deep: bool = False,
                     progress: Callable[[str], None] | None = None) -> FileModel:
    """Open, verify and (``deep``) decode one file into a :class:`FileModel`. Never raises for a bad file."""
    from ..summary import summarize
    from ..verify import verify_open

    path = os.fspath(path)
    if progress:
        progress(f"verifying {os.path.basename(path)}")
    report, f = verify_open(path, deep=deep)  # one open for the checks and the page (a URL is fetched once)
    if f is None:
        try:
            size = stat_input(path, allow_empty=True).size
        except SbsError:
            size = 0
        m = FileModel(path, os.path.basename(path), size, report, deep=deep)
        m.open_error = report.findings[-1].message if report.findings else "cannot be opened"
        return m
    m = FileModel(path, os.path.basename(path), f.file_bytes, report, deep=deep)
    by_tensor: dict[str, list] = {}
    by_blob: dict[str, list] = {}
    for fd in report.findings:
        if fd.tensor:
            by_tensor.setdefault(fd.tensor, []).append(fd)
        if fd.blob:
            by_blob.setdefault(fd.blob, []).append(fd)
        elif fd.tensor:
            by_blob.setdefault(fd.tensor, []).append(fd)
    try:
        name_of_key = {t.key: t.name for t in f.tensors.values()}
        for fd in report.findings:  # a layout finding about a tensor's blob also marks the tensor
            if fd.tensor is None and fd.blob in name_of_key:
                by_tensor.setdefault(name_of_key[fd.blob], []).append(fd)
        m.summary = summarize(f)
        m.config = f.config
        m.blob_count = len(f.directory.entries)
        m.tensors = sorted(f.tensors.values(), key=lambda t: t.offset)
        by_key = {t.key: t for t in f.tensors.values()}
        m.regions = byte_regions(f.directory, f.file_bytes, by_key, by_blob)
        m.towers, m.stray = layer_towers(f, f.config, by_tensor)
        if deep:
            for i, info in enumerate(m.tensors):
                if progress:
                    progress(f"decoding {info.name} ({i + 1}/{len(m.tensors)})")
                m.stats[info.name] = value_stats(f, info)
    finally:
        f.close()
    return m
