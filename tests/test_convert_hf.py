"""Hugging Face safetensors <-> .sbs: convert -> export round trips (hypothesis), gemma.cpp-written files
reproduced byte for byte, vision towers, shards and dtypes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import sbs_tools
from sbs_tools.repair import repair
from sbs_tools.convert import ConvertError
from sbs_tools.convert.build import convert
from sbs_tools.convert.safetensors_io import SafetensorsFile
from sbs_tools.convert.synthetic import TinySpec, random_weights, write_hf
from sbs_tools.diff import diff
from sbs_tools.export import export

from .conftest import CORPUS

TOKENIZER = (CORPUS / "tiny_sp256.model").read_bytes()
BIG = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _load(d: Path) -> dict[str, np.ndarray]:
    out = {}
    for p in sorted(Path(d).glob("*.safetensors")):
        st_ = SafetensorsFile(p)
        out.update({k: st_.f32(k) for k in st_.entries})
        st_.close()
    return out


def _bf16(x: np.ndarray) -> np.ndarray:
    import ml_dtypes

    return x.astype(ml_dtypes.bfloat16).astype(np.float32)


def _groups(x: np.ndarray, n: int) -> list[np.ndarray]:
    flat = x.reshape(-1)
    return [flat[i:i + n] for i in range(0, flat.size, n)]


def assert_within_codec(t: str, x: np.ndarray, got: np.ndarray, scale: float, what: str) -> None:
    """The documented error bounds of each codec (sbs_tools.codecs), applied to a round trip."""
    x = x.astype(np.float32)
    if t == "f32":
        np.testing.assert_array_equal(got, x, err_msg=what)
    elif t == "bf16":
        np.testing.assert_array_equal(got, _bf16(x), err_msg=what)
    elif t == "sfp":
        err, ax = np.abs(got - x), np.abs(x)
        assert (err <= 0.08 * ax + 0.00118 * scale + 1e-6 * scale).all(), what
    elif t == "i8":
        for gx, gg in zip(_groups(x, 128), _groups(got, 128)):
            h = (gx.max() - gx.min()) / 255 or 1 / 255
            assert (np.abs(gg - gx) <= 1.3 * h + 2 ** -7 * np.abs(gx).max() + 1e-6).all(), what
    elif t == "nuq":
        for gx, gg in zip(_groups(x / scale, 256), _groups(got / scale, 256)):
            M = np.abs(gx).max()
            d = max(M / 16, min(M, 2 ** -7) / 8) + 2 ** -23
            rms = float(np.sqrt(np.mean((gg.astype(np.float64) - gx) ** 2)))
            assert rms <= (gx.max() - gx.min()) / 30 + d + 1e-6, what
    else:
        raise AssertionError(t)


@st.composite
def tiny_specs(draw):
    family = draw(st.sampled_from([2, 3]))
    kv = draw(st.sampled_from([1, 2]))
    return TinySpec(family=family, layers=draw(st.integers(1, 3)), model_dim=draw(st.sampled_from([16, 32, 48])),
                    heads=kv * draw(st.sampled_from([1, 2])), kv_heads=kv, qkv_dim=draw(st.sampled_from([8, 16])),
                    ff=draw(st.sampled_from([16, 40])), vocab=draw(st.sampled_from([32, 64])),
                    pattern=draw(st.sampled_from([0, 2, 3])))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=tiny_specs(), t=st.sampled_from(["f32", "bf16", "sfp", "i8", "nuq"]),
       seed=st.integers(0, 2 ** 16), scale=st.sampled_from([0.05, 0.5, 4.0]),
       src_dtype=st.sampled_from(["F32", "BF16", "F16"]))
def test_convert_export_roundtrip(tmp_path_factory, spec, t, seed, scale, src_dtype):
    """HF checkpoint -> sbs convert --type T -> sbs export --hf: exact for f32 (and bf16 sources), within the
    codec's bound otherwise; converting the export again reproduces the file (f32/bf16/sfp) or stays close."""
    tmp = tmp_path_factory.mktemp("rt")
    w = random_weights(spec, seed=seed, scale=scale)
    write_hf(tmp / "src", spec, w, dtype=src_dtype, tokenizer=TOKENIZER)
    src = _load(tmp / "src")  # the values as stored (after the source dtype's rounding)
    convert(tmp / "src", tmp / "a.sbs", weight=t)
    export(tmp / "a.sbs", tmp / "hf", hf=True)
    back = _load(tmp / "hf")
    assert set(back) == set(src)
    with sbs_tools.open(tmp / "a.sbs") as f:
        scales = {n: i.scale for n, i in f.tensors.items()}
        assert (f.config.num_layers, f.config.model_dim, f.config.vocab_size) == (spec.layers, spec.model_dim,
                                                                                   spec.vocab)
    for name, x in src.items():
        big = any(b in name for b in BIG)
        if not big:  # embedding and norms: BF16 (F32 in f32 files)
            assert_within_codec("f32" if t == "f32" else "bf16", x, back[name], 1.0, name)
            continue
        layer = int(name.split(".")[2])
        key = {"q_proj": "qkv_ein", "k_proj": "qkv_ein", "v_proj": "qkv_ein", "o_proj": "att_ein",
               "gate_proj": "gating_ein", "up_proj": "gating_ein", "down_proj": "linear_w"}
        s = scales[f"{key[name.split('.')[-2]]}_{layer}"]
        if t == "i8":  # groups span the joined qkv/gating rows: check the bound on the joined tensor instead
            continue
        assert_within_codec(t, x, back[name], s, name)
    if t == "i8":
        with sbs_tools.open(tmp / "a.sbs") as f:
            from sbs_tools.convert import names

            for i in range(spec.layers):
                b = f"model.layers.{i}."
                joined = names.qkv_ein(*(src[b + f"self_attn.{x}_proj.weight"] for x in "qkv"), spec.heads,
                                       spec.kv_heads, spec.qkv_dim)
                from sbs_tools.export import decoded

                assert_within_codec("i8", joined, decoded(f, f"qkv_ein_{i}"), 1.0, f"qkv_ein_{i}")
    convert(tmp / "hf", tmp / "b.sbs", weight=t)
    if t in ("f32", "bf16", "sfp"):
        rep = diff(tmp / "a.sbs", tmp / "b.sbs")
        assert rep.identical or (rep.config == [] and not rep.tensors), rep.to_dict()
    else:
        rep = diff(tmp / "a.sbs", tmp / "b.sbs", atol=0.05 * scale * 4, rtol=0.1)
        assert rep.equivalent, rep.to_dict()
    shutil.rmtree(tmp)


