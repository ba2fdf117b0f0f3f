"""How a remote file is fetched: ranged HTTP GETs with checks fsspec does not make, or fsspec's
``cat_file`` for any other protocol; errors mapped to our codes, retries per the package docstring."""
from __future__ import annotations

import os
import threading
import time
from typing import Callable


from ..errors import FileChangedError, SbsError
from ..inputs import InputError
from .hub import auth_headers, is_hub, resolve_url
from .settings import PARALLEL, SETTINGS, TOTAL


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
    status = getattr(e, "code", None) or getattr(e, "status", None)
    if isinstance(e, FileNotFoundError) or status == 404:
        return InputError(f"{url}: no such file", code="not-found")
    # gcsfs raises a plain OSError("Forbidden: ...") for 403, its HttpError carries the status
    if isinstance(e, PermissionError) or status in (401, 403) or text.startswith(("Forbidden:", "Unauthorized:")):
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


def open_backend(url: str) -> "_HttpBackend | _FsBackend":
    """What fetches ``url``'s bytes: ranged HTTP for ``http(s)://`` and ``hf://`` (the hub's resolve URL,
    :mod:`.hub`), fsspec's ``cat_file`` for any other protocol."""
    target = resolve_url(url) if is_hub(url) else url
    fs, path = _filesystem(target)
    return _HttpBackend(fs, url, target) if _is_http(fs) else _FsBackend(fs, path, url)


