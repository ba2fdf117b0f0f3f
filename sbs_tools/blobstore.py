"""The BlobStore container: header, directory of 16-byte keys, 256-byte aligned blobs.

Two layouts exist (spec §1): V1 keeps header + directory at the front; V2
(gemma.cpp since 2025-07-31) writes a placeholder header (``num_blobs`` 0) at
the front and the real directory + header flush with the end of the file.
:func:`read_directory` chooses between them exactly as gemma.cpp's reader
does, bounding every count before reading, and :func:`check_layout` lists
every way the blob placement departs from what gemma.cpp (or older builds)
accept, as :class:`Problem` records that ``open`` and ``verify`` share.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np

from .errors import ContainerError

MAGIC = 0x0A534253  # b"SBS\n" little-endian
HEADER_BYTES = 16
KEY_BYTES = 16
ENTRY_BYTES = 32  # key (16) + range (16)
BLOB_ALIGN = 256
END_ALIGN = 65536
# kMaxBlobs of gemma.cpp's reader (base §1.1, addendum §6.5); readers before 2025-05-06 had none.
MAX_BLOBS_HEAD = 16384  # gemma.cpp 2025-07-31 .. before 0d8948f7
MAX_BLOBS_2026 = 1 << 20  # kMaxBlobs since 0d8948f7 (2026; DeepSeek V4 has 33,792 blobs)
MAX_BLOBS_E2 = 65536  # gemma.cpp 2025-05-06 .. 2025-07-30 (V1 only)
V2_PLACEHOLDER_FILE_BYTES = 65536

Layout = Literal["v1", "v2"]


def round_up(x: int, align: int) -> int:
    return -(-x // align) * align


def reads_blob_count(n: int, layout: "Layout", max_blobs: int | None) -> bool:
    """Whether a reader with ``kMaxBlobs`` = ``max_blobs`` (None: no limit) reads a directory of ``n``
    blobs: a V1 count of ``max_blobs`` passes the header check but trips ``PaddedHeaderAndDirBytes``'s
    assert (``n < kMaxBlobs``), which V2 never calls (base §1.4). The 2025-05 readers (V1 only) reject
    ``n >= kMaxBlobs`` at once: the same answer."""
    if max_blobs is None:
        return True
    return n < max_blobs if layout == "v1" else n <= max_blobs


def v1_first_blob_offset(n: int) -> int:
    """``PaddedHeaderAndDirBytes(n)``: where V1's first blob starts."""
    return round_up(HEADER_BYTES + ENTRY_BYTES * n, BLOB_ALIGN)


@dataclass(frozen=True)
class Header:
    magic: int
    num_blobs: int
    file_bytes: int
    offset: int  # where in the file this header was read

    @property
    def magic_ok(self) -> bool:
        return self.magic == MAGIC


@dataclass(frozen=True)
class BlobEntry:
    """One directory entry. ``size`` excludes padding. ``raw_key`` keeps all 16 bytes."""

    index: int
    key: str
    raw_key: bytes
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class Problem:
    """Something the container or its metadata gets wrong; shared by open() and verify."""

    code: str
    severity: Literal["error", "warning", "info"]
    message: str
    offset: int | None = None
    blob: str | None = None
    tensor: str | None = None
    layer: int | None = None
    layer_type: str | None = None

    def location(self) -> dict:
        loc = {"offset": self.offset, "blob": self.blob, "tensor": self.tensor,
               "layer": self.layer, "layer_type": self.layer_type}
        return {k: v for k, v in loc.items() if v is not None}


@dataclass
class Directory:
    """The parsed container: which layout, the effective header, and the entries in order."""

    layout: Layout
    header: Header
    front_header: Header | None
    entries: list[BlobEntry]
    dir_offset: int  # byte offset of the first key
    file_size: int
    notes: list[Problem] = field(default_factory=list)

    @property
    def dir_bytes(self) -> int:
        return ENTRY_BYTES * len(self.entries)

    def by_key(self) -> dict[str, BlobEntry]:
        """Key -> entry; with duplicate keys the *last* wins, as in gemma.cpp HEAD."""
        return {e.key: e for e in self.entries}

    @property
    def first_blob_offset(self) -> int:
        return BLOB_ALIGN if self.layout == "v2" else v1_first_blob_offset(len(self.entries))