@pytest.mark.parametrize("name", ["v2/gemma2-2b-tiny-f32", "v2/gemma2-2b-tiny-bf16", "v2/gemma2-2b-tiny-sfp",
                                  "v1/gemma2-2b-tiny-sfp", "v2/gemma3-1b-tiny-bf16", "v2/gemma3-1b-tiny-sfp"])
def test_gemmacpp_files_reproduced_byte_for_byte(tmp_path, name):
    """A file gemma.cpp wrote -> export --hf -> convert: the same bytes (config, toc, every blob, padding),
    i.e. convert makes gemma.cpp's exporter's choices (types, scales, order, config fields)."""
    src = CORPUS / f"{name}.sbs"
    export(src, tmp_path / "hf", hf=True)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["sbs_model"] in ("GEMMA2_2B", "GEMMA3_1B")
    res = convert(tmp_path / "hf", tmp_path / "out.sbs", weight=name.rsplit("-", 1)[1], layout=name[:2])
    assert not res.canonical
    want = src
    if cfg["sbs_model"] == "GEMMA3_1B":
        # gemma.cpp since 1bdde1a also writes use_global_timescale: the corpus file (3ed403e) plus that word,
        # i.e. what `sbs repair --target current` makes of it
        want = tmp_path / "want.sbs"
        assert repair(src, want, target="current").status == "repaired"
    assert (tmp_path / "out.sbs").read_bytes() == want.read_bytes()


