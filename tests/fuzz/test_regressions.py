"""Every minimized crash input under ``tests/fuzz/regressions/`` keeps the contract.

Each ``NAME.sbs`` may have a ``NAME.json`` beside it::

    {"bug": "what went wrong before the fix", "fixed_in": "module",
     "open": "ok" | "<SbsError code>",          # expected outcome of sbs_tools.open(strict=True)
     "function": "decode_config"}                # optional: the input is a blob for this decoder

All are run through the whole entry-point harness (returns or raises SbsError, bounded time
and memory).
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
    H.exercise(path)
    if "open" in meta:
        try:
            with sbs_tools.open(path):
                got = "ok"
        except SbsError as e:
            got = e.code
        assert got == meta["open"]


def test_every_regression_is_documented():
    for p in CASES:
        assert _meta(p).get("bug"), f"{p.name}: add a {p.stem}.json saying what the bug was"
