"""Layer rules: the fused and split forms of the attention, QKV and gating weights."""
from __future__ import annotations

import numpy as np

from ...tensors import GEMMA, Choice, choices
from ...toc import TocRecord
from ...types import type_name
from ..actions import OutBlob, plain_itemsize
from ..context import Ctx
from .toc import insert_record


def layers(p: Ctx) -> None:
    """Per exactly-one-of group (att, qkv, gating): drop the split form when the fused one is present; build
    the fused form when the target needs it."""
    s, t = p.s, p.target
    if s.config is None:
        return
    present = set(s.keys())
    for c in choices(s.config):
        have = [all(n in present for n in form) for form in c.forms]
        if have[0] and any(n in present for n in c.forms[1]):
            drop_redundant(p, c)
        elif not have[0] and have[1] and t is not None and t.fused and c.layer_type == GEMMA and not c.fused_only:
            fuse(p, c)  # Gemma layers only: the T5Gemma / Gemma 4 ViT forms have other layouts


def drop_redundant(p: Ctx, c: Choice) -> None:
    """Both forms present: keep the fused one gemma.cpp uses (it aborts on both since 2025-06-02)."""
    s = p.s
    fused = c.forms[0][0]
    split = [n for n in c.forms[1] if s.find(n) is not None]
    verdict = redundancy(p, c, fused, split)
    for n in split:
        s.drop(n)
        p.dropped[n] = f"redundant with {fused} ({verdict})"
    p.act("drop-redundant", f"layer {c.layer}: drop {' + '.join(split)}, keep {fused}: gemma.cpp derives "
          f"the former from the latter and since 2025-06-02 aborts on both ({verdict})",
          ("both-forms", split[0]), ("both-forms", fused), ("legacy-only", None), key=fused, dropped=split)


def redundancy(p: Ctx, c: Choice, fused: str, split: list[str]) -> str:
    """Whether the split form holds exactly the fused tensor's values (byte level, plain types)."""
    s = p.s
    rf = s.record(fused)
    recs = [s.record(n) for n in split]
    if rf is None or any(r is None for r in recs):
        return "not compared: toc records missing"
    if any(r.type != rf.type for r in recs):
        return "not compared: different element types"
    item = plain_itemsize(rf.type)
    if item is None:
        return f"not compared: {type_name(rf.type)} streams cannot be compared without re-encoding"
    fb = p.bytes_of(s.find(fused))
    parts = [p.bytes_of(s.find(n)) for n in split]
    if c.key.startswith("att"):
        lc = s.config.layer_configs[c.layer]
        H, Dh = lc.heads, lc.qkv_dim
        D = rf.rows // max(H, 1)
        if rf.rows != H * D or rf.cols != Dh or fb.size != H * D * Dh * item or parts[0].size != fb.size:
            return "not compared: unexpected shapes"
        ein = fb.reshape(H, D, Dh, item)
        att_w = ein.transpose(1, 0, 2, 3).reshape(-1)
        same = np.array_equal(att_w, parts[0]) and recs[0].scale == rf.scale
        return ("verified: it is exactly the transposed einsum" if same else
                "its bytes differ from the transposed einsum, as in gemma.cpp migrate_weights output; the "
                "einsum is what gemma.cpp uses")
    joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
    same = np.array_equal(joined, fb) and all(r.scale == rf.scale for r in recs)
    return "verified: the halves are exactly its rows" if same else "the halves differ from its rows; the " \
                                                                    "fused tensor is what gemma.cpp uses"


def fuse(p: Ctx, c: Choice) -> None:
    """For readers that need att_ein/qkv_ein/gating_ein: build it from the split form (plain types only)."""
    s, t = p.s, p.target
    fused = c.forms[0][0]
    split = list(c.forms[1])
    recs = [s.record(n) for n in split]
    spec = p.specs.get(fused)
    item = plain_itemsize(recs[0].type) if recs[0] is not None else None
    why = None
    if spec is None or any(r is None for r in recs):
        why = "toc records missing"
    elif any(r.type != recs[0].type or r.scale != recs[0].scale for r in recs):
        why = "the parts have different types or scales"
    elif item is None:
        why = f"{type_name(recs[0].type)} streams would have to be re-encoded"
    if why is not None:
        msg = (f"layer {c.layer}: {t.label} needs {fused}, but it cannot be built from {' + '.join(split)} "
               f"without re-encoding ({why})")
        if t.key == "2025-05-07":
            p.plan.notes.append(msg + "; builds from 2025-05-13 on accept the split form")
        else:
            p.refuse("missing-tensor", fused, msg, forceable=False)
        return
    parts = [p.bytes_of(s.find(n)) for n in split]
    if c.key.startswith("att"):
        lc = s.config.layer_configs[c.layer]
        H, Dh = lc.heads, lc.qkv_dim
        D = recs[0].rows
        data = parts[0].reshape(D, H, Dh, item).transpose(1, 0, 2, 3).reshape(-1).tobytes()
        how = f"transposed from {split[0]} (att_ein[h*D+m, d] = att_w[m, h*Dh+d]; values unchanged)"
    else:
        data = np.concatenate(parts).tobytes()
        how = f"concatenated rows of {' + '.join(split)} (values unchanged)"
    pos = min(s.keys().index(n) for n in split)
    out = OutBlob(fused, "tensor", data=data, origin="+".join(split), transform=how)
    for n in split:
        s.drop(n)
        p.dropped[n] = f"merged into {fused}"
    s.blobs.insert(pos, out)
    insert_record(p, TocRecord.make(fused, recs[0].type, spec.rows, spec.cols, recs[0].scale))
    p.act("fuse-tensor", f"layer {c.layer}: build {fused}, {how}: {t.label} requires it", key=fused)