@pytest.mark.parametrize("t", ["bf16", "sfp"])
def test_vision_tower_round_trip(tmp_path, t):
    """Gemma 3 + SigLIP (the corpus ViT file): every tensor comes back, except img_head_bias, which Hugging
    Face's Gemma 3 projector does not have (written as zeros)."""
    src = CORPUS / f"v2/gemma3-4b-vit-tiny-{t}.sbs"
    export(src, tmp_path / "hf", hf=True)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["model_type"] == "gemma3" and cfg["vision_config"]["num_hidden_layers"] == 2
    assert cfg["mm_tokens_per_image"] == 4
    convert(tmp_path / "hf", tmp_path / "out.sbs", weight=t)
    rep = diff(src, tmp_path / "out.sbs")
    # the corpus file (3ed403e) predates use_global_timescale; convert writes it, as gemma.cpp does since 1bdde1a
    assert rep.config == ["use_global_timescale: False != True"] and not rep.added and not rep.removed
    assert [td.name for td in rep.tensors] == ["img_head_bias"]
    with sbs_tools.open(tmp_path / "out.sbs") as f:
        assert not f.tensor("img_head_bias").any()


def test_paligemma_layout(tmp_path):
    """A PaliGemma 2-style checkpoint (Gemma 2 text, SigLIP, linear projector with bias)."""
    src = CORPUS / "v2/gemma3-4b-vit-tiny-bf16.sbs"
    export(src, tmp_path / "g3", hf=True)
    cfg = json.loads((tmp_path / "g3" / "config.json").read_text())
    w = _load(tmp_path / "g3")
    text = dict(cfg["text_config"], model_type="gemma2", attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
    pg = {"model_type": "paligemma", "text_config": text, "vision_config": cfg["vision_config"],
          "_name_or_path": "tiny-paligemma2"}
    out = {}
    rng = np.random.default_rng(3)
    for k, v in w.items():
        k = k.replace("model.language_model.", "language_model.model.").replace(
            "model.vision_tower.", "vision_tower.").replace("model.multi_modal_projector.", "multi_modal_projector.")
        if "q_norm" in k or "k_norm" in k or "mm_soft_emb_norm" in k:
            continue
        if k.endswith("mm_input_projection_weight"):
            out["multi_modal_projector.linear.weight"] = np.ascontiguousarray(v.T)
            out["multi_modal_projector.linear.bias"] = rng.standard_normal(v.shape[1]).astype(np.float32)
            continue
        out[k] = v
    d = tmp_path / "pg"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(pg))
    from sbs_tools.convert.safetensors_io import StItem, write_safetensors

    write_safetensors(d / "model.safetensors", [StItem(k, "F32", v.shape, lambda v=v: [v]) for k, v in out.items()])
    res = convert(d, tmp_path / "pg.sbs", weight="bf16")
    cfg_out = res.config
    assert cfg_out.model_name == "PALIGEMMA2_3B_224" and cfg_out.wrapping == 3
    assert not any(lc.use_qk_norm for lc in cfg_out.layer_configs) and cfg_out.att_cap == 50.0
    with sbs_tools.open(tmp_path / "pg.sbs") as f:
        assert "mm_embed_norm" not in f.tensors
        np.testing.assert_array_equal(f.tensor("img_head_bias")[0], out["multi_modal_projector.linear.bias"])
        np.testing.assert_array_equal(f.tensor("img_head_kernel"), out["multi_modal_projector.linear.weight"]
                                      .astype("float32"))
        assert f.tensors["img_head_bias"].type_name == "F32"
    from sbs_tools.cli import main

    assert main(["verify", str(tmp_path / "pg.sbs")]) == 0


