"""Every minimized crash input under ``tests/fuzz/regressions/`` keeps the contract.

Each ``NAME.sbs`` may have a ``NAME.json`` beside it::

    {"bug": "what went wrong before the fix", "fixed_in": "module",
     "open": "ok" | "<SbsError code>",          # expected outcome of sbs_tools.open(strict=True)
     "function": "decode_config",               # optional: the input is a blob for this decoder
     "verify": ["<finding code>", ...],         # optional: verify(deep=True) must report these
     "known_failures": {"<entry point>": "why"}} # still failing, reported to the module's owner

All are run through the whole entry-point harness (returns or raises SbsError, bounded time
and memory). Entry points listed in ``known_failures`` are run separately as strict xfails, so
a fix shows up as an XPASS (then delete the entry).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sbs_tools
from sbs_tools.config import decode_config
from sbs_tools.errors import SbsError
from sbs_tools.toc import decode_toc

from . import harness as H

HERE = Path(__file__).resolve().parent / "regressions"
CASES = sorted(HERE.glob("*.sbs")) + sorted(HERE.glob("*.bin"))
DECODERS = {"decode_config": decode_config, "decode_toc": decode_toc}


def _meta(p: Path) -> dict:
    j = p.with_suffix(".json")
    return json.loads(j.read_text()) if j.exists() else {}


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_regression(path):
    meta = _meta(path)
    if meta.get("function") in DECODERS:
        words = np.frombuffer(path.read_bytes(), dtype="<u4")
        o = H.bounded(meta["function"], lambda: DECODERS[meta["function"]](words), size=path.stat().st_size)
        if "expect" in meta:
            assert (o.error.code if o.error else "ok") == meta["expect"]
        return
    known = meta.get("known_failures", {})
    H.exercise(path, repair="sbs repair --dry-run" not in known, inference="inference.load" not in known,
               verify="verify(deep=True)" not in known)
    if "open" in meta:
        try:
            with sbs_tools.open(path):
                got = "ok"
        except SbsError as e:
            got = e.code
        assert got == meta["open"]
    if "verify" in meta:
        rep = H.verify_fn()(str(path), deep=True)
        assert set(meta["verify"]) <= {f.code for f in rep.findings}, [(f.code, f.severity) for f in rep.findings]
        assert not rep.ok


def test_every_regression_is_documented():
    for p in CASES:
        assert _meta(p).get("bug"), f"{p.name}: add a {p.stem}.json saying what the bug was"


KNOWN = [(p, what, why) for p in CASES for what, why in _meta(p).get("known_failures", {}).items()]


@pytest.mark.parametrize("path, what, why", [pytest.param(p, w, y, marks=pytest.mark.xfail(strict=True, reason=y),
                                                          id=f"{p.name}:{w}") for p, w, y in KNOWN])
def test_known_failure_still_fails(path, what, why):
    size = path.stat().st_size
    if what == "sbs repair --dry-run":
        # The plain (x1) time bound, not repair's x4 allowance: a known failure must fail clearly,
        # not flicker around the limit with the machine's load.
        H.bounded(what, lambda: H.cli(["repair", "--dry-run", str(path)]), size=size, measure_memory=False)
    elif what == "verify(deep=True)":
        H.bounded(what, lambda: H.verify_fn()(str(path), deep=True), size=size, time_factor=4.0)
    elif what == "inference.load":
        H.bounded(what, lambda: H.inference_load()(str(path), progress=False), size=size, time_factor=4.0)
    else:
        raise AssertionError(f"unknown entry point {what!r}")
