"""Shared fixtures: paths of the gemma.cpp-written corpus copied into ``fixtures/``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

# Registers the fuzz suite's hypothesis profiles. This conftest is the one pytest loads before it
# configures hypothesis for a bare `pytest -m fuzz --hypothesis-profile=long` from the root.
from .fuzz import profiles  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
CORPUS = FIXTURES / "corpus"
LEGACY = FIXTURES / "legacy"

CLEAN_CORPUS = sorted(p for p in CORPUS.glob("v*/*.sbs"))
BROKEN_CORPUS = sorted(CORPUS.glob("broken/*.sbs"))


def reference(path: Path) -> dict:
    """The JSON gemma.cpp wrote next to a corpus file."""
    return json.loads(path.with_suffix(".json").read_text())


@pytest.fixture(params=CLEAN_CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def corpus_file(request) -> Path:
    return request.param
