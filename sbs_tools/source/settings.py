"""Process-wide remote options, transfer counters and what counts as a URL."""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from typing import NamedTuple





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


def same_origin(a: str, b: str) -> bool:
    """True when two URLs have the same scheme, host and port (credentials go no further)."""
    from urllib.parse import urlsplit

    ua, ub = urlsplit(a), urlsplit(b)
    return (ua.scheme, ua.hostname, ua.port) == (ub.scheme, ub.hostname, ub.port)


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
