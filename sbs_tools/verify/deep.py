"""``--deep``: decode every tensor once, streaming, and look at the values.

Tensors are read in chunks of whole codec groups of about ``READ_BYTES`` with
``pread`` into one reusable buffer (``SbsFile.read_into``: the memory map is not
touched, so a file truncated meanwhile is a ``file-changed`` error rather than
SIGBUS, and resident memory stays bounded by a few tens of MiB whatever the
file or tensor size). A chunk that size is still in the core's cache when the
pre-check below reads it.

Each chunk first goes through :func:`_fast_clean`, an exact pre-check on the
packed bytes that needs no decoding (BF16/F32: two integer max-reductions find
any NaN/Inf pattern; SFP: an int8 min-reduction finds any 0x80 byte; NUQ/I8:
only the group headers). Only a chunk it cannot clear — one holding something to
report, or before the tensor's first non-zero value is seen — is decoded
into the reusable float32 buffer and examined in full, so findings are
identical to decoding everything while a clean file is checked at close to
memory speed.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import FileChangedError, SbsError
from ..sbsfile import SbsFile, TensorInfo, read_buffer
from ..tensors import RMS_NORM_BASES, split_name
from ..types import Type, packed_bytes
from .findings import Finding, finding

#: At most this many values per chunk (a multiple of every group size: NUQ 256, I8 128).
CHUNK_VALUES = 4 << 20
#: Bytes read per chunk (rounded down to whole groups): copied from the page cache into one buffer
#: that stays in L2 for the pre-check.
READ_BYTES = 1 << 20
#: Bytes the fast pre-check handles per numpy call: small enough that a block read twice stays in L2.
FAST_BLOCK = 512 << 10
#: A norm tensor looks shifted by +1 when its median exceeds this and (almost) no value is negative.
#: Real checkpoints store w with (1 + w) applied at run time: many of their norms (post-norms, q/k norms)
#: have well over 2% negative values, while their pre-norms can have medians of 10-30, so a median test
#: alone would flag clean files. On the real Gemma 3 270M, 34% of the 109 RMSNorm tensors pass both tests;
#: with +1 baked in, 94% do.
NORM_MEDIAN_LIMIT = 0.5
NORM_NEGATIVE_LIMIT = 0.02
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
        self.bad_blocks = 0  # MXFP4 blocks the encoder never writes
        self.first_bad_block: int | None = None
        self.values: np.ndarray | None = None  # kept only for small norm tensors


def _zero_point_ok(zp: np.ndarray) -> np.ndarray:
    """I8 zero points gemma.cpp's encoder can write: ``float(int32(a))`` rounded to bf16, i.e. an
    integer of magnitude <= 2^31. Anything else is a damaged header, and re-quantizing the group
    (gemma.cpp does for I8 ``att_ein``, ``qkv_ein``, ``gating_ein``) overflows int32."""
    with np.errstate(all="ignore"):
        return np.isfinite(zp) & (np.abs(zp) <= np.float32(2.0**31)) & (np.trunc(zp) == zp)


def _table_unsorted(tab: np.ndarray) -> np.ndarray:
    """Rows of NUQ centre tables (G, 16) that are not ascending after their leading zeros
    (gemma.cpp puts unused centres, as 0.0, at the low indices)."""
    seen = np.maximum.accumulate(tab != 0, axis=1)
    return ((np.diff(tab, axis=1) < 0) & seen[:, :-1]).any(axis=1)


_F32_MAX = float(np.finfo(np.float32).max)
#: Per float type: signed and unsigned views, and the smallest NaN/Inf pattern of each sign.
_FLOAT_BITS = {Type.BF16: (np.int16, np.uint16, 0x7F80, 0xFF80, 0x7FFF),
               Type.F32: (np.int32, np.uint32, 0x7F800000, 0xFF800000, 0x7FFFFFFF)}


def _fast_clean(t: Type, raw: np.ndarray, count: int, st: _Stats, scratch: np.ndarray) -> bool:
    """Exact shortcut for one chunk of ``count`` values (packed bytes ``raw``).

    True: decoding the chunk would report nothing (no NaN/Inf, no SFP 0x80, no bad
    NUQ table or I8 header) and ``st.any_nonzero`` has been updated where that is
    cheap; the caller then skips the decode. False: decode and examine the chunk in full.
    Reads the bytes with numpy reductions only (no temporaries over the data), in
    blocks of ``scratch.size`` so a second look at a block comes from cache.
    """
    step = scratch.size
    if t in (Type.BF16, Type.F32):
        # NaN/Inf have every exponent bit set: as signed ints the positive ones are >= 0x7F80..,
        # as unsigned ints the negative ones are >= 0xFF80...
        sdt, udt, pos_inf, neg_inf, mag = _FLOAT_BITS[t]
        sw, uw = raw.view(sdt), raw.view(udt)
        n = sw.size
        step //= sw.itemsize
        tmp = scratch.view(udt)
        for i in range(0, n, step):
            if int(sw[i:i + step].max()) >= pos_inf or int(uw[i:i + step].max()) >= neg_inf:
                return False
            if not st.any_nonzero:  # |x| bits of a value: 0 only for +-0
                part = tmp[:min(step, n - i)]
                np.bitwise_and(uw[i:i + step], udt(mag), out=part)
                st.any_nonzero = bool(part.any())
        return True
    if t == Type.SFP:
        # Every byte decodes to a finite value; 0x80 (the one finding) is the int8 minimum, -128;
        # b & 0x7F == 0 iff the value is 0.
        x = raw.view(np.int8)
        for i in range(0, raw.size, step):
            if int(x[i:i + step].min()) == -128:
                return False
            if not st.any_nonzero:
                part = scratch[:min(step, raw.size - i)]
                np.bitwise_and(raw[i:i + step], 0x7F, out=part)
                st.any_nonzero = bool(part.any())
        return True
    if t == Type.NUQ:
        # Values are SFP cluster centres (always finite): only the tables can hold findings.
        full = count // 256
        if full * 256 != count:
            return False  # a partial final group: leave it to the full path
        # Gather the 16 table bytes of every 144-byte group (as one 16-byte item each: numpy copies
        # those ~5x faster than two strided uint64), then work on them as uint64 words.
        words = np.ascontiguousarray(raw[:full * 144].view("V16").reshape(full, 9)[:, 0]).view(np.uint64)
        codes = words.view(np.int8)
        if int(codes.min()) == -128:
            return False  # a 0x80 centre
        # int8 keys that order SFP codes other than 0x80 exactly as their decoded values: positive
        # codes as they are, negative ones with their low 7 bits flipped (0x81 -> -2 ... 0xFF -> -128);
        # computed eight bytes at a time.
        flip = (words >> np.uint64(7)) & np.uint64(0x0101010101010101)
        flip *= np.uint64(0x7F)
        np.bitwise_xor(words, flip, out=flip)
        key = flip.view(np.int8).reshape(-1)
        down = key[1:] < key[:-1]
        down[15::16] = False  # comparisons across two tables
        if down.any():
            return False  # possibly unsorted (ascending tables always pass the leading-zero rule)
        if not st.any_nonzero:
            if not (key.reshape(full, 16) != 0).all(axis=1).any():
                return False  # no group whose 16 centres are all non-zero: let the decode look
            st.any_nonzero = True
        return True
    if t == Type.I8:
        full = count // 128
        if full * 128 != count:
            return False
        groups = raw[:full * 132].reshape(full, 132)
        # The 4-byte headers, gathered as 4-byte items, then as little-endian bf16 pairs.
        hdr = np.ascontiguousarray(raw[:full * 132].view("V4").reshape(full, 33)[:, 0]).view("<u2")
        inv = (hdr[0::2].astype(np.uint32) << 16).view(np.float32)
        zp = (hdr[1::2].astype(np.uint32) << 16).view(np.float32)
        with np.errstate(all="ignore"):
            a_inv = np.abs(inv.astype(np.float64))
            bound = a_inv * 128.0 + a_inv * np.abs(zp.astype(np.float64))
            # Finite non-zero scale, a zero point the encoder can write, and no value can reach the
            # float32 limit.
            ok = np.isfinite(bound) & (a_inv > 0) & (bound < 0.5 * _F32_MAX) & _zero_point_ok(zp)
        if not ok.all():
            return False
        if not st.any_nonzero:
            # inv * q + zs is exactly 0 for at most one q: two different codes give a non-zero value.
            q = groups[0, 4:]
            if q.min() == q.max():
                return False
            st.any_nonzero = True
        return True
    return False


#: Values per group of the grouped types: chunks are whole groups (the packed bytes of a group start there).
GROUP_VALUES = {Type.NUQ: 256, Type.I8: 128, Type.Q4_0: 32, Type.MXFP4: 32}


def _chunk_values(t: Type) -> int:
    """Values per chunk of type ``t``: whole groups, about ``READ_BYTES``, at most ``CHUNK_VALUES``."""
    group = GROUP_VALUES.get(t, 1)
    gbytes = packed_bytes(t, group)
    fit = max(1, READ_BYTES // gbytes) * group
    return max(group, min(CHUNK_VALUES, fit) // group * group)


def _scan(f: SbsFile, info: TensorInfo, t: Type, st: _Stats, out_buf: np.ndarray, scratch: np.ndarray,
          keep: bool, progress: Progress | None, read_buf: np.ndarray) -> None:
    from .. import codecs
    from ..codecs import sfp

    n = info.num_values
    group = GROUP_VALUES.get(t, 1)
    step = _chunk_values(t)
    kept = [] if keep else None
    start = 0
    while start < n:
        count = min(step, n - start)
        b0 = packed_bytes(t, start)  # exact: start is a multiple of the group size
        nbytes = packed_bytes(t, start + count) - b0
        raw = f.read_view(info.offset + b0, read_buf[:nbytes])
        if not keep and _fast_clean(t, raw, count, st, scratch):
            if progress is not None:
                progress(nbytes)
            start += count
            continue
        vals = codecs.decode(t, raw, count, out=out_buf[:count])
        fin = np.isfinite(vals)
        bad = count - int(np.count_nonzero(fin))
        if bad:
            if st.first_nonfinite is None:
                st.first_nonfinite = start + int(np.argmin(fin))
            st.nonfinite += bad
        if not st.any_nonzero and np.any(vals != 0):
            st.any_nonzero = True
        if t == Type.MXFP4:
            from ..codecs import mxfp4

            bad_blocks = mxfp4.clobbered(raw, count)
            if bad_blocks.size:
                if st.first_bad_block is None:
                    st.first_bad_block = start // 32 + int(bad_blocks[0])
                st.bad_blocks += int(bad_blocks.size)
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
                badg = ~np.isfinite(inv) | (inv == 0) | ~_zero_point_ok(zp)
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


def _median(v: np.ndarray) -> float:
    """``np.median`` of finite values, without its NaN check (which imports ``numpy.ma``, ~20 ms of
    start-up for one norm statistic)."""
    n = v.size
    k = n // 2
    if n % 2:
        return float(np.partition(v, k)[k])
    part = np.partition(v, [k - 1, k])
    return float(np.mean(part[k - 1:k + 1]))


def _rowcol(info: TensorInfo, idx: int) -> str:
    if info.cols:
        return f"flat index {idx} (row {idx // info.cols}, col {idx % info.cols})"
    return f"flat index {idx}"


def check_deep(f: SbsFile, progress: Progress | None = None) -> list[Finding]:
    """Value findings for every tensor whose blob has the size its type and shape imply."""
    out: list[Finding] = []
    infos = sorted(f.tensors.values(), key=lambda i: i.offset)
    largest = largest_bytes = 0
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
        count = min(info.num_values, _chunk_values(t))
        largest = max(largest, count)
        largest_bytes = max(largest_bytes, packed_bytes(t, count))
    scratch = np.empty(FAST_BLOCK, dtype=np.uint8)
    read_buf = read_buffer(largest_bytes)
    out_buf = np.empty(max(largest, 1), dtype=np.float32)
    norm_stats: list[tuple[TensorInfo, float, float]] = []
    n_norms = 0
    for info, t in todo:
        base, idx = split_name(info.name)
        is_norm = base in RMS_NORM_BASES and info.num_values <= CHUNK_VALUES
        st = _Stats()
        try:
            _scan(f, info, t, st, out_buf, scratch, is_norm, progress, read_buf)
        except FileChangedError:
            raise  # the file is no longer the one being checked: nothing below would be true
        except (SbsError, OSError) as err:
            out.append(finding("deep-skipped", f"{info.name} could not be decoded: {err}", tensor=info.name,
                               offset=info.offset, blob=info.key))
            continue
        loc = {"tensor": info.name, "offset": info.offset, "blob": info.key}
        if st.bad_scale_groups:
            g = st.first_bad_scale
            out.append(finding("scale-invalid",
                               f"{info.name}: {st.bad_scale_groups} I8 group(s) with a non-finite or zero scale, "
                               f"or a zero point that is not an integer in int32 range, first group {g} "
                               f"(values {g * 128}..)",
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
        if st.bad_blocks:
            b = st.first_bad_block
            out.append(finding("mxfp4-block-invalid",
                               f"{info.name}: {st.bad_blocks} MXFP4 block(s) the encoder never writes (exponent "
                               f"0xFF, or exponent 0 with non-zero nibbles), first block {b} (values {b * 32}..): "
                               "the ee051c9c encoder's zero-block overwrite, or corruption; they decode as 0 "
                               "(garbage on AVX-512 bf16)", **{**loc, "offset": info.offset + b * 17},
                               hint="re-encode the tensor with a fixed encoder (a one-block zeroing)"))
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
                med = _median(v)
                negative = float(np.mean(v < 0))
                if med > NORM_MEDIAN_LIMIT and negative < NORM_NEGATIVE_LIMIT:
                    norm_stats.append((info, med, float(v.min())))
    if norm_stats and len(norm_stats) >= NORM_SHARE * n_norms:
        info, med, mn = min(norm_stats, key=lambda s: abs(s[1] - 1.0))  # the most telling example
        base, idx = split_name(info.name)
        out.append(finding(
            "norm-suspicious",
            f"{len(norm_stats)} of {n_norms} RMSNorm weights have a median above {NORM_MEDIAN_LIMIT} and almost no "
            "negative values "
            f"(e.g. {info.name}: median {med:.3g}, min {mn:.3g}); gemma.cpp applies them as (1 + w), so the +1 "
            "was probably baked in already (common after converting from Hugging Face or GGUF)",
            tensor=info.name, offset=info.offset, blob=info.key, layer=idx,
            layer_type="kGemma" if idx is not None else None,
            hint="subtract 1 from every RMSNorm weight (the converter must store w, not 1 + w)"))
    return out
