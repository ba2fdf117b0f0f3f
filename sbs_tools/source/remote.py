"""A remote file read in ranges (metadata cached, bulk reads with read-ahead), or downloaded once
when the server ignores ``Range`` and the user allowed it."""
from __future__ import annotations

import io
import os
import tempfile
import threading
import weakref
from typing import Iterable

import numpy as np

from ..errors import FileChangedError, SbsError
from ..inputs import InputError
from .backends import _HttpBackend, open_backend
from .local import LocalSource, _beyond_end
from .settings import MERGE_GAP, READAHEAD_MAX, TOTAL, WINDOW


class RemoteBuffer:
    """The slice interface of a uint8 array over a remote file (what ``blobstore`` reads the header,
    directory and metadata blobs from): each slice is fetched on first use, then cached."""

    dtype = np.dtype(np.uint8)

    def __init__(self, src: "RemoteSource") -> None:
        self._src = src
        self.shape = (src.size,)
        self.size = src.size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a remote file's buffer supports contiguous slices only")
        a, b, _ = key.indices(self.size)
        return self._src.cached(a, max(b - a, 0))


class RemoteSource:
    """A file read over the network in byte ranges (see the module docstring)."""

    remote = True

    def __init__(self, url: str, *, allow_empty: bool = True) -> None:
        self.path = url
        self._backend = open_backend(url)
        self._t0 = TOTAL.to_dict()
        self.size, self._tag = self._backend.stat()
        if self.size == 0 and not allow_empty:
            raise InputError(f"{url} is empty (0 bytes)", code="empty-file", offset=0)
        self._segments: list[tuple[int, bytes]] = []  # (start, bytes), the cached metadata ranges
        self._lock = threading.Lock()
        self._ra = threading.local()  # .state: the thread's _ReadAhead
        self._inflight: set = set()  # read-ahead requests not finished yet (all threads)
        self._closed = False
        self._requests_since_check = 0
        self.buf = RemoteBuffer(self)
        self._mm = None

    # -- what SbsFile uses ---------------------------------------------------------------------------
    def transfer(self) -> dict:
        now = TOTAL.to_dict()
        return {k: now[k] - self._t0[k] for k in now}

    def _fetch(self, a: int, b: int, out: memoryview) -> None:
        if self._closed:
            raise SbsError(f"{self.path}: read after close", code="io-error")
        self._backend.fetch_into(a, b, self.size, out)
        self._requests_since_check += 1

    def first_window(self) -> None:
        """The first request: the whole file when small, else the 16-byte front header and then the
        64 KiB window where the directory is (head for V1 / pre-2025, tail for V2)."""
        if self.size <= 2 * WINDOW:
            self.prefetch([(0, self.size)])
            return
        head = self.cached(0, 16).tobytes()
        import struct

        magic, n, _ = struct.unpack("<IIQ", head)
        from ..blobstore import ENTRY_BYTES, HEADER_BYTES, MAGIC

        if magic == MAGIC and n != 0:  # V1: header and directory at the front
            end = min(self.size, max(WINDOW, HEADER_BYTES + ENTRY_BYTES * min(n, 1 << 16)))
            self.prefetch([(16, end)])
        elif magic == MAGIC:  # V2 placeholder: directory at the end
            self.prefetch([(self.size - WINDOW, self.size)])
        else:  # not a BlobStore, or pre-2025 damage: the tail too (sniffing reads the head)
            self.prefetch([(16, WINDOW), (self.size - 16, self.size)])

    def _find(self, a: int, n: int) -> np.ndarray | None:
        """The cached bytes ``[a, a + n)``: a view of one segment, or a copy joined from several."""
        for start, data in self._segments:
            if start <= a and a + n <= start + len(data):
                return np.frombuffer(data, dtype=np.uint8, count=n, offset=a - start)
        if not self._missing(a, a + n):
            parts, pos = [], a
            for start, data in sorted(self._segments, key=lambda s: s[0]):
                end = start + len(data)
                if start <= pos < end:
                    take = min(end, a + n) - pos
                    parts.append(np.frombuffer(data, dtype=np.uint8, count=take, offset=pos - start))
                    pos += take
            return np.concatenate(parts)
        return None

    def _missing(self, a: int, b: int) -> list[tuple[int, int]]:
        """The parts of ``[a, b)`` no cached segment holds."""
        out, pos = [], a
        for start, data in sorted(self._segments, key=lambda s: s[0]):
            end = start + len(data)
            if end <= pos or start >= b:
                continue
            if start > pos:
                out.append((pos, start))
            pos = max(pos, end)
            if pos >= b:
                break
        if pos < b:
            out.append((pos, b))
        return out

    def cached(self, a: int, n: int) -> np.ndarray:
        """``n`` bytes at ``a`` from the metadata cache, fetched (and kept) on a miss."""
        if n <= 0:
            return np.zeros(0, dtype=np.uint8)
        with self._lock:
            hit = self._find(a, n)
        if hit is not None:
            return hit
        self.prefetch([(a, a + n)])
        with self._lock:
            hit = self._find(a, n)
        assert hit is not None
        return hit

    def prefetch(self, ranges: Iterable[tuple[int, int]]) -> None:
        """Fetch the ranges not cached yet, merged where less than :data:`MERGE_GAP` apart, at most
        :data:`PARALLEL` requests in flight; keep them for :meth:`cached` and :meth:`read_into`."""
        want = sorted((max(a, 0), min(b, self.size)) for a, b in ranges if b > a and a < self.size)
        with self._lock:
            want = sorted(r for a, b in want for r in self._missing(a, b))
        merged: list[list[int]] = []
        for a, b in want:
            if merged and a <= merged[-1][1] + MERGE_GAP:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        if not merged:
            return
        if self._closed:
            raise SbsError(f"{self.path}: read after close", code="io-error")
        bufs = self._backend.fetch_many([(a, b) for a, b in merged], self.size)
        with self._lock:
            for (a, _), data in zip(merged, bufs):
                self._segments.append((a, bytes(data)))

    def read_into(self, offset: int, buf) -> None:
        """Bulk reads: metadata cache, else the reading thread's read-ahead (see :class:`_ReadAhead`)."""
        mv = memoryview(buf).cast("B")
        n = mv.nbytes
        if n == 0:
            return
        if offset < 0 or offset + n > self.size:
            raise _beyond_end(self.path, n, offset, self.size)
        with self._lock:
            hit = self._find(offset, n)
        if hit is not None:
            mv[:] = hit
            return
        ra = getattr(self._ra, "state", None)
        if ra is None:
            ra = self._ra.state = _ReadAhead()
        sequential = ra.next == offset
        pos = self._from_blocks(ra, offset, mv)
        ra.next = offset + n
        if pos == offset + n:
            self._ahead(ra)
            return
        self._drop_pending(ra)  # a jump: what was read ahead is not what is read next
        rest = mv[pos - offset:]
        want = rest.nbytes if not sequential else min(max(rest.nbytes, 2 * ra.want), READAHEAD_MAX)
        ra.want = want
        if want <= rest.nbytes:
            self._fetch(pos, pos + rest.nbytes, rest)
            return
        end = min(self.size, pos + want)
        if ra.block is None or len(ra.block) < end - pos:
            ra.block = np.empty(READAHEAD_MAX if want >= READAHEAD_MAX else end - pos, dtype=np.uint8)
        ra.start, ra.filled = pos, 0
        self._fetch(pos, end, memoryview(ra.block)[:end - pos])
        ra.filled = end - pos
        rest[:] = ra.block[:rest.nbytes]
        self._ahead(ra)

    def view(self, offset: int, buf: np.ndarray) -> np.ndarray:
        """The ``buf.size`` bytes at ``offset``: a view of the reading thread's read-ahead block when they
        lie in it or in the block after it (no copy; valid until this thread's next read), else
        ``buf`` filled by :meth:`read_into` (a piece across two blocks, a jump, the first reads)."""
        n = buf.size
        ra = getattr(self._ra, "state", None)
        if ra is None or n == 0 or ra.block is None:
            self.read_into(offset, buf)
            return buf
        if ra.pending is not None and ra.pending_start <= offset and offset + n <= ra.pending_end:
            self._take_pending(ra)
        if ra.start <= offset and offset + n <= ra.start + ra.filled:
            ra.next = offset + n
            self._ahead(ra)
            return ra.block[offset - ra.start:offset - ra.start + n]
        self.read_into(offset, buf)
        return buf

    def _from_blocks(self, ra: "_ReadAhead", offset: int, mv: memoryview) -> int:
        """Copy what the thread's current block, then its finished read-ahead, hold of ``mv`` (the
        bytes at ``offset``); returns the offset up to which ``mv`` is filled."""
        pos, end = offset, offset + mv.nbytes
        while pos < end:
            if ra.block is not None and ra.start <= pos < ra.start + ra.filled:
                take = min(end, ra.start + ra.filled) - pos
                mv[pos - offset:pos - offset + take] = ra.block[pos - ra.start:pos - ra.start + take]
                pos += take
            elif ra.pending is not None and ra.pending_start <= pos < ra.pending_end:
                self._take_pending(ra)  # the next block (a gap between two blobs may skip its start)
            else:
                break
        return pos

    def _ahead(self, ra: "_ReadAhead") -> None:
        """Once a thread streams in blocks of :data:`READAHEAD_MAX`, start fetching the block after its
        current one while the current one is being used (one request in flight per thread, never past
        the end of the file, none once the file is closed)."""
        if (ra.pending is not None or ra.block is None or ra.want < READAHEAD_MAX or self._closed
                or not isinstance(self._backend, _HttpBackend)):  # cat_file of other stores blocks
            return
        a = ra.start + ra.filled
        b = min(self.size, a + READAHEAD_MAX)
        if a >= b:
            return
        if ra.spare is None:
            ra.spare = np.empty(READAHEAD_MAX, dtype=np.uint8)
        fut = self._backend.start_fetch(a, b, self.size, memoryview(ra.spare)[:b - a])
        with self._lock:
            self._inflight.add(fut)
        fut.add_done_callback(self._inflight_done)
        ra.pending, ra.pending_start, ra.pending_end = fut, a, b
        self._requests_since_check += 1

    def _inflight_done(self, fut) -> None:
        with self._lock:
            self._inflight.discard(fut)

    def _take_pending(self, ra: "_ReadAhead") -> None:
        """Wait for the thread's read-ahead and make it the current block; an answer that failed
        in a way worth another try is fetched again under the retry policy (in this thread)."""
        import concurrent.futures

        from .backends import _Retry

        fut, a, b = ra.pending, ra.pending_start, ra.pending_end
        ra.pending = None
        try:
            fut.result()
        except _Retry:
            self._fetch(a, b, memoryview(ra.spare)[:b - a])
        except InputError as e:
            if e.code != "permission-denied" or self._closed:
                raise
            self._fetch(a, b, memoryview(ra.spare)[:b - a])  # an expired redirect: fetch_into asks again
        except (concurrent.futures.CancelledError, SbsError):
            if self._closed:  # closed by another thread while this one waited
                raise SbsError(f"{self.path}: read after close", code="io-error") from None
            raise
        ra.block, ra.spare = ra.spare, ra.block
        ra.start, ra.filled = a, b - a

    def _drop_pending(self, ra: "_ReadAhead") -> None:
        if ra.pending is not None:
            ra.pending.cancel()
            ra.pending = None
            ra.spare = None  # the cancelled request may still be writing into it: never reuse it

    def check_unchanged(self) -> None:
        if self._closed:
            raise SbsError(f"{self.path}: read after close", code="io-error")
        self._requests_since_check = 0
        size, tag = self._backend.stat()
        what = []
        if size != self.size:
            what.append(f"its size went from {self.size} to {size} bytes")
        elif tag != self._tag:
            what.append("it was modified")
        if what:
            raise FileChangedError(f"{self.path} changed while it was being read ({', '.join(what)}); read it "
                                   "again once the writer has finished")

    def check_stat(self) -> None:
        """Between the pieces of a scan: HTTP answers are each checked already; other stores are asked
        for size and ETag again every 64 requests."""
        if not isinstance(self._backend, _HttpBackend) and self._requests_since_check >= 64:
            self.check_unchanged()

    def release(self, offset: int, length: int) -> None:
        """Nothing is mapped."""

    def close(self) -> None:
        """No request is made after this: read-aheads in flight are cancelled (their connections
        dropped), later reads raise ``io-error``."""
        self._closed = True
        with self._lock:
            inflight, self._inflight = list(self._inflight), set()
        for fut in inflight:
            fut.cancel()
        if isinstance(self._backend, _HttpBackend):
            self._backend.close()
        self._segments = []
        self._ra = threading.local()


