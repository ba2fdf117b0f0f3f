"""Rules that read the analysis of the input container once: placement, damaged headers and keys, duplicates.

They run before the simulation loop (their findings describe the input's
bytes, which the freshly written output never has) and build the first
output model (:func:`build_state`).
"""
from __future__ import annotations

import copy

from ...sbsfile import METADATA_KEYS
from ...tensors import split_name
from ..actions import OutBlob, State
from ..analyze import SCALES_KEYS, sha256
from ..context import Ctx

PLACEMENT = ("blob-misaligned", "blob-gap", "blob-overlap", "blob-out-of-bounds", "zero-size-blob")
REWRITE_FIXES = ("file-size-mismatch", "end-not-aligned", "nonzero-padding", "bad-placeholder")


def container(p: Ctx) -> None:
    """Blobs found elsewhere than the directory says, a recovered header, keys that cannot be written."""
    a = p.a
    for r in a.resolved:
        if r.how == "lost":
            p.lost.add(r.key)
    for r in a.resolved:
        if not r.ok or r.how == "duplicate-entry":
            continue
        if r.moved:
            kind = "relocate-blob" if r.offset != r.entry.offset else "resize-blob"
            fixes = [(c, r.key) for c in PLACEMENT] + [("tensor-size-mismatch", r.key)]
            p.act(kind, f"{r.key}: {r.note}", *fixes, key=r.key, recorded=[r.entry.offset, r.entry.size],
                  resolved=[r.offset, r.size])
    if a.header_fix:
        p.act("restore-header", a.header_fix, ("bad-magic", None), ("too-many-blobs", None),
              ("empty-store", None), ("directory-out-of-bounds", None), ("file-size-mismatch", None))
    for r in a.resolved:
        raw = r.entry.raw_key
        name = raw.split(b"\0", 1)[0]
        if not name or not name.isascii() or any(c < 0x20 or c == 0x7F for c in name):
            p.bad_keys.add(r.index)
            p.bad_blobs.append((r, f"directory entry {r.index} has an unusable key {raw!r}"))
        elif any(raw[len(name):]):
            p.act("rewrite-key", f"key {r.key!r}: clear the bytes after its NUL (readers ignore them)",
                  ("bad-key", r.key))
        else:
            _, idx = split_name(r.key)
            if idx is not None and idx >= 999:
                p.bad_keys.add(r.index)
                p.bad_blobs.append((r, f"key {r.key!r} has layer number {idx} >= 999 (gemma.cpp asserts)"))
    toc_names = {rec.name for rec in a.toc or []}
    lost_entry = {x.key: x for x in a.resolved if x.how == "lost"}
    for key in sorted(p.lost - set(METADATA_KEYS)):
        r = lost_entry[key]
        if r.entry.size == 0 and key not in toc_names:
            slot = "" if not r.entry.offset else f" (bytes at its recorded offset {r.entry.offset} belong to no blob)"
            p.act("drop-empty-entry", f"drop directory entry {r.index} ({key!r}): its size is 0, so it holds "
                  f"no data{slot}", ("zero-size-blob", key))
            p.dropped[key] = "empty directory entry (size 0)"
            continue
        p.refuse("blob-lost", key, f"blob {key!r}: its bytes cannot be located ({r.note}) (--partial "
                 "drops it)")
    if any(p.has(c) for c in PLACEMENT + REWRITE_FIXES) or any(r.how == "foreign-layout" for r in a.resolved):
        what = "re-lay every blob back to back on the 256-byte grid, zero all padding and write a fresh header"
        p.act("rewrite-container", what, *[(c, None) for c in PLACEMENT + REWRITE_FIXES])


def duplicates(p: Ctx) -> None:
    """Duplicate keys: identical bytes keep one; different bytes need --drop-duplicates first|last."""
    a, pol = p.a, p.opts.drop_duplicates
    for key, rs in a.dup_identical.items():
        p.act("drop-duplicate", f"{key}: {len(rs)} directory entries with identical bytes; keep one",
              ("duplicate-key", key), key=key, entries=[r.index for r in rs])
    for key, rs in a.conflicts.items():
        live = [r for r in rs if r.ok]
        digests = [sha256(a.data(r))[:12] if r.ok else "lost" for r in rs]
        desc = ", ".join(f"entry {r.index} ({r.size if r.ok else '?'} bytes, sha256 {d})"
                         for r, d in zip(rs, digests))
        if pol in ("first", "last") and live:
            keep = a.chosen[key]
            p.act("drop-duplicate", f"{key}: entries differ ({desc}); keep the {pol} (entry {keep.index}) "
                  "as --drop-duplicates says", ("duplicate-key", key), key=key, kept=keep.index)
        else:
            p.refuse("duplicate-key", key, f"key {key!r} appears {len(rs)} times with different bytes "
                     f"({desc}); gemma.cpp uses the last, pre-2025 readers the first: choose with "
                     "--drop-duplicates first|last", forceable=False)


def build_state(p: Ctx) -> None:
    """The first output model: every located blob once, config, toc and tokenizer as decoded."""
    a = p.a
    blobs = []
    seen = set()
    for r in a.resolved:
        if r.index in p.bad_keys or r.key in seen or r.how == "duplicate-entry":
            continue
        seen.add(r.key)
        if r.key in METADATA_KEYS:
            continue
        chosen = a.chosen[r.key]
        if not chosen.ok:
            continue  # refused above (or dropped with --partial)
        kind = "scales" if r.key in SCALES_KEYS else "tensor"
        blobs.append(OutBlob(r.key, kind, chosen, origin=r.key))
    s = State(a.layout, True, a.single_file, blobs)
    if a.config is not None:
        s.config = copy.deepcopy(a.config)
        raw = a.blob("config")
        s.config_raw = raw.tobytes() if raw is not None else None
        s.config_dirty = raw is None
    if a.toc is not None:
        s.toc = copy.deepcopy(a.toc)
        raw = a.blob("toc")
        if not a.toc_partial and raw is not None:
            s.toc_raw = raw.tobytes()
        else:
            s.toc_dirty = True
    if a.tokenizer is not None:
        s.tokenizer = a.tokenizer
    p.s = s
