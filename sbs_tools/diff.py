"""``sbs diff A B``: how two ``.sbs`` files differ — config, toc, blobs, and tensor values.

What gemma.cpp's ``blob_compare`` does, for humans (spec §9): it needs both
files to have the same keys in the same order and compares bytes (or f32/bf16
values for ``F``/``B``-prefixed keys). Here the comparison is by name, so it
works across layouts (V1/V2), blob orders and element types:

* **container**: layout, size, blob order;
* **config**: every field that differs (``canonical.config_differences``);
* **tensors**: added / removed; per common tensor, changes of type, shape or
  scale, and whether the blob bytes are identical;
* **values**: for every common tensor whose bytes differ (and whose shape
  agrees) both sides are decoded in chunks (any element type, scales applied)
  and compared: max absolute and relative difference, the number of values
  outside ``atol + rtol * |b|`` (numpy's ``isclose`` rule), and a verdict
  ``equal`` (bit-identical bytes), ``close`` (all values within tolerance)
  or ``different``;
* **other blobs**: ``tokenizer`` and anything else, compared byte-wise.

``DiffReport.identical`` is true when nothing differs at all;
``DiffReport.equivalent`` when configs are equal, no tensor was added or
removed and every tensor is ``equal`` or ``close`` (blob order, layout and
encodings may still differ).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .canonical import config_differences
from .sbsfile import SbsFile

METADATA = ("config", "toc", "tokenizer")


@dataclass
class TensorDiff:
    name: str
    verdict: str  # equal (same values) | close | different | incomparable
    changes: list[str] = field(default_factory=list)  # type/shape/scale changes
    bytes_equal: bool = False
    max_abs: float = 0.0
    max_rel: float = 0.0
    mismatched: int = 0  # values outside atol + rtol*|b|
    values: int = 0
    nonfinite: int = 0

    def to_dict(self) -> dict:
        d = dict(vars(self))
        for k in ("max_abs", "max_rel"):
            d[k] = d[k] if math.isfinite(d[k]) else str(d[k])  # "inf"/"nan": JSON has no such numbers
        return d


@dataclass
class DiffReport:
    a: str
    b: str
    atol: float
    rtol: float
    container: list[str] = field(default_factory=list)
    config: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # tensors only in B
    removed: list[str] = field(default_factory=list)  # tensors only in A
    tensors: list[TensorDiff] = field(default_factory=list)  # common tensors that are not byte-identical
    unchanged: int = 0  # common tensors with identical bytes, type, shape and scale
    blobs: list[str] = field(default_factory=list)  # non-tensor blob differences

    @property
    def identical(self) -> bool:
        return not (self.container or self.config or self.added or self.removed or self.tensors or self.blobs)

    @property
    def equivalent(self) -> bool:
        return (not self.config and not self.added and not self.removed
                and all(t.verdict in ("equal", "close") for t in self.tensors))

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "atol": self.atol, "rtol": self.rtol, "identical": self.identical,
                "equivalent": self.equivalent, "container": self.container, "config": self.config,
                "tensors_added": self.added, "tensors_removed": self.removed, "tensors_unchanged": self.unchanged,
                "tensors_changed": [t.to_dict() for t in self.tensors], "blobs": self.blobs}


def _same_bytes(fa: SbsFile, ka: str, fb: SbsFile, kb: str) -> bool:
    """Whether two blobs hold the same bytes, compared piecewise (``SbsFile.chunks``: ``pread`` into
    bounded buffers, never the mapping, so a file truncated meanwhile raises ``file-changed``)."""
    ea, eb = fa.blobs[ka], fb.blobs[kb]
    fa.entry(ka), fb.entry(kb)  # a blob outside its file: blob-out-of-bounds
    if ea.size != eb.size:
        return False
    return all(np.array_equal(a, b) for a, b in zip(fa.chunks(ea.offset, ea.size), fb.chunks(eb.offset, eb.size)))


def _compare_values(fa: SbsFile, fb: SbsFile, name: str, atol: float, rtol: float, td: TensorDiff) -> None:
    from .export import iter_values

    ia, ib = iter_values(fa, name), iter_values(fb, name)
    max_abs, max_rel = 0.0, 0.0
    for ca, cb in zip(ia, ib):
        both_nan = np.isnan(ca) & np.isnan(cb)
        finite = np.isfinite(ca) & np.isfinite(cb)
        td.nonfinite += int((~finite & ~both_nan).sum()) if not finite.all() else 0
        d = np.abs(ca.astype(np.float64) - cb.astype(np.float64))
        d[both_nan] = 0.0
        same_inf = ~np.isfinite(ca) & (ca == cb)
        d[same_inf] = 0.0
        if d.size:
            max_abs = max(max_abs, float(np.nanmax(np.where(np.isnan(d), np.inf, d))))
            denom = np.abs(cb.astype(np.float64))
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(d == 0, 0.0, d / denom)
            max_rel = max(max_rel, float(np.nanmax(np.where(np.isnan(rel), np.inf, rel))))
            td.mismatched += int((~(d <= atol + rtol * denom)).sum())
        td.values += ca.size
    td.max_abs, td.max_rel = max_abs, max_rel


def diff(a: str | os.PathLike, b: str | os.PathLike, *, atol: float = 0.0, rtol: float = 0.0,
         values: bool = True, progress: Callable[[int, int, str], None] | None = None) -> DiffReport:
    """Compare two ``.sbs`` files (see the module docstring). ``values=False`` skips decoding."""
    import sbs_tools

    rep = DiffReport(os.fspath(a), os.fspath(b), atol, rtol)
    with sbs_tools.open(a) as fa, sbs_tools.open(b) as fb:
        if fa.layout != fb.layout:
            rep.container.append(f"layout: {fa.layout} != {fb.layout}")
        if fa.file_bytes != fb.file_bytes:
            rep.container.append(f"file size: {fa.file_bytes} != {fb.file_bytes}")
        ka = [e.key for e in fa.directory.entries]
        kb = [e.key for e in fb.directory.entries]
        if ka != kb and set(ka) == set(kb):
            rep.container.append("same blobs in a different order")
        if fa.config is not None and fb.config is not None:
            rep.config = config_differences(fa.config, fb.config)
        elif (fa.config is None) != (fb.config is None):
            rep.config = [f"config: {'absent' if fa.config is None else 'present'} != "
                          f"{'absent' if fb.config is None else 'present'}"]
        ta, tb = fa.tensors, fb.tensors
        rep.removed = [n for n in ta if n not in tb]
        rep.added = [n for n in tb if n not in ta]
        common = [n for n in ta if n in tb]
        for i, name in enumerate(common):
            if progress:
                progress(i, len(common), name)
            x, y = ta[name], tb[name]
            changes = []
            if x.type != y.type:
                changes.append(f"type {x.type_name} -> {y.type_name}")
            if (x.rows, x.cols) != (y.rows, y.cols):
                changes.append(f"shape {x.rows}x{x.cols} -> {y.rows}x{y.cols}")
            if x.scale != y.scale:
                changes.append(f"scale {x.scale:g} -> {y.scale:g}")
            same_bytes = x.type == y.type and _same_bytes(fa, x.key, fb, y.key)
            if same_bytes and not changes:
                rep.unchanged += 1
                continue
            td = TensorDiff(name, "equal" if same_bytes else "different", changes, same_bytes)
            if (x.rows, x.cols) != (y.rows, y.cols):
                td.verdict = "incomparable"
            elif values:
                try:
                    _compare_values(fa, fb, name, atol, rtol, td)
                except sbs_tools.SbsError as e:
                    td.verdict = "incomparable"
                    td.changes.append(f"cannot decode: {e.message}")
                else:
                    td.verdict = ("equal" if td.max_abs == 0 and not td.nonfinite
                                  else "close" if td.mismatched == 0 and not td.nonfinite else "different")
            rep.tensors.append(td)
        tensor_keys = {t.key for t in ta.values()} | {t.key for t in tb.values()}
        for key in dict.fromkeys(ka + kb):
            if key in tensor_keys or key == "toc":
                continue
            if key not in fa.blobs or key not in fb.blobs:
                rep.blobs.append(f"{key}: only in {'B' if key not in fa.blobs else 'A'}")
            elif not _same_bytes(fa, key, fb, key):
                if key == "config" and not rep.config:
                    rep.blobs.append("config: same values, different bytes (e.g. schema revision or extra words)")
                elif key != "config":
                    rep.blobs.append(f"{key}: {fa.blobs[key].size} bytes != {fb.blobs[key].size} bytes"
                                     if fa.blobs[key].size != fb.blobs[key].size else f"{key}: contents differ")
    return rep
