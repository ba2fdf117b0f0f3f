"""Byte sources: where an :class:`~sbs_tools.sbsfile.SbsFile` gets its bytes. The one module that knows
about URLs (the way fsspec separates a file system from the code that reads files).

Two sources share one small interface (``size``, ``buf``, ``read_into``, ``prefetch``,
``check_unchanged``, ``close``, ``transfer``):

* :class:`LocalSource` — a local path: the file memory-mapped for metadata (``buf``, zero-copy
  views) and ``pread`` on a descriptor kept open since it was opened for bulk reads, with
  ``file-changed`` detection. This is the fast path every command used before remote inputs.
* :class:`RemoteSource` — ``https://``, ``s3://``, ``gs://``, ``hf://``, ... through fsspec (the
  optional ``remote`` extra). Only ranges are read: ``buf`` is a :class:`RemoteBuffer` whose slices
  are fetched on first use and cached (metadata: header, directory, config, toc), and
  :meth:`RemoteSource.prefetch` fetches several ranges in as few requests as their offsets allow.
  Bulk reads stream in bounded pieces with an adaptive read-ahead (at most :data:`READAHEAD_MAX`
  bytes per reading thread).

Remote rules (docs/remote.md):

* a server that ignores ``Range`` (answers 200 with the whole body) is refused with
  ``range-unsupported`` before its body is read, unless ``--allow-full-download``
  (:func:`configure`), which then downloads the file once into a temporary file that is removed
  when the file is closed;
* every ranged answer is checked against the size (and ETag) seen when the file was opened: a
  file that changes between requests is ``file-changed``;
* errors: ``not-found`` (404 / no such key), ``permission-denied`` (401/403), ``host-unreachable``,
  ``remote-timeout``, ``remote-error`` (other statuses), ``remote-unsupported`` (no fsspec, or no
  package for the protocol);
* retries: a request that fails with a connection error, a timeout, 429 or a 5xx status is tried
  again, at most :attr:`Settings.retries` times in all (default 3), after 0.25 s, 0.5 s, ... ; a
  4xx answer, a refused ``Range`` or a changed file is never retried. Each request has a timeout of
  :attr:`Settings.timeout` seconds (default 30) for connecting and between two reads of its
  body. Environment: ``SBS_REMOTE_TIMEOUT``, ``SBS_REMOTE_RETRIES``.
"""
from __future__ import annotations

import io
import mmap
import os
import re
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple

import numpy as np

from .errors import ContainerError, FileChangedError, SbsError
from .inputs import InputError, check_input_file

#: ``scheme://`` with a scheme of two or more characters (``C:\\`` stays a local path).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")
#: First bytes fetched of a remote file's head (V1 / pre-2025) or tail (V2). With MERGE_GAP, bounds
#: what ``inspect`` of a V2 file reads beyond its footer, directory, config and toc: 64 KiB.
WINDOW = 48 << 10
#: Ranges closer than this are fetched in one request (a request costs more than this many bytes).
MERGE_GAP = 16 << 10
#: Read-ahead of sequential bulk reads grows from the first read's size up to this many bytes.
READAHEAD_MAX = 16 << 20
#: Most ranges fetched at once by :meth:`RemoteSource.prefetch`.
PARALLEL = 8


