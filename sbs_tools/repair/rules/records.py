"""Per-record fixes of a complete toc: shape, type, derived fields and a zero scale."""
from __future__ import annotations

from ...tensors import TensorSpec
from ...toc import TocRecord
from ...types import Type, packed_bytes, type_name
from ..actions import OutBlob, fix_record_fields, inferred_scale, size_ok as _size_ok, types_for_size
from ..context import Ctx


def check_records(p: Ctx) -> None:
    """Size, shape, field and scale problems of the (now complete) toc."""
    s = p.s
    field_fixed = []
    for rec in s.toc:
        b = s.find(rec.name)
        spec = p.specs.get(rec.name)
        if b is None:
            continue
        if rec.type not in Type._value2member_map_ or rec.type == 0:
            continue  # type-unsupported: cannot-fix
        size_ok = _size_ok(rec, b.size)
        shape_ok = spec is None or (rec.rows, rec.cols) == spec.shape
        if not size_ok or not shape_ok:
            fix_record(p, rec, b, spec, size_ok, shape_ok)
        if fix_record_fields(rec):
            field_fixed.append(rec.name)
            s.toc_dirty = True
        if rec.scale == 0.0:
            scale, why = inferred_scale(Type(rec.type), p.bytes_of(b), spec)
            if scale is None:
                p.refuse("scale-invalid", rec.name, f"{rec.name} has scale 0 and {why}")
            else:
                rec.scale = scale
                s.toc_dirty = True
                p.act("fix-scale", f"{rec.name}: scale 0 -> {scale:g} ({why})", ("scale-invalid", rec.name))
    if field_fixed:
        p.act("fix-toc-fields", f"recompute element_bytes/num_elements/stride of {len(field_fixed)} toc "
              "records from type and shape", *[("toc-field-mismatch", n) for n in field_fixed])


def fix_record(p: Ctx, rec: TocRecord, b: OutBlob, spec: TensorSpec | None, size_ok: bool, shape_ok: bool) -> None:
    """A record whose size or shape disagrees: take the config's shape or the only type that fits, when the
    blob size confirms it and it cannot be a transposition; otherwise refuse."""
    s = p.s
    name = rec.name
    if spec is not None and not shape_ok:
        n_spec = spec.rows * spec.cols
        if packed_bytes(rec.type, n_spec) == b.size and (size_ok is False or rec.rows * rec.cols != n_spec):
            old = (rec.rows, rec.cols)
            rec.rows, rec.cols = spec.rows, spec.cols
            s.toc_dirty = True
            p.act("fix-toc-shape", f"{name}: toc shape {old[0]} x {old[1]} -> {spec.rows} x {spec.cols} (the "
                  "config's shape, confirmed by the blob size)", ("shape-mismatch", name),
                  ("tensor-size-mismatch", name))
            return
        if size_ok and rec.rows * rec.cols == n_spec:
            swapped = (rec.rows, rec.cols) == (spec.cols, spec.rows) and spec.rows > 1 and spec.cols > 1
            if swapped:
                p.refuse("shape-mismatch", name, f"{name}: toc says {rec.rows} x {rec.cols}, the config "
                         f"{spec.rows} x {spec.cols}: the blob fits both, and a writer may have stored the "
                         "matrix transposed, so which layout the bytes have cannot be known",
                         forceable=False)
                return
            old = (rec.rows, rec.cols)
            rec.rows, rec.cols = spec.rows, spec.cols
            fix_record_fields(rec)
            s.toc_dirty = True
            what = ("a vector has only one element order" if spec.rows == 1 else
                    "not a transposition, so the row-major bytes can only mean the config's shape")
            p.act("fix-toc-shape", f"{name}: toc shape {old[0]} x {old[1]} -> {spec.rows} x {spec.cols}, the "
                  f"config's shape with the same {n_spec} values ({what})", ("shape-mismatch", name))
            return
        if size_ok:
            return  # config and tensor disagree, the bytes agree with the toc: cannot-fix (shape-mismatch)
    if not size_ok:
        n = rec.rows * rec.cols
        allowed = tuple(sorted(spec.types)) if spec is not None else None
        ts = types_for_size(b.size, n, allowed) if allowed else types_for_size(b.size, n)
        if len(ts) == 1 and shape_ok:
            t = ts[0]
            scale_ok = t in (Type.SFP, Type.NUQ) or rec.scale == 1.0
            if scale_ok:
                old = type_name(rec.type)
                rec.type = int(t)
                fix_record_fields(rec)
                s.toc_dirty = True
                p.act("fix-toc-type", f"{name}: toc type {old} -> {t.name} (the only type whose packed size "
                      f"for {rec.rows} x {rec.cols} is the blob's {b.size} bytes)",
                      ("tensor-size-mismatch", name), ("type-unsupported", name))
                return
        want = packed_bytes(rec.type, n)
        what = "shorter" if b.size < want else "longer"
        p.refuse("tensor-size-mismatch", name, f"{name}: the blob has {b.size} bytes, {what} than the "
                 f"{want} bytes of {type_name(rec.type)} {rec.rows} x {rec.cols}, and neither the padding "
                 "nor another type explains it" + (": the tensor's bytes are incomplete"
                                                   if b.size < want else ""))
