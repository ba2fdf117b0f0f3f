"""Blobs whose key cannot be written, and blobs nothing uses (``--drop-unused``)."""
from __future__ import annotations

from ...errors import SbsError
from ...toc import TocRecord
from ...types import packed_bytes
from ..actions import OutBlob, size_ok
from ..context import Ctx


def adopt_orphan(p: Ctx, rec: TocRecord) -> bool:
    """A blob whose key is unusable and whose size is exactly that of a toc record without a blob
    is that tensor (when only one such pairing exists)."""
    try:
        want = packed_bytes(rec.type, rec.rows * rec.cols)
    except SbsError:
        return False
    cands = [(r, why) for r, why in p.bad_blobs if r.ok and r.size == want]
    if len(cands) != 1:
        return False
    others = [x for x in p.s.toc if x is not rec and p.s.find(x.name) is None and size_ok(x, want)]
    if others:
        return False
    r, why = cands[0]
    p.bad_blobs.remove(cands[0])
    insert_blob(p, OutBlob(rec.name, "tensor", r, origin=r.key or f"#{r.index}"))
    p.act("rename-blob", f"{why}; it is the only blob with the {want} bytes of {rec.name}, which the toc "
          "describes but no key names: renamed to {rec.name}".replace("{rec.name}", rec.name),
          ("bad-key", r.key or None), ("toc-blob-missing", rec.name), ("missing-tensor", rec.name))
    return True


def insert_blob(p: Ctx, b: OutBlob) -> None:
    """Insert ``b`` among the blobs in the order of the input entries."""
    s = p.s
    pos = next((i for i, x in enumerate(s.blobs) if x.src is not None and x.src.index > b.src.index),
               len(s.blobs))
    s.blobs.insert(pos, b)


def orphans(p: Ctx) -> None:
    """Blobs whose key cannot be written and that no toc record claims: keep their bytes under a
    placeholder name (gemma.cpp ignores blobs nothing refers to), or drop them with --drop-unused."""
    s = p.s
    for r, why in list(p.bad_blobs):
        if not r.ok:
            p.refuse("bad-key", r.key or None, f"{why}, and its bytes cannot be located ({r.note})")
            continue
        if p.opts.drop_unused:
            p.dropped[r.key or f"#{r.index}"] = f"--drop-unused: {why}"
            p.act("drop-unused", f"drop directory entry {r.index}: {why} (--drop-unused)",
                  ("bad-key", r.key or None))
            continue
        name = f"orphan{r.index}"
        while s.find(name) is not None:
            name += "x"
        insert_blob(p, OutBlob(name, "other", r, origin=f"#{r.index}"))
        p.act("rename-blob", f"{why}; no toc record claims its {r.size} bytes: kept under the placeholder "
              f"key {name!r} (gemma.cpp ignores it; --drop-unused drops it instead)",
              ("bad-key", r.key or None))
    p.bad_blobs.clear()


def unused(p: Ctx) -> None:
    """``--drop-unused``: drop blobs no toc record describes or no layer of the config uses."""
    if not p.opts.drop_unused:
        return
    s = p.s
    toc_names = {r.name for r in s.toc or []}
    for b in list(s.blobs):
        if b.kind == "scales":
            continue
        reason = None
        if s.single_file and b.key not in toc_names:
            reason = "no toc record describes it"
        elif s.config is not None and p.specs and b.key not in p.specs:
            reason = "no layer of the config uses it"
        if reason:
            s.drop(b.key)
            p.dropped[b.key] = f"--drop-unused: {reason}"
            p.act("drop-unused", f"drop {b.key}: {reason} (--drop-unused)", ("unexpected-tensor", b.key),
                  ("blob-not-in-toc", b.key))
