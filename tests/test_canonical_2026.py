"""Canonical configs of the 2026 models (addendum §1.2) and of each gemma.cpp generation's writer.

Values are spot-checked against what gemma.cpp's own tests state (``gemma/configs_test.cc``,
``gemma/tensor_info_test.cc``; cited per test) and against configs.cc's per-layer rules; files are built
with the project's writer from the canonical configs, shrunk (tests/family_configs.py ``shrink``) so that
every layer and tensor family is there at a few MB.
"""
from __future__ import annotations

import numpy as np
import pytest

import sbs_tools
from sbs_tools import canonical as C
from sbs_tools.config import MODEL_NAMES, decode_config
from sbs_tools.errors import ConfigError
from sbs_tools.tensors import by_name, expected_tensors
from sbs_tools.types import Type

from .family_configs import shrink, write_family_model

NEW = [m for m in C.CANONICAL_MODELS if m > 19]
LAYER_CODES = {"missing-tensor", "unexpected-tensor", "shape-mismatch", "both-forms", "type-unsupported"}


def _global(cfg, i: int) -> bool:
    return cfg.attention_window_sizes[i] == cfg.max_seq_len


# -- every canonical config: built, serialized, read back, recognized ---------------------------------------------
@pytest.mark.parametrize("model", NEW)
def test_canonical_2026_roundtrip(model):
    cfg = C.canonical_config(model, "sfp")
    back = decode_config(np.frombuffer(cfg.to_bytes(), "<u4"))
    assert back == cfg and back.to_words() == cfg.to_words()
    assert back.model_name == MODEL_NAMES[model] and C.is_canonical(back)
    assert C.match_canonical(back) == model
    assert C.from_specifier(back.specifier) == cfg
    # the form the newest gemma.cpp writes (38-field layers, every field) holds the same values
    full = C.canonical_config(model, "sfp", generation="2026-08-27")
    assert full == cfg and len(full.to_words()) >= len(cfg.to_words()) and C.is_canonical(full)


@pytest.mark.parametrize("model", NEW)
def test_shrunk_canonical_file_verifies_clean(tmp_path, model):
    """The canonical layer structure with tiny sizes: every prescribed tensor present, no false alarm."""
    cfg = shrink(C.canonical_config(model, "bf16"))
    r = sbs_tools.verify_file(write_family_model(tmp_path / "m.sbs", cfg))
    bad = [(x.code, x.message) for x in r.findings if x.severity == "error" or x.code in LAYER_CODES]
    assert r.ok and not bad, bad
    assert {g.key: g.loads for g in r.compat}["2026-08-27"]
    with sbs_tools.open(tmp_path / "m.sbs") as f:
        assert f.config == cfg


# -- per-layer rules of configs.cc ---------------------------------------------------------------------------------
def test_gemma4_e4b_invariants():
    # configs_test.cc Gemma4E4BArchitectureInvariants
    cfg = C.canonical_config("GEMMA4_E4B_LM", "sfp", "it")
    assert (cfg.num_layers, cfg.model_dim, len(cfg.attention_window_sizes)) == (42, 2560, 42)
    for i, lc in enumerate(cfg.layer_configs):
        g = i % 6 == 5
        assert (lc.model_dim, lc.heads, lc.kv_heads, lc.ff_hidden_dim) == (2560, 8, 2, 10240)
        assert lc.use_qk_norm and lc.norm_v
        assert (lc.qkv_dim, _global(cfg, i)) == ((512, True) if g else (256, False))
        assert g or cfg.attention_window_sizes[i] == 512
        assert lc.kv_share_layer_idx == (-1 if i < 24 else 23 if g else 22)


def test_gemma4_2b_layers():
    cfg = C.canonical_config("gemma4-2b-lm", "bf16")
    assert [i for i in range(35) if _global(cfg, i)] == list(range(4, 35, 5))
    for i, lc in enumerate(cfg.layer_configs):
        assert lc.qkv_dim == (512 if _global(cfg, i) else 256) and lc.kv_heads == 1 and lc.ple_dim == 256
        assert lc.ff_hidden_dim == (12288 if i >= 15 else 6144)
        assert lc.kv_share_layer_idx == (-1 if i < 15 else 14 if _global(cfg, i) else 13)
    # every sharing layer reads a layer with its own cache and the same KV shape (kv_cache.cc asserts it)
    for lc in cfg.layer_configs[15:]:
        src = cfg.layer_configs[lc.kv_share_layer_idx]
        assert src.kv_share_layer_idx == -1 and (src.kv_heads, src.qkv_dim) == (lc.kv_heads, lc.qkv_dim)
    assert (cfg.ple_dim, cfg.max_seq_len, cfg.vocab_size, cfg.query_scale) == (256, 131072, 262144, 2)
    assert cfg.use_global_timescale and cfg.partial_rotary_factor == 0.25 and cfg.model_family_version == 4