def test_sharded_checkpoint_and_vocab_padding(tmp_path):
    spec = TinySpec(family=3, layers=2, model_dim=32, heads=2, kv_heads=1, qkv_dim=16, ff=32, vocab=64,
                    name="gemma-3-tiny-it")
    w = random_weights(spec, seed=5)
    write_hf(tmp_path / "hf", spec, w, shards=3, dtype="BF16", tokenizer=TOKENIZER)
    assert len(list((tmp_path / "hf").glob("*.safetensors"))) == 3
    res = convert(tmp_path / "hf", tmp_path / "o.sbs", weight="f32")
    assert res.config.wrapping == 0  # "-it" in the name
    with sbs_tools.open(tmp_path / "o.sbs") as f:
        np.testing.assert_array_equal(f.tensor("c_embedding"), _bf16(w["model.embed_tokens.weight"]))
    # one .safetensors file given directly (config.json beside it)
    write_hf(tmp_path / "one", spec, w)
    res = convert(tmp_path / "one" / "model.safetensors", tmp_path / "p.sbs", weight="bf16", tokenizer=CORPUS /
                  "tiny_sp512.model")
    assert any("tiny_sp512" in n for n in res.notes)
    assert any("pieces but the embedding" in n for n in res.notes)  # 512 pieces, 64 rows


def test_hf_errors(tmp_path):
    spec = TinySpec(family=3, layers=1, model_dim=16, heads=1, kv_heads=1, qkv_dim=8, ff=16, vocab=32)
    w = random_weights(spec)
    d = write_hf(tmp_path / "a", spec, w)
    (d / "config.json").unlink()
    with pytest.raises(ConvertError, match="config.json"):
        convert(d, tmp_path / "a.sbs")
    d = write_hf(tmp_path / "b", spec, w)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(dict(cfg, model_type="llama")))
    with pytest.raises(ConvertError) as e:
        convert(d, tmp_path / "b.sbs")
    assert e.value.code == "unsupported-arch"
    d = write_hf(tmp_path / "c", spec, {k: v for k, v in w.items() if "down_proj" not in k})
    with pytest.raises(ConvertError) as e:
        convert(d, tmp_path / "c.sbs")
    assert e.value.code == "missing-tensor"
    d = write_hf(tmp_path / "d", spec, w)
    (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    with pytest.raises(ConvertError):
        convert(d, tmp_path / "d.sbs")
    with pytest.raises(ConvertError) as e:
        convert(CORPUS / "v2/gemma2-2b-tiny-f32.sbs", tmp_path / "e.sbs")
    assert e.value.code == "unknown-format"
    export(CORPUS / "v2/gemma2-2b-tiny-f32.sbs", tmp_path / "exp.safetensors")
    with pytest.raises(ConvertError, match="export --hf"):
        convert(tmp_path / "exp.safetensors", tmp_path / "f.sbs")


def test_safetensors_files_interoperate(tmp_path):
    """Our writer's files load with the safetensors package, and its files load with our reader."""
    stn = pytest.importorskip("safetensors.numpy")
    spec = TinySpec(family=2, layers=1, model_dim=16, heads=2, kv_heads=1, qkv_dim=8, ff=16, vocab=32)
    w = random_weights(spec)
    write_hf(tmp_path / "ours", spec, w)
    theirs = stn.load_file(str(tmp_path / "ours" / "model.safetensors"))
    assert all(np.array_equal(theirs[k], w[k]) for k in w)
    stn.save_file({k: v.astype(np.float16) for k, v in w.items()}, str(tmp_path / "t.safetensors"),
                  metadata={"format": "pt"})
    f = SafetensorsFile(tmp_path / "t.safetensors")
    assert f.metadata == {"format": "pt"}
    assert all(np.array_equal(f.array(k), w[k].astype(np.float16)) for k in w)
    f.close()
