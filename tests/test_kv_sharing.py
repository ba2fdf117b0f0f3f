"""Gemma 4 KV-sharing layers (``kv_share_layer_idx >= 0``): the QKV forms gemma.cpp accepts, and the links.

What gemma.cpp accepts (``sbs_tools.tensors.shares_kv`` cites the sources): the fused ``qkv_ein`` with its
(H+2K)*Dh rows, or the split form with ``qkv2_w`` optional, never both ``qkv_ein`` and ``qkv1_w``. Files are
the shrunk canonical GEMMA4_2B_LM (layers 15-34 share; layer 19 is a global one reading layer 14).
"""
from __future__ import annotations

from dataclasses import replace

import pytest

import sbs_tools
from sbs_tools import canonical as C
from sbs_tools.tensors import by_name, expected_tensors
from sbs_tools.toc import TocRecord
from sbs_tools.types import Type
from sbs_tools.writer import write_model

from .family_configs import bf16, family_tensors, shrink

CFG = shrink(C.canonical_config("GEMMA4_2B_LM", "bf16"))
SHARED, OWN = 19, 4  # a global layer that reads layer 14's cache, and a global layer with its own


def _write(path, cfg=CFG, drop=(), add=(), rows=None):
    """The canonical tensors minus ``drop``, plus the optional ``add`` (by name), ``rows`` overriding a shape."""
    specs = by_name(expected_tensors(cfg))
    tensors = [(r, d) for r, d in family_tensors(cfg) if r.name not in drop]
    tensors += [(TocRecord.make(n, Type.BF16, specs[n].rows, specs[n].cols), bf16(specs[n].rows, specs[n].cols, 1))
                for n in add]
    for name, n in (rows or {}).items():
        i = next(k for k, (r, _) in enumerate(tensors) if r.name == name)
        tensors[i] = (TocRecord.make(name, Type.BF16, n, tensors[i][0].cols), bf16(n, tensors[i][0].cols, 2))
    write_model(path, cfg, tensors, None, overwrite=True)
    return sbs_tools.verify_file(path)


def _errors(r) -> list[tuple[str, str | None]]:
    return [(x.code, x.tensor) for x in r.findings if x.severity == "error"]


@pytest.mark.parametrize("drop, add", [
    ((), ()),  # qkv_ein with its K/V rows: what gemma.cpp's exporter writes
    ((f"qkv_ein_{SHARED}",), (f"qkv1_w_{SHARED}",)),  # Q only
    ((f"qkv_ein_{SHARED}",), (f"qkv1_w_{SHARED}", f"qkv2_w_{SHARED}")),  # the split form
    ((), (f"qkv2_w_{SHARED}",)),  # qkv_ein plus a separate qkv2_w (SplitAttW1 takes only w1 from qkv_ein)
])
def test_accepted_forms_of_a_sharing_layer(tmp_path, drop, add):
    r = _write(tmp_path / "m.sbs", drop=drop, add=add)
    assert r.ok and _errors(r) == [] and not r.by_code("unexpected-tensor"), r.findings


def test_fused_qkv_keeps_its_kv_rows(tmp_path):
    """Only H*Dh rows in qkv_ein: the registry shape is (H+2K)*Dh, gemma.cpp aborts 'shape ... mismatches'."""
    lc = CFG.layer_configs[SHARED]
    r = _write(tmp_path / "m.sbs", rows={f"qkv_ein_{SHARED}": lc.heads * lc.qkv_dim})
    assert _errors(r) == [("shape-mismatch", f"qkv_ein_{SHARED}")]


def test_both_forms_and_no_form_of_a_sharing_layer(tmp_path):
    both = _write(tmp_path / "a.sbs", add=(f"qkv1_w_{SHARED}",))
    assert ("both-forms", f"qkv1_w_{SHARED}") in _errors(both)
    none = _write(tmp_path / "b.sbs", drop=(f"qkv_ein_{SHARED}",))
    (miss,) = none.by_code("missing-tensor")
    assert miss.layer == SHARED and "qkv_ein" in miss.message and "qkv1_w" in miss.message
    assert "qkv2_w" not in miss.message


def test_a_layer_with_its_own_cache_still_needs_qkv2_w(tmp_path):
    r = _write(tmp_path / "m.sbs", drop=(f"qkv_ein_{OWN}",), add=(f"qkv1_w_{OWN}",))
    assert _errors(r) == [("missing-tensor", f"qkv2_w_{OWN}")]


def _layers(**changes) -> list:
    out = list(CFG.layer_configs)
    for i, kw in changes.items():
        out[int(i[1:])] = replace(out[int(i[1:])], **kw)
    return out


@pytest.mark.parametrize("changes, error", [
    ({"L19": dict(kv_share_layer_idx=13)}, True),  # a global layer reading a local one: qkv_dim 8 != 4
    ({"L19": dict(kv_share_layer_idx=20)}, True),  # a later layer
    ({"L19": dict(kv_share_layer_idx=19)}, True),  # itself
    ({"L19": dict(kv_share_layer_idx=34)}, True),
    ({"L16": dict(kv_share_layer_idx=15)}, False),  # a layer that shares in turn: kv_cache.cc resolves it
    ({"L19": dict(kv_share_layer_idx=-2)}, False),  # any negative value: gemma.cpp tests ">= 0" for sharing
])
def test_kv_share_links(tmp_path, changes, error):
    cfg = replace(CFG, layer_configs=_layers(**changes))
    r = _write(tmp_path / "m.sbs", cfg=cfg)
    bad = [x for x in r.by_code("config-invalid") if "kv_share_layer_idx" in x.message or "KV cache" in x.message]
    assert bool(bad) == error, [x.message for x in r.findings]


def test_same_kv_width_is_not_enough(tmp_path):
    """kv_heads 2 x qkv_dim 4 reading kv_heads 1 x qkv_dim 8: equal widths, but gemma.cpp asserts both fields."""
    cfg = replace(CFG, layer_configs=_layers(L15=dict(kv_share_layer_idx=14, kv_heads=2, qkv_dim=4)))
    r = _write(tmp_path / "m.sbs", cfg=cfg)
    (bad,) = [x for x in r.by_code("config-invalid") if "KV cache" in x.message]
    assert bad.layer == 15 and "2 x 4" in bad.message and "1 x 8" in bad.message