def test_gemma4_vit_and_display_names():
    # configs_test.cc DisplayNamesSetByConfig
    for model, name, vit in ((30, "Gemma4_2B_LM", False), (24, "Gemma4_2B", True), (32, "Gemma4_E4B_LM", False),
                             (31, "Gemma4_E4B", True)):
        cfg = C.canonical_config(model, "sfp", "it")
        assert cfg.display_name == name and bool(cfg.vit_config.layer_configs) == vit
    v = C.canonical_config("GEMMA4_2B", "sfp").vit_config
    assert (v.model_dim, v.patch_width, v.seq_len, v.pool_dim, v.image_size, len(v.layer_configs)) == \
        (768, 16, 2520, 3, 896, 16)
    assert {(lc.type, lc.heads, lc.kv_heads, lc.qkv_dim, lc.ff_hidden_dim) for lc in v.layer_configs} == \
        {(3, 12, 12, 64, 3072)}


def test_gemma4_moe_layers():
    cfg = C.canonical_config("GEMMA4_26B_MOE", "bf16")
    for i, lc in enumerate(cfg.layer_configs):
        assert (lc.kv_heads, lc.qkv_dim) == ((2, 512) if i % 6 == 5 else (8, 256))
        assert (lc.num_experts, lc.num_experts_per_datapoint, lc.ff_hidden_dim) == (128, 8, 2112)
    specs = by_name(expected_tensors(cfg))
    assert specs["gating1_w_29_127"].shape == (704, 2816)  # the per-expert width tensor_info hard-codes
    assert sum(1 for n in specs if n.count("_") == 3 and n.startswith(("gating", "linear"))) == 30 * 128 * 3


def test_deepseek_layers():
    cfg = C.canonical_config("DEEPSEEK4_FLASH", "bf16")
    assert cfg.num_layers == 43 and set(cfg.attention_window_sizes) == {128} and not cfg.scale_base_names
    variants = [(lc.attention_variant, lc.kv_compression_rate, lc.indexer_heads) for lc in cfg.layer_configs]
    assert variants[:4] == [(0, 1, 0), (0, 1, 0), (1, 4, 64), (2, 128, 0)]
    assert variants[2:] == [(1, 4, 64) if i % 2 == 0 else (2, 128, 0) for i in range(2, 43)]
    assert [lc.hash_routing for lc in cfg.layer_configs[:4]] == [True, True, True, False]
    assert [lc.use_routing_bias for lc in cfg.layer_configs[:4]] == [False, False, False, True]
    assert all(lc.type == 2 and lc.is_v4_mla and lc.num_experts == 256 for lc in cfg.layer_configs)
    assert (cfg.hc_mult, cfg.num_mtp_layers, cfg.rope_theta, cfg.global_rope_theta) == (4, 1, 1e4, 1e4)
    names = {t.name for t in expected_tensors(cfg)}
    assert "mla_q_a_43" in names and "hash_tid2eid_43" not in names  # the MTP layer: dense, learned routing
    assert len([n for n in names if n.startswith("gating1_w_") and n.count("_") == 3]) == 44 * 256  # _L_E


def test_t5gemma_stacks():
    # configs_test.cc T5GemmaBF16Specifier
    cfg = C.from_specifier("t5gemma-s-s-bf16-it")
    assert (cfg.model, cfg.weight, cfg.wrapping, cfg.is_encoder_decoder) == (26, int(Type.BF16), 0, True)
    assert C.default_wrapping("T5GEMMA_S_S") == C.GEMMA_IT  # ChooseWrapping: its own GEMMA_PT is no VLM wrapping
    for stack in ("encoder", "decoder"):
        assert getattr(cfg, f"{stack}_layer_configs") == cfg.layer_configs
        assert getattr(cfg, f"{stack}_attention_window_sizes") == [4096, 8192] * 4
    assert (cfg.att_cap, cfg.final_cap, cfg.global_rope_theta) == (50.0, 30.0, 1e4)


@pytest.mark.parametrize("model, dims", [(27, (28, 1024, 3072, 16)), (28, (28, 2048, 6144, 16)),
                                         (29, (36, 2560, 9728, 32))])
