"""Byte sources: where an :class:`~sbs_tools.sbsfile.SbsFile` gets its bytes. The one module that knows
about URLs (the way fsspec separates a file system from the code that reads files).

Two sources share one small interface (``size``, ``buf``, ``read_into``, ``prefetch``,
``check_unchanged``, ``close``, ``transfer``):

* :class:`LocalSource` — a local path: the file memory-mapped for metadata (``buf``, zero-copy
  views) and ``pread`` on a descriptor kept open since it was opened for bulk reads, with
  ``file-changed`` detection. This is the fast path every command used before remote inputs.
* :class:`RemoteSource` — ``https://``, ``s3://``, ``gs://``, ... through fsspec (the optional
  ``remote`` extra); ``hf://`` as the hub's resolve URL over the HTTP path (:mod:`.hub` says why not
  ``HfFileSystem``). Only ranges are read: ``buf`` is a :class:`RemoteBuffer` whose slices
  are fetched on first use and cached (metadata: header, directory, config, toc), and
  :meth:`RemoteSource.prefetch` fetches several ranges in as few requests as their offsets allow.
  Bulk reads stream in bounded pieces with an adaptive read-ahead: blocks grow to
  :data:`READAHEAD_MAX` bytes, then each reading thread fetches the block after its current one while
  it uses the current one (two blocks per thread at most; never past the end of the file; cancelled
  on a jump and on close); a scan is lent views of the block (:meth:`SbsFile.read_view`) rather
  than copies. Plain ``http://`` (no storage options, no proxy, no fsspec configuration:
  :mod:`.plain`) goes over blocking ``http.client`` connections, one per thread, read with
  ``readinto`` straight into the block, without importing fsspec or aiohttp; ``https://`` and the
  rest through fsspec's aiohttp session (``cat_file`` for other protocols, without read-ahead).

Remote rules (docs/errors.md):

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
import os
from typing import Iterable

from ..errors import SbsError
from ..inputs import InputError, check_input_file
from .backends import RemoteError, _filesystem, _is_http, _retrying, open_backend
from .local import LocalSource
from .remote import DownloadedSource, RemoteBuffer, RemoteSource, _RangeReader
from .settings import SETTINGS, TOTAL, InputStat, Settings, configure, is_url, transfer_totals

__all__ = ["open_source", "open_binary", "stat_input", "stem", "expand_inputs", "is_url", "configure",
           "SETTINGS", "Settings", "transfer_totals", "InputStat", "LocalSource", "RemoteSource", "RemoteBuffer",
           "DownloadedSource", "RemoteError"]


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
    size, tag = open_backend(path).stat()
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
