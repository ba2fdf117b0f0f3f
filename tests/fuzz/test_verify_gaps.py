"""Gaps of ``verify`` found by fuzzing: files gemma.cpp cannot load that verify did not flag.

An open gap is pinned as a strict xfail (and exempted in ``oracle.py``); when verify learns the
check the test XPASSes -- which fails -- and becomes a plain regression test, with the oracle
switch turned on so that the fuzz property asserts it from then on.
"""
from __future__ import annotations

import pytest

import sbs_tools
from sbs_tools.config import LayerConfig, ModelConfig

from . import harness as H, model as M


def _e0_file(rename: tuple[str, str] | None = None) -> bytes:
    lc = LayerConfig(model_dim=8, ff_hidden_dim=8, heads=1, kv_heads=1, qkv_dim=4, post_norm=1)
    cfg = ModelConfig(model=7, weight=M.SFP, num_layers=1, model_dim=8, vocab_size=16, max_seq_len=16,
                      layer_configs=[lc], attention_window_sizes=[16])
    data = M.build(M.ModelPlan(cfg, M.tensor_plan(cfg, M.SFP, [("ein", "ein", "ein")]), None, "v1", "e0", 1))
    if rename:
        old, new = (k.encode().ljust(16, b"\0") for k in rename)
        assert data.count(old) == 1
        data = data.replace(old, new)
    return data


def _new_problems(data: bytes) -> set[str]:
    base = sbs_tools.verify_file(str(H.scratch_file(_e0_file(), "gap-base.sbs")), deep=True)
    rep = sbs_tools.verify_file(str(H.scratch_file(data, "gap.sbs")), deep=True)
    return {f.code for f in rep.findings if f.severity != "info"} - {f.code for f in base.findings}


# Found by test_verify_flags_damage; fixed in f1afed4 ("verify: tensor names of pre-2025 files").
@pytest.mark.parametrize("rename", [("Bc_embedding", "Cc_embedding"),  # required tensor gone
                                    ("Bpre_att_ns_0", "Bpre_att ns_0")])  # unknown name: HEAD aborts
def test_pre2025_missing_or_unknown_tensor_names_are_flagged(rename):
    assert _new_problems(_e0_file(rename)), "verify still says only 'legacy-only'"
