"""What ``verify`` must say about a mutation of a valid file.

:func:`expectation` compares a mutated file with the valid file it came from and returns

* ``"flag"`` -- a region gemma.cpp reads changed meaning (header, directory, config or toc
  fields that decide shapes/types, an ``unavailable`` tokenizer) or a padding byte became
  non-zero, or the length changed: ``verify`` must report a new error or warning;
* ``"notice"`` -- only bytes gemma.cpp never reads but writers fix changed (the V2
  placeholder header): ``verify`` must report *something* new (any severity);
* ``"none"`` -- the change is semantically neutral or undetectable without a checksum:
  other weight values, another display name, another finite scale, two same-shaped tensors
  swapping names, a still-parsable SentencePiece model. Nothing is asserted.

The decision is made from the spec (§1-§7), reading only the *valid* base with the read path
and decoding the changed config/toc with the IFields decoders.
"""
from __future__ import annotations

import struct
from collections import Counter

import numpy as np

from sbs_tools.config import decode_config
from sbs_tools.errors import SbsError
from sbs_tools.toc import decode_toc

from . import model as M
from .strategies import FileMap, file_map

RANK = {"none": 0, "notice": 1, "flag": 2}

#: Was a verify gap found by this fuzzer (fixed in f1afed4): for pre-2025 (E0) files verify checked
#: no tensor names, so a renamed or unknown key (gemma.cpp HEAD aborts on unknown names; every
#: reader aborts on a missing c_embedding) got only "legacy-only: valid for older gemma.cpp".
#: Set to False to exempt E0 key changes again; ``test_verify_gaps.py`` pins the fix.
VERIFY_CHECKS_PRE2025_NAMES = True
_LAYER_SHAPE_FIELDS = ("model_dim", "ff_hidden_dim", "heads", "kv_heads", "qkv_dim", "post_norm", "use_qk_norm",
                       "ff_biases", "type")
#: A ViT layer's tensors (spec §5) depend only on these: its norms are always LayerNorm scale+bias,
#: so post_norm / use_qk_norm / ff_biases change nothing gemma.cpp reads (found by the long run).
_VIT_LAYER_SHAPE_FIELDS = ("ff_hidden_dim", "heads", "kv_heads", "qkv_dim", "type")
NORM_OR_BIAS = ("_ns_", "norm", "_b_", "bias", "ln_")


def _max(a: str, b: str) -> str:
    return a if RANK[a] >= RANK[b] else b


def _shape_view(cfg) -> tuple:
    """The config fields that decide which tensors exist and their shapes and types."""
    def layer(lc, fields=_LAYER_SHAPE_FIELDS):
        return tuple(getattr(lc, k) for k in fields)

    v = cfg.vit_config
    vit = (v.model_dim, v.seq_len, v.patch_width, tuple(layer(lc, _VIT_LAYER_SHAPE_FIELDS) for lc in v.layer_configs),
           cfg.wrapping == 2) if v.layer_configs else ()  # ViT dims only matter with ViT layers
    return (cfg.schema_revision, cfg.num_layers, cfg.model_dim, cfg.vocab_size, cfg.weight,
            len(cfg.attention_window_sizes), tuple(layer(lc) for lc in cfg.layer_configs), vit, cfg.extra_u32)


def _words(data: bytes, off: int, size: int):
    if size % 4 or off + size > len(data):
        return None
    return np.frombuffer(data, dtype=np.uint8, count=size, offset=off).view("<u4")


def _base_size(fm: FileMap, off: int) -> int:
    return next(s for _, o, s in fm.entries if o == off)


def _config_change(fm: FileMap, mut: bytes, off: int, size: int) -> str:
    try:
        old = decode_config(_words(fm.data, off, _base_size(fm, off)))
    except SbsError:
        return "none"
    try:
        w = _words(mut, off, size)
        if w is None:
            return "flag"
        new = decode_config(w)
    except SbsError:
        return "flag"
    return "flag" if _shape_view(new) != _shape_view(old) else "none"


