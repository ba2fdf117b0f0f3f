"""Container checks: can the file be opened as a BlobStore, and is its layout what gemma.cpp writes?

Reuses :func:`sbs_tools.blobstore.read_directory` (via :func:`sbs_tools.open`)
and :func:`sbs_tools.blobstore.check_layout`; this module turns their
exceptions and problems into findings with file offsets and advice, and adds
diagnoses for files that cannot be opened at all (another format, a damaged
magic, a V2 file with its trailer cut off or with bytes appended).
"""
from __future__ import annotations

import os
import struct

from .. import blobstore
from ..blobstore import END_ALIGN, HEADER_BYTES, KEY_BYTES, MAGIC, V2_PLACEHOLDER_FILE_BYTES, Problem
from ..errors import ContainerError, SbsError
from ..inputs import InputError
from ..source import open_binary, stat_input
from ..sbsfile import SbsFile
from ..tensors import split_name
from .findings import UNREADABLE_CODES, Finding, finding
from .sniff import damaged_header_hint, identify

#: gemma.cpp HEAD asserts ``LayerIdxFromKey(key) < 999`` for every numeric key suffix.
MAX_LAYER_SUFFIX = 999

_PLACEMENT = ("blob-misaligned", "blob-gap", "blob-overlap", "blob-out-of-bounds", "zero-size-blob")

_HINTS = {
    "file-size-mismatch": "the file is incomplete or was modified: copy/download it again "
                          "(`sbs repair` can re-pad trailing bytes)",
    "blob-out-of-bounds": "the file is truncated or its directory is corrupt: download it again",
    "blob-misaligned": "the directory is corrupt; `sbs repair` rewrites the layout from the blob contents",
    "blob-gap": "gemma.cpp requires blobs back to back; `sbs repair` rewrites the layout",
    "blob-overlap": "the directory is corrupt; `sbs repair --dry-run` shows whether the blobs can be "
                    "located, otherwise download the file again",
    "zero-size-blob": "remove the empty entry (`sbs repair`)",
    "duplicate-key": "`sbs repair` keeps one of identical entries; if they differ, "
                     "`--drop-duplicates last` keeps the one current gemma.cpp uses",
    "bad-key": "the directory is corrupt or written by a foreign tool; `sbs repair` can rewrite keys",
    "nonzero-padding": "harmless for gemma.cpp, but a sign of corruption or a foreign writer; "
                       "`sbs repair` zeroes the padding",
    "end-not-aligned": "`sbs repair` re-pads the file as gemma.cpp writes it",
    "too-many-blobs": "the header is corrupt (the largest real models, DeepSeek V4, have about 34,000 blobs; "
                      "gemma.cpp reads up to 1 Mi)",
}


def _from_problem(p: Problem) -> Finding:
    # Codes added to check_layout later are passed through even if this registry does not know them yet.
    return Finding(p.code, p.severity, p.message, offset=p.offset, blob=p.blob, tensor=p.tensor, layer=p.layer,
                   layer_type=p.layer_type, hint=_HINTS.get(p.code))


def _head_tail(path: str, size: int) -> tuple[bytes, bytes]:
    with open_binary(path) as fh:
        head = fh.read(HEADER_BYTES)
        tail = b""
        if size >= HEADER_BYTES:
            fh.seek(size - HEADER_BYTES)
            tail = fh.read(HEADER_BYTES)
    return head, tail


