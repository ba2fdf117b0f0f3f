"""Files that change while they are read (issue #14): a truncation mid-scan is a clean ``file-changed``
error (exit 2, one line on stderr), never SIGBUS through the memory map, which Python cannot catch.

Each CLI case runs ``sbs`` in a child process (a SIGBUS would kill the test runner otherwise) with one
hook that truncates the file the first time the scan reports progress, so the truncation lands
mid-scan on every run. Also: which heavy modules the read-only commands import (issue #14, start-up).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import sbs_tools
from sbs_tools.errors import FileChangedError, SbsError
from sbs_tools.sbsfile import read_buffer

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "fixtures" / "corpus" / "v2" / "gemma2-2b-tiny-sfp.sbs"
BF16_FIXTURE = ROOT / "fixtures" / "corpus" / "v2" / "gemma2-2b-tiny-bf16.sbs"

# Installs a hook that truncates sys.argv[1] to 4096 bytes on its first call, then runs the CLI.
_CHILD = textwrap.dedent("""
    import os, sys
    path, hook = sys.argv[1], sys.argv[2]
    done = []

    def truncate():
        if not done:
            done.append(1)
            os.truncate(path, 4096)

    if hook == "verify-progress":
        import sbs_tools.verify as v
        real = v.check_deep
        def check_deep(f, progress=None):
            def tick(n):
                truncate()
                if progress is not None:
                    progress(n)
            return real(f, tick)
        v.check_deep = check_deep
    elif hook == "hash-update":
        import sbs_tools.hashing as h
        h._PIECE = 4096  # many pieces even for a whole-file digest of the 393 KB fixture
        real = h._hasher
        class Hasher:
            def __init__(self, inner):
                self.inner = inner
            def update(self, data):
                self.inner.update(data)
                truncate()
            def hexdigest(self):
                return self.inner.hexdigest()
        h._hasher = lambda algo: Hasher(real(algo))
    elif hook == "export-progress":
        import sbs_tools.export as e
        real = e.export
        def export(source, output, **kw):
            kw["progress"] = lambda *a: truncate()
            return real(source, output, **kw)
        e.export = export
    from sbs_tools.cli import main
    sys.exit(main(sys.argv[3:]))