def _toc_change(fm: FileMap, mut: bytes, off: int, size: int) -> str:
    try:
        old = decode_toc(_words(fm.data, off, _base_size(fm, off)))
    except SbsError:
        return "none"
    try:
        w = _words(mut, off, size)
        if w is None:
            return "flag"
        new = decode_toc(w)
    except SbsError:
        return "flag"
    if len(new) != len(old):
        return "flag"
    for a, b in zip(old, new):
        if (a.name, a.type, a.rows, a.cols, a.element_bytes, a.num_elements, a.stride) != \
                (b.name, b.type, b.rows, b.cols, b.element_bytes, b.num_elements, b.stride):
            return "flag"
        if a.scale != b.scale and (b.scale == 0 or any(s in b.name for s in NORM_OR_BIAS)):
            return "flag"
    return "none"


def _tensor_types(fm: FileMap) -> dict[str, tuple[int, int]]:
    """blob key -> (type, number of values), from the base toc (single-file eras only)."""
    out = {}
    by_key = {k: (o, s) for k, o, s in fm.entries}
    if "toc" in by_key:
        o, s = by_key["toc"]
        try:
            for r in decode_toc(_words(fm.data, o, s)):
                out[r.name] = (r.type, r.rows * r.cols)
        except SbsError:
            pass
    return out


def _size_change(fm: FileMap, mut: bytes, old: list, new: list) -> str:
    """Ranges changed. Offsets moving, or a size crossing its 256-byte padded span, break the
    layout (flag). A size changed *within* the span only changes what the blob holds."""
    level = "none"
    e0 = not ({"toc", "config"} & set(fm.kind_of_key))
    for (key, _, _), (o0, s0), (o1, s1) in zip(fm.entries, old, new):
        if (o0, s0) == (o1, s1):
            continue
        if o0 != o1 or s1 == 0 or M.round_up(o0 + s0, 256) != M.round_up(o1 + s1, 256):
            return "flag"
        kind = fm.kind_of_key.get(key)
        if e0 and kind != "blob":
            continue  # pre-2025: no shapes, so a tensor's size is unknowable
        if kind == "config":
            lv = _config_change(fm, mut, o0, s1) if s1 % 4 == 0 else "flag"
            # trailing words after the config record: gemma.cpp reads the record and ignores them
        elif kind == "toc":
            lv = _toc_change(fm, mut, o0, s1)
        else:
            lv = "flag"  # a tensor (size != type x shape), the tokenizer, Fscales
        level = _max(level, lv)
    return level


