"""2026 tensor families (addendum §5) in the per-layer checks, and the 2026 blob-count limit (§6.5).

Files are built with the project's writer from miniature configs that switch each family on the way the
real models do (tests/family_configs.py); the checks must accept exactly what §5 prescribes, name a missing
required tensor, and flag a wrong shape.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

import sbs_tools
from sbs_tools.config import MODEL_NAMES
from sbs_tools.tensors import expected_tensors

from .family_configs import BASE, tiny_config, write_family_model

NEW_MODELS = sorted(m for m in MODEL_NAMES if m > 19)  # CUSTOM (19) has no tensors of its own
LAYER_CODES = {"missing-tensor", "unexpected-tensor", "shape-mismatch", "both-forms", "type-unsupported"}


def _bad(r) -> list:
    return [(x.code, x.message) for x in r.findings if x.severity == "error" or x.code in LAYER_CODES]


@pytest.mark.parametrize("model", NEW_MODELS)
def test_prescribed_tensors_verify_clean(tmp_path, model):
    cfg = tiny_config(model)
    r = sbs_tools.verify_file(write_family_model(tmp_path / "m.sbs", cfg))
    assert r.ok and not _bad(r), _bad(r)
    assert {g.key: g.loads for g in r.compat}["2026-08-27"]


@pytest.mark.parametrize("model, extra", [
    (27, ("lm_head",)),  # Qwen3 0.6B: registered (HasLmHead), not required
    (23, ("skip_scale_0", "moe_gate_ein_1", "moe_linear_w_2")),  # MaybeRead / registered-not-read
    (26, ("c_embedding", "c_final_norm")),  # T5Gemma registers them but reads enc_/dec_embedding
])
def test_optional_tensors_are_not_unexpected(tmp_path, model, extra):
    cfg = tiny_config(model)
    r = sbs_tools.verify_file(write_family_model(tmp_path / "m.sbs", cfg, extra=extra))
    assert not _bad(r), _bad(r)
    with sbs_tools.open(tmp_path / "m.sbs") as f:
        assert set(extra) <= set(f.tensors)


#: one required tensor per family (model enum, tensor)
FAMILY_MEMBERS = [
    (23, "moe_router_0"), (23, "router_scale_1"), (23, "p_expert_sc_2"), (23, "pre_ffw2_ns_0"),
    (23, "gating1_w_1_3"), (23, "linear_w_2_0"),  # experts (Fe = 704 for GEMMA4_26B_MOE)
    (30, "ple_embeddings"), (30, "ple_model_proj"), (30, "ple_proj_norm"), (30, "ple_gate_1"), (30, "post_ple_ns_3"),
    (25, "mla_q_a_0"), (25, "mla_q_b_1"), (25, "mla_kv_a_ns_2"), (25, "mla_o_a_0"), (25, "attn_sink_2"),
    (25, "comp_wkv_1"), (25, "comp_ape_2"), (25, "idx_q_w_1"), (25, "idxc_ape_1"), (25, "idx_w_proj_1"),
    (25, "moe_r_bias_1"), (25, "hash_tid2eid_0"), (25, "hc_att_fn_2"), (25, "hc_ffw_scale_0"),
    (25, "hc_head_fn"), (25, "mtp_e_proj"), (25, "mtp_hc_base"), (25, "lm_head"),
    (25, "mla_kv_a_3"), (25, "moe_r_bias_3"), (25, "gating2_w_3_1"),  # the MTP layer (index L)
    (26, "enc_embedding"), (26, "dec_final_norm"), (26, "e_qkv_1"), (26, "e_lin_0"), (26, "d_att_1"),
    (26, "dc_k_0"), (26, "dc_att_1"), (26, "d_post_ca_1"), (26, "e_post_ff_0"),
    (24, "vit_qkv1_w_0"), (31, "vit_qkv2_w_1"), (31, "vit_linear_w_0"), (31, "vit_q_norm_1"), (31, "vit_po_ff_0"),
    (31, "img_pos_emb"),
    (27, "query_norm_2"),
]


@pytest.mark.parametrize("model, name", FAMILY_MEMBERS)
def test_missing_family_tensor_is_named(tmp_path, model, name):
    cfg = tiny_config(model)
    assert name in {t.name for t in expected_tensors(cfg) if t.required or t.choice}
    r = sbs_tools.verify_file(write_family_model(tmp_path / "m.sbs", cfg, drop=name))
    missing = r.by_code("missing-tensor")
    assert [x.tensor for x in missing] == [name], [(x.code, x.message) for x in r.findings]
    assert not r.ok and name in missing[0].message


@pytest.mark.parametrize("model, name", FAMILY_MEMBERS[::3])
def test_wrong_shape_is_found(tmp_path, model, name):
    cfg = tiny_config(model)
    r = sbs_tools.verify_file(write_family_model(tmp_path / "m.sbs", cfg, reshape=name))
    assert {x.tensor for x in r.findings if x.code in ("shape-mismatch", "vocab-mismatch")} == {name}
    assert not r.ok


def test_shapes_follow_section_5():
    ds = {t.name: t.shape for t in expected_tensors(tiny_config(25))}
    lat, coff = 24 + 8, 2  # kv_lora + rope_head; layer 1 is CSA (rate 4)
    assert ds["mla_kv_a_0"] == (lat, 32) and ds["mla_kv_a_ns_0"] == (1, lat)  # V4: latent + rope
    assert ds["comp_wkv_1"] == (coff * lat, 32) and ds["comp_ape_1"] == (4, coff * lat)
    assert ds["comp_wkv_2"] == (lat, 32) and ds["comp_ape_2"] == (128, lat)  # HCA: rate 128, coff 1
    assert ds["mla_o_a_0"] == (2 * 16, 4 // 2 * 32) and ds["mla_o_b_0"] == (32, 2 * 16)
    assert ds["idx_q_w_1"] == (2 * 16, 32) and "idx_q_w_2" not in ds and "comp_wkv_0" not in ds
    assert ds["hc_att_fn_0"] == ((2 + 4) * 4, 4 * 32) and ds["hc_head_fn"] == (4, 4 * 32)
    assert ds["hash_tid2eid_0"] == (64, 2) and "hash_tid2eid_1" not in ds
    assert "moe_r_bias_0" not in ds and ds["moe_r_bias_3"] == (1, 4)  # MTP layer: routing bias on
    assert not any(n.startswith(("qkv_ein", "att_ein", "att_w", "mla_kv_b")) for n in ds)  # V4 MLA
    moe = {t.name: t.shape for t in expected_tensors(tiny_config(23))}
    assert moe["gating1_w_0_3"] == (704, 32) and moe["linear_w_0_3"] == (32, 704)
    assert moe["qkv_ein_2"] == ((2 + 2 * 2) * 64, 32)  # global layer: K=2, Dh=512 in the real model
    ple = {t.name: t.shape for t in expected_tensors(tiny_config(30))}
    assert ple["ple_embeddings"] == (64, 4 * 8) and ple["ple_model_proj"] == (4 * 8, 32)
    vit = {t.name: t.shape for t in expected_tensors(tiny_config(31))}
    assert vit["img_pos_emb"] == (20480, 32) and vit["vit_att_ein_0"] == (32, 2 * 16)
    assert vit["vit_qkv2_w_0"] == (2 * 2 * 16, 32) and "qkv_ein_w_0" not in vit
    t5 = {t.name: t.shape for t in expected_tensors(tiny_config(26))}
    assert t5["e_qkv_0"] == (4 * 32, 32) and t5["e_att_0"] == (2 * 32, 32) and t5["dc_k_1"] == (32, 32)
    assert "qkv_ein_0" not in t5  # the decoder-only stack is not read for T5Gemma


def test_t5gemma_split_forms_are_not_accepted(tmp_path):
    """The fused e_/d_ forms are MustRead and the split ones must be absent (Fixup XOR)."""
    cfg = tiny_config(26)
    p = write_family_model(tmp_path / "split.sbs", cfg, drop="e_qkv_0", extra=("e_qkv1_0", "e_qkv2_0"))
    (m,) = sbs_tools.verify_file(p).by_code("missing-tensor")
    assert m.tensor == "e_qkv_0" and "e_qkv1_0" in m.message
    both = write_family_model(tmp_path / "both.sbs", cfg, extra=("d_att_w_1",))
    r = sbs_tools.verify_file(both)
    assert [x.tensor for x in r.by_code("both-forms")] == ["d_att_w_1"] and not r.ok


def test_families_follow_the_switching_fields(tmp_path):
    """The same tensors are unexpected when the config field that switches the family on is off."""
    cfg = tiny_config(23)
    no_moe = replace(cfg, layer_configs=[replace(lc, num_experts=0, num_experts_per_datapoint=0)
                                         for lc in cfg.layer_configs])
    p = write_family_model(tmp_path / "moe.sbs", cfg)
    with sbs_tools.open(p) as f:
        tensors = [(r, f.raw(r.name).tobytes()) for r in f.toc]
    sbs_tools.writer.write_model(tmp_path / "dense.sbs", no_moe, tensors, None)
    r = sbs_tools.verify_file(tmp_path / "dense.sbs")
    unexpected = {x.tensor for x in r.by_code("unexpected-tensor")}
    assert {"moe_router_0", "gating1_w_0_0", "router_scale_2"} <= unexpected
    assert not r.by_code("missing-tensor")
    # a MoE layer's dense FFW is MaybeRead; a dense layer's is required
    p = write_family_model(tmp_path / "noffw.sbs", cfg, drop="gating_ein_1")
    assert not sbs_tools.verify_file(p).by_code("missing-tensor")
    p = write_family_model(tmp_path / "noffw2.sbs", no_moe, drop="gating_ein_1")
    assert [x.tensor for x in sbs_tools.verify_file(p).by_code("missing-tensor")] == ["gating_ein_1"]


def test_more_than_16k_blobs_is_a_compat_matter(tmp_path):
    """A V2 file with >= 16384 blobs (DeepSeek V4 has 33,792) reads; only the generations before kMaxBlobs
    became 1 Mi (0d8948f7) reject it, through the compatibility table."""
    lc = replace(BASE, ff_hidden_dim=8, num_experts=256, num_experts_per_datapoint=2)  # DeepSeek's 256 experts
    cfg = replace(tiny_config(27), num_layers=22, layer_configs=[lc] * 22, attention_window_sizes=[128] * 22)
    p = write_family_model(tmp_path / "big.sbs", cfg)
    with sbs_tools.open(p) as f:
        assert len(f.directory.entries) >= 16384
    r = sbs_tools.verify_file(p)
    assert r.ok and not r.by_code("too-many-blobs") and not _bad(r), _bad(r)
    gens = {g.key: g for g in r.compat}
    assert gens["2026-08-27"].loads
    assert not gens["2025-07-31"].loads and any("16384" in w for w in gens["2025-07-31"].reasons)


def test_qkv2_beside_qkv_ein_is_no_second_form(tmp_path):
    """gemma.cpp's exclusive-or is qkv_ein vs qkv1_w: a qkv2_w beside qkv_ein loads (ignored before 2026,
    the K/V source in 2026 builds, e.g. a single-KV-head model's separate K). qkv1_w beside it aborts."""
    from sbs_tools import codecs
    from sbs_tools.toc import TocRecord
    from sbs_tools.types import Type

    from .mutations import G2_BF16, config_of, decode_tensor, rebuild

    lc = config_of(G2_BF16).layer_configs[0]
    qkv = decode_tensor(G2_BF16, "qkv_ein_0").reshape(-1, lc.model_dim)
    q_rows = lc.heads * lc.qkv_dim

    def part(name: str, rows) -> tuple:
        rec = TocRecord.make(name, Type.BF16, rows.shape[0], lc.model_dim)
        return rec, name, codecs.encode("BF16", rows)

    ok = rebuild(G2_BF16, tmp_path / "kv.sbs", add=[part("qkv2_w_0", qkv[q_rows:])])
    rep = sbs_tools.verify_file(ok)
    assert "both-forms" not in rep.codes() and "unexpected-tensor" not in rep.codes(), rep.codes()
    gens = {g.key: g for g in rep.compat}
    assert gens["2026-08-27"].loads and any("K/V from qkv2_w_0" in r for r in gens["2026-08-27"].reasons)
    assert gens["2025-10-15"].loads and any("ignored" in r and "qkv2_w_0" in r for r in gens["2025-10-15"].reasons)
    bad = rebuild(G2_BF16, tmp_path / "q.sbs", add=[part("qkv1_w_0", qkv[:q_rows])])
    assert "both-forms" in sbs_tools.verify_file(bad).codes("error")