""")


def _child(path: Path, hook: str, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               COLUMNS="200")
    return subprocess.run([sys.executable, "-c", _CHILD, str(path), hook, *argv], capture_output=True, text=True,
                          env=env, timeout=300)


def _assert_clean_file_changed(r: subprocess.CompletedProcess, path: Path) -> None:
    assert r.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "[file-changed]" in lines[0] and "Traceback" not in r.stderr
    assert os.path.getsize(path) == 4096  # the hook did truncate, mid-scan


@pytest.fixture
def victim(tmp_path) -> Path:
    p = tmp_path / "victim.sbs"
    shutil.copy(FIXTURE, p)
    return p


@pytest.mark.parametrize("deep_first", [False, True])
def test_verify_deep_truncated_mid_scan(victim, deep_first):
    args = ["verify", "--deep", str(victim)] + (["--json"] if deep_first else [])
    _assert_clean_file_changed(_child(victim, "verify-progress", *args), victim)


@pytest.mark.parametrize("per", ["tensor", "blob", "file"])
def test_hash_truncated_mid_scan(victim, per):
    _assert_clean_file_changed(_child(victim, "hash-update", "hash", str(victim), "--per", per), victim)


@pytest.mark.parametrize("raw", [False, True])
def test_export_truncated_mid_scan(victim, tmp_path, raw):
    out = tmp_path / "out.safetensors"
    r = _child(victim, "export-progress", "export", str(victim), str(out), *(["--raw"] if raw else []))
    _assert_clean_file_changed(r, victim)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


def test_diff_and_report_truncated(victim, tmp_path, monkeypatch):
    """diff and report --deep read through the same place: a file already shorter than its directory says
    at the first bulk read is file-changed too (here: truncated between open and scan)."""
    from sbs_tools.diff import diff
    from sbs_tools.report.model import build_file_model

    other = tmp_path / "other.sbs"
    shutil.copy(BF16_FIXTURE, other)
    with sbs_tools.open(victim) as f:
        os.truncate(victim, 4096)
        with pytest.raises(FileChangedError) as e:
            for name in f.tensors:
                f.tensor(name)
        assert e.value.code == "file-changed" and "4096" in e.value.message
    import sbs_tools.export as export_mod
    import sbs_tools.report.model as model

    for module, attr, run in ((export_mod, "iter_values", lambda: diff(victim, other)),
                              (model, "value_stats", lambda: build_file_model(victim, deep=True))):
        shutil.copy(FIXTURE, victim)
        real = getattr(module, attr)

        def truncating(*a, real=real, **k):
            os.truncate(victim, 4096)  # the first tensor read finds the file shorter than at open
            return real(*a, **k)

        monkeypatch.setattr(module, attr, truncating)
        with pytest.raises(FileChangedError):
            run()
        monkeypatch.setattr(module, attr, real)


def test_truncation_from_another_thread_while_hashing(tmp_path):
    """A real concurrent writer: a thread truncates the file while hash_file streams it (the scan is slowed
    down by the hasher, so the truncation surely lands in the middle)."""
    from sbs_tools import hashing

    p = tmp_path / "big.sbs"
    shutil.copy(FIXTURE, p)
    started, go_on = threading.Event(), threading.Event()
    real = hashing._hasher

    class Slow:
        def __init__(self, inner):
            self.inner = inner

        def update(self, data):
            started.set()
            go_on.wait(10)
            self.inner.update(data)

        def hexdigest(self):
            return self.inner.hexdigest()

    def writer():
        started.wait(10)
        with open(p, "r+b") as fh:
            fh.truncate(8192)
        go_on.set()

    t = threading.Thread(target=writer)
    t.start()
    hashing._hasher = lambda algo: Slow(real(algo))
    try:
        with pytest.raises(FileChangedError) as e:
            hashing.hash_file(p, per="tensor", threads=1)
    finally:
        hashing._hasher = real
        go_on.set()
        t.join()
    assert "8192" in str(e.value)


def test_read_into_and_chunks(tmp_path):
    p = tmp_path / "f.sbs"
    shutil.copy(FIXTURE, p)
    with sbs_tools.open(p) as f:
        whole = f.raw("att_ein_0").copy()
        e = f.blobs["att_ein_0"]
        assert np.array_equal(f.read(e.offset, e.size), whole)
        pieces = [c.copy() for c in f.chunks(e.offset, e.size, chunk_bytes=1000)]
        assert [c.size for c in pieces[:-1]] == [1000] * (len(pieces) - 1)
        assert np.array_equal(np.concatenate(pieces), whole)
        assert np.array_equal(f.read_blob("att_ein_0"), whole)
        # A read past the end of an unchanged file is an out-of-bounds blob, not a changed file.
        with pytest.raises(SbsError) as err:
            f.read(f.file_bytes - 10, 100)
        assert err.value.code == "blob-out-of-bounds"
        # Rewritten in place with the same size: the next piece notices the new modification time.
        it = f.chunks(0, f.file_bytes, chunk_bytes=4096)
        next(it)
        st = os.stat(p)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        with pytest.raises(FileChangedError, match="modified"):
            next(it)
    with sbs_tools.open(p) as f:  # replaced by another file under the same name
        q = tmp_path / "g.sbs"
        shutil.copy(FIXTURE, q)
        os.replace(q, p)
        with pytest.raises(FileChangedError, match="another file"):
            f.check_unchanged()


def test_read_buffer_is_page_aligned():
    import mmap

    for n in (1, 100, 1 << 20):
        b = read_buffer(n)
        assert b.size == n and b.dtype == np.uint8 and b.ctypes.data % mmap.PAGESIZE == 0


def test_closed_file_closes_its_descriptor(tmp_path):
    p = tmp_path / "f.sbs"
    shutil.copy(FIXTURE, p)
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(20):
        sbs_tools.open(p).close()
        sbs_tools.open(p)  # never closed: collected with its descriptor
    import gc

    gc.collect()
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) <= fds + 1
    f = sbs_tools.open(p)
    f.close()
    with pytest.raises(SbsError):
        f.read(0, 16)


# -- start-up: what the read-only commands import -------------------------------------------------

_IMPORTS = textwrap.dedent("""
    import contextlib, io, json, sys
    from sbs_tools.cli import main
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(sys.argv[1:])
    print(json.dumps([rc, sorted(sys.modules)]))
""")


@pytest.mark.parametrize("argv", [["verify", "--deep", "{f}"], ["verify", "{f}", "--json"], ["hash", "{f}"],
                                  ["inspect", "{f}"], ["dump", "{f}", "--tensor", "att_ein_0", "--values", "4"],
                                  ["export", "{f}", "{out}"], ["diff", "{f}", "{f}"]])
def test_commands_do_not_import_what_they_do_not_use(tmp_path, argv):
    """ml_dtypes is no dependency any more (it cost ~1 s of start-up); sentencepiece only loads a tokenizer
    (verify checks the embedded one loads: the only command here that uses it); numpy.ma and xml only where
    needed."""
    import json

    args = [a.format(f=FIXTURE, out=tmp_path / "o.safetensors") for a in argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", _IMPORTS, *args], capture_output=True, text=True, env=env, timeout=120)
    rc, mods = json.loads(r.stdout.strip().splitlines()[-1])
    assert rc == 0, r.stderr
    mods = set(mods)
    assert "ml_dtypes" not in mods
    assert "numpy.ma" not in mods
    assert "xml.etree.ElementTree" not in mods
    assert "pydantic" not in mods  # typer >= 0.29 imports it at start-up (pyproject bounds typer below it)
    assert "sbs_tools.repair" not in mods and "inference" not in mods
    if argv[0] != "export":  # export writes safetensors with sbs_tools.convert.safetensors_io
        assert "sbs_tools.convert" not in mods
    if "--json" in argv or argv[0] in ("hash", "export"):
        assert "rich.table" not in mods  # only the text renderers of dump/diff/inspect draw tables
    if argv[0] != "verify":
        assert "sentencepiece" not in mods
    else:
        assert "sentencepiece" in mods  # the tokenizer check, which is what it is for
