"""One error path: every command x every kind of bad input path -> one ``error: [code]`` line, exit 2.

Paths that could block (a FIFO opened for reading waits for a writer; a character device never ends)
run the real ``sbs`` entry point in a subprocess with a 5 s limit, so a hang fails the test instead of
stalling the suite; the other kinds run in-process through the same ``main`` (an escaping exception
fails the test just the same), within the same 5 s.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import CORPUS

CLEAN = CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs"
LINE = re.compile(r"^error: \[[a-z0-9]+(-[a-z0-9]+)*\] \S.*\n\Z")

#: Every command with BAD where the bad path goes and OUT where it writes (a fresh path).
COMMANDS = {
    "inspect": ["inspect", "BAD"],
    "inspect-json": ["inspect", "BAD", "--json"],
    "dump": ["dump", "BAD"],
    "dump-tensor": ["dump", "BAD", "-t", "att_ein_0"],
    "verify": ["verify", "BAD"],
    "verify-deep": ["verify", "--deep", "BAD"],
    "repair": ["repair", "BAD", "-o", "OUT"],
    "repair-dry-run": ["repair", "BAD", "--dry-run"],
    "run": ["run", "BAD", "--tokens", "2,3"],
    "convert": ["convert", "BAD", "OUT"],
    "export": ["export", "BAD", "OUT.npz"],
    "export-hf": ["export", "BAD", "OUTDIR", "--hf"],
    "hash": ["hash", "BAD"],
    "hash-check": ["hash", "--check", "BAD"],
    "diff-a": ["diff", "BAD", str(CLEAN)],
    "diff-b": ["diff", str(CLEAN), "BAD"],
    "report": ["report", "BAD", "-o", "OUT.html"],
    "report-b": ["report", str(CLEAN), "BAD", "-o", "OUT.html"],
}


def _make(kind: str, d: Path) -> str:
    if kind == "missing":
        return str(d / "missing.sbs")
    if kind == "directory":
        (d / "adir").mkdir()
        return str(d / "adir")
    if kind == "fifo":
        os.mkfifo(d / "fifo.sbs")
        return str(d / "fifo.sbs")
    if kind == "char-device":
        return "/dev/zero"
    if kind == "empty":
        (d / "empty.sbs").write_bytes(b"")
        return str(d / "empty.sbs")
    if kind == "10-bytes":
        (d / "ten.sbs").write_bytes(b"SBS\n123456")
        return str(d / "ten.sbs")
    if kind == "random-1mb":
        (d / "random.sbs").write_bytes(np.random.default_rng(7).integers(0, 256, 1 << 20, np.uint8).tobytes())
        return str(d / "random.sbs")
    if kind == "dash":
        return "-"
    raise AssertionError(kind)


KINDS = ["missing", "directory", "fifo", "char-device", "empty", "10-bytes", "random-1mb", "dash"]


def _run(argv: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sbs_tools", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=5, stdin=subprocess.DEVNULL, **kw)


BLOCKING = ("fifo", "char-device")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS)
def test_one_line_exit_2(tmp_path, capsys, monkeypatch, command, kind):
    bad = _make(kind, tmp_path)
    argv = [bad if a == "BAD" else str(tmp_path / a) if a.startswith("OUT") else a for a in COMMANDS[command]]
    before = sorted(p.name for p in tmp_path.iterdir())
    if kind in BLOCKING:
        r = _run(argv, tmp_path)
        rc, out, err = r.returncode, r.stdout, r.stderr
    else:
        from sbs_tools.cli import main

        monkeypatch.chdir(tmp_path)
        t0 = time.monotonic()
        rc = main(argv)
        assert time.monotonic() - t0 < 5
        out, err = capsys.readouterr()
    assert rc == 2, (rc, out[-500:], err[-2000:])
    assert LINE.match(err), err
    assert "Traceback" not in err + out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing left behind


def test_unreadable_file(tmp_path, capsys):
    """A file the user cannot read: permission-denied. Root reads everything, so as root a forked child
    drops to uid 65534 after the CLI has run once (this interpreter may live where that uid cannot read,
    so everything the command imports lazily must already be loaded)."""
    from sbs_tools.cli import main

    assert main(["inspect", str(CLEAN)]) == 0 and main(["inspect", str(tmp_path / "no.sbs")]) == 2
    capsys.readouterr()
    p = tmp_path / "secret.sbs"
    p.write_bytes(CLEAN.read_bytes())
    p.chmod(0)
    tmp_path.chmod(0o755)
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            sys.stderr = os.fdopen(wr, "w")
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            code = main(["inspect", str(p)])
        finally:
            os._exit(code)
    os.close(wr)
    with os.fdopen(rd) as fh:
        err = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 2 and LINE.match(err) and err.startswith("error: [permission-denied] "), err


def test_api_raises_sbs_errors_only(tmp_path):
    """``sbs_tools.open`` turns every bad path into an SbsError subclass with the same codes."""
    import sbs_tools

    codes = {}
    for kind in KINDS:
        try:
            sbs_tools.open(_make(kind, tmp_path))
        except sbs_tools.SbsError as e:
            codes[kind] = e.code
    assert codes == {"missing": "not-found", "directory": "is-directory", "fifo": "not-regular-file",
                     "char-device": "not-regular-file", "empty": "empty-file", "10-bytes": "not-sbs",
                     "random-1mb": "not-sbs", "dash": "stdin-unsupported"}