def _directory_change(fm: FileMap, mut: bytes) -> str:
    n, at = fm.n, fm.dir_at
    if at + 32 * n > len(mut):
        return "flag"
    keys = [mut[at + 16 * i:at + 16 * i + 16] for i in range(n)]
    ranges = [struct.unpack_from("<QQ", mut, at + 16 * n + 16 * i) for i in range(n)]
    old_ranges = [(o, s) for _, o, s in fm.entries]
    if ranges != old_ranges:
        return _size_change(fm, mut, old_ranges, ranges)
    names = []
    for raw in keys:
        name, _, rest = raw.partition(b"\0")
        if any(rest):
            return "flag"  # bytes after the NUL: bad-key
        names.append(name)
    base = [k.encode("latin-1") for k, _, _ in fm.entries]
    if names == base:
        return "none"
    if any(not nm or any(c < 0x20 or c > 0x7E for c in nm) for nm in names) or len(set(names)) < len(names):
        return "flag"  # empty / unprintable key (bad-key) or a duplicate (duplicate-key), in every era
    if not ({"toc", "config"} & set(fm.kind_of_key)):  # pre-2025 (E0): no shapes, no types but the prefix
        if not VERIFY_CHECKS_PRE2025_NAMES:
            return "none"
        # Names are checked; which blob a name points to and which valid type prefix it carries are
        # undetectable without shapes (a swap of two blobs' keys, 'Bc_embedding' -> 'Fc_embedding').
        def bare(nm: bytes) -> bytes:
            return nm[1:] if nm[:1] in (b"F", b"B", b"$", b"2", b"I", b"4") else nm
        if Counter(bare(nm) for nm in names) == Counter(bare(nm) for nm in base):
            return "none"
        return "flag"
    if Counter(names) != Counter(base):
        return "flag"
    # A permutation of the same keys: undetectable if every moved name lands on a tensor blob of
    # the same size -- the result is a well-formed file holding other values. With a different
    # type of the same byte size (16 BF16 <-> 8 F32) the bytes are reinterpreted; only value
    # defects (NaN/Inf, SFP 0x80, a bad I8 scale) under the new type can be noticed.
    # Without a toc (pre-2025 files) shapes are unknown: any permutation of tensors is undetectable.
    types = _tensor_types(fm)
    if "toc" not in fm.kind_of_key and all(fm.kind_of_key.get(k.decode("latin-1")) in ("tensor", "blob")
                                            for k, b in zip(names, base) if k != b):
        return "none"
    for (k_old, o, s), k_new in zip(fm.entries, names):
        k_new = k_new.decode("latin-1")
        if k_new == k_old:
            continue
        other = next(e for e in fm.entries if e[0] == k_new)
        if other[2] != s or fm.kind_of_key.get(k_new) != "tensor" or fm.kind_of_key.get(k_old) != "tensor":
            return "flag"
        t_new, t_old = types.get(k_new), types.get(k_old)
        if t_new != t_old and t_new is not None and t_old is not None:
            raw = mut[o:o + s]
            if M.payload_defects(t_new[0], raw, t_new[1]) - M.payload_defects(t_old[0], raw, t_old[1]):
                return "flag"
    return "none"


def expectation(base: bytes, mut: bytes) -> tuple[str, list[str]]:
    """(level, reasons) for a mutation ``mut`` of the valid file ``base``."""
    if len(mut) != len(base):
        return "flag", [f"length {len(base)} -> {len(mut)}"]
    a = np.frombuffer(base, dtype=np.uint8)
    b = np.frombuffer(mut, dtype=np.uint8)
    diff = np.flatnonzero(a != b)
    if diff.size == 0:
        return "none", ["identical"]
    fm = file_map(base)
    starts = np.array([r.start for r in fm.regions])
    touched = sorted(set(np.searchsorted(starts, diff, side="right") - 1))
    level, reasons = "none", []
    types = None
    directory_done = False
    for ri in touched:
        r = fm.regions[ri]
        k = r.kind
        if k == "header":
            lv = "flag"
        elif k == "placeholder":
            n_changed = base[4:8] != mut[4:8] and mut[4:8] != b"\0\0\0\0"
            lv = "flag" if n_changed else "notice"
        elif k in ("keys", "ranges"):
            if directory_done:
                continue
            directory_done = True
            lv = _directory_change(fm, mut)
        elif k == "padding":
            lv = "flag"
        elif k == "config":
            lv = _config_change(fm, mut, r.start, r.end - r.start)
        elif k == "toc":
            lv = _toc_change(fm, mut, r.start, r.end - r.start)
        elif k == "tokenizer":
            lv = "flag" if base[r.start:r.end] == b"unavailable" else "none"
        elif k == "tensor":
            types = types if types is not None else _tensor_types(fm)
            t_n = types.get(r.name)
            lv = "none"
            if t_n is not None:
                t, n = t_n
                new = M.payload_defects(t, mut[r.start:r.end], n) - M.payload_defects(t, base[r.start:r.end], n)
                lv = "flag" if new else "none"
        else:
            lv = "none"
        if lv != "none":
            reasons.append(f"{k}:{r.name or ''} -> {lv}")
        level = _max(level, lv)
    return level, reasons


def new_findings(report, baseline, severities=("error", "warning")) -> Counter:
    """Findings (by code) of ``report`` beyond those of ``baseline``, at the given severities."""
    def count(rep):
        return Counter(f.code for f in rep.findings if f.severity in severities)

    return count(report) - count(baseline)