def _header(buf: np.ndarray, off: int) -> Header:
    raw = buf[off:off + HEADER_BYTES]
    magic, n = (int(x) for x in raw[:8].view("<u4"))
    return Header(magic, n, int(raw[8:16].view("<u8")[0]), off)


def key_from_bytes(raw: bytes) -> str:
    """``StringFromKey``: the bytes up to the first NUL, decoded leniently for display."""
    name = raw.split(b"\0", 1)[0]
    try:
        return name.decode("ascii")
    except UnicodeDecodeError:
        return name.decode("latin-1")


def _entries(buf: np.ndarray, dir_off: int, n: int) -> list[BlobEntry]:
    keys = buf[dir_off:dir_off + KEY_BYTES * n].tobytes()
    # key_from_bytes() of every key at once: ASCII names decode the same as latin-1, and
    # key_from_bytes falls back to latin-1 for the others, so one latin-1 decode serves all.
    text = keys.decode("latin-1")
    ranges = buf[dir_off + KEY_BYTES * n:dir_off + ENTRY_BYTES * n].view("<u8").reshape(n, 2).tolist()
    new, setattr_ = object.__new__, object.__setattr__
    out = []
    for i, (off, size) in enumerate(ranges):
        a = KEY_BYTES * i
        # BlobEntry(i, key, raw, off, size) without the frozen dataclass's per-field __setattr__
        # (opening a 700-tensor file makes 700 of them).
        e = new(BlobEntry)
        setattr_(e, "__dict__", {"index": i, "key": text[a:a + KEY_BYTES].split("\0", 1)[0],
                                 "raw_key": keys[a:a + KEY_BYTES], "offset": off, "size": size})
        out.append(e)
    return out


def read_directory(buf: np.ndarray) -> Directory:
    """Parse header and directory of the file in ``buf`` (a uint8 view, e.g. over an mmap).

    Follows gemma.cpp's choice (base §1.4) with the 2026 ``kMaxBlobs``: V1 if
    the front header has the magic and 1 <= num_blobs <= 1 Mi, otherwise the
    V2 trailer. Which older readers reject the blob count is for verify's
    compatibility table to say. Only the
    header and directory are touched. Raises :class:`ContainerError`
    (``empty-file``, ``not-sbs``, ``bad-magic``, ``too-many-blobs``,
    ``empty-store``, ``directory-out-of-bounds``) when neither layout can be read.
    """
    size = int(buf.shape[0])
    if size == 0:
        raise ContainerError("the file is empty", code="empty-file", offset=0)
    notes: list[Problem] = []
    front = _header(buf, 0) if size >= HEADER_BYTES else None
    if front is not None and front.magic_ok and 0 < front.num_blobs <= MAX_BLOBS_2026:
        return _read_v1(buf, front)
    tail = _header(buf, size - HEADER_BYTES) if size >= HEADER_BYTES + BLOB_ALIGN else None
    if tail is None or not tail.magic_ok:
        if front is not None and front.magic_ok and front.num_blobs:
            raise ContainerError(f"header claims {front.num_blobs} blobs; gemma.cpp reads a V1 directory of "
                                 f"fewer than {MAX_BLOBS_2026} (kMaxBlobs since 0d8948f7), then looks for a V2 "
                                 "trailer, and there is none", code="too-many-blobs", offset=4)
        if front is not None and front.magic_ok:
            # V2 placeholder (num_blobs 0) at the front, no trailer at the end.
            raise ContainerError(
                "the front header is a V2 placeholder but there is no BlobStore trailer at the end "
                "(file truncated, or the directory at the end overwritten)",
                code="bad-magic", offset=max(size - HEADER_BYTES, 0))
        raise ContainerError("not a BlobStore: no 'SBS\\n' magic at the start or the end of the file",
                             code="not-sbs", offset=0)
    n = tail.num_blobs
    if n == 0:
        raise ContainerError("the BlobStore directory is empty (num_blobs 0)", code="empty-store",
                             offset=tail.offset + 4)
    if not reads_blob_count(n, "v2", MAX_BLOBS_2026):  # fewer is a compat matter (verify's compat table)
        raise ContainerError(f"trailer claims {n} blobs; gemma.cpp reads at most {MAX_BLOBS_2026} (kMaxBlobs "
                             f"since 0d8948f7; {MAX_BLOBS_HEAD} before)",
                             code="too-many-blobs", offset=tail.offset + 4)
    dir_off = size - HEADER_BYTES - ENTRY_BYTES * n
    if dir_off < BLOB_ALIGN:
        raise ContainerError(f"the directory of {n} blobs does not fit in the {size}-byte file",
                             code="directory-out-of-bounds", offset=tail.offset + 4)
    if front is None or not front.magic_ok:
        notes.append(Problem("bad-placeholder", "warning",
                             "the V2 placeholder header at offset 0 is damaged (gemma.cpp warns and reads "
                             "the trailer)", offset=0))
    elif front.num_blobs:
        notes.append(Problem("bad-placeholder", "warning",
                             f"the header at offset 0 claims {front.num_blobs} blobs, more than gemma.cpp reads as "
                             "a V1 directory: it falls back to the V2 trailer", offset=4))
    elif front.file_bytes != V2_PLACEHOLDER_FILE_BYTES:
        notes.append(Problem("bad-placeholder", "info",
                             f"V2 placeholder file_bytes is {front.file_bytes}, writers store 65536", offset=8))
    return Directory("v2", tail, front, _entries(buf, dir_off, n), dir_off, size, notes)


