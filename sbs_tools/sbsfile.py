"""``SbsFile``: a memory-mapped gemma.cpp weight file with its directory, config and tensor table.

Opening reads the header, the directory and the small metadata blobs
(``config``, ``toc``) only; tensor bytes stay on disk until asked for and are
handed out as zero-copy numpy views of the mapping (:meth:`SbsFile.raw`).

Bulk reads (``verify --deep``, hashing, export, diff, report statistics) do not
touch the mapping: they go through :meth:`SbsFile.read_into` /
:meth:`SbsFile.chunks`, ``pread`` on a descriptor kept open since the file was
opened, into a bounded reusable buffer. A file that another process truncates
under a mapping kills the reader with SIGBUS, which Python cannot catch; a
short ``pread`` instead raises :class:`~sbs_tools.errors.FileChangedError`
(``file-changed``), as does any change of the file's size, inode or
modification time seen between chunks.
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np

from . import blobstore
from .blobstore import BlobEntry, Directory, Problem
from .config import ModelConfig, decode_config
from .errors import ConfigError, ContainerError, SbsError, TensorError, TocError
from .fields import as_words
from .source import is_url, open_source
from .toc import TocRecord, decode_toc
from .types import BLOCK, BLOCK_TYPES, Type, packed_bytes, type_name

#: Pre-2025 key prefixes (``TypePrefix::TypeFromChar``): first character of a tensor key -> element type.
#: 'I' is known to gemma.cpp since 503aadd (2025-10-15), '4' (Q4_0) since 2026 (addendum §2.1); MXFP4 has none.
TYPE_PREFIX = {"F": Type.F32, "B": Type.BF16, "$": Type.SFP, "2": Type.NUQ, "I": Type.I8, "4": Type.Q4_0}
METADATA_KEYS = ("config", "toc", "tokenizer")
MOCK_TOKENIZER = b"unavailable"
#: Per-layer order in which pre-2025 files' ``Fscales`` are consumed (Griffin names omitted).
LEGACY_SCALED = ("att_ein", "qkv_ein", "gating_ein", "linear_w")
#: Metadata blobs larger than this are not decoded at open (a real config is ~4 KiB, a toc ~100 KiB).
MAX_METADATA_BYTES = 64 << 20
#: Default piece size of :meth:`SbsFile.chunks`: small enough to stay in a core's L2 cache between
#: the copy out of the page cache and the caller's pass over it.
CHUNK_BYTES = 1 << 20

Era = Literal["pre-2025", "single-file-prefixed", "single-file-v1", "single-file-v2"]
ERA_DESCRIPTIONS = {
    "pre-2025": "pre-2025 multi-file (type-prefixed keys, no config/toc, separate tokenizer)",
    "single-file-prefixed": "Dec 2024 - May 2025 single-file with type-prefixed names",
    "single-file-v1": "single-file, V1 layout (2025-05-06 .. 2025-07-30 writers)",
    "single-file-v2": "single-file, V2 layout (2025-07-31 and later writers)",
}


def read_buffer(nbytes: int) -> np.ndarray:
    """An uninitialised uint8 array of ``nbytes`` whose data starts on a page boundary: the buffer
    to give :meth:`SbsFile.read_into`. The kernel copies out of the page cache several times
    faster into a page-aligned destination than into one 16 bytes past it, where numpy and
    malloc put large arrays (1.2 vs 7 GB/s measured with 1 MiB reads)."""
    page = mmap.PAGESIZE
    raw = np.empty(max(int(nbytes), 1) + page, dtype=np.uint8)
    skip = -raw.ctypes.data % page
    return raw[skip:skip + max(int(nbytes), 1)]


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as this file describes it: toc record (or key prefix) plus its blob."""

    name: str
    key: str  # blob key (differs from name in type-prefixed eras)
    type: int
    rows: int
    cols: int
    scale: float
    bytes: int  # blob size
    offset: int  # blob offset in the file
    record: TocRecord | None = None

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def num_values(self) -> int:
        return self.rows * self.cols

    @property
    def expected_bytes(self) -> int | None:
        try:
            return packed_bytes(self.type, self.num_values)
        except SbsError:
            return None

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type_name, "rows": self.rows, "cols": self.cols,
                "scale": self.scale, "bytes": self.bytes, "offset": self.offset}