def _find_v2_trailer(path: str, size: int) -> int | None:
    """End of a V2 store followed by appended bytes: the largest 64 KiB multiple < size whose last
    16 bytes are a header with matching file_bytes."""
    with open_binary(path) as fh:
        end = (size // END_ALIGN) * END_ALIGN
        if end == size:
            end -= END_ALIGN
        while end >= END_ALIGN:
            fh.seek(end - HEADER_BYTES)
            magic, n, fb = struct.unpack("<IIQ", fh.read(HEADER_BYTES))
            if magic == MAGIC and fb == end and 0 < n < blobstore.MAX_BLOBS_2026:
                return end
            end -= END_ALIGN
    return None


def _unopenable(path: str, size: int, e: ContainerError) -> list[Finding]:
    """Findings for a file that :func:`read_directory` rejects."""
    if e.code == "empty-file" or size == 0:
        ident = identify(path, size)
        return [finding("not-sbs", f"not a gemma.cpp weight file: {ident.description}", offset=0,
                        hint=ident.hint)]
    head, tail = _head_tail(path, size)
    if e.code == "not-sbs":
        damaged = damaged_header_hint(head, tail, size)
        if damaged is not None:
            off, why = damaged
            return [finding("bad-magic", f"{why}; gemma.cpp aborts with 'Failed to read BlobStore header or "
                                         "directory'", offset=off,
                            hint="the header is damaged; if only the magic is wrong, `sbs repair` can restore "
                                 "it, otherwise download the file again")]
        ident = identify(path, size)
        return [finding("not-sbs", f"not a gemma.cpp weight file: this is {ident.description} "
                                   "(no 'SBS\\n' magic at the start or the end)", offset=0, hint=ident.hint)]
    if e.code == "bad-magic":
        # Front header is a valid-magic header with num_blobs == 0 but no V2 trailer.
        _, _, front_fb = struct.unpack("<IIQ", head)
        if front_fb != V2_PLACEHOLDER_FILE_BYTES:
            return [finding("empty-store", "the header at offset 0 says the store holds 0 blobs "
                                           f"(file_bytes {front_fb}); it is neither a V1 store nor a V2 "
                                           "placeholder. gemma.cpp: 'Invalid BlobStore (empty)'", offset=4,
                            hint="the header is corrupt; download the file again")]
        end = _find_v2_trailer(path, size)
        if end is not None:
            return [finding("file-size-mismatch",
                            f"{size - end} bytes were appended after the end of the BlobStore, which ends at "
                            f"{end}: gemma.cpp looks for the directory in the last 16 bytes and aborts "
                            "('Failed to read BlobStore header or directory')", offset=end,
                            hint=f"truncate the file to {end} bytes (`truncate -s {end} FILE` or `sbs repair`)")]
        why = ("the file is probably truncated: its size " + str(size) + " is not a multiple of 64 KiB as "
               "gemma.cpp writes it") if size % END_ALIGN else "the end of the file was overwritten"
        return [finding("bad-magic",
                        "V2 file (placeholder header at offset 0) without its BlobStore trailer: the last 16 "
                        f"bytes are not an 'SBS\\n' header; {why}. gemma.cpp aborts with 'Failed to read "
                        "BlobStore header or directory'", offset=max(size - HEADER_BYTES, 0),
                        hint="download or copy the file again; the directory is lost")]
    code = e.code if e.code in ("too-many-blobs", "empty-store", "directory-out-of-bounds") else "bad-magic"
    return [finding(code, f"{e.message}; gemma.cpp cannot read the directory", offset=e.offset,
                    hint="the header is corrupt; download the file again")]


def open_checked(path: str | os.PathLike) -> tuple[SbsFile | None, list[Finding]]:
    """Open ``path`` leniently and check its container. Returns (file or None, findings).

    None means the directory could not be read; the findings say why.
    """
    path = os.fspath(path)
    try:
        size = stat_input(path, allow_empty=True).size
    except SbsError as e:
        return None, [finding(e.code if e.code in UNREADABLE_CODES else "io-error", e.message)]
    try:
        if size == 0:
            return None, _unopenable(path, 0, ContainerError("empty", code="empty-file"))
        try:
            f = SbsFile(path, strict=False)
        except ContainerError as e:
            return None, _unopenable(path, size, e)
    except InputError as e:
        return None, [finding(e.code, e.message)]
    except SbsError as e:
        return None, [finding(e.code if e.code in UNREADABLE_CODES else "io-error", e.message)]
    except OSError as e:
        return None, [finding("io-error", f"cannot read {path}: {e.strerror}")]
    try:
        if f.remote:  # the padding check reads every gap between blobs: fetch them together
            f.prefetch(blobstore.padding_ranges(f.directory))
        # The layout was checked when the file was opened; only the padding bytes are still to be read.
        problems = f.layout_problems + blobstore.check_padding(f.directory, f.read)
        out = [_from_problem(p) for p in problems]
    except SbsError as e:
        f.close()
        return None, [finding(e.code if e.code in UNREADABLE_CODES else "io-error", e.message)]
    if any(x.code in _PLACEMENT for x in out):
        # Padding is only defined relative to correct blob ranges: don't report the displaced data again.
        out = [x for x in out if x.code != "nonzero-padding"]
    tail = [x.offset for x in out if x.code == "end-not-aligned" and x.offset is not None]
    if tail:  # trailing bytes are reported once, as end-not-aligned
        out = [x for x in out if not (x.code == "nonzero-padding" and x.offset is not None and x.offset >= tail[0])]
    d = f.directory
    for e in d.entries:
        _, idx = split_name(e.key)
        if idx is not None and idx >= MAX_LAYER_SUFFIX:
            out.append(finding("bad-key", f"key {e.key!r} has layer number {idx}: gemma.cpp asserts layer "
                                          f"numbers below {MAX_LAYER_SUFFIX}",
                               offset=d.dir_offset + KEY_BYTES * e.index, blob=e.key,
                               hint="rename the blob; no gemma.cpp model has that many layers"))
    return f, out
