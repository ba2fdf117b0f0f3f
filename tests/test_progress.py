"""Progress on long work: a bar or spinner on stderr when it is a terminal, nothing otherwise."""
from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from sbs_tools.cli import main

from .conftest import CORPUS

A, B = str(CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs"), str(CORPUS / "v2" / "gemma2-2b-tiny-bf16.sbs")
BROKEN = str(CORPUS / "broken" / "broken-misaligned-offset.sbs")

CASES = {
    "hash": (["hash", A], b"hashing"),
    "diff": (["diff", A, B], b"comparing"),
    # the stage shown last depends on the timing; the spinner is redrawn at least once when it stops
    "repair": (["repair", BROKEN, "-o", "OUT.sbs"], (b"analyzing and planning", b"writing", b"verifying the output",
                                                     b"proving every tensor")),
    "report": (["report", A, "-o", "OUT.html"], b"verifying"),
    "export": (["export", A, "OUT.npz"], b"exporting"),
    "verify-deep": (["verify", "--deep", A], b"decoding"),
}


def _argv(argv: list[str], d) -> list[str]:
    return [str(d / a) if a.startswith("OUT") else a for a in argv]


@pytest.mark.parametrize("name", CASES)
def test_terminal_shows_progress(tmp_path, name):
    argv, needle = CASES[name]
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "sbs_tools", *_argv(argv, tmp_path)], stdout=subprocess.DEVNULL,
                         stderr=slave, stdin=subprocess.DEVNULL, env={**os.environ, "TERM": "xterm"})
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # the pty closes when the child exits
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert p.wait(timeout=60) in (0, 1)
    assert any(n in seen for n in (needle if isinstance(needle, tuple) else (needle,)))


@pytest.mark.parametrize("name", CASES)
def test_silent_when_not_a_terminal(tmp_path, capsys, name):
    argv, _ = CASES[name]
    assert main(_argv(argv, tmp_path)) in (0, 1)
    assert capsys.readouterr().err == ""
