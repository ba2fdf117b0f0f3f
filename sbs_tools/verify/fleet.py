"""Fleet scans: ``sbs verify`` of many inputs at once, in parallel, resumable.

>>> import sbs_tools
>>> reports = sbs_tools.verify_many(["fixtures/corpus/"], jobs=2)          # doctest: +SKIP
>>> reports = sbs_tools.verify_many(["s3://bucket/models/"], client=client)  # a dask.distributed Client

Inputs are paths, directories (every ``*.sbs`` below them), globs and URL prefixes
(``s3://bucket/models/``), expanded by :func:`sbs_tools.source.expand_inputs`. One task per file runs
:func:`verify_one`: serially, in a process pool (``jobs``), or on a Dask cluster (``client``). A task
never raises for a bad file: an input that cannot be read is a report whose finding says why.

Resuming: with ``jsonl``, each report is appended to that file as one JSON line the moment it is
done (the object of ``verify --json``'s ``files``, with ``input``: the size and modification stamp
of the file when it was checked). A rerun with the same file skips every input whose line is there
with the same size and stamp, and re-reads the rest. A line cut off by a kill is ignored.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

from ..errors import SbsError
from ..source import SETTINGS, configure, expand_inputs, stat_input
from .findings import UNREADABLE_CODES, Report, finding


def unreadable_report(path: str, e: SbsError, deep: bool, stat: dict | None = None) -> Report:
    code = e.code if e.code in UNREADABLE_CODES else "io-error"
    msg = e.message if e.message.startswith(path) else f"{path}: {e.message}"
    return Report(path, [finding(code, msg)], deep=deep, stat=stat)


def verify_one(path: str, deep: bool = False, settings: dict[str, Any] | None = None, run: bool = False,
               max_memory: int | str | None = None) -> Report:
    """One task of a fleet scan: stat, then verify (``run``: also the forward pass of ``--run``); never
    raises for a bad file."""
    from . import verify

    if settings:
        configure(**settings)
    try:
        st = stat_input(path, allow_empty=True)
    except SbsError as e:
        return unreadable_report(path, e, deep)
    stat = {"size": st.size, "mtime": st.mtime}
    try:
        report = verify(path, deep=deep, run=run, max_memory=max_memory)
    except SbsError as e:  # e.g. file-changed, or a server that went away mid-scan
        return unreadable_report(path, e, deep, stat)
    report.stat = stat
    return report


def read_jsonl(path: str | os.PathLike) -> dict[str, dict]:
    """Path -> last complete record of a ``--jsonl`` file (missing file: empty)."""
    done: dict[str, dict] = {}
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        return done
    except OSError as e:
        raise SbsError(f"cannot read {os.fspath(path)}: {e.strerror}", code="io-error") from None
    with fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut off when the scan was killed
            if isinstance(rec, dict) and isinstance(rec.get("path"), str) and isinstance(rec.get("input"), dict):
                done[rec["path"]] = rec
    return done


class _Appender:
    """Appends one JSON line per report, flushed and fsynced, so a killed scan keeps what it finished."""

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            self.fh = open(path, "a+b")
            self.fh.seek(0, os.SEEK_END)
            if self.fh.tell():
                self.fh.seek(-1, os.SEEK_END)
                if self.fh.read(1) != b"\n":  # the last line was cut off: start on a new one
                    self.fh.write(b"\n")
        except OSError as e:
            raise SbsError(f"cannot write {os.fspath(path)}: {e.strerror}", code="output-not-writable") from None

    def write(self, report: Report) -> None:
        self.fh.write(json.dumps(report.to_dict(), default=_json_default).encode("utf-8") + b"\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def verify_many(inputs: Iterable[str | os.PathLike], *, deep: bool = False, jobs: int = 1, client=None,
                jsonl: str | os.PathLike | None = None,
                on_result: Callable[[Report, bool], None] | None = None, run: bool = False,
                max_memory: int | str | None = None) -> list[Report]:
    """Verify every file ``inputs`` name (see the module docstring); reports in input order.

    ``jobs`` > 1: a process pool of that size; ``client``: a ``dask.distributed.Client`` (one task per
    file); neither: one file after the other. ``on_result(report, resumed)`` is called as each
    report arrives (``resumed``: taken from ``jsonl`` without reading the file again).
    """
    paths = expand_inputs(inputs)
    done = read_jsonl(jsonl) if jsonl is not None else {}
    results: dict[str, Report] = {}
    todo: list[str] = []
    for p in paths:
        rec = done.get(p)
        if rec is not None and bool(rec.get("deep")) == deep and bool(rec.get("run")) == run:
            try:
                st = stat_input(p, allow_empty=True)
            except SbsError:
                st = None
            if st is not None and rec["input"] == {"size": st.size, "mtime": st.mtime}:
                results[p] = Report.from_dict(rec)
                if on_result is not None:
                    on_result(results[p], True)
                continue
        todo.append(p)
    out = _Appender(jsonl) if jsonl is not None and todo else None
    settings = {"allow_full_download": SETTINGS.allow_full_download, "timeout": SETTINGS.timeout,
                "retries": SETTINGS.retries}
    checks = {"deep": deep, "settings": settings, "run": run, "max_memory": max_memory}

    def take(report: Report) -> None:
        results[report.path] = report
        if out is not None:
            out.write(report)
        if on_result is not None:
            on_result(report, False)

    try:
        if client is not None:
            _on_dask(client, todo, checks, take)
        elif jobs > 1 and len(todo) > 1:
            _in_pool(jobs, todo, checks, take)
        else:
            for p in todo:
                take(verify_one(p, deep, run=run, max_memory=max_memory))
    finally:
        if out is not None:
            out.close()
    return [results[p] for p in paths]


def _in_pool(jobs: int, todo: list[str], checks: dict, take: Callable[[Report], None]) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn: workers start clean (no inherited event loops of fsspec's async file systems, no locks).
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = set()
        it = iter(todo)
        try:
            for p in it:  # at most 2 x jobs tasks queued: thousands of files need no thousands of futures
                pending.add(pool.submit(verify_one, p, **checks))
                if len(pending) >= 2 * jobs:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        take(fut.result())
            for fut in list(pending):
                pending.discard(fut)
                take(fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _on_dask(client, todo: list[str], checks: dict, take: Callable[[Report], None]) -> None:
    from distributed import as_completed

    futures = client.map(verify_one, todo, **checks, pure=False)
    try:
        for fut in as_completed(futures):
            take(fut.result())
    except BaseException:
        client.cancel(futures)
        raise


def connect(address: str):
    """A ``dask.distributed.Client`` for ``--scheduler tcp://HOST:PORT`` (the ``fleet`` extra)."""
    try:
        from distributed import Client
    except ImportError:
        raise SbsError("--scheduler needs Dask: pip install 'sbs-tools[fleet]'", code="remote-unsupported") from None
    try:
        return Client(address, timeout=SETTINGS.timeout)
    except (OSError, TimeoutError) as e:
        raise SbsError(f"cannot reach the Dask scheduler at {address}: {' '.join(str(e).split())[:200]}",
                       code="host-unreachable") from None
