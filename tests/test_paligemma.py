"""PaliGemma 2 (issue #19): a gemma.cpp-written file read exactly as gemma.cpp read it, its image path
and prefix-LM generation as gemma.cpp computed them, the HF round trip, and files of the other weight
types derived from it with this project's writer.

References: ``fixtures/vision/tiny-paligemma2-bf16.{sbs,json,refs}``, a verbatim copy of the shared
corpus' ``paligemma/`` (its README is ``fixtures/vision/tiny-paligemma2-README.md``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import inference
import sbs_tools
from inference import vision
from sbs_tools.cli import main
from sbs_tools.verify import verify

from . import test_corpus_read as corpus_read
from .conftest import CORPUS, reference

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "vision"
PALI = FIX / "tiny-paligemma2-bf16.sbs"
REFS = FIX / "tiny-paligemma2-bf16.refs"
IMAGE = REFS / "image.ppm"
REF = reference(PALI)
INF = REF["inference"]
STAGE_TOL = 1e-5  # the issue asks for 2e-3; the emulation is bit-exact on this file
LOGIT_TOL = 0.03  # gemma.cpp's own run-to-run spread is up to 1.1e-2 on this file
TYPES = ("sfp", "nuq", "i8", "f32")
#: max |logit - gen_logits| measured on the derived files (teacher-forced, gemma.cpp's layout):
#: bf16/f32 0.0115, i8 0.049, sfp 0.146, nuq 0.372; the bounds leave room, the argmax must agree.
DERIVED_LOGIT_TOL = {"f32": LOGIT_TOL, "i8": 0.1, "sfp": 0.3, "nuq": 0.6}


def refs(name: str, shape) -> np.ndarray:
    return np.fromfile(REFS / f"{name}.f32", "<f4").reshape(shape)


@lru_cache(maxsize=None)
def model(path: Path, vision_mode: str = "gemmacpp") -> inference.Model:
    return inference.load(path, vision=vision_mode, progress=False)


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main(list(map(str, args)))
    out = capsys.readouterr()
    return rc, out.out, out.err


def teacher_forced(m: inference.Model, ids: list[int], forced: list[int], rows: np.ndarray) -> np.ndarray:
    """gemma.cpp's layout: the whole prompt prefilled as the prefix (positions 0..25), then the last
    prompt token again at 26 and each forced token after it; the logits of those steps."""
    cache = m.new_cache()
    m.forward(ids, cache, image=rows)
    return np.array([m.forward([t], cache)[-1] for t in ids[-1:] + forced])


# -- reading: what gemma.cpp read ----------------------------------------------------------------------------------
@pytest.mark.parametrize("check", [
    corpus_read.test_blob_table_matches_gemma_cpp, corpus_read.test_config_matches_gemma_cpp,
    corpus_read.test_toc_matches_gemma_cpp, corpus_read.test_tensor_views_are_zero_copy,
], ids=lambda c: c.__name__[5:])
def test_reads_as_gemma_cpp(check):
    assert hashlib.sha256(PALI.read_bytes()).hexdigest() == REF["sha256"]
    check(PALI)


def test_tokenizer_blob_is_the_tiny_model():
    with sbs_tools.open(PALI) as f:
        tok = f.tokenizer_bytes
    assert len(tok) == REF["inspect"]["tokenizer_blob_bytes"]
    assert hashlib.sha256(tok).hexdigest() == REF["tokenizer_sha256"]
    assert tok == (CORPUS / Path(REF["tokenizer_model"]).name).read_bytes()
    t = model(PALI).tokenizer
    assert t.encode("describe", bos=False) == REF["inspect"]["tokenizer_encode_describe"] == INF["prompt_text_ids"]
    assert t.encode("hello world", bos=False) == REF["inspect"]["tokenizer_encode_hello_world"]


@pytest.mark.parametrize("entry", REF["inspect"]["decompressed"], ids=lambda e: e["name"])
def test_decompressed_tensors_bit_exact(entry):
    data = (FIX / entry["decompressed_file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["decompressed_sha256"]
    want = np.frombuffer(data, "<f4") * np.float32(entry["scale"])
    with sbs_tools.open(PALI) as f:
        got = f.tensor(entry["name"])
    assert got.shape == (entry["rows"], entry["cols"])
    np.testing.assert_array_equal(got.reshape(-1).view(np.uint32), want.view(np.uint32))


def test_inspect_json_matches_gemma_cpp(capsys):
    rc, out, _ = run(capsys, "inspect", "--json", PALI)
    assert rc == 0
    d, ins = json.loads(out), REF["inspect"]
    assert d["file_bytes"] == REF["size"] and d["layout"] == "v2" and not d["problems"]
    assert d["blobs"] == [{"key": b["key"], "offset": b["offset"], "bytes": b["bytes"]} for b in ins["blobs"]]
    assert [(t["name"], t["type"].lower(), t["rows"], t["cols"], t["scale"], t["bytes"], t["offset"])
            for t in d["tensors"]] == [(t["name"], t["type"], t["rows"], t["cols"], t["scale"], t["blob_bytes"],
                                        t["blob_offset"]) for t in ins["toc"]]
    cfg, rc_ = d["config"], ins["config"]
    assert (cfg["specifier"], cfg["model"], cfg["wrapping"], cfg["weight"]) == (
        rc_["Specifier"], "PALIGEMMA2_3B_224", rc_["wrapping_name"], rc_["weight_name"])
    for key in ("num_layers", "model_dim", "vocab_size", "max_seq_len", "att_cap", "final_cap", "pool_dim",
                "attention_window_sizes", "eos_id", "secondary_eos_id", "scale_base_names", "display_name"):
        assert cfg[key] == rc_[key], key
    vit = cfg["vit_config"]
    for key in ("model_dim", "seq_len", "num_scales", "patch_width", "image_size", "pool_dim"):
        assert vit[key] == rc_["vit_config"][key], key
    assert [lc["type"] for lc in vit["layer_configs"]] == [lc["type_name"] for lc in rc_["vit_config"]["layer_configs"]]
    assert [lc["type"] for lc in cfg["layer_configs"]] == [lc["type_name"] for lc in rc_["layer_configs"]]


def test_dump_json_matches_gemma_cpp(capsys):
    rc, out, _ = run(capsys, "dump", "--json", PALI)
    assert rc == 0
    d, ins = json.loads(out), REF["inspect"]
    foot = REF["footer_header"]
    assert (d["header"]["num_blobs"], d["header"]["file_bytes"]) == (foot["num_blobs"], foot["file_bytes"])
    assert d["front_header"]["num_blobs"] == REF["front_header"]["num_blobs"]
    assert [(t["name"], t["type"], t["element_bytes"], t["rows"], t["cols"], t["scale"], t["stride"], t["word_pos"],
             t["expected_bytes"], t["blob_bytes"]) for t in d["toc"]] == [
        (t["name"], t["type_enum"], t["element_bytes"], t["rows"], t["cols"], t["scale"], t["stride"], t["toc_u32_pos"],
         t["packed_bytes"], t["blob_bytes"]) for t in ins["toc"]]
    rc, out, _ = run(capsys, "dump", PALI)
    assert rc == 0 and "PALIGEMMA" in out and "img_head_kernel" in out and "ViT layers" in out


def test_verify_deep_is_clean_with_gemma_cpp_verdicts():
    r = verify(PALI, deep=True)
    assert r.ok and not r.warnings, [(f.code, f.message) for f in r.findings]
    assert not {"vit-pool-grid", "vision-quirk"} & {f.code for f in r.findings}
    verdict = {g.key: (g.loads, g.runs) for g in r.compat}
    # 3ed403e (2025-10-15+) loaded and ran it; 2025-09-05 numbers kVit 1 like it
    assert verdict["2025-10-15"] == (True, True) and verdict["2025-09-05"] == (True, True)
    assert [k for k, (loads, _) in verdict.items() if not loads] == ["pre-2025", "2025-05-06", "2025-05-07",
                                                                        "2025-07-31"]
    why = {g.key: " ".join(g.reasons) for g in r.compat}
    assert "type number 1" in why["2025-07-31"] and "V2 layout" not in why["2025-07-31"]  # reads V2 since then
    assert "V2 layout" in why["2025-05-07"] and "type number 1" in why["2025-05-07"]


# -- the image path and generation: what gemma.cpp computed ----------------------------------------------------------
def test_image_stages_match_gemma_cpp():
    stages: dict = {}
    tokens = model(PALI).image_tokens(IMAGE, stages)
    np.testing.assert_array_equal(stages["pixels"], refs("pixels", (56, 56, 3)))
    for name, shape in (("patches", (16, 588)), ("embed", (16, 64)), ("encoder_norm", (16, 64))):
        assert stages[name].shape == shape
        assert np.abs(stages[name] - refs(f"vit_{name}", shape)).max() <= STAGE_TOL, name
    assert "pooled" not in stages and "pre_proj" not in stages  # no pooling, no soft-embedding norm
    assert tokens.shape == tuple(INF["image_tokens_shape"]) and tokens.dtype == np.float32
    assert np.abs(tokens - refs("image_tokens", (16, 128))).max() <= STAGE_TOL
    # the reference mode has the same image path: PaliGemma has neither pooling nor the norm
    np.testing.assert_array_equal(model(PALI, "reference").image_tokens(IMAGE), tokens)


def test_wrap_is_gemma_cpps_prompt():
    m = model(PALI)
    ids = m.wrap(INF["prompt_text"], image=IMAGE)
    assert ids == INF["prompt_ids"] and len(ids) == INF["prefix_end"] == INF["prompt_size"]
    assert ids[:16] == [vision.PALI_ID] * 16 and ids[16] == 2 and ids[-2:] == INF["sep_ids"]
    assert m.wrap(INF["prompt_text"]) == [2] + INF["prompt_text_ids"]  # no image: BOS + text


def test_teacher_forced_logits_match_gemma_cpp():
    m, ids, gen = model(PALI), INF["prompt_ids"], INF["generated_ids"]
    want = refs("gen_logits", tuple(INF["gen_logits_shape"]))
    ours = teacher_forced(m, ids, gen[:-1], m.image_tokens(IMAGE))
    assert np.abs(ours - want).max() <= LOGIT_TOL, np.abs(ours - want).max(axis=1)
    np.testing.assert_array_equal(ours.argmax(1), want.argmax(1))
    np.testing.assert_array_equal(want.argmax(1), gen)
    assert m.generate(m.wrap(INF["prompt_text"], image=IMAGE), 8, image=IMAGE, stop_at_eos=False) == gen


def test_generation_feeds_gemma_cpps_positions(monkeypatch):
    """The re-feed step: prompt at 0..25, its last token again at 26, generated tokens from 27 (the
    JSON's streamed positions); the first logits are those of that extra step. ``reference``: no
    extra step, the first logits from position 25."""
    fed: list[tuple[list[int], int]] = []
    real = inference.Model.forward

    def spy(self, tokens, cache, *a, **k):
        fed.append((list(map(int, tokens)), cache.length))
        return real(self, tokens, cache, *a, **k)

    monkeypatch.setattr(inference.Model, "forward", spy)
    ids, gen = INF["prompt_ids"], INF["generated_ids"]
    rows = refs("image_tokens", (16, 128))
    first: list[np.ndarray] = []
    out = list(model(PALI).stream(ids, 8, stop_at_eos=False, image=rows, on_logits=first.append))
    assert out == gen
    assert fed[0] == (ids, 0) and fed[1] == ([ids[-1]], len(ids))
    assert [p for _, p in fed[2:]] == INF["sample_pos"][:-1] and [t for t, _ in fed[2:]] == [[g] for g in gen[:-1]]
    streamed = list(range(len(ids))) + [p for _, p in fed[2:]] + [fed[-1][1] + 1]
    assert streamed == INF["streamed_pos"]
    fed.clear()
    ref_first: list[np.ndarray] = []
    next(model(PALI, "reference").stream(ids, 1, image=rows, on_logits=ref_first.append))
    assert fed == [(ids, 0)]  # the whole prompt is the prefix; no extra step
    monkeypatch.undo()
    np.testing.assert_allclose(ref_first[0], model(PALI, "reference").logits(ids, image=rows)[-1], atol=1e-5)
    assert np.abs(ref_first[0] - first[0]).max() > 0.05  # the two behaviours differ where documented


def test_prefix_mask_at_the_window_edge():
    """The file's own numbers: prefix_end 26, windows 16 and 128. Every prefix position sees the whole
    prefix, later positions too, down to its layer's window; after the prefix, causal."""
    q = k = np.arange(30)
    local, glob = vision.prefix_mask(26)(q, k, 16), vision.prefix_mask(26)(q, k, 128)
    want = lambda w: (k[None] <= np.maximum(q[:, None], 25)) & (k[None] > q[:, None] - w)  # noqa: E731
    np.testing.assert_array_equal(local, want(16))
    np.testing.assert_array_equal(glob, want(128))
    assert local[0, 25] and not local[0, 26]  # the first image token sees the separator
    assert local[25, 10] and not local[25, 9]  # README: 25 does not see image tokens 0..9 on the local layer
    assert glob[25, 0] and glob[0, 25]
    assert local[26, 26] and not local[26, 27] and not local[26, 10] and local[26, 11]  # the re-feed: causal
    mask6 = vision.prefix_mask(6)(np.arange(9), np.arange(9), 4)  # small: window 4, prefix 6
    assert mask6[0, 5] and not mask6[0, 6] and mask6[5, 2] and not mask6[5, 1] and mask6[6, 6] and not mask6[6, 7]


def test_prefix_reaches_the_first_position_and_respects_the_window():
    """On the file: a later prefix token changes the first position's logits (bidirectional), and
    after the local layer 0 (window 16) position 25 has not seen image row 0 while position 15 has;
    after the global layer 1 it has."""
    m, ids = model(PALI), INF["prompt_ids"]
    rows = refs("image_tokens", (16, 128))
    a = m.logits(ids, image=rows)
    b = m.logits(ids[:-1] + [5], image=rows)
    assert np.abs(a[0] - b[0]).max() > 1e-3
    assert [m.config.is_global_layer(i) for i in range(2)] == [False, True]
    changed = rows.copy()
    changed[0] += 1.0
    before, after = [], []
    m.forward(ids, m.new_cache(), trace=before, image=rows)
    m.forward(ids, m.new_cache(), trace=after, image=changed)
    np.testing.assert_array_equal(before[0][25], after[0][25])  # key 0 is outside 25's window of 16
    assert np.abs(before[0][15] - after[0][15]).max() > 1e-4  # 15 - 16 < 0: inside
    assert np.abs(before[1][25] - after[1][25]).max() > 1e-4  # the global layer sees it


# -- sbs run -----------------------------------------------------------------------------------------------------------
def test_cli_run_paligemma(capsys):
    rc, out, err = run(capsys, "run", PALI, "--image", IMAGE, "--prompt", INF["prompt_text"], "-n", "8")
    assert rc == 0, err
    tok = model(PALI).tokenizer
    text = [t for t in INF["prompt_ids"] if t != vision.PALI_ID]
    assert out == tok.decode(text + INF["generated_ids"])[len(tok.decode(text)):] + "\n"
    assert out.split() == INF["generated_text"].split()
    assert "16 image tokens" in err and "prompt: 26 tokens" in err and "runs again" in err


# -- export --hf and convert: the round trip, and the other weight types -----------------------------------------
@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pali") / "hf"
    assert main(["export", str(PALI), str(d), "--hf", "-q"]) == 0
    return d


@pytest.fixture(scope="module")
def derived(hf_dir):
    out = {}
    for t in TYPES + ("bf16",):
        out[t] = hf_dir.parent / f"pg-{t}.sbs"
        assert main(["convert", str(hf_dir), str(out[t]), "--type", t, "-q"]) == 0
    return out


def _safetensors_names(path: Path) -> tuple[dict, bytes]:
    """The header (u64 length, then JSON) of a safetensors file, and the rest of it."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def test_hf_export_names(hf_dir):
    """transformers' current layout (``model.language_model.*``, ``model.vision_tower.vision_model.*``,
    ``model.multi_modal_projector.linear.*``): what ``save_pretrained`` writes for PaliGemma."""
    cfg = json.loads((hf_dir / "config.json").read_text())
    assert cfg["model_type"] == "paligemma" and cfg["text_config"]["model_type"] == "gemma2"
    assert cfg["vision_config"]["image_size"] == 56 and cfg["vision_config"]["patch_size"] == 14
    header, _ = _safetensors_names(hf_dir / "model.safetensors")
    names = set(header) - {"__metadata__"}
    assert {".".join(n.split(".")[:3]) for n in names} == {
        "model.language_model.embed_tokens", "model.language_model.layers", "model.language_model.norm",
        "model.vision_tower.vision_model", "model.multi_modal_projector.linear"}
    assert "model.vision_tower.vision_model.encoder.layers.1.self_attn.q_proj.bias" in names


def test_hub_layout_converts_to_the_same_file(hf_dir, tmp_path):
    """The published checkpoints' names (``language_model.model.*``, ``vision_tower.vision_model.*``,
    ``multi_modal_projector.linear.*``) convert to the same bytes."""
    header, data = _safetensors_names(hf_dir / "model.safetensors")
    hub = {"language_model.model." + k[len("model.language_model."):] if k.startswith("model.language_model.")
           else k[len("model."):] if k.startswith("model.") else k: v for k, v in header.items()}
    assert {k.split(".")[0] for k in hub} == {"__metadata__", "language_model", "vision_tower", "multi_modal_projector"}
    text = json.dumps(hub).encode()
    text += b" " * (-len(text) % 8)
    d = tmp_path / "hub"
    d.mkdir()
    (d / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + data)
    for name in ("config.json", "tokenizer.model"):
        (d / name).write_bytes((hf_dir / name).read_bytes())
    assert main(["convert", str(d), str(tmp_path / "out.sbs"), "--type", "bf16", "-q"]) == 0
    assert (tmp_path / "out.sbs").read_bytes() == PALI.read_bytes()


def test_hf_round_trip_is_bit_identical(derived):
    assert derived["bf16"].read_bytes() == PALI.read_bytes()


@pytest.mark.parametrize("t", TYPES)
def test_derived_types_follow_gemma_cpps_type_rule(derived, t):
    """Which tensor gets which type, as gemma.cpp's exporter decides: the text matrices as in its
    gemma2 file of type ``t``, the ViT as in its Gemma 3 ViT file (kept BF16, biases F32)."""
    def types(p):
        with sbs_tools.open(p) as f:
            return {n: i.type_name for n, i in f.tensors.items()}

    ours, bf16 = types(derived[t]), types(PALI)
    assert list(ours) == list(bf16)
    text_rule = types(CORPUS / "v2" / f"gemma2-2b-tiny-{t}.sbs")
    vit_rule = types(CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs")
    for name, ty in ours.items():
        if t == "f32":
            assert ty == "F32", name
        elif name in text_rule:
            assert ty == text_rule[name], name
        else:  # ViT, projection, PaliGemma's c_embedding: bf16 / f32 exactly as in the bf16 file
            assert ty == bf16[name] and (name not in vit_rule or vit_rule[name] == ty), name
    with sbs_tools.open(derived[t]) as f, sbs_tools.open(PALI) as g:
        assert f.config.weight_name == t and f.config.specifier == f"paligemma2-3b-224-{t}"
        assert dataclasses.replace(f.config, weight=g.config.weight) == g.config  # only the weight type differs
        for name in ours:
            a, b = f.tensor(name), g.tensor(name)
            if ours[name] in ("BF16", "F32"):
                np.testing.assert_array_equal(a, b, err_msg=name)
            else:  # lossy: within the codec's error of the bf16 values
                assert np.abs(a - b).max() <= 0.15 * np.abs(b).max(), name  # NUQ: 0.117


@pytest.mark.parametrize("t", TYPES)
def test_derived_types_verify_and_run(derived, t):
    r = verify(derived[t], deep=True)
    assert r.ok, [(f.code, f.message) for f in r.errors]
    cur = r.compat[-1]
    if t == "nuq":  # gemma.cpp reads NUQ but cannot run its attention weights
        assert [f.code for f in r.warnings] == ["runtime-unsupported"] and cur.loads and cur.runs is False
    else:
        assert not r.warnings and cur.loads and cur.runs
    since = "2025-10-15" if t == "i8" else "2025-09-05"  # I8 reads since 3ed403e, the rest since 2025-09-05
    assert [g.key for g in r.compat if g.loads] == [g.key for g in r.compat if g.key >= since and g.key[0] == "2"]
    m = inference.load(derived[t], progress=False)
    stages: dict = {}
    rows = m.image_tokens(IMAGE, stages)  # the ViT is bf16/f32 in every type: gemma.cpp's image tokens
    assert np.abs(rows - refs("image_tokens", (16, 128))).max() <= STAGE_TOL
    ids = m.wrap(INF["prompt_text"], image=IMAGE)
    assert ids == INF["prompt_ids"]
    want = refs("gen_logits", (8, 512))
    ours = teacher_forced(m, ids, INF["generated_ids"][:-1], rows)
    assert np.abs(ours - want).max() <= DERIVED_LOGIT_TOL[t]
    np.testing.assert_array_equal(ours.argmax(1), want.argmax(1))
    assert m.generate(ids, 8, image=rows, stop_at_eos=False) == INF["generated_ids"]
