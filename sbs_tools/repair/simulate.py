"""Verify the planned output before it exists: ``sbs verify`` on a skeleton of it.

The skeleton is the output exactly as :func:`.execute.write_state` would lay
it out (same keys, order, sizes, header and directory, same config, toc and
tokenizer bytes), written as a sparse temporary file whose tensor blobs are
holes. Verify without ``--deep`` never reads tensor bytes, so its findings on
the skeleton are its findings on the output, at the cost of a few metadata
blobs of disk whatever the model's size.
"""
from __future__ import annotations

import os
import tempfile

from ..blobstore import (BLOB_ALIGN, END_ALIGN, ENTRY_BYTES, HEADER_BYTES, V2_PLACEHOLDER_FILE_BYTES, round_up,
                         v1_first_blob_offset)
from ..errors import SbsError
from ..verify.findings import Finding
from ..writer import BLOB_LIMIT, _directory, _header, key_bytes
from .context import Ctx

#: (key, size, bytes to write or None for a hole)
Skeleton = list[tuple[str, int, bytes | None]]


def skeleton(p: Ctx) -> Skeleton:
    """The planned output's blobs; tensors (and other data nobody reads as metadata) are holes."""
    out = []
    for key, x in p.s.output_blobs():
        if isinstance(x, bytes):
            out.append((key, len(x), x))
        else:
            out.append((key, x.size, bytes(p.bytes_of(x)) if x.kind == "scales" else None))
    return out


def write_skeleton(path: str, layout: str, pad_end: bool, blobs: Skeleton) -> None:
    """Lay ``blobs`` out as :class:`~sbs_tools.writer.BlobWriter` does, leaving holes for unwritten bytes
    (the caller checks what the writer would refuse: no blobs, too many, empty or duplicate ones)."""
    keys = [key_bytes(k) for k, _, _ in blobs]  # raises WriteError, as the writer would
    n = len(blobs)
    pos = v1_first_blob_offset(n) if layout == "v1" else BLOB_ALIGN
    ranges = []
    for _, size, _ in blobs:
        ranges.append((pos, size))
        pos += round_up(size, BLOB_ALIGN)
    if layout == "v1":
        file_bytes = round_up(pos, END_ALIGN) if pad_end else pos
        meta = [(0, _header(n, file_bytes) + _directory(keys, ranges))]
    else:
        dir_bytes = ENTRY_BYTES * n
        file_bytes = round_up(pos + round_up(HEADER_BYTES + dir_bytes, BLOB_ALIGN), END_ALIGN)
        meta = [(0, _header(0, V2_PLACEHOLDER_FILE_BYTES)),
                (file_bytes - dir_bytes - HEADER_BYTES, _directory(keys, ranges) + _header(n, file_bytes))]
    with open(path, "wb") as fh:
        fh.truncate(file_bytes)
        for (off, _), (_, _, data) in zip(ranges, blobs):
            if data is not None:
                fh.seek(off)
                fh.write(data)
        for off, data in meta:
            fh.seek(off)
            fh.write(data)


def simulate(p: Ctx) -> list[Finding] | None:
    """What ``sbs verify`` would report on the planned output; None when it cannot be laid out (the writer
    would refuse it, e.g. a config that cannot be encoded: a rule has refused that already)."""
    from ..verify import verify

    try:
        blobs = skeleton(p)
    except SbsError:
        return None
    sizes_ok = all(size > 0 for _, size, _ in blobs) and len({k for k, _, _ in blobs}) == len(blobs)
    if not blobs or len(blobs) >= BLOB_LIMIT or not sizes_ok:
        return None  # the writer would refuse this blob list
    with tempfile.TemporaryDirectory(prefix="sbs-repair-sim-") as d:
        path = os.path.join(d, "planned.sbs")
        try:
            write_skeleton(path, p.s.layout, p.s.pad_end, blobs)
        except (SbsError, OSError):
            return None
        return verify(path).findings
