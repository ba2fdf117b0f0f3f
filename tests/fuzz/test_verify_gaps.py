"""Known gaps of ``verify`` found by fuzzing, pinned as strict xfails.

Each test states a file that gemma.cpp cannot load but ``verify`` does not flag. When verify
learns the check the test XPASSes -- which fails (strict) -- and the matching switch in
``oracle.py`` should be turned on so that the fuzz property asserts it from then on.
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
    base = sbs_tools.verify(str(H.scratch_file(_e0_file(), "gap-base.sbs")), deep=True)
    rep = sbs_tools.verify(str(H.scratch_file(data, "gap.sbs")), deep=True)
    return {f.code for f in rep.findings if f.severity != "info"} - {f.code for f in base.findings}


@pytest.mark.xfail(strict=True, reason="verify checks no tensor names in pre-2025 (E0) files (reported)")
@pytest.mark.parametrize("rename", [("Bc_embedding", "Cc_embedding"),  # required tensor gone
                                    ("Bpre_att_ns_0", "Bpre_att ns_0")])  # unknown name: HEAD aborts
def test_pre2025_missing_or_unknown_tensor_names_are_flagged(rename):
    assert _new_problems(_e0_file(rename)), "verify still says only 'legacy-only'"