class _ReadAhead:
    """One reading thread's stream: ``block[:filled]`` holds the bytes at ``start``; ``pending`` is the
    request filling ``spare`` with ``[pending_start, pending_end)``, the block after it. ``want``
    doubles while reads are sequential (``next`` is where the last one ended) up to
    :data:`READAHEAD_MAX`: at most two blocks per thread."""

    def __init__(self) -> None:
        self.block: np.ndarray | None = None
        self.spare: np.ndarray | None = None
        self.start = self.filled = 0
        self.next: int | None = None
        self.want = 0
        self.pending = None
        self.pending_start = self.pending_end = 0


class DownloadedSource(LocalSource):
    """``--allow-full-download`` for a server that ignores ``Range``: the file downloaded once into a
    temporary file (removed on close), then read like a local one; ``path`` stays the URL."""

    def __init__(self, url: str, backend) -> None:
        t0 = TOTAL.to_dict()
        fd, tmp = tempfile.mkstemp(prefix=".sbs-download.", suffix=".sbs")
        try:
            with os.fdopen(fd, "wb") as fh:
                backend.download(fh)
            super().__init__(tmp)
        except BaseException:
            os.unlink(tmp)
            raise
        self._tmp = tmp
        self._unlinker = weakref.finalize(self, _unlink_quiet, tmp)
        self.path = url
        now = TOTAL.to_dict()
        self._transfer = {k: now[k] - t0[k] for k in now}

    def transfer(self) -> dict:
        return dict(self._transfer, full_download=True)

    def check_unchanged(self) -> None:
        path, self.path = self.path, self._tmp
        try:
            super().check_unchanged()
        finally:
            self.path = path

    def close(self) -> None:
        super().close()
        self._unlinker()


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class _RangeReader(io.RawIOBase):
    """A read-only binary file object over a byte source (``seek``/``read``), for code that wants one."""

    def __init__(self, src) -> None:
        self._src, self._pos = src, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._src.size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, b) -> int:
        mv = memoryview(b).cast("B")
        n = max(0, min(mv.nbytes, self._src.size - self._pos))
        if n:
            self._src.read_into(self._pos, mv[:n])
            self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._src.close()
        super().close()
