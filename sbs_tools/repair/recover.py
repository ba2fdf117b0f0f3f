"""Find the directory of a file whose header or trailer :func:`~sbs_tools.blobstore.read_directory` rejects.

Two ways, both used by :func:`.analyze.analyze` before it gives up on a file:
:func:`recover_directory` looks for the one directory reading that is consistent
(printable keys, blobs back to back) when the magic or ``num_blobs`` is damaged or
bytes follow a V2 trailer; :func:`salvage_trailerless` places the tensors of a V2
file cut before its trailer by the blob sizes of a reference file. What survives
otherwise is described by :func:`salvage_notes`.
"""
from __future__ import annotations

import os

import numpy as np

from .. import blobstore
from ..blobstore import END_ALIGN, ENTRY_BYTES, HEADER_BYTES, KEY_BYTES, Directory, round_up
from ..errors import SbsError
from ..sbsfile import METADATA_KEYS


def _plausible_entries(buf: np.ndarray, dir_off: int, n: int, first: int, end: int) -> list | None:
    """Directory entries at ``dir_off`` if they describe blobs back to back from ``first`` with
    printable keys, all inside ``[first, end)``; else None."""
    if n <= 0 or dir_off < 0 or dir_off + ENTRY_BYTES * n > buf.size:
        return None
    ranges = buf[dir_off + KEY_BYTES * n:dir_off + ENTRY_BYTES * n].view("<u8").reshape(n, 2)
    if int(ranges[0, 0]) != first:
        return None
    expected = first
    for off, sz in ranges.tolist():
        if off != expected or sz == 0 or off + sz > end:
            return None
        expected = round_up(off + sz, blobstore.BLOB_ALIGN)
    keys = buf[dir_off:dir_off + KEY_BYTES * n].reshape(n, KEY_BYTES)
    for k in keys:
        name = k.tobytes().split(b"\0", 1)[0]
        if not name or any(c < 0x21 or c > 0x7E for c in name):
            return None
    return blobstore._entries(buf, dir_off, n)


def readable_keys(d: Directory) -> bool:
    """Every key printable ASCII, NUL-padded: a directory that was read at the right place."""
    for e in d.entries:
        name = e.raw_key.split(b"\0", 1)[0]
        if not name or any(c < 0x21 or c > 0x7E for c in name) or any(e.raw_key[len(name):]):
            return False
    return True


