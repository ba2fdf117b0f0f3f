"""sbs_tools.tensors: the per-layer-type tensor rules, checked against every gemma.cpp-written file."""
from __future__ import annotations

import copy

import pytest

import sbs_tools
from sbs_tools.config import LayerConfig
from sbs_tools.tensors import (F32_ONLY, GEMMA, VIT, canonical_tensors, choices, expected_tensors, split_name,
                               vit_layer_tensors)
from sbs_tools.types import Type

from .conftest import CLEAN_CORPUS, CORPUS, LEGACY, reference

VIT_FILE = CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs"


@pytest.mark.parametrize("path", CLEAN_CORPUS, ids=lambda p: p.stem)
def test_canonical_set_is_what_gemma_cpp_writes(path):
    """gemma.cpp's SbsWriter output holds exactly the canonical tensors, with these shapes."""
    toc = {t["name"]: (t["rows"], t["cols"]) for t in reference(path)["inspect"]["toc"]}
    with sbs_tools.open(path) as f:
        want = {t.name: t.shape for t in canonical_tensors(f.config)}
    assert want == toc


@pytest.mark.parametrize("path", CLEAN_CORPUS, ids=lambda p: p.stem)
def test_f32_only_tensors_are_f32_in_gemma_cpp_files(path):
    types = {t["name"]: t["type"] for t in reference(path)["inspect"]["toc"]}
    with sbs_tools.open(path) as f:
        for t in expected_tensors(f.config):
            if t.name in types:
                assert Type[types[t.name].upper()] in t.types, t.name
            if t.types == F32_ONLY:
                assert types[t.name] == "f32"


def test_vit_layers_are_not_gemma_layers():
    with sbs_tools.open(VIT_FILE) as f:
        cfg = f.config
    specs = expected_tensors(cfg)
    vit = [t for t in specs if t.layer_type == VIT]
    gemma = [t for t in specs if t.layer_type == GEMMA]
    assert {t.layer for t in vit} == {0, 1} and {t.layer for t in gemma} == {0, 1, 2, 3}
    assert all(t.required for t in vit) and len(vit) == 24
    assert not any(t.base.startswith(("att_", "gating", "pre_", "post_")) for t in vit)
    # The shared suffix namespace: ViT layer 0 and LLM layer 0 both use _0.
    names = {t.name for t in specs}
    assert {"qkv_ein_w_0", "qkv_ein_0", "att_ein_0"} <= names
    # Exactly-one-of groups exist only for Gemma layers.
    assert {c.layer_type for c in choices(cfg)} == {GEMMA} and len(choices(cfg)) == 3 * 4


def test_layer_kind_comes_from_position_not_type_number():
    """A May-2025 config stores ViT layers as type 2; the rules are the same."""
    with sbs_tools.open(LEGACY / "e2-gemma3-vit-type2-sfp.sbs") as old, sbs_tools.open(VIT_FILE) as new:
        assert {lc.type for lc in old.config.vit_config.layer_configs} == {2}
        assert expected_tensors(old.config) == expected_tensors(new.config)


def test_shapes_follow_the_config():
    with sbs_tools.open(VIT_FILE) as f:
        cfg = copy.deepcopy(f.config)
    lc: LayerConfig = cfg.layer_configs[2]
    lc.heads, lc.kv_heads, lc.qkv_dim, lc.ff_hidden_dim = 8, 1, 16, 100
    spec = {t.name: t for t in expected_tensors(cfg)}
    D = cfg.model_dim
    assert spec["att_ein_2"].shape == (8 * D, 16)
    assert spec["att_w_2"].shape == (D, 8 * 16)
    assert spec["qkv_ein_2"].shape == ((8 + 2) * 16, D)
    assert spec["qkv1_w_2"].shape == (8 * 16, D) and spec["qkv2_w_2"].shape == (2 * 16, D)
    assert spec["gating_ein_2"].shape == (200, D) and spec["linear_w_2"].shape == (D, 100)
    assert spec["key_norm_2"].shape == (1, 16)
    v = {t.base: t for t in vit_layer_tensors(cfg, 1)}
    Dv = cfg.vit_config.model_dim
    assert v["qkv_ein_b"].shape == (2 + 2 * 2, 32) and v["qkv_ein_w"].shape == (2 * 3 * 32, Dv)
    assert v["qkv_ein_b"].types == F32_ONLY and v["ln_0_bias"].types != F32_ONLY


def test_optional_tensors_follow_flags():
    with sbs_tools.open(CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs") as f:
        cfg = copy.deepcopy(f.config)
    base = {t.name for t in expected_tensors(cfg)}
    assert "post_att_ns_0" in base and "key_norm_0" not in base and "ffw_gat_b_0" not in base
    cfg.layer_configs[0].use_qk_norm = True
    cfg.layer_configs[0].ff_biases = True
    cfg.layer_configs[0].post_norm = 0
    now = {t.name: t for t in expected_tensors(cfg)}
    assert {"key_norm_0", "query_norm_0", "ffw_gat_b_0", "ffw_out_b_0"} <= set(now)
    assert "post_att_ns_0" not in now and now["ffw_gat_b_0"].types == F32_ONLY
    groups = {c.key: c.forms for c in choices(cfg)}
    assert groups["att_0"] == (("att_ein_0",), ("att_w_0",))
    assert groups["qkv_0"] == (("qkv_ein_0",), ("qkv1_w_0", "qkv2_w_0"))
    assert groups["gating_1"] == (("gating_ein_1",), ("gating1_w_1", "gating2_w_1"))


def test_split_name():
    assert split_name("qkv_ein_w_12") == ("qkv_ein_w", 12)
    assert split_name("c_embedding") == ("c_embedding", None)
    assert split_name("linear_0_w_3") == ("linear_0_w", 3)
