"""Rules for the format generation: type-prefixed single-file names, and pre-2025 multi-file files.

The heavy lifting of a pre-2025 migration (either direction) is in
:mod:`..migrate`; these rules decide when it happens.
"""
from __future__ import annotations

from ...types import type_name
from ..analyze import strip_prefix
from ..context import Ctx
from ..migrate import migrate_pre2025, to_pre2025


def era(p: Ctx) -> None:
    """Strip the prefixes of a Dec 2024 - May 2025 file; migrate a pre-2025 file when asked (target, config
    or tokenizer given), else keep it pre-2025."""
    a, s, t = p.a, p.s, p.target
    if a.era == "single-file-prefixed":
        strip_prefixes(p)  # a pre-2025 target re-prefixes the names at the end
    elif a.era == "pre-2025":
        want = (t is not None and t.single_file) or (t is None and (p.opts.config is not None
                                                                   or p.opts.tokenizer is not None))
        if want:
            migrate_pre2025(p)
        else:
            s.single_file = False
            s.pad_end = False


def strip_prefixes(p: Ctx) -> None:
    """`$att_ein_0` -> `att_ein_0` in keys and toc names (current gemma.cpp looks tensors up by plain name)."""
    s = p.s
    names: dict[str, str] = {}
    for b in s.blobs:
        st = strip_prefix(b.key)
        if st is None:
            continue
        if st[1] in names:
            p.refuse("duplicate-key", st[1], f"{names[st[1]]!r} and {b.key!r} both become {st[1]!r} "
                     "without their type prefix", forceable=False)
            continue
        names[st[1]] = b.key
    for b in s.blobs:
        st = strip_prefix(b.key)
        if st is not None and names.get(st[1]) == b.key:
            p.renamed[st[1]] = b.key
            b.key = st[1]
    s.invalidate()
    if s.toc is not None:
        for rec in s.toc:
            st = strip_prefix(rec.name)
            if st is not None:
                if st[0] != rec.type:
                    p.plan.notes.append(f"{rec.name}: key prefix says {st[0].name}, toc says "
                                        f"{type_name(rec.type)}; the toc type is kept")
                rec.name = st[1]
        s.toc_dirty = True
    p.act("strip-prefixes", f"strip the type prefix from {len(names)} tensor keys and toc names "
          "(Dec 2024 - May 2025 single-file format; current gemma.cpp looks tensors up by plain name)",
          ("prefixed-names", None), ("legacy-only", None))
    p.plan.notes.append("type-prefixed single-file writers (compress_weights --tokenizer) may have left toc "
                        "scales at 1.0 for tensors they rescaled (spec §4.5, unconfirmed); repair keeps the "
                        "stored scales")


def to_pre2025_target(p: Ctx) -> None:
    """``--target pre-2025``: turn the single-file model into the multi-file format; pre-2025 output ends
    right after its last blob."""
    t = p.target
    if t is not None and not t.single_file and p.s.single_file:
        to_pre2025(p)
    if not p.s.single_file:
        p.s.pad_end = False
