"""Plain ``http://`` over blocking ``http.client``: one kept-alive connection per thread and origin,
and a small thread pool for read-aheads. What the HTTP backend uses when nothing of fsspec's aiohttp
session is needed (:func:`usable`): no event-loop hand-off, ``readinto`` straight into the
destination, and neither fsspec nor aiohttp imported (~0.2 s of every command's start-up)."""
from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Future
from typing import Callable

_PROXY = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def usable(url: str, storage_options: dict) -> bool:
    """True when ``url`` is plain ``http://`` (TLS stays with aiohttp's stack) and nothing could ask
    fsspec's session for more: no storage options, no proxy in the environment, no fsspec
    configuration (``FSSPEC_*`` variables, files in its config directory, or ``fsspec.config.conf``
    set in this process), any of which may carry headers, auth or client options."""
    if not url.startswith("http://") or storage_options or any(os.environ.get(k) for k in _PROXY):
        return False
    if any(k.startswith("FSSPEC_") for k in os.environ):
        return False
    conf_dir = os.environ.get("FSSPEC_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".config", "fsspec")
    if os.path.isdir(conf_dir) and os.listdir(conf_dir):
        return False
    fsspec = sys.modules.get("fsspec")
    return fsspec is None or not any(fsspec.config.conf.get(p) for p in ("http", "https"))


class Connections:
    """Kept-alive ``http.client`` connections, one per thread and origin, and the read-ahead pool;
    :meth:`close` stops both (a read in flight ends at once)."""

    def __init__(self) -> None:
        self._local = threading.local()  # .conns: {(host, port): HTTPConnection}
        self._open: list = []
        self._pool = None
        self._lock = threading.Lock()
        self.closed = False

    def request(self, method: str, url: str, headers: dict[str, str]):
        """``(connection, response)`` of one request; a kept-alive connection the server had closed is
        opened again once. Any other failure drops the connection and propagates."""
        import http.client
        from urllib.parse import urlsplit

        u = urlsplit(url)
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        c = self._connection(u)
        try:
            try:
                c.request(method, path, headers=headers)
                return c, c.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.drop(c)
                c = self._connection(u)
                c.request(method, path, headers=headers)
                return c, c.getresponse()
        except BaseException:
            self.drop(c)
            raise

    def _connection(self, u):
        import http.client

        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        key = (u.hostname, u.port)
        c = conns.get(key)
        if c is None:
            from .settings import SETTINGS

            c = conns[key] = http.client.HTTPConnection(u.hostname, u.port, timeout=SETTINGS.timeout)
            with self._lock:
                if self.closed:
                    raise ConnectionAbortedError("closed")
                self._open = [k for k in self._open if k.sock is not None] + [c]
        return c

    def drop(self, c) -> None:
        """Close ``c`` and forget it (the next request on this thread opens a new one)."""
        c.close()
        conns = getattr(self._local, "conns", {})
        for k, v in list(conns.items()):
            if v is c:
                del conns[k]

    def submit(self, fn: Callable, *args) -> Future:
        with self._lock:
            if self.closed:
                raise ConnectionAbortedError("closed")
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sbs-read-ahead")
            return self._pool.submit(fn, *args)

    def close(self) -> None:
        """Queued requests never start; running ones see their connection shut down."""
        import socket

        with self._lock:
            self.closed = True
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