class _HttpBackend:
    """Ranged GETs on the aiohttp session of fsspec's HTTP file system, checking what fsspec's
    ``cat_file`` does not: a 200 answer to a ranged request (the server ignores ``Range``) is refused
    before its body is read, and ``Content-Range``'s total and the ETag must not change. The first
    request (``HEAD``) follows redirects; ranged reads go to where it led (``final_url``). ``url`` is
    what messages name, ``target`` what is requested (they differ for ``hf://``)."""

    def __init__(self, fs, url: str, target: str | None = None) -> None:
        self.fs, self.url, self.target = fs, url, target or url
        self.etag: str | None = None
        self.mtime: str | None = None
        self.ranges_ok = True
        self.final_url: str | None = None
        self._conns = threading.local()  # .c: the thread's http.client connection
        self._open: list = []  # every connection made (close() shuts them down)
        self._pool = None  # threads of the blocking read-aheads
        self._pool_lock = threading.Lock()
        self._closed = False

    def _timeout(self):
        import aiohttp

        return aiohttp.ClientTimeout(total=None, sock_connect=SETTINGS.timeout, sock_read=SETTINGS.timeout)

    def _run(self, coro_fn, *args):
        from fsspec.asyn import sync

        return _retrying(self.url, lambda: sync(self.fs.loop, coro_fn, *args))

    def _headers(self, url: str, **extra: str) -> dict[str, str]:
        """Request headers for ``url``: ``extra``, and the hub's token where it belongs (:mod:`.hub`)."""
        return {**extra, **auth_headers(self.target, url)} if is_hub(self.url) else extra

    def _error(self, status: int, reason: str, detail: str | None = None) -> SbsError:
        """The error for an HTTP status; ``detail``: the hub's ``X-Error-Code`` (RepoNotFound, ...)."""
        what = f"HTTP {status}" + (f", {detail}" if detail else "")
        if status == 404 or status == 410:
            return InputError(f"{self.url}: no such file ({what})", code="not-found")
        if status in (401, 403):
            hint = "; set HF_TOKEN for a private or gated repository" if is_hub(self.url) else ""
            return InputError(f"cannot read {self.url}: permission denied ({what} {reason}{hint})",
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
        async with session.head(self.fs.encode_url(self.target), allow_redirects=True,
                                headers=self._headers(self.target), timeout=self._timeout()) as r:
            TOTAL.add(1, 0)
            if r.status >= 400:
                raise self._error(r.status, r.reason or "", r.headers.get("X-Error-Code"))
            self.final_url = str(r.url)
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
        url = self.final_url or self.target
        async with session.get(self.fs.encode_url(url), headers=self._headers(url, Range="bytes=0-0"),
                               timeout=self._timeout()) as r:
            TOTAL.add(1, 0)
            if r.status >= 400:
                raise self._error(r.status, r.reason or "", r.headers.get("X-Error-Code"))
            total = _content_range_total(r.headers.get("Content-Range"))
            if r.status != 206 or total is None:
                raise RemoteError(f"{self.url}: the server tells no file size (no Content-Length) and ignores "
                                  "Range requests", code="range-unsupported")
            return total

    def _check_answer(self, status: int, reason: str, content_range: str | None, etag: str | None,
                      start: int, end: int, size: int, drop) -> None:
        """What every answer to a ranged GET must be: 206 (a 200 only for the whole file) with the size
        seen at open in ``Content-Range`` and the same ETag; ``drop()`` closes the connection before a
        refusal, so a body is never read (a multi-GB file)."""
        try:
            if status >= 400 and status != 416:
                TOTAL.add(1, 0)
                raise self._error(status, reason)
            total = _content_range_total(content_range)
            if status == 416 or (status == 206 and total not in (None, size)):
                TOTAL.add(1, 0)
                raise FileChangedError(f"{self.url} changed while it was being read (its size went from {size} "
                                       f"to {total if total is not None else 'less than ' + str(end)} bytes)",
                                       offset=start)
            if status != 206 and not (start == 0 and end == size):
                TOTAL.add(1, 0)
                self.ranges_ok = False
                raise RemoteError(
                    f"{self.url}: the server ignores HTTP Range requests (answered {status} with the whole "
                    f"file); refusing to download {size} bytes to read {end - start} (pass "
                    "--allow-full-download to download it)", code="range-unsupported")
            if self.etag and etag and etag != self.etag:
                TOTAL.add(1, 0)
                raise FileChangedError(f"{self.url} changed while it was being read (its ETag went from "
                                       f"{self.etag} to {etag})", offset=start)
        except BaseException:
            drop()
            raise

    async def _get(self, start: int, end: int, size: int, out: memoryview) -> None:
        session = await self.fs.set_session()
        url = self.final_url or self.target
        headers = self._headers(url, **_ranged(start, end))
        async with session.get(self.fs.encode_url(url), headers=headers, timeout=self._timeout(),
                               read_bufsize=_READ_BUFSIZE) as r:
            self._check_answer(r.status, r.reason or "", r.headers.get("Content-Range"), r.headers.get("ETag"),
                               start, end, size, drop=r.close)
            # Each piece as aiohttp received it (``readchunk`` hands over its buffered bytes objects
            # without joining them) copied once, straight into ``out``; never past ``n`` bytes.
            pos = 0
            n = end - start
            content = r.content
            while pos < n:
                chunk, _ = await content.readchunk()
                if not chunk:
                    if content.at_eof():
                        break
                    continue
                take = min(len(chunk), n - pos)
                out[pos:pos + take] = memoryview(chunk)[:take]
                pos += take
                if take < len(chunk):
                    break
            TOTAL.add(1, pos)
            if pos < n:
                raise FileChangedError(f"{self.url} changed while it was being read (a read of {n} bytes at offset "
                                       f"{start} returned {pos})", offset=start + pos)

    def fetch_into(self, start: int, end: int, size: int, out: memoryview) -> None:
        if self._plain():
            _retrying(self.url, lambda: self._get_blocking(start, end, size, out))
            return
        self._run(lambda: self._wrap(self._get(start, end, size, out)))

    def _plain(self) -> bool:
        """Bulk ranges go through a blocking ``http.client`` connection of the reading thread, read
        with ``readinto`` straight into the destination (no event-loop hand-off, no intermediate
        bytes), when nothing of fsspec's session is needed: no storage options (headers, auth,
        client_kwargs), no proxy in the environment and plain ``http://`` (TLS stays with aiohttp's tested
        stack: this path has no https test yet); else aiohttp."""
        if self.final_url is None or self.fs.kwargs or self.fs.client_kwargs:
            return False
        if not self.final_url.startswith("http://"):
            return False
        return not any(os.environ.get(k) for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                                                    "all_proxy", "ALL_PROXY"))

    def _connection(self, fresh: bool = False):
        import http.client
        import urllib.parse

        u = urllib.parse.urlsplit(self.final_url)
        c = getattr(self._conns, "c", None)
        if c is not None and not fresh:
            return c, u
        if c is not None:
            c.close()
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        c = self._conns.c = cls(u.hostname, u.port, timeout=SETTINGS.timeout)
        with self._pool_lock:
            if self._closed:
                raise _closed_error(self.url)
            self._open = [k for k in self._open if k.sock is not None] + [c]
        return c, u

    def _get_blocking(self, start: int, end: int, size: int, out: memoryview) -> None:
        """:meth:`_get` over ``http.client``: the same checks, errors and retry signals."""
        import http.client
        import socket

        c, u = self._connection()
        target = u.path + ("?" + u.query if u.query else "")
        headers = self._headers(self.final_url, **_ranged(start, end))
        try:
            try:
                c.request("GET", target, headers=headers)
                r = c.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                c, u = self._connection(fresh=True)  # a kept-alive connection the server had closed
                c.request("GET", target, headers=headers)
                r = c.getresponse()
            self._check_answer(r.status, r.reason or "", r.getheader("Content-Range"), r.getheader("ETag"),
                               start, end, size, drop=lambda: self._drop(c))
            n = end - start
            pos = 0
            while pos < n:
                got = r.readinto(out[pos:n])
                if not got:
                    break
                pos += got
            TOTAL.add(1, pos)
            if pos < n:
                self._drop(c)
                raise FileChangedError(f"{self.url} changed while it was being read (a read of {n} bytes at offset "
                                       f"{start} returned {pos})", offset=start + pos)
        except (socket.timeout, TimeoutError) as e:
            self._drop(c)
            raise _Retry(RemoteError(f"{self.url}: no answer within {SETTINGS.timeout:g} s ({type(e).__name__})",
                                     code="remote-timeout")) from None
        except (OSError, http.client.HTTPException) as e:
            self._drop(c)
            raise _Retry(RemoteError(f"{self.url}: the connection broke ({type(e).__name__})",
                                     code="host-unreachable")) from None

    def _drop(self, c) -> None:
        c.close()
        if getattr(self._conns, "c", None) is c:
            self._conns.c = None

    def start_fetch(self, start: int, end: int, size: int, out: memoryview):
        """One try of :meth:`fetch_into` started on fsspec's event loop without waiting: a
        ``concurrent.futures.Future`` (its ``cancel()`` drops the request and its connection).
        It raises ``_Retry`` where :meth:`fetch_into` would try again; the caller does that."""
        import asyncio

        if self._plain():
            with self._pool_lock:
                if self._closed:
                    raise _closed_error(self.url)
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sbs-read-ahead")
                return self._pool.submit(self._get_blocking, start, end, size, out)
        return asyncio.run_coroutine_threadsafe(self._wrap(self._get(start, end, size, out)), self.fs.loop)

    def close(self) -> None:
        """Stop the blocking read-aheads: queued ones never start, running ones see their connection
        shut down (their reads end at once)."""
        import socket

        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, None
            conns, self._open = self._open, []
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for c in conns:
            sock = c.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

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
        async with session.get(self.fs.encode_url(self.target), timeout=self._timeout(),
                               headers=self._headers(self.target, **{"Accept-Encoding": "identity"})) as r:
            if r.status >= 400:
                TOTAL.add(1, 0)
                raise self._error(r.status, r.reason or "", r.headers.get("X-Error-Code"))
            n = 0
            async for chunk in r.content.iter_chunked(4 << 20):
                fh.write(chunk)
                n += len(chunk)
            TOTAL.add(1, n)
            return n

    def download(self, fh) -> int:
        return self._run(lambda: self._wrap(self._download(fh)))


#: aiohttp's stream buffer per response (it stops reading the socket at twice this): 64 KiB by default,
#: which pauses and resumes the transport every few pieces of a multi-MiB range.
_READ_BUFSIZE = 1 << 20


def _ranged(start: int, end: int) -> dict[str, str]:
    return {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}


def _closed_error(url: str) -> SbsError:
    return SbsError(f"{url}: read after close", code="io-error")


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
