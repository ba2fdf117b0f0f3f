"""How a remote file is fetched: ranged HTTP GETs with checks fsspec does not make, or fsspec's
``cat_file`` for any other protocol; errors mapped to our codes, retries per the package docstring."""
from __future__ import annotations

import time
from typing import Callable


from ..errors import FileChangedError, SbsError
from ..inputs import InputError
from .hub import auth_headers, is_hub, resolve_url
from .settings import PARALLEL, SETTINGS, TOTAL, same_origin


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
    if target.split("://", 1)[0].lower() in ("http", "https"):
        return _HttpBackend(url, target)
    fs, path = _filesystem(target)
    return _FsBackend(fs, path, url)


class _HttpBackend:
    """Ranged GETs, checking what fsspec's ``cat_file`` does not: a 200 answer to a ranged request
    (the server ignores ``Range``) is refused before its body is read, and ``Content-Range``'s total
    and the ETag must not change. The first request (``HEAD``) follows redirects; ranged reads go to
    where it led (``final_url``). ``url`` is what messages name, ``target`` what is requested (they
    differ for ``hf://``). Over blocking ``http.client`` (:mod:`.plain`) where it can, else on the
    aiohttp session of fsspec's HTTP file system (``fs``, made on first use)."""

    def __init__(self, url: str, target: str | None = None) -> None:
        from .plain import Connections, usable

        self.url, self.target = url, target or url
        self._fs = None
        self.etag: str | None = None
        self.mtime: str | None = None
        self.ranges_ok = True
        self.final_url: str | None = None
        self.plain = usable(self.target, SETTINGS.storage_options)
        self._conns = Connections()

    @property
    def fs(self):
        """fsspec's HTTP file system (importing fsspec and aiohttp), for what the plain path does not do."""
        if self._fs is None:
            self._fs = _filesystem(self.target)[0]
        return self._fs

    def _timeout(self):
        import aiohttp

        return aiohttp.ClientTimeout(total=None, sock_connect=SETTINGS.timeout, sock_read=SETTINGS.timeout)

    def _run(self, coro_fn, *args):
        from fsspec.asyn import sync

        return _retrying(self.url, lambda: sync(self.fs.loop, coro_fn, *args))

    def _headers(self, url: str, **extra: str) -> dict[str, str]:
        """Request headers for ``url``: ``extra``, and the hub's token where it belongs (:mod:`.hub`)."""
        return {**extra, **auth_headers(self.target, url)} if is_hub(self.url) else extra

    def _kwargs(self, url: str, **headers: str) -> dict:
        """aiohttp request arguments: the storage options' request arguments (``headers``, ``auth``, ...;
        what fsspec's own requests pass), our headers over theirs, the timeouts. Their credentials
        stay with the target's origin, as aiohttp drops them on a redirect elsewhere."""
        kw = dict(self.fs.kwargs)
        theirs = dict(kw.get("headers", {}))
        if not same_origin(url, self.target):
            kw.pop("auth", None)
            theirs = {k: v for k, v in theirs.items() if k.lower() != "authorization"}
        kw["headers"] = {**theirs, **self._headers(url, **headers)}
        kw["timeout"] = self._timeout()
        return kw

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
                                **self._kwargs(self.target)) as r:
            TOTAL.add(1, 0)
            if r.status >= 400:
                raise self._error(r.status, r.reason or "", r.headers.get("X-Error-Code"))
            self.final_url = str(r.url)
            size = r.headers.get("Content-Length")
            enc = r.headers.get("Content-Encoding", "identity")
            return (int(size) if size and enc == "identity" else None, r.headers.get("ETag"),
                    r.headers.get("Last-Modified"))

    def _head_blocking(self) -> tuple[int | None, str | None, str | None] | None:
        """:meth:`_head` over ``http.client``, following up to 10 redirects; None when one leads off
        plain ``http://`` (then aiohttp takes over)."""
        from urllib.parse import urljoin

        url = self.target
        for _ in range(10):
            try:
                _, r = self._conns.request("HEAD", url, self._headers(url))
                r.read()
            except Exception as e:  # noqa: BLE001 - socket and http.client errors
                raise self._failure(e) from None
            TOTAL.add(1, 0)
            location = r.getheader("Location")
            if r.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                if not url.startswith("http://"):
                    return None
                continue
            if r.status >= 400:
                raise self._error(r.status, r.reason or "", r.getheader("X-Error-Code"))
            self.final_url = url
            size = r.getheader("Content-Length")
            enc = r.getheader("Content-Encoding", "identity")
            return (int(size) if size and enc == "identity" else None, r.getheader("ETag"),
                    r.getheader("Last-Modified"))
        raise RemoteError(f"{self.url}: more than 10 redirects", code="remote-error")

    def _failure(self, e: BaseException) -> BaseException:
        """An exception of a blocking request as our error or retry signal."""
        import http.client
        import socket

        if isinstance(e, (SbsError, _Retry)):
            return e
        if self._conns.closed:
            return _closed_error(self.url)
        if isinstance(e, (socket.timeout, TimeoutError)):
            return _Retry(RemoteError(f"{self.url}: no answer within {SETTINGS.timeout:g} s ({type(e).__name__})",
                                      code="remote-timeout"))
        if isinstance(e, ConnectionRefusedError) or isinstance(e, socket.gaierror):
            return _Retry(RemoteError(f"{self.url}: cannot reach the server ({e.strerror or e})",
                                      code="host-unreachable"))
        if isinstance(e, (OSError, http.client.HTTPException)):
            return _Retry(RemoteError(f"{self.url}: the connection broke ({type(e).__name__})",
                                      code="host-unreachable"))
        return e

    def stat(self) -> tuple[int, str | None]:
        head = _retrying(self.url, self._head_blocking) if self.plain else None
        if head is None:  # https://, fsspec options, or a redirect to https://
            self.plain = False
            head = self._run(lambda: self._wrap(self._head()))
        size, etag, mtime = head
        if size is None:  # no length in HEAD: ask for one byte and read the total of Content-Range
            size = self._run(lambda: self._wrap(self._probe_size()))
        self.etag, self.mtime = etag, mtime
        return size, etag or mtime

    async def _probe_size(self) -> int:
        session = await self.fs.set_session()
        url = self.final_url or self.target
        async with session.get(self.fs.encode_url(url), **self._kwargs(url, Range="bytes=0-0")) as r:
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
        async with session.get(self.fs.encode_url(url), read_bufsize=_READ_BUFSIZE,
                               **self._kwargs(url, **_ranged(start, end))) as r:
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
        try:
            self._fetch_into(start, end, size, out)
        except InputError as e:
            if e.code != "permission-denied" or self.final_url in (None, self.target):
                raise
            self._resolve_again(size)
            self._fetch_into(start, end, size, out)

    def _fetch_into(self, start: int, end: int, size: int, out: memoryview) -> None:
        if self.plain:
            _retrying(self.url, lambda: self._get_blocking(start, end, size, out))
            return
        self._run(lambda: self._wrap(self._get(start, end, size, out)))

    def _resolve_again(self, size: int) -> None:
        """After a 401/403 from where the first request was redirected (a signed CDN URL that expired,
        as the hub's do during a long scan): ask the target again for a fresh one; it must lead to the
        file seen at open (size, ETag), else ``file-changed``."""
        etag = self.etag
        now, _ = self.stat()
        if now != size or (etag and self.etag and etag != self.etag):
            raise FileChangedError(f"{self.url} changed while it was being read (asked again, it has {now} "
                                   f"bytes and ETag {self.etag}, not {size} and {etag})")

    def _get_blocking(self, start: int, end: int, size: int, out: memoryview) -> None:
        """:meth:`_get` over ``http.client`` (one try): the same checks, errors and retry signals."""
        if self._conns.closed:
            raise _closed_error(self.url)
        c = None
        try:
            c, r = self._conns.request("GET", self.final_url, self._headers(self.final_url, **_ranged(start, end)))
            self._check_answer(r.status, r.reason or "", r.getheader("Content-Range"), r.getheader("ETag"),
                               start, end, size, drop=lambda: self._conns.drop(c))
            n = end - start
            pos = 0
            while pos < n:
                got = r.readinto(out[pos:n])
                if not got:
                    break
                pos += got
            TOTAL.add(1, pos)
            if pos < n:
                self._conns.drop(c)
                raise FileChangedError(f"{self.url} changed while it was being read (a read of {n} bytes at offset "
                                       f"{start} returned {pos})", offset=start + pos)
        except Exception as e:  # noqa: BLE001 - socket and http.client errors
            if c is not None and not isinstance(e, SbsError):
                self._conns.drop(c)
            raise self._failure(e) from None

    def start_fetch(self, start: int, end: int, size: int, out: memoryview):
        """One try of :meth:`fetch_into` started without waiting (on the read-ahead pool, or fsspec's
        event loop): a ``concurrent.futures.Future`` (its ``cancel()`` drops a queued request). It
        raises ``_Retry`` where :meth:`fetch_into` would try again; the caller does that."""
        import asyncio

        if self.plain:
            try:
                return self._conns.submit(self._get_blocking, start, end, size, out)
            except ConnectionAbortedError:
                raise _closed_error(self.url) from None
        return asyncio.run_coroutine_threadsafe(self._wrap(self._get(start, end, size, out)), self.fs.loop)

    def close(self) -> None:
        """Stop the blocking read-aheads: queued ones never start, running ones see their connection
        shut down (their reads end at once)."""
        self._conns.close()

    def fetch_many(self, ranges: list[tuple[int, int]], size: int) -> list[bytearray]:
        import asyncio

        bufs = [bytearray(b - a) for a, b in ranges]
        if self.plain:  # on the read-ahead pool; a request that failed in a retryable way is tried again
            futs = [self.start_fetch(a, b, size, memoryview(buf)) for (a, b), buf in zip(ranges, bufs)]
            for fut, (a, b), buf in zip(futs, ranges, bufs):
                try:
                    fut.result()
                except _Retry:
                    self.fetch_into(a, b, size, memoryview(buf))
            return bufs

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
        async with session.get(self.fs.encode_url(self.target),
                               **self._kwargs(self.target, **{"Accept-Encoding": "identity"})) as r:
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
