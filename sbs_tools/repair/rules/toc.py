"""The toc rule: one record per tensor blob, each record describing its blob.

Runs again while the simulated output still reports a toc finding, or a
``missing-tensor`` (a blob without a record is a tensor gemma.cpp cannot see).
"""
from __future__ import annotations

from ...toc import TocRecord
from ..actions import OutBlob, inferred_scale, size_ok, types_for_size
from ..context import Ctx
from .orphans import adopt_orphan
from .records import check_records


def toc(p: Ctx) -> None:
    """Make the toc describe exactly the blobs: drop duplicate records and records whose blob is gone,
    add a record for every tensor blob without one when the config shape, blob size and bytes determine it,
    then fix what the records say (:func:`.records.check_records`)."""
    a, s = p.a, p.s
    if s.config is None:
        return
    if s.toc is None:
        s.toc, s.toc_dirty = [], True
    dedupe_toc(p)
    have = {r.name for r in s.toc}
    blob_keys = set(s.keys())
    # Records whose blob is gone.
    for rec in list(s.toc):
        if rec.name in blob_keys:
            continue
        spec = p.specs.get(rec.name)
        in_input = p.renamed.get(rec.name, rec.name) in p.lost
        if in_input:
            s.toc.remove(rec)
            s.toc_dirty = True
            continue  # blob-lost refusal already says it
        if adopt_orphan(p, rec):
            continue
        if rec.name in p.a.salvaged_lost:
            s.toc.remove(rec)
            s.toc_dirty = True
            continue
        if spec is not None and spec.required:
            p.refuse("toc-blob-missing", rec.name, f"the toc describes {rec.name} but its blob is not in "
                     "the file: the tensor's bytes are gone (--partial drops the record)")
            s.toc.remove(rec)
            s.toc_dirty = True
        else:
            s.toc.remove(rec)
            s.toc_dirty = True
            p.act("drop-toc-record", f"drop the toc record of {rec.name}: it has no blob and no layer needs "
                  "it", ("toc-blob-missing", rec.name))
    lost = p.a.salvaged_lost
    if lost:
        p.refuse("toc-blob-missing", None, f"{len(lost)} tensors lay past the point where the file was cut "
                 f"off and their bytes are gone: {', '.join(lost[:8])}{', ...' if len(lost) > 8 else ''} "
                 "(--partial writes the tensors that survive, as a partial file)")
    # Blobs without a record.
    rebuilt, new_records = [], []
    for b in s.blobs:
        if b.kind != "tensor" or b.key in have:
            continue
        rec, why = synthesize(p, b)
        if rec is None:
            if a.toc is None or a.toc_partial or a.toc_error is not None:
                p.refuse("toc-undecodable" if a.toc_error else "toc-missing", b.key,
                         f"no toc record for {b.key} and {why} (--partial leaves it out of the toc)")
            elif b.key in p.specs:
                p.refuse("blob-not-in-toc", b.key, f"the blob of {b.key} is in the file but its toc record is not, "
                         f"and the record cannot be rebuilt unambiguously: {why}")
            else:
                b.kind = "other"
            continue
        new_records.append(rec)
        rebuilt.append((b.key, why))
    insert_records(p, new_records)
    if rebuilt:
        if a.toc is None:
            summary = f"rebuild the missing toc: {len(rebuilt)} records from the config shapes and blob sizes"
        elif a.toc_error is not None:
            summary = (f"rebuild the damaged toc: {len(a.toc)} records recovered intact, {len(rebuilt)} "
                       "rebuilt from the config shapes and blob sizes")
        elif len(rebuilt) <= 3:
            summary = "restore the toc record of " + "; ".join(f"{k}: {why}" for k, why in rebuilt) + \
                      " (its blob was in the file)"
        else:
            summary = f"add toc records for {len(rebuilt)} tensors that had none"
        p.act("rebuild-toc", summary, ("toc-missing", None), ("toc-undecodable", None),
              *[(c, k) for k, _ in rebuilt for c in ("blob-not-in-toc", "missing-tensor")],
              records={k: why for k, why in rebuilt})
    check_records(p)


