"""``--deep``: decode every tensor once, streaming, and look at the values.

Tensors are read with ordinary file reads into one reusable buffer, in
chunks of whole codec groups, and decoded into one reusable float32 buffer,
so memory stays bounded by the chunk size (a few tens of MiB) whatever the
file or tensor size; the memory map of the file is not touched, so its pages
do not accumulate in the process.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from ..errors import SbsError
from ..sbsfile import SbsFile, TensorInfo
from ..tensors import RMS_NORM_BASES, split_name
from ..types import Type, packed_bytes
from .findings import Finding, finding

#: Values decoded per chunk (a multiple of every group size: NUQ 256, I8 128).
CHUNK_VALUES = 4 << 20
#: A norm tensor is "suspicious" when its median exceeds this and (almost) no value is <= 0.
NORM_MEDIAN_LIMIT = 0.5
#: The file-level norm-suspicious warning needs at least this share of RMSNorm tensors to look shifted.
NORM_SHARE = 0.75
SFP_NEG_ZERO = 0x80

Progress = Callable[[int], None]


class _Stats:
    def __init__(self) -> None:
        self.nonfinite = 0
        self.first_nonfinite: int | None = None
        self.any_nonzero = False
        self.neg_zero = 0
        self.first_neg_zero: int | None = None
        self.bad_scale_groups = 0
        self.first_bad_scale: int | None = None
        self.bad_tables = 0
        self.first_bad_table: int | None = None
        self.values: np.ndarray | None = None  # kept only for small norm tensors


def _table_unsorted(tab: np.ndarray) -> np.ndarray:
    """Rows of NUQ centre tables (G, 16) that are not ascending after their leading zeros
    (gemma.cpp puts unused centres, as 0.0, at the low indices)."""
    seen = np.maximum.accumulate(tab != 0, axis=1)
    return ((np.diff(tab, axis=1) < 0) & seen[:, :-1]).any(axis=1)


def _scan(fd: int, info: TensorInfo, t: Type, st: _Stats, raw_buf: np.ndarray, out_buf: np.ndarray,
          keep: bool, progress: Progress | None) -> None:
    from .. import codecs
    from ..codecs import sfp

    n = info.num_values
    group = {Type.NUQ: 256, Type.I8: 128}.get(t, 1)
    step = CHUNK_VALUES
    kept = [] if keep else None
    start = 0
    while start < n:
        count = min(step, n - start)
        b0 = packed_bytes(t, start)  # exact: start is a multiple of the group size
        nbytes = packed_bytes(t, start + count) - b0
        raw = raw_buf[:nbytes]
        got = os.preadv(fd, [memoryview(raw)], info.offset + b0)
        if got != nbytes:
            raise OSError(f"short read in {info.name}")
        vals = codecs.decode(t, raw, count, out=out_buf[:count])
        fin = np.isfinite(vals)
        bad = count - int(np.count_nonzero(fin))
        if bad:
            if st.first_nonfinite is None:
                st.first_nonfinite = start + int(np.argmin(fin))
            st.nonfinite += bad
        if not st.any_nonzero and np.any(vals != 0):
            st.any_nonzero = True
        if t == Type.SFP:
            nz = raw == SFP_NEG_ZERO
            k = int(np.count_nonzero(nz))
            if k:
                if st.first_neg_zero is None:
                    st.first_neg_zero = start + int(np.argmax(nz))
                st.neg_zero += k
        elif t in (Type.NUQ, Type.I8):
            gbytes = 144 if t == Type.NUQ else 132
            full = count // group
            heads = raw[:full * gbytes].reshape(full, gbytes)
            if count % group:
                tail = raw[full * gbytes:]
                hdr_len = 16 if t == Type.NUQ else 4
                heads_list = [heads[:, :hdr_len], tail[None, :hdr_len]]
                hdr = np.concatenate(heads_list, axis=0)
            else:
                hdr = heads[:, :16 if t == Type.NUQ else 4]
            g0 = start // group
            if t == Type.NUQ:
                tab = sfp.decode_bytes(np.ascontiguousarray(hdr).reshape(-1)).reshape(-1, 16)
                unsorted = _table_unsorted(tab)
                k = int(np.count_nonzero(unsorted))
                if k:
                    if st.first_bad_table is None:
                        st.first_bad_table = g0 + int(np.argmax(unsorted))
                    st.bad_tables += k
                nz = hdr == SFP_NEG_ZERO
                k = int(np.count_nonzero(nz))
                if k:
                    if st.first_neg_zero is None:
                        st.first_neg_zero = (g0 + int(np.argmax(nz.any(axis=1)))) * group
                    st.neg_zero += k
            else:
                u = np.ascontiguousarray(hdr).astype(np.uint32)
                inv = ((u[:, 0] | (u[:, 1] << 8)) << 16).view(np.float32)
                zp = ((u[:, 2] | (u[:, 3] << 8)) << 16).view(np.float32)
                badg = ~np.isfinite(inv) | (inv == 0) | ~np.isfinite(zp)
                k = int(np.count_nonzero(badg))
                if k:
                    if st.first_bad_scale is None:
                        st.first_bad_scale = g0 + int(np.argmax(badg))
                    st.bad_scale_groups += k
        if kept is not None:
            kept.append(vals.copy())
        if progress is not None:
            progress(nbytes)
        start += count
    if kept is not None:
        st.values = np.concatenate(kept) if kept else np.zeros(0, np.float32)


def _rowcol(info: TensorInfo, idx: int) -> str:
    if info.cols:
        return f"flat index {idx} (row {idx // info.cols}, col {idx % info.cols})"
    return f"flat index {idx}"


def check_deep(f: SbsFile, progress: Progress | None = None) -> list[Finding]:
    """Value findings for every tensor whose blob has the size its type and shape imply."""
    out: list[Finding] = []
    infos = sorted(f.tensors.values(), key=lambda i: i.offset)
    largest = raw_need = 0
    todo: list[tuple[TensorInfo, Type]] = []
    for info in infos:
        try:
            t = Type(info.type)
        except ValueError:
            t = None
        want = info.expected_bytes
        if t is None or t in (Type.UNKNOWN,) or want is None or want != info.bytes \
                or info.offset + info.bytes > f.file_bytes:
            out.append(finding("deep-skipped", f"{info.name} not decoded: its blob does not hold a "
                                               f"{info.type_name} {info.rows} x {info.cols} tensor",
                               tensor=info.name, offset=info.offset, blob=info.key))
            if progress is not None:
                progress(info.bytes)
            continue
        todo.append((info, t))
        largest = max(largest, min(info.num_values, CHUNK_VALUES))
        raw_need = max(raw_need, packed_bytes(t, min(info.num_values, CHUNK_VALUES)))
    raw_buf = np.empty(max(raw_need, 8), dtype=np.uint8)
    out_buf = np.empty(max(largest, 1), dtype=np.float32)
    norm_stats: list[tuple[TensorInfo, float, float]] = []
    n_norms = 0
    fd = os.open(f.path, os.O_RDONLY)
    try:
        for info, t in todo:
            base, idx = split_name(info.name)
            is_norm = base in RMS_NORM_BASES and info.num_values <= CHUNK_VALUES
            st = _Stats()
            try:
                _scan(fd, info, t, st, raw_buf, out_buf, is_norm, progress)
            except (SbsError, OSError) as err:
                out.append(finding("deep-skipped", f"{info.name} could not be decoded: {err}", tensor=info.name,
                                   offset=info.offset, blob=info.key))
                continue
            loc = {"tensor": info.name, "offset": info.offset, "blob": info.key}
            if st.bad_scale_groups:
                g = st.first_bad_scale
                out.append(finding("scale-invalid",
                                   f"{info.name}: {st.bad_scale_groups} I8 group(s) with a non-finite or zero scale "
                                   f"or zero point, first group {g} (values {g * 128}..)",
                                   **{**loc, "offset": info.offset + g * 132},
                                   hint="the tensor is corrupt; re-export it"))
            elif st.nonfinite:
                out.append(finding("non-finite",
                                   f"{info.name}: {st.nonfinite} NaN/Inf value(s), first at "
                                   f"{_rowcol(info, st.first_nonfinite)}", **loc,
                                   hint="the source checkpoint or the conversion produced NaN/Inf; re-export"))
            if st.bad_tables:
                g = st.first_bad_table
                out.append(finding("nuq-table-invalid",
                                   f"{info.name}: {st.bad_tables} NUQ group(s) whose cluster table is not ascending, "
                                   f"first group {g}", **{**loc, "offset": info.offset + g * 144},
                                   hint="the tensor is corrupt; re-export it"))
            if st.neg_zero:
                out.append(finding("sfp-noncanonical",
                                   f"{info.name}: {st.neg_zero} SFP byte(s) 0x80 (negative zero, never written by "
                                   f"gemma.cpp; debug builds assert), first at {_rowcol(info, st.first_neg_zero)}",
                                   **loc, hint="`sbs repair` rewrites them as 0x00"))
            if not st.any_nonzero and not st.nonfinite and not st.bad_scale_groups and info.num_values:
                out.append(finding("all-zero", f"{info.name}: every value is 0" + (
                    " (for a norm weight this means scale 1: plausible only for an untrained model)"
                    if base in RMS_NORM_BASES else ""), **loc,
                    hint="check the export; an all-zero weight usually means it was never filled in"))
            if base in RMS_NORM_BASES:
                n_norms += 1
                v = st.values
                if v is not None and v.size and np.isfinite(v).all():
                    med = float(np.median(v))
                    nonpos = float(np.mean(v <= 0))
                    if med > NORM_MEDIAN_LIMIT and nonpos < 0.01:
                        norm_stats.append((info, med, float(v.min())))
    finally:
        os.close(fd)
    if norm_stats and len(norm_stats) >= NORM_SHARE * n_norms:
        info, med, mn = norm_stats[0]
        base, idx = split_name(info.name)
        out.append(finding(
            "norm-suspicious",
            f"{len(norm_stats)} of {n_norms} RMSNorm weights are centred near or above 1 with no values <= 0 "
            f"(e.g. {info.name}: median {med:.3g}, min {mn:.3g}); gemma.cpp applies them as (1 + w), so the +1 "
            "was probably baked in already (common after converting from Hugging Face or GGUF)",
            tensor=info.name, offset=info.offset, blob=info.key, layer=idx,
            layer_type="kGemma" if idx is not None else None,
            hint="subtract 1 from every RMSNorm weight (the converter must store w, not 1 + w)"))
    return out