def recover_directory(buf: np.ndarray, err: SbsError | None) -> tuple[Directory, str, np.ndarray] | None:
    """Locate the directory of a file whose header :func:`read_directory` rejects, when exactly one
    reading is consistent: a damaged magic, a corrupt ``num_blobs``, or bytes appended after a V2
    trailer. Returns (directory, what was wrong, buffer to use) or None."""
    size = int(buf.size)
    if size < 2 * HEADER_BYTES:
        return None
    front = blobstore._header(buf, 0)
    tail = blobstore._header(buf, size - HEADER_BYTES)
    v2_front = front.magic == blobstore.MAGIC and front.num_blobs == 0
    found: list[tuple[Directory, str, np.ndarray]] = []
    # V2 with bytes appended: an intact trailer at an earlier 64 KiB boundary.
    if v2_front:
        end = (size // END_ALIGN) * END_ALIGN
        end = end - END_ALIGN if end == size else end
        while end >= END_ALIGN:
            h = blobstore._header(buf, end - HEADER_BYTES)
            if h.magic == blobstore.MAGIC and h.file_bytes == end and 0 < h.num_blobs < blobstore.MAX_BLOBS_HEAD:
                sub = buf[:end]
                ents = _plausible_entries(sub, end - HEADER_BYTES - ENTRY_BYTES * h.num_blobs, h.num_blobs,
                                          blobstore.BLOB_ALIGN, end - HEADER_BYTES - ENTRY_BYTES * h.num_blobs)
                if ents is not None:
                    d = Directory("v2", h, front, ents, end - HEADER_BYTES - ENTRY_BYTES * h.num_blobs, end)
                    return d, (f"{size - end} bytes appended after the V2 trailer (which ends at {end}): dropped"), sub
            end -= END_ALIGN
    # Damaged magic and/or num_blobs: find every blob count whose directory is consistent.
    if v2_front or (front.magic != blobstore.MAGIC and tail.file_bytes == size):
        for n in range(1, min(blobstore.MAX_BLOBS_HEAD, (size - 2 * blobstore.BLOB_ALIGN) // ENTRY_BYTES)):
            dir_off = size - HEADER_BYTES - ENTRY_BYTES * n
            r0 = dir_off + KEY_BYTES * n
            if int(buf[r0:r0 + 8].view("<u8")[0]) != blobstore.BLOB_ALIGN:
                continue
            ents = _plausible_entries(buf, dir_off, n, blobstore.BLOB_ALIGN, dir_off)
            if ents is not None:
                hdr = blobstore.Header(blobstore.MAGIC, n, size, size - HEADER_BYTES)
                found.append((Directory("v2", hdr, front, ents, dir_off, size), "", buf))
    if not v2_front or front.file_bytes != blobstore.V2_PLACEHOLDER_FILE_BYTES or size == END_ALIGN:
        for n in range(1, min(blobstore.MAX_BLOBS_E2, (size - HEADER_BYTES) // ENTRY_BYTES)):
            r0 = HEADER_BYTES + KEY_BYTES * n
            first = blobstore.v1_first_blob_offset(n)
            if int(buf[r0:r0 + 8].view("<u8")[0]) != first:
                continue
            ents = _plausible_entries(buf, HEADER_BYTES, n, first, size)
            if ents is not None:
                hdr = blobstore.Header(blobstore.MAGIC, n, size, 0)
                found.append((Directory("v1", hdr, None, ents, HEADER_BYTES, size), "", buf))
    if len(found) != 1:
        return None
    d, _, b = found[0]
    h = front if d.layout == "v1" else tail
    what = []
    if h.magic != blobstore.MAGIC:
        what.append(f"magic {h.magic:#010x} (should be 0x0a534253)")
    if h.num_blobs != d.header.num_blobs:
        what.append(f"num_blobs {h.num_blobs} (the directory holds {d.header.num_blobs} entries)")
    if h.file_bytes != size:
        what.append(f"file_bytes {h.file_bytes} (the file has {size})")
    where = "front header" if d.layout == "v1" else "V2 trailer header"
    return d, f"damaged {where}: " + ", ".join(what or ["unreadable"]) + "; exactly one directory reading is " \
        "consistent (keys printable, blobs back to back)", b


def salvage_trailerless(buf: np.ndarray, reference: str | os.PathLike):
    """A V2 file whose end (directory, header, and the metadata blobs written last) is cut off,
    located with the blob list of a reference file of the same architecture and tensor types.

    gemma.cpp's writer stores the tensors back to back from offset 256 in the order of its
    directory, so the reference's sizes give every offset. A tensor is recovered when it lies
    entirely before the cut *and* every padding byte up to it is zero (evidence that the sizes
    agree); the first disagreement ends the salvage. Returns (directory, note, lost keys,
    (config, toc)) or None.
    """
    from ..sbsfile import SbsFile

    size = int(buf.size)
    if size < 2 * HEADER_BYTES:
        return None
    front = blobstore._header(buf, 0)
    if front.magic != blobstore.MAGIC or front.num_blobs != 0:
        return None
    try:
        ref = SbsFile(reference, strict=False)
    except SbsError:
        return None
    try:
        if ref.config is None or not ref.toc:
            return None
        tensors = [e for e in ref.directory.entries if e.key not in METADATA_KEYS]
        entries, lost, pos = [], [], blobstore.BLOB_ALIGN
        ok = True
        for e in tensors:
            end = pos + e.size
            if ok and round_up(end, blobstore.BLOB_ALIGN) <= size and not np.any(
                    buf[end:round_up(end, blobstore.BLOB_ALIGN)]) and np.any(buf[pos:end]):
                raw = e.raw_key
                entries.append(blobstore.BlobEntry(len(entries), e.key, raw, pos, e.size))
            else:
                ok = False
                lost.append(e.key)
            pos = round_up(end, blobstore.BLOB_ALIGN)
        if not entries:
            return None
        config, toc = ref.config, list(ref.toc)
    finally:
        ref.close()
    hdr = blobstore.Header(blobstore.MAGIC, len(entries), size, size - HEADER_BYTES)
    d = Directory("v2", hdr, front, entries, size, size)
    note = (f"V2 file without its trailer (truncated at {size}): {len(entries)} of {len(tensors)} tensors located "
            f"with the blob sizes and order of {os.fspath(reference)} (back to back from offset 256, every padding "
            f"byte zero); {len(lost)} lie past the cut and are lost; config and toc taken from the reference")
    return d, note, lost, (config, toc)


def salvage_notes(buf: np.ndarray, e: SbsError) -> list[str]:
    """What survives in a file whose directory cannot be read (spec §1.4)."""
    size = int(buf.size)
    notes = []
    if size >= 16:
        magic, n = (int(x) for x in buf[:8].view("<u4"))
        if magic == blobstore.MAGIC and n == 0:
            nz = np.flatnonzero(buf[blobstore.BLOB_ALIGN:])
            last = blobstore.BLOB_ALIGN + int(nz[-1]) + 1 if nz.size else blobstore.BLOB_ALIGN
            notes.append(
                "This was a V2 file: its directory and header were the last bytes of the file and are gone (the "
                f"file ends at {size}, {size % 65536} bytes past a 64 KiB boundary: truncated).")
            notes.append(
                f"blob payload survives from offset 256 to at least {last} ({last - 256} bytes), but without the "
                "directory the blob names, boundaries and sizes are unknown, and the toc and config (written "
                "last) are lost with it; tensor bytes cannot be told apart or attributed by scanning.")
            notes.append(
                "To salvage what survives, pass a file with the same architecture and tensor types with "
                "--config-from: gemma.cpp writes tensors back to back from offset 256, so its blob sizes locate "
                "the tensors lying entirely before the cut; the rest are lost, and --partial writes the survivors "
                "as a partial file.")
    return notes
