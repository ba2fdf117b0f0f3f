"""Canonical configs: the words gemma.cpp writes (spec §3.1, Appendix A) and specifier parsing."""
from __future__ import annotations

import struct

import pytest

from sbs_tools import canonical as C
from sbs_tools.config import decode_config
from sbs_tools.errors import ConfigError
from sbs_tools.types import Type

import numpy as np


def _str_words(s: str) -> list[int]:
    b = s.encode().ljust(-(-len(s) // 4) * 4, b"\0")
    return [len(b) // 4] + list(struct.unpack(f"<{len(b) // 4}I", b))


def test_gemma3_1b_sfp_vlm_words_match_spec_example():
    # spec §3.1: HEAD ModelConfig(GEMMA3_1B, kSFP, GEMMA_VLM).Write(), 505 words
    layer = [15, 1152, 0, 6912, 4, 1, 256, 0, 0, 0, 1, 1, 0, 0, 0, 1]
    windows = [512, 512, 512, 512, 512, 32768] * 4 + [512, 512]
    names = ["att_ein", "qkv_ein", "gr_lin_x_w", "gr_lin_y_w", "gr_lin_out_w", "gr_gate_w", "gating_ein",
             "linear_w"]
    body = ([1] + _str_words("Gemma3_1B") + [15, 2, 3, 26, 1152, 262144, 32768, 0, 0, 0, 0, 0, 0]
            + [26] + layer * 26 + [26] + windows + [1, 7, 0, 0, 0, 14, 224, 0, 1, 1, 1, 106]
            + [8] + [w for n in names for w in _str_words(n)])
    body += [1]  # use_global_timescale, appended since 1bdde1a (2025-10-24); 3ed403e wrote 505 words
    expected = [len(body)] + body
    got = C.canonical_config("GEMMA3_1B", "sfp").to_words()
    assert len(got) == 506
    assert got == expected


def test_gemma3_4b_words_appendix_a():
    w = C.canonical_config(14, Type.SFP, "GEMMA_VLM").to_words()
    assert len(w) == 1074 and w[-1] == 1  # Appendix A's 1073 words (3ed403e) + use_global_timescale
    assert w[:13] == [1073, 1] + _str_words("Gemma3_4B") + [14, 2, 3, 34, 2560, 262144, 32768]
    cfg = decode_config(np.asarray(w, dtype=np.uint32))
    assert len(cfg.vit_config.layer_configs) == 27
    assert all(lc.type == 1 for lc in cfg.vit_config.layer_configs)
    assert cfg.vit_config.seq_len == 4096 and cfg.vit_config.pool_dim == 4 and cfg.vit_config.num_scales == 108
    assert all(lc.optimized_gating for lc in cfg.layer_configs)


@pytest.mark.parametrize("model", C.CANONICAL_MODELS)
def test_every_canonical_config_roundtrips_and_is_consistent(model):
    from sbs_tools.config import consistency_problems

    cfg = C.canonical_config(model, "bf16")
    assert consistency_problems(cfg) == []
    back = decode_config(np.frombuffer(cfg.to_bytes(), dtype="<u4"))
    assert back.to_words() == cfg.to_words()
    assert C.is_canonical(back)
    assert C.match_canonical(cfg) == model
    assert C.from_specifier(cfg.specifier).to_words() == cfg.to_words()


@pytest.mark.parametrize("spec,model,weight,wrapping", [
    ("gemma3-270m-bf16-it", 18, Type.BF16, C.GEMMA_IT),
    ("gemma3-270m-sfp-pt", 18, Type.SFP, C.GEMMA_PT),
    ("gemma3-270m-f32", 18, Type.F32, C.GEMMA_IT),  # no suffix: ChooseWrapping default
    ("gemma3-1b-sfp", 15, Type.SFP, C.GEMMA_VLM),
    ("gemma3-4b-i8", 14, Type.I8, C.GEMMA_VLM),
    ("gemma2-2b-sfp-it", 7, Type.SFP, C.GEMMA_IT),
    ("9b-nuq-pt", 3, Type.NUQ, C.GEMMA_PT),
    ("27b-bf16-it", 4, Type.BF16, C.GEMMA_IT),
    ("paligemma2-10b-448-sfp", 13, Type.SFP, C.PALIGEMMA),
])
def test_specifiers(spec, model, weight, wrapping):
    assert C.parse_specifier(spec) == (model, weight, wrapping)
    cfg = C.from_specifier(spec)
    assert (cfg.model, cfg.weight, cfg.wrapping) == (model, int(weight), wrapping)


@pytest.mark.parametrize("bad", ["gemma3-bf16", "gemma3-270m-it", "gemma3-270m-bf16-sfp", "gemma3-270m-bf16-it-pt",
                                 "llama-7b-f32"])
def test_bad_specifiers(bad):
    with pytest.raises(ConfigError) as e:
        C.from_specifier(bad)
    assert e.value.code == "bad-specifier"


def test_family_values():
    g2 = C.canonical_config("gemma2-2b", "sfp")
    assert (g2.att_cap, g2.final_cap, g2.secondary_eos_id) == (50.0, 30.0, 107)
    assert g2.attention_window_sizes[:3] == [4096, 8192, 4096]
    assert not g2.layer_configs[0].optimized_gating and not g2.layer_configs[0].use_qk_norm
    g27 = C.canonical_config("GEMMA2_27B", "sfp")
    assert g27.query_scale == C.SQRT_MODEL_DIM_DIV_NUM_HEADS and g27.layer_configs[0].qkv_dim == 128
    m = C.canonical_config("gemma3-270m", "bf16")
    assert (m.model_dim, m.num_layers, m.vocab_size, m.max_seq_len) == (640, 18, 262144, 32768)
    assert [i for i in range(18) if m.is_global_layer(i)] == [5, 11, 17]
    assert m.wrapping == C.GEMMA_IT and m.display_name == "Gemma3_270M"
    pg = C.canonical_config("PALIGEMMA2_3B_224", "bf16")
    assert pg.vocab_size == 257152 and pg.vit_config.seq_len == 256 and pg.vit_config.pool_dim == 1


def test_obsolete_and_unknown_models():
    with pytest.raises(ConfigError):
        C.canonical_config("GEMMA_2B", "sfp")
    with pytest.raises(ConfigError):
        C.canonical_config("nonsense", "sfp")
    with pytest.raises(ConfigError):
        C.canonical_config(18, "unknown")


def test_rope_quirk_only_for_270m():
    m = C.canonical_config(18, "bf16")
    assert set(C.rope_bases(m)) == {1e4}
    ref = C.rope_bases(m, "reference")
    assert [i for i, b in enumerate(ref) if b == 1e6] == [5, 11, 17]
    assert "10,000" in C.rope_discrepancy(m)
    one_b = C.canonical_config(15, "bf16")
    assert C.rope_bases(one_b) == C.rope_bases(one_b, "reference")
    assert C.rope_discrepancy(one_b) is None
    assert C.rope_discrepancy(C.canonical_config(7, "bf16")) is None


def test_match_canonical_tolerates_context_and_names_not_dims():
    cfg = C.canonical_config(18, "f32")
    cfg.max_seq_len = 131072
    cfg.attention_window_sizes = [131072 if w == 32768 else w for w in cfg.attention_window_sizes]
    cfg.display_name = "whatever"
    assert C.match_canonical(cfg) == 18
    cfg.layer_configs[3].ff_hidden_dim = 4096
    assert C.match_canonical(cfg) is None
    diffs = C.architecture_differences(cfg, C.canonical_config(18, "f32"))
    assert diffs == ["layer 3 ff_hidden_dim: 4096 != 2048"]


def test_text_only_match_of_vision_models():
    cfg = C.canonical_config(14, "bf16")
    cfg.vit_config = type(cfg.vit_config)()
    # since 2026 gemma.cpp has a text-only Gemma 3 4B: GEMMA3_4B_LM (addendum §1.2)
    assert C.match_canonical(cfg) == 20
    assert C.match_canonical(cfg, with_vit=False) == 14  # the VLM number is kept (use_global_timescale)
    g2 = C.canonical_config(7, "bf16")
    assert C.match_canonical(g2, with_vit=False) == 7


def test_config_differences():
    a = C.canonical_config(18, "bf16")
    b = C.canonical_config(18, "sfp", "pt")
    assert C.config_differences(a, b) == ["wrapping: 0 != 1", "weight: 2 != 3"]
    assert C.config_differences(a, a) == []
