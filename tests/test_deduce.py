"""gemma.cpp's model deduction for files without a config (base §7, addendum §1.4), per generation."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import sbs_tools
from sbs_tools import canonical as C
from sbs_tools import deduce as D
from sbs_tools.repair import repair
from sbs_tools.tensors import F32_ONLY, canonical_tensors
from sbs_tools.types import Type, packed_bytes
from sbs_tools.verify import GENERATIONS
from sbs_tools.writer import write_blobstore

from .conftest import CORPUS

LLM = ("att_ein", "qkv_ein", "gating_ein", "linear_w", "pre_att_ns", "pre_ff_ns", "post_att_ns", "post_ff_ns")


def keys(layers: int, *extra: str, prefix: str = "$", per_layer=LLM) -> list[tuple[str, int]]:
    """(key, size) pairs of a pre-2025 file: model tensors, ``layers`` LLM layers, ``extra`` keys."""
    out = [("Bc_embedding", 64), ("Bc_final_norm", 64)]
    out += [(f"{prefix}{b}_{i}", 64) for i in range(layers) for b in per_layer]
    return out + [(k, 64) for k in extra]


def names(generation: str, blobs, path: str = "") -> list[str]:
    return [d.name for d in D.for_generation(generation, blobs, path)]


def test_layer_index_is_gemmacpp_from_chars():
    assert [D.layer_index(k) for k in ("gr_conv_w_2", "prefix_", "c_embedding", "c_final_norm", "Fscales")] == \
        [2, 0, 0, 0, 0]  # gemma.cpp's own self-test, plus a key without '_'
    assert D.layer_index("$att_ein_12") == 12  # the type prefix does not matter
    assert D.layer_index("x_7abc") == 7  # from_chars reads leading digits
    assert D.layer_index("x_-1") == 0 and D.layer_index("x_3000000000") == 0  # -1 and int overflow: "no number"
    assert D.layer_index("gating1_w_3_127") == 127  # per-expert names: the expert number
    assert D.layer_count(["Bc_embedding", "$att_ein_0", "$att_ein_25"]) == 26
    assert D.layer_count(["Bc_embedding"]) == 1


def test_generations_match_the_compat_table():
    assert list(D.GENERATION_RULES) == [g.key for g in GENERATIONS]
    assert all(r in D.RULES for rs in D.GENERATION_RULES.values() for r in rs)


def test_3ed403e_and_2026_differ_where_the_addendum_says():
    text = keys(34)
    assert names("2025-10-15", text) == ["GEMMA3_4B"] and names("2026-08-27", text) == ["GEMMA3_4B_LM"]
    vit = keys(34, "Bqkv_ein_w_0")
    assert names("2025-10-15", vit) == names("2026-08-27", vit) == ["GEMMA3_4B"]
    g3_1b = keys(26, per_layer=LLM + ("query_norm", "key_norm"))
    assert names("2025-10-15", g3_1b) == ["GEMMA2_2B"] and names("2026-08-27", g3_1b) == ["GEMMA3_1B"]
    assert names("2026-08-27", keys(26, per_layer=LLM + ("key_norm",))) == ["GEMMA2_2B"]  # needs both norms
    for layers, lm in ((48, "GEMMA3_12B_LM"), (62, "GEMMA3_27B_LM")):
        assert names("2026-07-10", keys(layers)) == [lm] and names("2025-10-24", keys(layers)) == [lm[:-3]]


def test_2026_only_models():
    t5 = keys(8, per_layer=("e_qkv", "d_qkv"))
    assert D.for_generation("2026-08-27", t5)[0].flags & D.T5GEMMA
    assert names("2026-08-27", t5) == ["T5GEMMA_S_S"] and names("2025-10-15", t5) == ["UNKNOWN"]
    assert names("2026-08-27", keys(8)) == ["UNKNOWN"]  # 8 layers without the T5Gemma names
    assert names("2026-08-27", keys(28)) == ["QWEN3_600M"]
    qwen = D.for_generation("2026-08-27", keys(28), "/m/qwen3-1_7b-bf16.sbs")[0]
    assert qwen.name == "QWEN3_2B" and qwen.by_path and "file name" in qwen.basis
    assert names("2026-08-27", keys(30)) == ["GEMMA4_26B_MOE"] and names("2026-08-27", keys(36)) == ["QWEN3_4B"]
    assert names("2026-08-27", keys(35, "Bvit_qkv1_w_0")) == ["GEMMA4_2B"]  # the Gemma 4 ViT names count
    assert names("2026-08-27", keys(35)) == ["GEMMA4_2B_LM"] and names("2025-10-15", keys(35)) == ["UNKNOWN"]


def test_the_e4b_path_rule_needs_0224dcbd():
    e4b = "gemma4-e4b-it.sbs"
    assert names("2026-08-27", keys(42), e4b) == ["GEMMA4_E4B_LM"]
    assert names("2026-08-27", keys(42, "Bvit_qkv1_w_0"), e4b) == ["GEMMA4_E4B"]
    assert names("2026-07-10", keys(42), e4b) == ["GEMMA2_9B"]  # GEMMA4_E4B (31/32) came after PR #994
    big = [("Fimg_pos_emb", D.IMG448_BYTES + 2)]
    assert names("2026-08-27", keys(42, "Bqkv_ein_w_0") + big) == ["PALIGEMMA2_10B_448"]


def test_may_2025_tables():
    """8d0882b..: Gemma 1 sizes, GemmaTiny, and a ViT search for 'qkv_einsum_w' that never matches."""
    assert names("2025-05-06", keys(18)) == ["GEMMA_2B"]
    assert names("2025-05-07", keys(18)) == ["GEMMA_2B", "UNKNOWN", "UNKNOWN"]  # Gemma 1 gone on 2025-05-09
    assert names("2025-07-31", keys(18)) == ["UNKNOWN", "GEMMA3_270M"]  # 270M deduced from 2025-08-14
    assert names("2025-05-06", keys(26, "Bqkv_ein_w_0")) == ["GEMMA2_2B"]
    assert names("2025-05-07", keys(26, "Bqkv_ein_w_0"))[-1] == "GEMMA3_1B"
    assert names("2025-07-31", keys(26, per_layer=LLM + ("gr_conv_w",))) == ["GRIFFIN_2B"] * 2
    assert names("2025-05-07", keys(2)) == ["UNKNOWN", "GEMMA_TINY", "GEMMA_TINY"]
    assert D.for_generation("pre-2025", keys(26)) == []


def test_per_expert_names_count_experts():
    d = D.for_generation("2026-08-27", keys(30, *(f"$gating1_w_{i}_127" for i in range(30))))[0]
    assert d.layers == 128 and d.name == "UNKNOWN" and d.expert_keys and "expert" in d.basis


def test_weight_type_ties_go_to_the_lower_enum():
    four = [Type.Q4_0] * 4
    assert D.deduce_weight_type(four + [Type.NUQ] * 4 + [Type.BF16] * 9) == Type.NUQ
    assert D.deduce_weight_type(four + [Type.NUQ] * 3 + [Type.F32] * 5) == Type.Q4_0  # NUQ has < 4 blobs
    assert D.deduce_weight_type([Type.SFP] * 3) is None


# -- pre-2025 files: what verify and repair make of the deduction ----------------------------------------------
def small(cfg):
    """``cfg`` with tiny dimensions: same model, layer count, layer kinds and ViT, so a file fits in KiB."""
    lc = [replace(x, model_dim=16, ff_hidden_dim=32, heads=2, kv_heads=1, qkv_dim=16) for x in cfg.layer_configs]
    out = replace(cfg, model_dim=16, vocab_size=32, layer_configs=lc)
    v = cfg.vit_config
    if v.layer_configs:
        vl = [replace(x, model_dim=16, ff_hidden_dim=32, heads=2, kv_heads=2, qkv_dim=8) for x in v.layer_configs]
        out.vit_config = replace(v, model_dim=16, seq_len=16, patch_width=2, image_size=8, layer_configs=vl)
    return out


@pytest.fixture
def tiny_canonical(monkeypatch):
    """Canonical configs shrunk by :func:`small` wherever verify and repair build one."""
    real = C.canonical_config

    def fake(model, weight, wrapping=None, *, generation=None):
        return small(real(model, weight, wrapping, generation=generation))
    import sbs_tools.repair.migrate as migrate
    import sbs_tools.verify.compat as compat
    monkeypatch.setattr(compat, "canonical_config", fake)
    monkeypatch.setattr(migrate, "canonical_config", fake)
    return fake


def write_e0(path, cfg) -> None:
    """A pre-2025 file (type-prefixed keys, no config/toc, no end padding) of the tensors ``cfg`` prescribes."""
    blobs = []
    for t in canonical_tensors(cfg):
        typ, pre = (Type.F32, "F") if t.types == F32_ONLY else (Type.BF16, "B")
        blobs.append((pre + t.name, np.full(packed_bytes(typ, t.rows * t.cols), 0x3C, np.uint8).tobytes()))
    write_blobstore(path, blobs, layout="v1", pad_end=False)


def test_text_only_gemma3_4b_loads_only_in_2026(tmp_path, tiny_canonical):
    """34 layers without ViT: 3ed403e-era builds assume GEMMA3_4B and miss its ViT tensors; 2026 builds assume
    GEMMA3_4B_LM, which fits, and run its global layers with RoPE base 1e4."""
    p = tmp_path / "g3-text.sbs"
    write_e0(p, tiny_canonical(20, "bf16"))
    r = sbs_tools.verify_file(p)
    gens = {g.key: g for g in r.compat}
    old, new = gens["2025-10-15"], gens["2026-08-27"]
    assert not old.loads and any("GEMMA3_4B (34 layers, no ViT tensors)" in w and "is absent" in w
                                 for w in old.reasons)
    assert new.loads and any("GEMMA3_4B_LM" in c and "RoPE base 1e4" in c for c in new.reasons)
    assert not r.errors and not r.by_code("legacy-only")
    # repair for current gemma.cpp writes the _LM config; for 3ed403e the vision model it would assume
    out = tmp_path / "out.sbs"
    rep = repair(p, out, target="current")
    assert rep.status == "repaired", [x.reason for x in rep.plan.refusals]
    with sbs_tools.open(out) as f:
        assert f.config.model == 20 and not f.config.use_global_timescale
    rep = repair(p, tmp_path / "old.sbs", target="3ed403e", dry_run=True)
    assert any("GEMMA3_4B (deduced from 34 layers" in a.summary for a in rep.plan.actions)


def test_gemma3_1b_with_qk_norms(tmp_path, tiny_canonical):
    """Base §11 item 9: 3ed403e deduces GEMMA2_2B for a config-less Gemma 3 1B; 2026 builds see the q/k norms."""
    p = tmp_path / "g3-1b.sbs"
    write_e0(p, tiny_canonical(15, "bf16"))
    gens = {g.key: g for g in sbs_tools.verify_file(p).compat}
    assert not gens["2025-10-15"].loads and any("GEMMA2_2B" in w and "do not fit" in w
                                                for w in gens["2025-10-15"].reasons)
    assert gens["2026-08-27"].loads and any("assumes GEMMA3_1B" in c for c in gens["2026-08-27"].reasons)


def test_a_2026_model_is_checked_against_its_canonical_config(tmp_path):
    """A deduced 2026 model (Qwen3 1.7B from 28 layers and the file name): verify checks the tensors against
    its canonical config, older builds deduce UNKNOWN, and repair refuses with the reason, nothing crashes."""
    p = tmp_path / "qwen3-1_7b.sbs"
    write_blobstore(p, [(k, bytes(s)) for k, s in keys(28)], layout="v1", pad_end=False)
    gens = {g.key: g for g in sbs_tools.verify_file(p).compat}
    assert not gens["2026-08-27"].loads
    assert any("QWEN3_2B" in w and "file name" in w and "do not fit" in w and "151936" in w
               for w in gens["2026-08-27"].reasons)
    assert not gens["2025-10-15"].loads and any("UNKNOWN" in w for w in gens["2025-10-15"].reasons)
    rep = repair(p, tmp_path / "out.sbs", target="current")
    assert rep.status == "unrepairable"
    assert any("QWEN3_2B" in x.reason and "does not describe these weights" in x.reason for x in rep.plan.refusals)
    assert not (tmp_path / "out.sbs").exists()


def test_paligemma_layer_count_includes_the_vit(tmp_path):
    """PaliGemma 2 3B has 26 LLM and 27 ViT layers: gemma.cpp counts 27 over all keys (not GEMMA3_1B)."""
    blobs = keys(26, *(f"Bqkv_ein_w_{i}" for i in range(27)))
    assert names("2026-08-27", blobs) == ["PALIGEMMA2_3B_224"]
    p = tmp_path / "pg.sbs"
    write_blobstore(p, [(k, bytes(s)) for k, s in blobs], layout="v1", pad_end=False)
    rep = repair(p, tmp_path / "out.sbs", target="current", dry_run=True)
    assert any("PaliGemma2_3B_224" in x.reason or "PALIGEMMA2_3B_224" in x.reason
               for x in rep.plan.refusals), [x.reason for x in rep.plan.refusals]


def test_corpus_files_deduce_as_their_config_says():
    """Files with a config: gemma.cpp's deduction on the real keys agrees with the stored model where the
    layer count is a published one (the tiny corpus models mostly are not: UNKNOWN, a warning in gemma.cpp)."""
    for path in CORPUS.glob("v2/*.sbs"):
        with sbs_tools.open(path) as f:
            d = D.for_generation("2026-08-27", [(e.key, e.size) for e in f.directory.entries], str(path))[0]
            llm = len(f.config.layer_configs)
            vit = len(f.config.vit_config.layer_configs)
            assert d.layers == max(llm, vit)
            assert bool(d.flags & D.VIT) == bool(vit)