def dedupe_toc(p: Ctx) -> None:
    """Two records of one name: identical ones keep one; different ones keep the one blob and config agree with."""
    s = p.s
    out, seen, identical = [], {}, []
    for rec in s.toc:
        if rec.name not in seen:
            seen[rec.name] = rec
            out.append(rec)
            continue
        prev = seen[rec.name]
        if prev.values() == rec.values():
            identical.append(rec.name)
            continue
        b = s.find(rec.name)
        ok = [r for r in (prev, rec) if b is not None and size_ok(r, b.size) and shape_ok(p, r)]
        if len(ok) == 1:
            if ok[0] is rec:
                out[out.index(prev)] = rec
                seen[rec.name] = rec
            p.act("drop-toc-record", f"{rec.name}: two different toc records; keep the one whose type and "
                  "shape agree with the blob size and the config", ("toc-duplicate", rec.name))
        else:
            p.refuse("toc-duplicate", rec.name, f"two different toc records for {rec.name} and the blob does "
                     "not tell which is right", forceable=False)
    if identical:
        names = list(dict.fromkeys(identical))
        p.act("drop-toc-record", f"drop {len(identical)} second, identical toc record(s) of "
              + ", ".join(names[:6]) + (", ..." if len(names) > 6 else ""),
              *[("toc-duplicate", n) for n in names])
    if len(out) != len(s.toc):
        s.toc, s.toc_dirty = out, True


def shape_ok(p: Ctx, rec: TocRecord) -> bool:
    """The record's shape is the config's (or the config does not know the name)."""
    spec = p.specs.get(rec.name)
    return spec is None or (rec.rows, rec.cols) == spec.shape


def synthesize(p: Ctx, b: OutBlob):
    """A toc record for blob ``b`` when the config shape, the blob size and the bytes determine it."""
    spec = p.specs.get(b.key)
    if spec is None:
        return None, "the config does not know this tensor name, so its shape is unknown"
    n = spec.rows * spec.cols
    ts = types_for_size(b.size, n, tuple(sorted(spec.types)))
    if len(ts) != 1:
        if not ts:
            return None, (f"its {b.size} bytes fit no element type for {spec.rows} x {spec.cols} "
                          f"(config shape)")
        return None, f"its {b.size} bytes fit several element types ({', '.join(t.name for t in ts)})"
    t = ts[0]
    scale, why = inferred_scale(t, p.bytes_of(b), spec)
    if scale is None:
        return None, why
    return (TocRecord.make(b.key, t, spec.rows, spec.cols, scale),
            f"{t.name} {spec.rows} x {spec.cols} (config shape; only {t.name} fits {b.size} bytes), "
            f"scale {scale:g} ({why})")


def insert_records(p: Ctx, recs: list) -> None:
    """Add toc records in one pass, each right after the record of the nearest preceding blob."""
    if not recs:
        return
    s = p.s
    have = {r.name for r in s.toc}
    new = {r.name: r for r in recs}
    after: dict[str | None, list] = {}
    anchor = None
    for k in s.keys():
        if k in new:
            after.setdefault(anchor, []).append(new.pop(k))
        elif k in have:
            anchor = k
    out = after.get(None, []) + list(new.values())
    for r in s.toc:
        out.append(r)
        out += after.get(r.name, [])
    s.toc[:] = out
    s.toc_dirty = True


def insert_record(p: Ctx, rec) -> None:
    """Add a toc record where gemma.cpp's writer would have put it: right after the record of the
    nearest preceding blob (the writer emits blobs and records in the same order)."""
    s = p.s
    keys = s.keys()
    pos = 0
    if rec.name in keys:
        where = {r.name: i for i, r in enumerate(s.toc)}
        for k in reversed(keys[:keys.index(rec.name)]):
            if k in where:
                pos = where[k] + 1
                break
    s.toc.insert(pos, rec)
    s.toc_dirty = True