def _strip_prefix(key: str) -> tuple[Type, str] | None:
    if len(key) >= 2 and key[0] in TYPE_PREFIX:
        return TYPE_PREFIX[key[0]], key[1:]
    return None


def _values_from_size(t: Type, nbytes: int) -> int:
    """Best guess of the value count of a pre-2025 blob when no shape is known."""
    if t in (Type.F32, Type.BF16, Type.SFP):
        return nbytes // {Type.F32: 4, Type.BF16: 2, Type.SFP: 1}[t]
    if t == Type.I8:
        groups = -(-nbytes // 132)
        return nbytes - 4 * groups
    if t in BLOCK_TYPES:
        return BLOCK * (nbytes // BLOCK_TYPES[t])
    groups = -(-nbytes // 144)
    return 2 * (nbytes - 16 * groups)


class SbsFile:
    """An opened ``.sbs`` file. Use :func:`sbs_tools.open`; usable as a context manager.

    Attributes: ``path``, ``file_bytes``, ``layout`` ("v1"/"v2"), ``format``
    ("single-file"/"pre-2025"), ``era``, ``directory``, ``blobs`` (key ->
    :class:`BlobEntry`), ``config`` (or None), ``tensors`` (name ->
    :class:`TensorInfo`), ``toc`` (records as stored), ``problems`` (oddities
    noticed while parsing; ``sbs verify`` reports them and more).
    """

    def __init__(self, path: str | os.PathLike, *, strict: bool = True) -> None:
        self.path = path if is_url(path) else os.fspath(path)
        # Where the bytes come from (sbs_tools.source): a local file (memory-mapped, pread for bulk
        # reads) or a URL read in byte ranges. Nothing else in the package knows the difference.
        self._src = open_source(self.path)
        self.buf = self._src.buf
        self.file_bytes = self._src.size
        self.problems: list[Problem] = []
        try:
            self._load(strict)
        except SbsError as e:
            self.close()
            raise e.in_file(self.path) from None

    @property
    def _mm(self):
        return self._src._mm

    @property
    def remote(self) -> bool:
        """True when the file is read over the network (a URL)."""
        return self._src.remote

    @property
    def transfer(self) -> dict | None:
        """For a URL: requests made and bytes moved since it was opened; None for a local file."""
        return self._src.transfer()

    def prefetch(self, ranges) -> None:
        """Hint: these ``(start, end)`` byte ranges will be read soon. A URL fetches them now, merged
        into as few requests as their offsets allow; a local file does nothing."""
        self._src.prefetch(ranges)

    def _load(self, strict: bool) -> None:
        """Directory, layout problems and metadata: everything ``open`` reads."""
        self.directory: Directory = blobstore.read_directory(self.buf)
        #: The layout problems (without the padding bytes, which only ``check_layout(read=...)`` reads).
        self.layout_problems: list[Problem] = blobstore.check_layout(self.directory)
        self.problems += self.layout_problems
        if strict:
            for p in self.problems:
                if p.code == "blob-out-of-bounds" or (p.code == "file-size-mismatch"
                                                      and self.directory.header.file_bytes > self.file_bytes):
                    raise ContainerError(p.message, code=p.code, offset=p.offset, blob=p.blob)
        self.blobs: dict[str, BlobEntry] = self.directory.by_key()
        self.layout = self.directory.layout
        if self._src.remote:  # the metadata blobs in as few requests as their offsets allow
            self.prefetch([(e.offset, e.end) for k, e in self.blobs.items() if k in ("config", "toc", "Fscales")
                           and e.size <= MAX_METADATA_BYTES and e.end <= self.file_bytes])
        self.config: ModelConfig | None = None
        self.toc: list[TocRecord] = []
        self.tensors: dict[str, TensorInfo] = {}
        self._load_metadata(strict)

    # -- metadata ----------------------------------------------------------------
    def _metadata_words(self, key: str) -> np.ndarray:
        e = self.blobs[key]
        if e.size > MAX_METADATA_BYTES:
            raise SbsError(f"{key} blob of {e.size} bytes is implausibly large", code=f"{key}-undecodable",
                           offset=e.offset, blob=key)
        return as_words(blobstore.blob_view(self.buf, e), key)

    def _load_metadata(self, strict: bool) -> None:
        keys = set(self.blobs)
        has_config, has_toc = "config" in keys, "toc" in keys
        if not has_config and not has_toc:
            self.format, self.era = "pre-2025", "pre-2025"
        else:
            self.format = "single-file"
            looks_prefixed = False
            if not any(k in keys for k in ("c_embedding", "c_final_norm")):
                prefixed = [k for k in keys if k not in METADATA_KEYS and _strip_prefix(k)]
                plain_tensor_keys = [k for k in keys if k not in METADATA_KEYS and k != "Fscales"]
                looks_prefixed = bool(prefixed) and len(prefixed) == len(plain_tensor_keys)
            if looks_prefixed:
                self.era = "single-file-prefixed"
            else:
                self.era = "single-file-v2" if self.layout == "v2" else "single-file-v1"
        try:
            if has_config:
                try:
                    self.config = decode_config(self._metadata_words("config"))
                except SbsError as e:
                    if e.code.startswith("fields"):
                        raise ConfigError(e.message, code="config-undecodable", offset=e.offset,
                                          blob="config") from None
                    raise
            if has_toc:
                try:
                    self.toc = decode_toc(self._metadata_words("toc"), max_records=len(self.directory.entries))
                except SbsError as e:
                    if not isinstance(e, TocError):
                        raise TocError(e.message, code="toc-undecodable", offset=e.offset, blob="toc") from None
                    raise
        except SbsError as e:
            if strict:
                raise
            self.problems.append(Problem(e.code, "error", e.message, offset=e.offset, blob=e.blob))
        if self.format == "pre-2025" or (has_config and not has_toc):
            self._tensors_from_keys()
        else:
            self._tensors_from_toc()

    def _tensors_from_toc(self) -> None:
        prefixed = self.era == "single-file-prefixed"
        blobs, tensors = self.blobs, self.tensors
        new, setattr_ = object.__new__, object.__setattr__
        for rec in self.toc:
            e = blobs.get(rec.name)
            if e is None:
                continue  # verify reports toc-blob-missing
            name = rec.name
            if prefixed:
                stripped = _strip_prefix(name)
                name = stripped[1] if stripped else name
            # TensorInfo(name, rec.name, type, rows, cols, scale, size, offset, rec), minus the frozen
            # dataclass's per-field __setattr__ (a 700-tensor toc makes 700 of them at every open).
            info = new(TensorInfo)
            setattr_(info, "__dict__", {"name": name, "key": rec.name, "type": rec.type, "rows": rec.rows,
                                        "cols": rec.cols, "scale": rec.scale, "bytes": e.size,
                                        "offset": e.offset, "record": rec})
            tensors[name] = info

    def _tensors_from_keys(self) -> None:
        found: dict[str, tuple[Type, BlobEntry]] = {}
        for key, e in self.blobs.items():
            stripped = _strip_prefix(key)
            if key in METADATA_KEYS or stripped is None or key == "Fscales":
                continue
            found[stripped[1]] = (stripped[0], e)
        scales = self._legacy_scales(found)
        for name, (t, e) in found.items():
            n = _values_from_size(t, e.size)
            self.tensors[name] = TensorInfo(name, e.key, int(t), 1, n, scales.get(name, 1.0), e.size, e.offset)
        if self.tensors:
            self.problems.append(Problem(
                "shape-unknown", "info",
                "pre-2025 file: no toc, so tensor shapes are shown as 1 x N from the blob sizes"))

    def _legacy_scales(self, found: dict[str, tuple[Type, BlobEntry]]) -> dict[str, float]:
        """Assign ``Fscales`` in gemma.cpp's consumption order (spec §7): layers ascending,
        per layer att_ein, qkv_ein, gating_ein, linear_w, only for tensors present."""
        e = self.blobs.get("Fscales")
        if e is None:
            return {}
        if e.size % 4 or e.size > MAX_METADATA_BYTES:
            self.problems.append(Problem("scales-invalid", "warning",
                                         f"Fscales blob of {e.size} bytes is not an f32 array", blob="Fscales"))
            return {}
        values = blobstore.blob_view(self.buf, e).view("<f4")
        order = []
        for name in found:
            base, _, idx = name.rpartition("_")
            if base in LEGACY_SCALED and idx.isdigit():
                order.append((int(idx), LEGACY_SCALED.index(base), name))
        order.sort()
        if len(order) > values.size:
            self.problems.append(Problem("scales-invalid", "warning",
                                         f"Fscales holds {values.size} scales but {len(order)} tensors take one",
                                         blob="Fscales"))
        elif len(order) < values.size:
            self.problems.append(Problem("scales-extra", "info",
                                         f"Fscales holds {values.size} scales, {len(order)} are used "
                                         "(gemma.cpp asserts all are consumed)", blob="Fscales"))
        return {name: float(values[i]) for i, (_, _, name) in enumerate(order) if i < values.size}

    # -- access --------------------------------------------------------------------
    def tokenizer_size(self) -> int:
        """Bytes of the tokenizer blob, 0 if absent or the ``unavailable`` mock. Reads at most the
        mock's few bytes, never a real tokenizer (what ``inspect`` needs of a remote file)."""
        e = self.blobs.get("tokenizer")
        if e is None:
            return 0
        if e.size != len(MOCK_TOKENIZER):
            blobstore.check_bounds(e, self.file_bytes)
            return e.size
        return 0 if self.read_blob("tokenizer").tobytes() == MOCK_TOKENIZER else e.size

    @property
    def tokenizer_bytes(self) -> bytes | None:
        """The serialized SentencePiece model, or None if absent / the ``unavailable`` mock."""
        e = self.blobs.get("tokenizer")
        if e is None:
            return None
        data = self.read_blob("tokenizer").tobytes()
        return None if data == MOCK_TOKENIZER else data

    def _entry(self, name: str) -> BlobEntry:
        e = self.blobs.get(name)
        if e is None and name in self.tensors:
            e = self.blobs[self.tensors[name].key]
        if e is None:
            raise TensorError(f"no blob or tensor named {name!r}", code="no-such-blob", blob=name)
        return e

    def entry(self, name: str) -> BlobEntry:
        """The directory entry of a blob (by blob key or tensor name), checked to lie inside the file
        (``blob-out-of-bounds``) without reading any of its bytes."""
        return blobstore.check_bounds(self._entry(name), self.file_bytes)

    def raw(self, name: str) -> np.ndarray:
        """Zero-copy uint8 view of a blob in the mapping, by blob key or tensor name (for a URL: its
        bytes, fetched and kept).

        A view of a file that another process truncates kills the process with SIGBUS when the
        lost pages are touched; scans of many or large blobs use :meth:`chunks` instead.
        """
        return blobstore.blob_view(self.buf, self._entry(name))

    def tensor(self, name: str, decode: bool = True) -> np.ndarray:
        """A tensor as float32 (rows x cols, scale applied), or with ``decode=False`` its packed bytes."""
        info = self.tensors.get(name)
        if info is None:
            raise TensorError(f"no tensor named {name!r}", code="no-such-tensor", tensor=name)
        if not decode:
            return self.raw(info.key)
        from . import codecs  # local: codecs are not needed to open a file

        e = self._entry(info.key)
        blobstore.check_bounds(e, self.file_bytes)  # a blob outside the file: blob-out-of-bounds
        expected = info.expected_bytes
        if expected is None:  # a type number newer than this release (verify: newer-format), or UNKNOWN
            raise TensorError(f"tensor {name!r} has element type {info.type_name}, which this release cannot "
                              "decode (a newer gemma.cpp type, or not a weight type)", code="unknown-type",
                              tensor=name, offset=info.offset)
        if expected > e.size:
            raise TensorError(f"tensor {name!r}: {info.type_name} {info.rows}x{info.cols} needs {expected} "
                              f"bytes but its blob has {e.size}", code="tensor-size-mismatch", tensor=name,
                              offset=info.offset)
        values = codecs.decode(info.type_name, self.read(e.offset, expected), info.num_values)
        if info.scale != 1.0:
            values *= np.float32(info.scale)
        return values.reshape(info.rows, info.cols)

    def metadata(self) -> dict:
        """Small summary used by ``inspect --json``."""
        tok = self.tokenizer_size()
        return {
            "path": self.path,
            "file_bytes": self.file_bytes,
            "layout": self.layout,
            "format": self.format,
            "era": self.era,
            "blobs": [{"key": e.key, "offset": e.offset, "bytes": e.size} for e in self.directory.entries],
            "config": self.config.to_dict() if self.config else None,
            "tensors": [t.to_dict() for t in self.tensors.values()],
            "tokenizer": {"present": tok > 0, "bytes": tok},
            "problems": [{"code": p.code, "severity": p.severity, "message": p.message, **p.location()}
                         for p in self.problems],
        }

    # -- bulk reads (pread, never the mapping) -------------------------------------------
    def check_unchanged(self) -> None:
        """Raise :class:`FileChangedError` if the file's size, inode or modification time (for a URL:
        size and ETag) differ from what was seen at open."""
        self._src.check_unchanged()

    def read_into(self, offset: int, buf: np.ndarray | memoryview | bytearray) -> None:
        """Fill ``buf`` (a writable contiguous buffer, e.g. a uint8 array) with the file's bytes at
        ``offset``: ``pread`` on the descriptor kept open since :func:`open` (a URL: ranged requests).

        The one place bulk scans read tensor bytes: the mapping is not touched, so a file truncated
        meanwhile gives :class:`FileChangedError` (``file-changed``) instead of SIGBUS. Thread-safe.
        """
        self._src.read_into(offset, buf)

    def read_view(self, offset: int, buf: np.ndarray) -> np.ndarray:
        """The ``buf.size`` bytes at ``offset``, read-only use: ``buf`` filled by :meth:`read_into` for a
        local file; for a URL, when they are already in the reading thread's read-ahead block, a
        view of that block instead (no copy), valid until this thread's next read of this file."""
        return self._src.view(offset, buf)

    def read(self, offset: int, length: int) -> np.ndarray:
        """``length`` bytes at ``offset`` as a fresh uint8 array (via :meth:`read_into`)."""
        out = read_buffer(length)[:length]
        self.read_into(offset, out)
        return out

    def read_blob(self, name: str) -> np.ndarray:
        """A blob's bytes (by blob key or tensor name) as a fresh uint8 array, read with ``pread``."""
        e = self._entry(name)
        blobstore.check_bounds(e, self.file_bytes)
        return self.read(e.offset, e.size)

    def chunks(self, offset: int, length: int, chunk_bytes: int = CHUNK_BYTES,
               buf: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """The bytes ``[offset, offset + length)`` in pieces of at most ``chunk_bytes``, each a uint8
        view of one reusable buffer (``buf`` if given; for a URL, often of the read-ahead block):
        valid only until the next piece, for reading only.

        Reads with :meth:`read_view`; between pieces the file's size and modification time are
        compared with those seen at open, so a file rewritten in place mid-scan also raises
        :class:`FileChangedError` rather than yield a mix of old and new bytes.
        """
        if buf is None:
            buf = read_buffer(min(chunk_bytes, length))
        step = buf.size
        pos, end = offset, offset + length
        while pos < end:
            piece = self._src.view(pos, buf[:min(step, end - pos)])
            yield piece
            pos += piece.size
            if pos < end:
                self._check_stat()

    def _check_stat(self) -> None:
        self._src.check_stat()

    def release(self, offset: int, length: int) -> None:
        """Drop the mapped pages covering ``[offset, offset + length)`` from this process
        (``MADV_DONTNEED``); the OS page cache keeps them and a later access maps them back.

        Streaming passes over a whole file (``verify --deep``, hashing) call this behind
        themselves so resident memory stays bounded whatever the file size. Views stay valid.
        """
        self._src.release(offset, length)

    # -- lifetime ---------------------------------------------------------------------
    def close(self) -> None:
        """Release the mapping (deferred to garbage collection while tensor views are alive)."""
        self._src.close()
        self.buf = self._src.buf

    def __enter__(self) -> "SbsFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        model = self.config.specifier if self.config else self.era
        return f"<SbsFile {self.path!r} {model} {self.layout} {len(self.blobs)} blobs>"


def open(path: str | os.PathLike, *, strict: bool = True) -> SbsFile:  # noqa: A001 - mirrors builtins.open
    """Open a ``.sbs`` file. ``strict=False`` records undecodable config/toc in ``problems``
    instead of raising (what ``verify`` uses)."""
    return SbsFile(path, strict=strict)