def is_url(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` inputs (read through fsspec), False for local paths."""
    return isinstance(path, str) and bool(_URL.match(path))


@dataclass
class Settings:
    """Process-wide remote options (the CLI sets them from its flags)."""

    allow_full_download: bool = False
    timeout: float = field(default_factory=lambda: float(os.environ.get("SBS_REMOTE_TIMEOUT", "30")))
    retries: int = field(default_factory=lambda: max(1, int(os.environ.get("SBS_REMOTE_RETRIES", "3"))))
    storage_options: dict = field(default_factory=dict)


SETTINGS = Settings()


def configure(**options) -> None:
    """Set :class:`Settings` fields, e.g. ``configure(allow_full_download=True, timeout=5)``."""
    for k, v in options.items():
        if not hasattr(SETTINGS, k):
            raise TypeError(f"unknown remote option {k!r}")
        setattr(SETTINGS, k, v)


class Transfer:
    """Requests made and bytes moved (thread-safe counters)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def add(self, requests: int, nbytes: int) -> None:
        with self._lock:
            self.requests += requests
            self.bytes += nbytes

    def to_dict(self) -> dict:
        return {"requests": self.requests, "bytes": self.bytes}

    def reset(self) -> None:
        with self._lock:
            self.requests = self.bytes = 0


#: Everything this process fetched from remote inputs (``--json``'s ``transfer`` object).
TOTAL = Transfer()


def transfer_totals() -> dict:
    return TOTAL.to_dict()


class InputStat(NamedTuple):
    """What a fleet scan keys its resume records on."""

    size: int
    mtime: float | str | None


# -- local ------------------------------------------------------------------------------------------
class LocalSource:
    """A local regular file: memory-mapped for metadata, ``pread`` for bulk reads."""

    remote = False

    def __init__(self, path: str) -> None:
        self.path = path
        self._mm: mmap.mmap | None = None
        check_input_file(path, allow_empty=True)  # never mmap a directory, never block on a FIFO
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise SbsError(f"cannot open {path}: {e.strerror}", code="io-error") from None
        # The descriptor stays open for bulk reads (read_into); closed by close() or, for a file
        # never closed, when this object is collected.
        self._fd: int | None = fd
        self._fd_closer = weakref.finalize(self, os.close, fd)
        self._seek_lock = None if hasattr(os, "preadv") else threading.Lock()
        try:
            st = os.fstat(fd)
            self.size = st.st_size
            self._identity = (st.st_size, st.st_ino, st.st_mtime_ns)
            if self.size:
                self._mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                self.buf = np.frombuffer(self._mm, dtype=np.uint8)
            else:
                self.buf = np.zeros(0, dtype=np.uint8)
        except BaseException:
            self._fd_closer()
            raise

    def transfer(self) -> dict | None:
        return None

    def prefetch(self, ranges: Iterable[tuple[int, int]]) -> None:
        """Nothing to do: the mapping is there."""

    def check_unchanged(self) -> None:
        fd = self._fd
        if fd is None:
            raise SbsError(f"{self.path}: read after close", code="io-error")
        try:
            st = os.fstat(fd)
        except OSError as e:
            raise SbsError(f"{self.path}: {e.strerror}", code="io-error") from None
        try:
            ino = os.stat(self.path).st_ino
        except OSError:
            ino = None  # deleted or renamed away: the open descriptor still reads the old file
        size0, ino0, mtime0 = self._identity
        what = []
        if st.st_size != size0:
            what.append(f"its size went from {size0} to {st.st_size} bytes")
        if ino is not None and ino != ino0:
            what.append("another file was put in its place")
        if st.st_mtime_ns != mtime0 and not what:
            what.append("it was modified")
        if what:
            raise FileChangedError(f"{self.path} changed while it was being read ({', '.join(what)}); read it "
                                   "again once the writer has finished")

    def check_stat(self) -> None:
        try:
            st = os.fstat(self._fd)  # type: ignore[arg-type]
        except (OSError, TypeError):
            st = None
        if st is None or (st.st_size, st.st_mtime_ns) != (self._identity[0], self._identity[2]):
            self.check_unchanged()

    def read_into(self, offset: int, buf) -> None:
        mv = memoryview(buf).cast("B")
        n = mv.nbytes
        fd = self._fd
        if fd is None:
            raise SbsError(f"{self.path}: read after close", code="io-error")
        done = 0
        while done < n:
            try:
                if self._seek_lock is None:
                    got = os.preadv(fd, [mv[done:]], offset + done)
                else:  # no preadv (Windows): seek + readinto under a lock
                    with self._seek_lock:
                        os.lseek(fd, offset + done, os.SEEK_SET)
                        got = os.readv(fd, [mv[done:]])
            except OSError as e:
                raise SbsError(f"{self.path}: read of {n - done} bytes at offset {offset + done} failed: "
                               f"{e.strerror}", code="io-error", offset=offset + done) from None
            if got <= 0:
                at = offset + done
                try:
                    self.check_unchanged()
                except FileChangedError as e:
                    e.offset = at
                    raise
                if at < self.size:
                    raise FileChangedError(f"{self.path} changed while it was being read (a read at offset {at} "
                                           f"ended early in a {self.size}-byte file)", offset=at)
                raise _beyond_end(self.path, n - done, at, self.size)
            done += got

    def release(self, offset: int, length: int) -> None:
        mm = self._mm
        if mm is None or length <= 0 or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = max(offset, 0) // mmap.PAGESIZE * mmap.PAGESIZE
        if start >= self.size:
            return
        try:
            mm.madvise(mmap.MADV_DONTNEED, start, offset + length - start)
        except (OSError, ValueError):
            pass  # advisory only

    def close(self) -> None:
        mm, self._mm = self._mm, None
        self.buf = np.zeros(0, dtype=np.uint8)
        self._fd = None
        self._fd_closer()
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # views handed out still reference it; GC closes it with them


def _beyond_end(path: str, n: int, at: int, size: int) -> ContainerError:
    return ContainerError(f"{path}: {n} bytes at offset {at} lie beyond the end of the {size}-byte file",
                          code="blob-out-of-bounds", offset=at)


# -- remote -----------------------------------------------------------------------------------------
class RemoteError(SbsError):
    """A remote input that cannot be read (exit 2)."""

    code = "remote-error"


class _Retry(Exception):
    """A transient failure (connection, timeout, 429, 5xx): the request may be tried again."""

    def __init__(self, error: SbsError) -> None:
        self.error = error


def _fsspec():
    try:
        import fsspec
    except ImportError:
        raise RemoteError("reading URLs needs the remote extra: pip install 'sbs-tools[remote]'",
                          code="remote-unsupported") from None
    return fsspec


def _filesystem(url: str):
    """(fsspec file system, path inside it) for ``url``; a missing protocol package is one error line."""
    fsspec = _fsspec()
    try:
        return fsspec.core.url_to_fs(url, **SETTINGS.storage_options)
    except (ImportError, ValueError) as e:
        scheme = url.split("://", 1)[0]
        raise RemoteError(f"cannot read {scheme}:// URLs: {' '.join(str(e).split())[:300]}",
                          code="remote-unsupported") from None


def _is_http(fs) -> bool:
    return "http" in (fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,))


def _classify(url: str, e: BaseException) -> SbsError:
    """An exception of fsspec or its protocol package as one of our codes."""
    if isinstance(e, SbsError):
        return e
    name = type(e).__name__
    text = " ".join(str(e).split())[:300] or name
    if isinstance(e, FileNotFoundError):
        return InputError(f"{url}: no such file", code="not-found")
    if isinstance(e, PermissionError):
        return InputError(f"cannot read {url}: permission denied ({text})", code="permission-denied")
    if isinstance(e, (TimeoutError,)) or "Timeout" in name:
        return RemoteError(f"{url}: the server did not answer in time ({text})", code="remote-timeout")
    if "Connect" in name or "Endpoint" in name or isinstance(e, ConnectionError):
        return RemoteError(f"{url}: cannot reach the server ({text})", code="host-unreachable")
    return RemoteError(f"{url}: {text}", code="remote-error")


def _retrying(url: str, op: Callable[[], object]):
    """Run ``op`` under the retry policy of the module docstring."""
    delay = 0.25
    for attempt in range(SETTINGS.retries):
        try:
            return op()
        except _Retry as r:
            err = r.error
        except SbsError:
            raise
        except Exception as e:  # noqa: BLE001 - fsspec and its packages raise anything
            err = _classify(url, e)
            if err.code not in ("host-unreachable", "remote-timeout"):
                raise err from None
        if attempt + 1 < SETTINGS.retries:
            time.sleep(delay)
            delay *= 2
    raise err


class _HttpBackend:
    """Ranged GETs on the aiohttp session of fsspec's HTTP file system, checking what fsspec's
    ``cat_file`` does not: a 200 answer to a ranged request (the server ignores ``Range``) is refused
    before its body is read, and ``Content-Range``'s total and the ETag must not change."""

    def __init__(self, fs, url: str) -> None:
        self.fs, self.url = fs, url
        self.etag: str | None = None
        self.mtime: str | None = None
        self.ranges_ok = True

    def _timeout(self):
        import aiohttp

        return aiohttp.ClientTimeout(total=None, sock_connect=SETTINGS.timeout, sock_read=SETTINGS.timeout)

    def _run(self, coro_fn, *args):
        from fsspec.asyn import sync

        return _retrying(self.url, lambda: sync(self.fs.loop, coro_fn, *args))

    def _error(self, status: int, reason: str) -> SbsError:
        if status == 404 or status == 410:
            return InputError(f"{self.url}: no such file (HTTP {status})", code="not-found")
        if status in (401, 403):
            return InputError(f"cannot read {self.url}: permission denied (HTTP {status} {reason})",
                              code="permission-denied")
        err = RemoteError(f"{self.url}: HTTP {status} {reason}", code="remote-error")
        if status == 429 or status >= 500:
            raise _Retry(err)
        return err

    async def _wrap(self, coro):
        import asyncio

        import aiohttp

        try:
            return await coro
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise _Retry(RemoteError(f"{self.url}: no answer within {SETTINGS.timeout:g} s ({type(e).__name__})",
                                     code="remote-timeout")) from None
        except aiohttp.ClientConnectorError as e:
            raise _Retry(RemoteError(f"{self.url}: cannot reach the server ({' '.join(str(e).split())})",
                                     code="host-unreachable")) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
            raise _Retry(RemoteError(f"{self.url}: the connection broke ({type(e).__name__})",
                                     code="host-unreachable")) from None
        except aiohttp.InvalidURL:
            raise InputError(f"{self.url}: not a valid URL", code="not-found") from None

    async def _head(self) -> tuple[int | None, str | None, str | None]:
        session = await self.fs.set_session()
        async with session.head(self.fs.encode_url(self.url), allow_redirects=True,
                                timeout=self._timeout()) as r:
            TOTAL.add(1, 0)
            if r.status >= 400:
                raise self._error(r.status, r.reason or "")
            size = r.headers.get("Content-Length")
            enc = r.headers.get("Content-Encoding", "identity")
            return (int(size) if size and enc == "identity" else None, r.headers.get("ETag"),
                    r.headers.get("Last-Modified"))

    def stat(self) -> tuple[int, str | None]:
        size, etag, mtime = self._run(lambda: self._wrap(self._head()))
        if size is None:  # no length in HEAD: ask for one byte and read the total of Content-Range
            size = self._run(lambda: self._wrap(self._probe_size()))
        self.etag, self.mtime = etag, mtime
        return size, etag or mtime

    async def _probe_size(self) -> int:
        session = await self.fs.set_session()
        async with session.get(self.fs.encode_url(self.url), headers={"Range": "bytes=0-0"},
                               timeout=self._timeout()) as r:
            TOTAL.add(1, 0)
            if r.status >= 400:
                raise self._error(r.status, r.reason or "")
            total = _content_range_total(r.headers.get("Content-Range"))
            if r.status != 206 or total is None:
                raise RemoteError(f"{self.url}: the server tells no file size (no Content-Length) and ignores "
                                  "Range requests", code="range-unsupported")
            return total

    async def _get(self, start: int, end: int, size: int, out: memoryview) -> None:
        session = await self.fs.set_session()
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        async with session.get(self.fs.encode_url(self.url), headers=headers,
                               timeout=self._timeout()) as r:
            if r.status >= 400 and r.status != 416:
                TOTAL.add(1, 0)
                raise self._error(r.status, r.reason or "")
            if r.status == 416 or (r.status == 206 and _content_range_total(r.headers.get("Content-Range"))
                                   not in (None, size)):
                TOTAL.add(1, 0)
                total = _content_range_total(r.headers.get("Content-Range"))
                raise FileChangedError(f"{self.url} changed while it was being read (its size went from {size} "
                                       f"to {total if total is not None else 'less than ' + str(end)} bytes)",
                                       offset=start)
            if r.status != 206:
                if not (start == 0 and end == size):
                    TOTAL.add(1, 0)
                    r.close()  # drop the connection: never read the whole body of a multi-GB file
                    self.ranges_ok = False
                    raise RemoteError(
                        f"{self.url}: the server ignores HTTP Range requests (answered {r.status} with the whole "
                        f"file); refusing to download {size} bytes to read {end - start} (pass "
                        "--allow-full-download to download it)", code="range-unsupported")
            etag = r.headers.get("ETag")
            if self.etag and etag and etag != self.etag:
                TOTAL.add(1, 0)
                raise FileChangedError(f"{self.url} changed while it was being read (its ETag went from "
                                       f"{self.etag} to {etag})", offset=start)
            pos = 0
            n = end - start
            while pos < n:
                chunk = await r.content.read(min(n - pos, 4 << 20))
                if not chunk:
                    break
                out[pos:pos + len(chunk)] = chunk
                pos += len(chunk)
            TOTAL.add(1, pos)
            if pos < n:
                raise FileChangedError(f"{self.url} changed while it was being read (a read of {n} bytes at offset "
                                       f"{start} returned {pos})", offset=start + pos)

    def fetch_into(self, start: int, end: int, size: int, out: memoryview) -> None:
        self._run(lambda: self._wrap(self._get(start, end, size, out)))

    def fetch_many(self, ranges: list[tuple[int, int]], size: int) -> list[bytearray]:
        import asyncio

        bufs = [bytearray(b - a) for a, b in ranges]

        async def one(a, b, buf, sem):
            async with sem:
                await self._wrap(self._get(a, b, size, memoryview(buf)))

        async def all_():
            sem = asyncio.Semaphore(PARALLEL)
            await asyncio.gather(*(one(a, b, buf, sem) for (a, b), buf in zip(ranges, bufs)))

        from fsspec.asyn import sync

        _retrying(self.url, lambda: sync(self.fs.loop, all_))
        return bufs

    async def _download(self, fh) -> int:
        session = await self.fs.set_session()
        async with session.get(self.fs.encode_url(self.url), headers={"Accept-Encoding": "identity"},
                               timeout=self._timeout()) as r:
            if r.status >= 400:
                TOTAL.add(1, 0)
                raise self._error(r.status, r.reason or "")
            n = 0
            async for chunk in r.content.iter_chunked(4 << 20):
                fh.write(chunk)
                n += len(chunk)
            TOTAL.add(1, n)
            return n

    def download(self, fh) -> int:
        return self._run(lambda: self._wrap(self._download(fh)))


def _content_range_total(value: str | None) -> int | None:
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


class _FsBackend:
    """Any other fsspec file system (s3, gs, hf, ...): ``cat_file`` of byte ranges; the size and ETag
    seen at open are compared again by :meth:`RemoteSource.check_unchanged`."""

    ranges_ok = True

    def __init__(self, fs, path: str, url: str) -> None:
        self.fs, self.path, self.url = fs, path, url

    def stat(self) -> tuple[int, str | None]:
        info = _retrying(self.url, lambda: self.fs.info(self.path))
        TOTAL.add(1, 0)
        if info.get("type") == "directory":
            raise InputError(f"{self.url} is a directory, not a .sbs file", code="is-directory")
        size = info.get("size")
        if size is None:
            raise RemoteError(f"{self.url}: the store tells no file size", code="remote-error")
        tag = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        return int(size), None if tag is None else str(tag)

    def fetch_into(self, start: int, end: int, size: int, out: memoryview) -> None:
        data = _retrying(self.url, lambda: self.fs.cat_file(self.path, start=start, end=end))
        TOTAL.add(1, len(data))
        if len(data) != end - start:
            raise FileChangedError(f"{self.url} changed while it was being read (a read of {end - start} bytes at "
                                   f"offset {start} returned {len(data)})", offset=start + min(len(data), end - start))
        out[:] = data

    def fetch_many(self, ranges: list[tuple[int, int]], size: int) -> list[bytearray]:
        out = []
        for a, b in ranges:  # cat_ranges would hide short reads; a handful of metadata ranges
            buf = bytearray(b - a)
            self.fetch_into(a, b, size, memoryview(buf))
            out.append(buf)
        return out

    def download(self, fh) -> int:
        n = 0
        with self.fs.open(self.path, "rb") as src:
            while chunk := src.read(4 << 20):
                fh.write(chunk)
                n += len(chunk)
        TOTAL.add(1, n)
        return n


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
        fs, path = _filesystem(url)
        self._backend = _HttpBackend(fs, url) if _is_http(fs) else _FsBackend(fs, path, url)
        self._t0 = TOTAL.to_dict()
        self.size, self._tag = self._backend.stat()
        if self.size == 0 and not allow_empty:
            raise InputError(f"{url} is empty (0 bytes)", code="empty-file", offset=0)
        self._segments: list[tuple[int, bytes]] = []  # (start, bytes), the cached metadata ranges
        self._lock = threading.Lock()
        self._ra = threading.local()
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
        from .blobstore import ENTRY_BYTES, HEADER_BYTES, MAGIC

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
        ra = self._ra
        block = getattr(ra, "block", None)
        start = getattr(ra, "start", -1)
        if block is not None and start <= offset and offset + n <= start + ra.filled:
            mv[:] = block[offset - start:offset - start + n]
            ra.next = offset + n
            return
        sequential = getattr(ra, "next", None) == offset
        want = n if not sequential else min(max(n, 2 * getattr(ra, "want", n)), READAHEAD_MAX)
        ra.want = want
        if want <= n:
            self._fetch(offset, offset + n, mv)
            ra.next = offset + n
            return
        end = min(self.size, offset + want)
        if block is None or len(block) < end - offset:
            block = ra.block = np.empty(READAHEAD_MAX if want >= READAHEAD_MAX else end - offset, dtype=np.uint8)
        self._fetch(offset, end, memoryview(block)[:end - offset])
        ra.start, ra.filled = offset, end - offset
        mv[:] = block[:n]
        ra.next = offset + n

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
        self._closed = True
        self._segments = []
        self._ra = threading.local()


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


def open_source(path: str | os.PathLike) -> LocalSource | RemoteSource:
    """The byte source for ``path``: a URL is read in ranges, anything else is a local file."""
    if not is_url(path):
        return LocalSource(os.fspath(path))
    src = RemoteSource(path)
    try:
        src.first_window()
    except RemoteError as e:
        if e.code != "range-unsupported" or not SETTINGS.allow_full_download:
            src.close()
            raise
        backend = src._backend
        src.close()
        return DownloadedSource(path, backend)
    return src


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


def open_binary(path: str | os.PathLike):
    """A binary file object for reading ``path``: ``open(path, "rb")`` for a local file, ranged reads
    for a URL (what the format sniffing of ``verify`` reads a file that is not a BlobStore with)."""
    if not is_url(path):
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    return io.BufferedReader(_RangeReader(RemoteSource(path)), buffer_size=1 << 16)


def stat_input(path: str | os.PathLike, *, allow_empty: bool = False) -> InputStat:
    """Size and modification stamp of an input, refusing what cannot be read (the codes of
    :func:`~sbs_tools.inputs.check_input_file`, and the remote ones for URLs)."""
    if not is_url(path):
        st = check_input_file(path, allow_empty=allow_empty)
        return InputStat(st.st_size, st.st_mtime_ns)
    fs, p = _filesystem(path)
    backend = _HttpBackend(fs, path) if _is_http(fs) else _FsBackend(fs, p, path)
    size, tag = backend.stat()
    if size == 0 and not allow_empty:
        raise InputError(f"{path} is empty (0 bytes)", code="empty-file", offset=0)
    return InputStat(size, tag)


def stem(path: str | os.PathLike) -> str:
    """The file name without its extension, for a local path or a URL (default output names)."""
    if is_url(path):
        from urllib.parse import urlsplit

        name = urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1] or "remote"
    else:
        name = os.path.basename(os.fspath(path))
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


def expand_inputs(specs: Iterable[str | os.PathLike]) -> list[str]:
    """Files named by ``specs``: a file or URL as given; a directory or a URL ending in ``/`` gives the
    ``*.sbs`` files below it (recursively, sorted); a pattern with ``*``, ``?`` or ``[`` is globbed (a
    pattern that matches nothing is kept, so it is reported as ``not-found``). Duplicates are dropped."""
    import glob as _glob

    out: list[str] = []
    for spec in specs:
        s = os.fspath(spec)
        if is_url(s):
            if s.endswith("/") or any(c in s.split("://", 1)[1] for c in "*?["):
                out += _expand_remote(s)
            else:
                out.append(s)
        elif os.path.isdir(s):
            found = sorted(_glob.glob(os.path.join(_glob.escape(s), "**", "*.sbs"), recursive=True))
            out += [p for p in found if os.path.isfile(p)] or [s]  # none: reported as is-directory
        elif any(c in s for c in "*?[") and not os.path.exists(s):
            out += sorted(_glob.glob(s, recursive=True)) or [s]
        else:
            out.append(s)
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def _expand_remote(prefix: str) -> list[str]:
    fs, path = _filesystem(prefix)
    scheme = prefix.split("://", 1)[0]
    try:
        if any(c in prefix.split("://", 1)[1] for c in "*?["):
            names = _retrying(prefix, lambda: fs.glob(path))
        else:
            names = _retrying(prefix, lambda: fs.find(path.rstrip("/")))
    except SbsError:
        raise
    TOTAL.add(1, 0)
    names = sorted(n for n in names if n.endswith(".sbs"))
    if not _is_http(fs):  # http(s) listings are already full URLs
        names = [f"{scheme}://{n}" for n in names]
    return names or [prefix]  # none: reported as not-found
