"""Write BlobStore files byte-identical to gemma.cpp's ``BlobWriter`` (V2 default, V1 on request).

Writing follows the output policy of :mod:`sbs_tools.output`: an existing file
is replaced only with ``overwrite=True`` (and never when it is one of
``inputs``); the bytes go to a temporary file in the target directory that is
fsynced and renamed into place only when complete, so a crash never leaves a
half-written file under the requested name.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Literal

import numpy as np

from .blobstore import (BLOB_ALIGN, END_ALIGN, ENTRY_BYTES, HEADER_BYTES, KEY_BYTES, MAGIC, MAX_BLOBS_2026,
                        V2_PLACEHOLDER_FILE_BYTES, round_up, v1_first_blob_offset)
from .config import ModelConfig
from .errors import WriteError
from .output import PendingFile, check_output_file
from .toc import TocRecord, encode_toc

BytesLike = bytes | bytearray | memoryview | np.ndarray
#: gemma.cpp's writer asserts ``num_blobs < kMaxBlobs`` (1 Mi since 0d8948f7) in either layout; which readers
#: take a V1 file of more than 16383 blobs is for ``sbs verify``'s compatibility table to say.
BLOB_LIMIT = MAX_BLOBS_2026
_ZEROS = bytes(END_ALIGN)


def key_bytes(key: str) -> bytes:
    """``KeyFromString``: 1..16 ASCII characters, NUL-padded to 16 bytes."""
    raw = key.encode("ascii", errors="replace") if key.isascii() else b""
    if not 1 <= len(raw) <= KEY_BYTES or b"\0" in raw or not key.isascii():
        raise WriteError(f"blob key {key!r} must be 1..16 ASCII characters", code="bad-key", blob=key)
    return raw.ljust(KEY_BYTES, b"\0")


def _header(n: int, file_bytes: int) -> bytes:
    return np.array([MAGIC, n], dtype="<u4").tobytes() + np.array([file_bytes], dtype="<u8").tobytes()


def _directory(keys: list[bytes], ranges: list[tuple[int, int]]) -> bytes:
    return b"".join(keys) + np.asarray(ranges, dtype="<u8").reshape(-1).tobytes()


def _as_bytes(data: BytesLike) -> memoryview:
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    return memoryview(data).cast("B")


class BlobWriter:
    """Streaming writer: ``add(key, data)`` for each blob, then ``finish()``.

    ``pad_end=False`` (V1 only) writes the pre-2025 variant without 64 KiB end padding.
    V2 streams each blob to disk as it is added (peak memory = one blob). V1
    needs the blob count before the first blob, so it keeps references to the
    added buffers (no copies) and writes them in ``finish()``.
    """

    def __init__(self, path: str | os.PathLike | PendingFile, layout: Literal["v1", "v2"] = "v2", *,
                 pad_end: bool = True, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False) -> None:
        if layout not in ("v1", "v2"):
            raise WriteError(f"unknown layout {layout!r}", code="bad-layout")
        if isinstance(path, PendingFile):  # the caller checked the destination and commits it itself
            self._out, self._owns = path, False
        else:
            check_output_file(path, tuple(inputs), force=overwrite)
            self._out, self._owns = PendingFile(path), True
        self.path = self._out.dest
        self.layout = layout
        self.pad_end = pad_end  # False: pre-2025 V1 files, which end right after the last padded blob
        self._keys: list[bytes] = []
        self._key_set: set[bytes] = set()  # duplicate check in O(1): files of 10^5 blobs exist (DeepSeek V4)
        self._ranges: list[tuple[int, int]] = []
        self._pending: list = []  # V1: memoryviews, or (key, nbytes, chunks) for streamed blobs
        self._f = self._out.file
        self._pos = 0
        if layout == "v2":
            self._f.write(_header(0, V2_PLACEHOLDER_FILE_BYTES).ljust(BLOB_ALIGN, b"\0"))
            self._pos = BLOB_ALIGN

    def _new_key(self, key: str) -> bytes:
        kb = key_bytes(key)
        if kb in self._key_set:
            raise WriteError(f"duplicate blob key {key!r}", code="duplicate-key", blob=key)
        if len(self._keys) + 1 >= BLOB_LIMIT:
            raise WriteError(f"more than {BLOB_LIMIT - 1} blobs", code="too-many-blobs")
        return kb

    def _remember(self, kb: bytes) -> None:
        self._keys.append(kb)
        self._key_set.add(kb)

    def add(self, key: str, data: BytesLike) -> None:
        kb = self._new_key(key)
        mv = _as_bytes(data)
        if mv.nbytes == 0:
            raise WriteError(f"blob {key!r} is empty; the format has no zero-size blobs", code="zero-size-blob",
                             blob=key)
        self._remember(kb)
        if self.layout == "v2":
            self._ranges.append((self._pos, mv.nbytes))
            self._write_padded(mv)
        else:
            self._pending.append(mv)

    def add_stream(self, key: str, nbytes: int, chunks: Callable[[], Iterable[BytesLike]]) -> None:
        """Add a blob of ``nbytes`` produced piecewise by ``chunks()`` (called once), so a
        tensor larger than memory can be written. V2 writes it now; V1 when finishing."""
        kb = self._new_key(key)
        if nbytes <= 0:
            raise WriteError(f"blob {key!r} is empty; the format has no zero-size blobs", code="zero-size-blob",
                             blob=key)
        self._remember(kb)
        if self.layout == "v2":
            self._ranges.append((self._pos, nbytes))
            self._write_stream(key, nbytes, chunks)
        else:
            self._pending.append((key, nbytes, chunks))

    def _write_stream(self, key: str, nbytes: int, chunks: Callable[[], Iterable[BytesLike]]) -> None:
        written = 0
        for c in chunks():
            mv = _as_bytes(c)
            written += mv.nbytes
            if written > nbytes:
                break
            self._f.write(mv)
        if written != nbytes:
            raise WriteError(f"blob {key!r}: the stream produced {written} bytes, not {nbytes}",
                             code="stream-size-mismatch", blob=key)
        pad = round_up(nbytes, BLOB_ALIGN) - nbytes
        self._f.write(_ZEROS[:pad])
        self._pos += nbytes + pad

    def _write_padded(self, mv: memoryview) -> None:
        self._f.write(mv)
        pad = round_up(mv.nbytes, BLOB_ALIGN) - mv.nbytes
        self._f.write(_ZEROS[:pad])
        self._pos += mv.nbytes + pad

    def finish(self) -> int:
        """Write the directory, fsync and (unless the caller handed in its own PendingFile) rename into
        place. Returns the file size."""
        try:
            n = len(self._keys)
            if n == 0:
                raise WriteError("a BlobStore needs at least one blob", code="empty-store")
            if self.layout == "v1":
                first = v1_first_blob_offset(n)
                pos = first
                for item in self._pending:
                    size = item[1] if isinstance(item, tuple) else item.nbytes
                    self._ranges.append((pos, size))
                    pos += round_up(size, BLOB_ALIGN)
                file_bytes = round_up(pos, END_ALIGN) if self.pad_end else pos
                self._f.write((_header(n, file_bytes) + _directory(self._keys, self._ranges)).ljust(first, b"\0"))
                self._pos = first
                for item in self._pending:
                    if isinstance(item, tuple):
                        self._write_stream(*item)
                    else:
                        self._write_padded(item)
                self._pending.clear()
                self._write_zeros(file_bytes - self._pos)
            else:
                dir_bytes = ENTRY_BYTES * n
                file_bytes = round_up(self._pos + round_up(HEADER_BYTES + dir_bytes, BLOB_ALIGN), END_ALIGN)
                self._write_zeros(file_bytes - self._pos - dir_bytes - HEADER_BYTES)
                self._f.write(_directory(self._keys, self._ranges) + _header(n, file_bytes))
            self._out.close()
            if self._owns:
                self._out.commit()
            return file_bytes
        except BaseException:
            self.abort()
            raise

    def _write_zeros(self, n: int) -> None:
        while n > 0:
            k = min(n, len(_ZEROS))
            self._f.write(_ZEROS[:k])
            n -= k
        self._pos += max(n, 0)

    def abort(self) -> None:
        """Discard the temporary file."""
        self._out.discard()

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, exc_type, *_: object) -> None:
        if exc_type is not None:
            self.abort()


def write_blobstore(path: str | os.PathLike, blobs: Iterable[tuple[str, BytesLike]],
                    layout: Literal["v1", "v2"] = "v2", *, pad_end: bool = True, overwrite: bool = False) -> int:
    """Write ``(key, bytes)`` pairs, in order, as a BlobStore. Returns the file size."""
    w = BlobWriter(path, layout, pad_end=pad_end, overwrite=overwrite)
    try:
        for key, data in blobs:
            w.add(key, data)
    except BaseException:
        w.abort()
        raise
    return w.finish()


def write_model(path: str | os.PathLike, config: ModelConfig,
                tensors: Iterable[tuple[TocRecord, BytesLike]], tokenizer: bytes | None = None,
                layout: Literal["v1", "v2"] = "v2", *, overwrite: bool = False) -> int:
    """Write a single-file model the way gemma.cpp's ``SbsWriter`` orders it:
    tensor blobs (toc records in the same order), then ``config``, ``tokenizer``, ``toc``."""
    w = BlobWriter(path, layout, overwrite=overwrite)
    try:
        records = []
        for rec, data in tensors:
            w.add(rec.name, data)
            records.append(rec)
        w.add("config", config.to_bytes())
        w.add("tokenizer", tokenizer if tokenizer else b"unavailable")
        w.add("toc", encode_toc(records))
    except BaseException:
        w.abort()
        raise
    return w.finish()
