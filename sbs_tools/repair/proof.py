"""The proof list of a plan: what became of every blob of the input (checked by hashing after writing)."""
from __future__ import annotations

from ..sbsfile import METADATA_KEYS
from .analyze import SCALES_KEYS
from .context import Ctx
from .plan import ProofEntry


def finish(p: Ctx) -> None:
    """One proof entry per input blob: the output blob it became, or why it is not written."""
    a, s = p.a, p.s
    dropped = p.dropped
    out_by_origin = {}
    for b in s.blobs:
        if b.origin is not None:
            for o in b.origin.split("+"):
                out_by_origin.setdefault(o, b)
    seen = set()
    for r in a.resolved:
        bad = r.index in p.bad_keys
        ident = f"#{r.index}" if bad else r.key
        if ident in seen or (r.key in METADATA_KEYS and not bad) or r.how == "duplicate-entry":
            continue
        seen.add(ident)
        b = out_by_origin.get(ident)
        if bad:
            src = (r.offset, r.size) if r.ok else None
            label = f"entry {r.index} (key {r.entry.raw_key.split(bytes(1), 1)[0]!r})"
            if b is not None:
                p.plan.proof.append(ProofEntry(label, b.key, src, "renamed: unusable key", None,
                                               "tensor" if b.kind == "tensor" else "other"))
            else:
                p.plan.proof.append(ProofEntry(label, None, src, p.dropped.get(ident, "unusable key"),
                                               None, "tensor"))
            continue
        kind = "scales" if r.key in SCALES_KEYS else "tensor"
        src = (a.chosen[r.key].offset, a.chosen[r.key].size) if a.chosen[r.key].ok else None
        if src is None and r.entry.size == 0 and r.key in p.dropped:
            src = (r.entry.offset, 0)  # an empty entry: nothing to lose
            kind = "other"
        if b is not None:
            note = a.chosen[r.key].note if a.chosen[r.key].moved else ""
            p.plan.proof.append(ProofEntry(r.key, b.key, src, note, b.transform, b.kind))
        else:
            why = dropped.get(tensor_out_name(p, r.key)) or dropped.get(r.key)
            if why is None:
                if r.index in p.bad_keys:
                    why = "unusable key"
                elif not a.chosen[r.key].ok:
                    why = "bytes not recoverable"
                elif kind == "scales":
                    why = "scales moved into the toc"
                else:
                    why = "dropped"
            p.plan.proof.append(ProofEntry(r.key, None, src, why, None, kind))
    p.plan.state = s


def tensor_out_name(p: Ctx, key: str) -> str:
    """The output name of input key ``key``."""
    for out, inp in p.renamed.items():
        if inp == key:
            return out
    return key