def test_qwen3_all_global(model, dims):
    cfg = C.canonical_config(model, "bf16")
    lc = cfg.layer_configs[0]
    assert (cfg.num_layers, cfg.model_dim, lc.ff_hidden_dim, lc.heads) == dims
    assert all(_global(cfg, i) for i in range(cfg.num_layers)) and cfg.use_global_timescale
    assert (cfg.rope_theta, cfg.global_rope_theta, cfg.vocab_size) == (1e6, 1e6, 151936)


def test_tensor_shapes_of_gemma4():
    # tensor_info_test.cc Gemma4E4BShapes and VitGemma4Shapes
    e4b = by_name(expected_tensors(C.canonical_config("GEMMA4_E4B", "sfp")))
    assert e4b["qkv1_w_0"].shape == (2048, 2560) and e4b["qkv2_w_0"].shape == (1024, 2560)
    assert e4b["qkv1_w_5"].shape == (4096, 2560) and e4b["qkv2_w_5"].shape == (2048, 2560)
    assert e4b["gating_ein_24"].shape == (2 * 10240, 2560) and e4b["linear_w_24"].shape == (2560, 10240)
    vit = by_name(expected_tensors(C.canonical_config("GEMMA4_2B", "sfp")))
    assert vit["img_emb_kernel"].shape == (768, 768)
    assert vit["vit_qkv1_w_0"].shape == (768, 768) and vit["vit_qkv2_w_0"].shape == (1536, 768)


# -- specifiers and wrapping ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, model, weight, wrapping", [
    # configs_test.cc Gemma4E4BQuantizerSpecifiers
    ("gemma4-e4b-sfp-it", 31, Type.SFP, 0), ("gemma4-e4b-lm-sfp-it", 32, Type.SFP, 0),
    ("gemma4-e4b-bf16-it", 31, Type.BF16, 0), ("gemma4-e4b-lm-nuq-it", 32, Type.NUQ, 0),
    ("gemma4-e4b-lm-sfp-pt", 32, Type.SFP, 1),
    ("gemma4-2b-q4_0-it", 24, Type.Q4_0, 0), ("gemma4-2b-lm-mxfp4-pt", 30, Type.MXFP4, 1),
    ("gemma4-26b-moe-bf16", 23, Type.BF16, 0), ("deepseek4-flash-q4_0-it", 25, Type.Q4_0, 0),
    ("qwen3-0_6b-bf16-it", 27, Type.BF16, 0), ("qwen3-4b-sfp", 29, Type.SFP, 0),
])
def test_2026_specifiers(spec, model, weight, wrapping):
    assert C.parse_specifier(spec) == (model, weight, wrapping)
    suffix = "" if spec.endswith(("-it", "-pt")) else "-it"  # no suffix: ChooseWrapping's GEMMA_IT
    assert C.from_specifier(spec).specifier == spec + suffix


def test_vlm_wrapping_kept_since_2026():
    # configs_test.cc WrappingPreservedForVLM: the constructor keeps a VLM model's own wrapping ...
    assert C.canonical_config("GEMMA3_1B", "sfp", "it").wrapping == C.GEMMA_VLM
    assert C.canonical_config("PALIGEMMA2_3B_224", "sfp", "it").wrapping == C.PALIGEMMA
    assert C.canonical_config("GEMMA4_2B_LM", "sfp", "pt").wrapping == C.GEMMA_PT
    # ... which up to 1bdde1a it overwrote with the argument (configs.cc on the dev branch)
    assert C.canonical_config("GEMMA3_1B", "sfp", "it", generation="2025-10-24").wrapping == C.GEMMA_IT


# -- the form each generation writes --------------------------------------------------------------------------------
def test_generations_of_gemma3_1b():
    old = C.canonical_config("GEMMA3_1B", "sfp", generation="2025-10-15")
    words = old.to_words()
    assert len(words) == 505 and words[0] == 504  # spec §3.1: 3ed403e's 505 words
    assert not old.use_global_timescale and C.is_canonical(old)
    flag = C.canonical_config("GEMMA3_1B", "sfp", generation="2025-10-24")
    assert flag.to_words() == [505] + words[1:] + [1]  # 1bdde1a appends use_global_timescale
    assert C.canonical_config("GEMMA3_1B", "sfp").to_words() == flag.to_words()  # sbs's compact form
    full = C.canonical_config("GEMMA3_1B", "sfp", generation="2026-08-27")
    assert all(lc.stored_fields is None for lc in full.layer_configs) and full == flag