def _read_v1(buf: np.ndarray, front: Header) -> Directory:
    """The V1 directory after ``front`` (1 <= num_blobs <= kMaxBlobs: gemma.cpp commits to V1). The
    directory must fit in the file before any entry is made; ``n == kMaxBlobs`` aborts in gemma.cpp.
    Fewer blobs than that but more than older readers take is a compat matter (verify's compat table)."""
    size, n = int(buf.shape[0]), front.num_blobs
    if not reads_blob_count(n, "v1", MAX_BLOBS_2026):
        raise ContainerError(f"header claims {n} blobs; gemma.cpp reads a V1 directory of fewer than "
                             f"{MAX_BLOBS_2026} (it asserts num_blobs < kMaxBlobs)", code="too-many-blobs", offset=4)
    if HEADER_BYTES + ENTRY_BYTES * n > size:
        raise ContainerError(f"the directory of {n} blobs ({ENTRY_BYTES * n} bytes at offset 16) "
                             f"extends past the end of the {size}-byte file", code="directory-out-of-bounds",
                             offset=HEADER_BYTES)
    return Directory("v1", front, None, _entries(buf, HEADER_BYTES, n), HEADER_BYTES, size)


def _clean_payload_end(d: Directory) -> int | None:
    """Vectorized version of :func:`check_layout`'s per-entry loop for the common case.

    Returns the padded end of the last blob when every entry would pass that loop
    silently (non-empty printable NUL-padded unique keys; non-empty, in-bounds,
    256-aligned blobs back to back from the first blob offset); None otherwise,
    and the loop then finds and words the problems.
    """
    n = len(d.entries)
    if n == 0:
        return None
    keys = np.frombuffer(b"".join([e.raw_key for e in d.entries]), dtype=np.uint8)
    if keys.size != KEY_BYTES * n:
        return None
    keys = keys.reshape(n, KEY_BYTES)
    nz = keys != 0
    if not nz[:, 0].all() or (nz[:, 1:] & ~nz[:, :-1]).any():  # empty key, or bytes after the NUL
        return None
    if ((keys < 0x20) & nz).any() or (keys > 0x7E).any():
        return None
    if len({e.key for e in d.entries}) != n:
        return None
    if any(e.offset > d.file_size or e.size > d.file_size for e in d.entries):
        return None  # (also keeps u64 values >= 2**63 out of the int64 arrays below)
    offs = np.fromiter([e.offset for e in d.entries], dtype=np.int64, count=n)
    sizes = np.fromiter([e.size for e in d.entries], dtype=np.int64, count=n)
    ends = -(-(offs + sizes) // BLOB_ALIGN) * BLOB_ALIGN
    if not (sizes > 0).all() or int((offs + sizes).max()) > d.file_size:
        return None
    if int(offs[0]) != d.first_blob_offset or not np.array_equal(offs[1:], ends[:-1]):
        return None  # (back to back from the first offset implies 256-aligned)
    return int(ends[-1])


def check_layout(d: Directory, buf: np.ndarray | None = None,
                 read: Callable[[int, int], np.ndarray] | None = None) -> list[Problem]:
    """Every departure from the layout gemma.cpp writes and checks (§1.5, §1.7).

    Errors are what makes gemma.cpp HEAD abort (or would make blob access
    unsafe); warnings are what older readers reject or what is merely unusual.
    Passing ``buf`` (the file's bytes) or ``read(offset, length) -> uint8 array``
    (e.g. ``SbsFile.read``) also checks that padding bytes are zero (reads the padding).
    """
    out: list[Problem] = list(d.notes)
    size, hdr = d.file_size, d.header
    if hdr.file_bytes != size:
        what = "truncated" if hdr.file_bytes > size else "has extra bytes appended"
        out.append(Problem("file-size-mismatch", "error",
                           f"header says file_bytes={hdr.file_bytes} but the file has {size} bytes: {what}",
                           offset=hdr.offset + 8))
    expected = d.first_blob_offset
    seen: dict[str, int] = {}
    intervals: list[tuple[int, int, str]] = []
    clean_end = _clean_payload_end(d)
    if clean_end is not None:
        expected = clean_end
    for e in d.entries if clean_end is None else ():
        key_at = d.dir_offset + KEY_BYTES * e.index
        range_at = d.dir_offset + KEY_BYTES * len(d.entries) + 16 * e.index
        name = e.raw_key.split(b"\0", 1)[0]
        if not name:
            out.append(Problem("bad-key", "error", f"directory entry {e.index} has an empty key",
                               offset=key_at))
        elif not (name.isascii() and name.decode("ascii").isprintable()):  # 0x20..0x7E only
            out.append(Problem("bad-key", "error", f"key {e.key!r} is not printable ASCII", offset=key_at,
                               blob=e.key))
        elif e.raw_key[len(name):].strip(b"\0"):
            out.append(Problem("bad-key", "error", f"key {e.key!r} has non-zero bytes after its NUL",
                               offset=key_at, blob=e.key))
        if e.key in seen:
            out.append(Problem("duplicate-key", "error",
                               f"key {e.key!r} appears at directory entries {seen[e.key]} and {e.index} "
                               "(gemma.cpp uses the last, pre-2025 readers the first)",
                               offset=key_at, blob=e.key))
        seen.setdefault(e.key, e.index)
        if e.size == 0:
            out.append(Problem("zero-size-blob", "error", f"blob {e.key!r} has size 0", offset=range_at + 8,
                               blob=e.key))
        if e.offset + e.size > size or e.offset > size:
            out.append(Problem("blob-out-of-bounds", "error",
                               f"blob {e.key!r} [{e.offset}, {e.offset + e.size}) extends past the end of the "
                               f"{size}-byte file", offset=range_at, blob=e.key))
            if expected + e.size <= size:  # assume it belongs at `expected`: don't blame the next blob too
                expected = round_up(expected + e.size, BLOB_ALIGN)
            continue
        if e.offset % BLOB_ALIGN:
            out.append(Problem("blob-misaligned", "error",
                               f"blob {e.key!r} starts at {e.offset}, not a multiple of {BLOB_ALIGN}",
                               offset=range_at, blob=e.key))
            # A misaligned offset is a corrupted directory entry, never a layout choice: assume the blob
            # belongs at `expected` so the next blob is not reported as well.
            expected = round_up(expected + e.size, BLOB_ALIGN)
            continue
        if e.offset != expected:
            code = "blob-overlap" if e.offset < expected else "blob-gap"
            out.append(Problem(code, "error",
                               f"blob {e.key!r} starts at {e.offset}, but gemma.cpp requires blobs back to back: "
                               f"expected {expected}", offset=range_at, blob=e.key))
        expected = round_up(e.offset + e.size, BLOB_ALIGN)
        intervals.append((e.offset, e.offset + e.size, e.key))
    if d.layout == "v2" and d.dir_offset < expected and not any(p.code == "blob-out-of-bounds" for p in out):
        out.append(Problem("blob-overlap", "error", "the V2 directory overlaps the blob payload",
                           offset=d.dir_offset))
    intervals.sort()
    for (a0, a1, ka), (b0, b1, kb) in zip(intervals, intervals[1:]):
        if b0 < a1 and not any(p.code == "blob-overlap" and p.blob == kb for p in out):
            out.append(Problem("blob-overlap", "error", f"blobs {ka!r} and {kb!r} overlap", offset=b0, blob=kb))
    # End alignment / trailing bytes.
    payload_end = expected
    if size < payload_end and d.entries:
        out.append(Problem("end-not-aligned", "warning",
                           f"the file ends at {size}, inside the padding of the last blob (padded end "
                           f"{payload_end})", offset=size))
    elif d.layout == "v1":
        if size > payload_end and size % END_ALIGN and payload_end != size:
            out.append(Problem("end-not-aligned", "warning",
                               f"{size - payload_end} bytes after the last blob but the file is not padded to "
                               f"a {END_ALIGN}-byte multiple (trailing data; 2025-05 readers reject it)",
                               offset=payload_end))
        elif size % END_ALIGN == 0 and size != payload_end:
            out.append(Problem("v1-end-padded", "info",
                               "V1 file padded to 64 KiB: pre-2025 readers reject it", offset=payload_end))
    elif size % END_ALIGN:
        out.append(Problem("end-not-aligned", "warning",
                           f"file size {size} is not a multiple of {END_ALIGN} as the V2 writer pads it "
                           "(gemma.cpp then cannot mmap it)", offset=size))
    if buf is not None:
        out += check_padding(d, lambda a, n: buf[a:a + n])
    elif read is not None:
        out += check_padding(d, read)
    return out


#: Padding is read in pieces of at most this many bytes (a damaged directory can leave gigabytes of it).
PADDING_PIECE = 16 << 20


def padding_ranges(d: Directory) -> list[tuple[int, int]]:
    """The ``[start, end)`` byte ranges not in a blob, the directory or a header (all writers write zeros)."""
    used = []
    if d.layout == "v1":
        used.append((0, d.dir_offset + d.dir_bytes))
    else:
        used.append((0, HEADER_BYTES))
        used.append((d.dir_offset, d.file_size))
    for e in d.entries:
        if e.offset + e.size <= d.file_size:
            used.append((e.offset, e.offset + e.size))
    used.sort()
    out = []
    pos = 0
    for a, b in used + [(d.file_size, d.file_size)]:
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    return out


def check_padding(d: Directory, read: Callable[[int, int], np.ndarray]) -> list[Problem]:
    """Every byte not in a blob, the directory or a header must be zero (all writers write zeros)."""
    out = []
    for pos, a in padding_ranges(d):
        count, first = 0, None
        for p in range(pos, a, PADDING_PIECE):
            nz = np.flatnonzero(read(p, min(PADDING_PIECE, a - p)))
            if nz.size:
                count += int(nz.size)
                first = p + int(nz[0]) if first is None else first
        if count:
            out.append(Problem("nonzero-padding", "warning",
                               f"{count} non-zero byte(s) in padding [{pos}, {a}), first at {first}",
                               offset=first))
    return out


def check_bounds(e: BlobEntry, file_bytes: int) -> BlobEntry:
    """``e`` if its blob lies inside a ``file_bytes``-byte file, else ``blob-out-of-bounds``; reads nothing."""
    if e.offset + e.size > file_bytes:
        raise ContainerError(f"blob {e.key!r} [{e.offset}, {e.offset + e.size}) lies outside the "
                             f"{file_bytes}-byte file", code="blob-out-of-bounds", offset=e.offset, blob=e.key)
    return e


def blob_view(buf: np.ndarray, e: BlobEntry) -> np.ndarray:
    """Zero-copy uint8 view of a blob; raises if it lies outside the file."""
    check_bounds(e, buf.shape[0])
    return buf[e.offset:e.offset + e.size]
