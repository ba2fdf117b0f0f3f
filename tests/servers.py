"""Real servers for the remote-input tests, all on 127.0.0.1 and stopped by their context managers.

* :func:`http_server` — a ``http.server`` that serves a directory and honours single-range
  ``Range`` requests (206 + ``Content-Range``), or with ``ignore_range=True`` answers every GET
  with 200 and the whole file, like a naive server. It keeps an access log (method, path,
  requested range, status, body bytes sent) and can be told to answer some paths with a status
  (403, 500, ...) or to stall (for timeouts).
* :func:`hub_server` — a stand-in for the Hugging Face hub: resolve URLs of the repositories it
  knows answered with a 302 to another server (the CDN, e.g. :func:`http_server`), private ones
  only with the right ``Authorization: Bearer``; the hub's 401/404 answers and ``X-Error-Code``.
* :func:`s3_server` — moto's S3 in server mode (``ThreadedMotoServer``), spoken to over HTTP.
* :func:`gcs_server` — gcp-storage-emulator (GCS's JSON API and media downloads, ranged, in memory),
  spoken to by gcsfs over HTTP.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Access:
    method: str
    path: str
    range: str | None
    status: int
    sent: int
    auth: str | None = None  # the Authorization header sent


@dataclass
class ServerState:
    root: str
    ignore_range: bool = False
    statuses: dict[str, int] = field(default_factory=dict)  # URL path -> status to answer
    stall: set[str] = field(default_factory=set)  # URL paths whose answer never comes (until the server stops)
    expired: set[str] = field(default_factory=set)  # query strings answered 403 (signed URLs that expired)
    log: list[Access] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    rate: float | None = None  # bytes/s of one link shared by every connection (None: as fast as it goes)
    _link_free_at: float = 0.0

    def pace(self, n: int) -> None:
        """Hold the sender until ``n`` more bytes would have crossed a link of ``rate`` bytes/s."""
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            self._link_free_at = max(now, self._link_free_at) + n / self.rate
            wait = self._link_free_at - now
        if wait > 0:
            time.sleep(wait)

    def record(self, *a, auth: str | None = None) -> None:
        with self.lock:
            self.log.append(Access(*a, auth=auth))

    def sent(self, path: str | None = None) -> int:
        return sum(x.sent for x in self.log if path is None or x.path == path)

    def requests(self, path: str | None = None, method: str = "GET") -> list[Access]:
        return [x for x in self.log if (path is None or x.path == path) and x.method == method]


def _handler(state: ServerState):
    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *a, **k):
            super().__init__(*a, directory=state.root, **k)

        def log_message(self, *a) -> None:  # quiet; the access log is `state.log`
            pass

        def _status(self, method: str) -> bool:
            path, _, query = self.path.partition("?")
            if path in state.stall:
                state.stopping.wait(30)
                return True
            st = 403 if query and query in state.expired else state.statuses.get(path)
            if st is None:
                return False
            body = f"status {st}".encode()
            self.send_response(st)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method == "GET":
                self.wfile.write(body)
            state.record(method, path, self.headers.get("Range"), st, len(body) if method == "GET" else 0,
                         auth=self.headers.get("Authorization"))
            return True

        def _file(self) -> str | None:
            p = self.translate_path(self.path)
            return p if os.path.isfile(p) else None

        def do_HEAD(self) -> None:
            if self._status("HEAD"):
                return
            p = self._file()
            if p is None:
                self.send_error(404)
                state.record("HEAD", self.path, None, 404, 0)
                return
            st = os.stat(p)
            self.send_response(200)
            self.send_header("Content-Length", str(st.st_size))
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Last-Modified", self.date_time_string(int(st.st_mtime)))
            if not state.ignore_range:
                self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            state.record("HEAD", self.path, None, 200, 0, auth=self.headers.get("Authorization"))

        def do_GET(self) -> None:
            if self._status("GET"):
                return
            p = self._file()
            if p is None:
                if os.path.isdir(self.translate_path(self.path)):
                    return super().do_GET()  # directory listing (fsspec's http ls scrapes the links)
                self.send_error(404)
                state.record("GET", self.path, self.headers.get("Range"), 404, 0)
                return
            size = os.path.getsize(p)
            rng = self.headers.get("Range")
            start, end, status = 0, size, 200
            m = _RANGE.match(rng or "")
            if m and not state.ignore_range:
                a, b = m.groups()
                if a == "":
                    start, end = max(size - int(b), 0), size
                else:
                    start, end = int(a), min(int(b) + 1, size) if b else size
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    state.record("GET", self.path, rng, 416, 0)
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Content-Type", "application/octet-stream")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            sent = 0
            try:
                with open(p, "rb") as fh:
                    fh.seek(start)
                    while sent < end - start:
                        chunk = fh.read(min(1 << 20, end - start - sent))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        state.pace(len(chunk))
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            state.record("GET", self.path, rng, status, sent, auth=self.headers.get("Authorization"))

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up (as ours does on a refused 200) is not a test failure


@contextlib.contextmanager
def http_server(root: str | os.PathLike, *, ignore_range: bool = False,
                rate: float | None = None) -> Iterator[tuple[str, ServerState]]:
    """Serve ``root`` on 127.0.0.1 (a free port); yields (base URL ending in '/', state). ``rate``: bytes/s
    of a link all connections share (a network in front of the server), for benchmarks."""
    state = ServerState(os.fspath(root), ignore_range=ignore_range, rate=rate)
    srv = _QuietServer(("127.0.0.1", 0), _handler(state))
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/", state
    finally:
        state.stopping.set()
        srv.shutdown()
        srv.server_close()
        t.join(5)


_RESOLVE = re.compile(r"^/((?:datasets/|spaces/)?[^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def _hub_handler(state: ServerState, cdn: str, repos: dict[str, set[str]], private: dict[str, str],
                 signed: bool):
    signatures = iter(range(1, 1 << 30))

    class Hub(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:
            pass

        def _answer(self, method: str) -> None:
            from urllib.parse import unquote

            auth = self.headers.get("Authorization")
            m = _RESOLVE.match(self.path.split("?", 1)[0])
            status, code = 302, None
            if m is None or m[1] not in repos:
                status, code = 404, "RepoNotFound"
            elif m[1] in private and auth != f"Bearer {private[m[1]]}":
                status, code = 401, "RepoNotFound"  # as the hub: a private repo looks missing
            elif unquote(m[2]) not in repos[m[1]]:
                status, code = 404, "RevisionNotFound"
            elif not os.path.isfile(os.path.join(state.root, unquote(m[3]))):
                status, code = 404, "EntryNotFound"
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            else:
                self.send_header("Location", cdn + m[3] + (f"?sig={next(signatures)}" if signed else ""))
            self.send_header("Content-Length", "0")
            self.end_headers()
            state.record(method, self.path, self.headers.get("Range"), status, 0, auth=auth)

        def do_HEAD(self) -> None:
            self._answer("HEAD")

        def do_GET(self) -> None:
            self._answer("GET")

    return Hub


@contextlib.contextmanager
def hub_server(root: str | os.PathLike, cdn: str, repos: dict[str, set[str]],
               private: dict[str, str] | None = None, signed: bool = False) -> Iterator[tuple[str, ServerState]]:
    """The hub on 127.0.0.1: ``/REPO/resolve/REV/PATH`` (REPO as ``OWNER/NAME`` or ``datasets/OWNER/NAME``,
    a key of ``repos``, REV one of its revisions, PATH a file under ``root``) is redirected to ``cdn +
    PATH`` (``signed``: with ``?sig=N``, N new at each redirect, like the hub's signed CDN URLs); a repo
    in ``private`` needs its token. Yields (endpoint URL without the trailing '/', state)."""
    state = ServerState(os.fspath(root))
    srv = _QuietServer(("127.0.0.1", 0), _hub_handler(state, cdn, repos, private or {}, signed))
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", state
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1; yields its endpoint URL. Needs moto[server]."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.stop()


@contextlib.contextmanager
def gcs_server() -> Iterator[str]:
    """gcp-storage-emulator on 127.0.0.1, objects in memory; yields its endpoint URL."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    srv = create_server("127.0.0.1", port, in_memory=True)
    srv.start()
    srv._api._httpd.handle_error = lambda *a: None  # a client that hangs up is not a test failure
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.stop()


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set, as it was afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def bucket(protocol: str, options: dict, files: dict[str, str]) -> Iterator[None]:
    """fsspec pointed at a store (``fsspec.config.conf[protocol] = options``) whose bucket ``models``
    holds ``files`` (key under the bucket -> local path); the configuration is dropped afterwards."""
    import fsspec

    fsspec.config.conf[protocol] = options
    try:
        fs = fsspec.filesystem(protocol, skip_instance_cache=True)
        fs.mkdir("models")
        for key, local in files.items():
            fs.put_file(local, f"models/{key}")
        yield
    finally:
        fsspec.config.conf.pop(protocol, None)


def copy_tree(files: list[str], dest: str | os.PathLike) -> list[str]:
    out = []
    for f in files:
        d = os.path.join(dest, os.path.relpath(f))
        os.makedirs(os.path.dirname(d), exist_ok=True)
        shutil.copy(f, d)
        out.append(d)
    return out


def wait_until(cond, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False