def test_generations_of_gemma2_and_270m():
    """ConfigBaseGemmaV2 and Gemma 3 270M set global_rope_theta 1e4 (PR #994): current configs carry it; the
    3ed403e form has neither that field nor any other after scale_base_names."""
    for model in ("GEMMA2_2B", "PALIGEMMA2_3B_224", "GEMMA3_270M"):
        cur = C.canonical_config(model, "bf16")
        assert cur.global_rope_theta == 1e4 and not cur.use_global_timescale
        old = C.canonical_config(model, "bf16", generation="2025-10-15")
        assert old.stored_fields == 23 and old.global_rope_theta == 1e6
        back = decode_config(np.frombuffer(old.to_bytes(), "<u4"))
        assert back == old and C.is_canonical(back) and C.is_canonical(cur)
        assert C.canonical_config(model, "bf16", generation="2026-07-10").global_rope_theta == 1e6


@pytest.mark.parametrize("model, generation", [(24, "2025-10-24"), (31, "2026-07-10"), (20, "2025-10-15"),
                                               (18, "2025-05-07"), (19, None), (1, None)])
def test_no_canonical_config_before_the_model_existed(model, generation):
    with pytest.raises(ConfigError) as e:
        C.canonical_config(model, "bf16", generation=generation)
    assert e.value.code == "unknown-model"


def test_unknown_generation():
    with pytest.raises(ConfigError) as e:
        C.canonical_config(15, "bf16", generation="2024-01-01")
    assert e.value.code == "unknown-generation"


def test_is_canonical_rejects_a_changed_value():
    cfg = C.canonical_config("GEMMA4_2B_LM", "bf16")
    cfg.layer_configs[20].kv_share_layer_idx = 12
    assert not C.is_canonical(cfg)
    assert C.is_canonical(C.canonical_config("GEMMA3_4B", "sfp", generation="2025-10-15"))
    renamed = C.canonical_config("GEMMA3_4B", "sfp", generation="2025-10-15")
    renamed.display_name = "my_gemma3_4b"
    assert not C.is_canonical(renamed)


# -- what uses canonical configs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gemma4_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("g4") / "gemma4.sbs"
    return write_family_model(path, shrink(C.canonical_config("GEMMA4_2B", "bf16", "it")))


def _cli(capsys, *args) -> tuple[int, str, str]:
    from sbs_tools.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_inspect_names_the_2026_model(gemma4_file, capsys):
    rc, out, err = _cli(capsys, "inspect", "--json", gemma4_file)
    import json

    s = json.loads(out)["summary"]
    assert rc == 0 and (s["model"], s["family"], s["display_name"]) == ("GEMMA4_2B", "Gemma 4", "Gemma4_2B")
    assert s["specifier"] == "gemma4-2b-bf16-it" and s["global_layers"] == list(range(4, 35, 5))
    assert s["vit_layers_by_type"] == {"kVitGemma4": 16}


@pytest.mark.parametrize("args, code", [
    (("run", "{f}", "--prompt", "hi"), "inference-unsupported"),  # refused by name, as before
    (("export", "{f}", "{out}", "--hf"), "unsupported-arch"),  # no Gemma 2/3 HF layout fits
])
def test_tools_refuse_2026_architectures(gemma4_file, capsys, tmp_path, args, code):
    rc, out, err = _cli(capsys, *(a.format(f=gemma4_file, out=tmp_path / "hf") for a in args))
    assert rc == 2 and f"[{code}]" in err and "Traceback" not in err
    assert not (tmp_path / "hf").exists()


def test_convert_model_choice_is_gemma2_and_3_only():
    from sbs_tools.convert import ConvertError
    from sbs_tools.convert.source import Arch, resolve_config

    arch = Arch(family=3, num_layers=35, model_dim=1536, vocab_size=262144, max_seq_len=131072, heads=8,
                kv_heads=1, qkv_dim=256, ff_hidden_dim=[6144] * 35,
                windows=[0 if i % 5 == 4 else 512 for i in range(35)], name="gemma-4-e2b", wrapping_hint=0,
                wrapping_reason="test")
    with pytest.raises(ConvertError) as e:
        resolve_config(arch, Type.BF16, specifier="gemma4-2b-lm-bf16-it")
    assert e.value.code == "bad-arguments" and "Gemma 2" in e.value.message
    assert not resolve_config(arch, Type.BF16).canonical  # never matched to a 2026 model


def test_repair_model_option_follows_the_target():
    from sbs_tools.repair import _options

    assert len(_options(model="gemma3-1b-sfp", target="2025-10-15").config.to_words()) == 505  # as 3ed403e
    assert _options(model="gemma3-1b-sfp").config.to_words() == C.canonical_config(15, "sfp").to_words()
    assert _options(model="gemma4-2b-q4_0-it").config == C.canonical_config(24, "q4_0", "it")
    with pytest.raises(ConfigError) as e:
        _options(model="gemma4-2b-q4_0-it", target="2025-10-24")
    assert e.value.code == "unknown-model"
