"""The ViT and image prompts of ``inference`` against gemma.cpp's own image path (issue #15).

References (``fixtures/vision``): gemma.cpp 3ed403e on an AVX3_SPR machine, one image, one prompt,
for the two Gemma 3 + ViT corpus files (PaliGemma 2: ``test_paligemma.py``). Unit tests pin
what those tiny files cannot tell apart (pooling grids, patch order, resizing).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import inference
from inference import ops, vision
from inference.weights import UnsupportedModel

from .conftest import CORPUS

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "vision"
IMAGE = FIX / "gemma3-112px.ppm"
PALI = FIX / "tiny-paligemma2-bf16.sbs"
GEMMA3 = {k: CORPUS / "v2" / f"gemma3-4b-vit-tiny-{k}.sbs" for k in ("bf16", "sfp")}
STAGE_TOL = 2e-3  # the bound; the emulation reaches < 1e-6
LOGIT_TOL = 0.03  # gemma.cpp's own run-to-run spread is up to 1.6e-2


@lru_cache(maxsize=None)
def model(path: Path, vision_mode: str = "gemmacpp") -> inference.Model:
    return inference.load(path, vision=vision_mode, progress=False)


def ref(kind: str, name: str, shape) -> np.ndarray:
    folder = FIX / (f"gemma3-4b-vit-tiny-{kind}" if kind in GEMMA3 else kind)
    return np.fromfile(folder / f"{name}.f32", "<f4").reshape(shape)


def meta(kind: str) -> dict:
    folder = FIX / (f"gemma3-4b-vit-tiny-{kind}" if kind in GEMMA3 else kind)
    return json.loads((folder / "meta.json").read_text())


def gemma_cpp_path(m: inference.Model, prompt: list[int], forced: list[int], image) -> np.ndarray:
    """Logits along gemma.cpp's generation: prefill all but the last prompt token (with the image),
    then one cached step for it and each forced token."""
    cache = m.new_cache()
    m.forward(prompt[:-1], cache, image=m._image_rows(image))
    return np.array([m.forward([t], cache)[-1] for t in prompt[-1:] + forced])


# -- agreement with gemma.cpp ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(GEMMA3))
def test_vit_stages_match_gemmacpp(kind):
    stages: dict = {}
    tokens = model(GEMMA3[kind]).image_tokens(IMAGE, stages)
    y, x, c = np.meshgrid(np.arange(112), np.arange(112), np.arange(3), indexing="ij")
    byte = ((x * 7 + y * 13 + c * 29) % 256).astype(np.float32)
    np.testing.assert_array_equal(stages["pixels"], byte / np.float32(255) * np.float32(2) - np.float32(1))
    for name, shape in (("embed", (64, 64)), ("encoder_norm", (64, 64)), ("pooled", (4, 64)),
                        ("pre_proj", (4, 64)), ("image_tokens", (4, 128))):
        got = stages[name]
        assert got.shape == shape
        assert np.abs(got - ref(kind, "image_tokens" if name == "image_tokens" else f"vit_{name}", shape)).max() \
            <= STAGE_TOL, name
    assert tokens.dtype == np.float32 and tokens.shape == (4, 128)
    assert np.abs(tokens - ref(kind, "image_tokens", (4, 128))).max() <= 1e-5


@pytest.mark.parametrize("kind", sorted(GEMMA3))
def test_wrap_matches_gemmacpp_prompt(kind):
    m = model(GEMMA3[kind])
    ids = m.wrap("Describe:", image=IMAGE)
    assert ids == meta(kind)["prompt_ids"]
    assert [i for i, t in enumerate(ids) if t == vision.IMAGE_ID] == meta(kind)["image_token_positions"]
    # without an image: GemmaChatTemplate::Apply around the text alone
    assert m.wrap("Describe:") == [t for t in ids[:15] + ids[25:]]


@pytest.mark.parametrize("kind", sorted(GEMMA3))
def test_teacher_forced_logits_match_gemmacpp(kind):
    m, md = model(GEMMA3[kind]), meta(kind)
    prompt, gen = md["prompt_ids"], md["generated_ids"]
    want = ref(kind, "gen_logits", (8, 512))
    ours = gemma_cpp_path(m, prompt, gen[:-1], IMAGE)
    assert np.abs(ours - want).max() <= LOGIT_TOL, np.abs(ours - want).max(axis=1)
    np.testing.assert_array_equal(ours.argmax(1), want.argmax(1))
    # the same sequence as one batched Model.logits pass (gemma.cpp's prefill of it); its first
    # row sits in a batch where gemma.cpp decoded it, hence the wider bound
    whole = m.logits(prompt + gen[:-1], image=IMAGE)[len(prompt) - 1:]
    assert np.abs(whole - want).max() <= 0.04
    np.testing.assert_array_equal(whole.argmax(1), want.argmax(1))
    assert m.generate(prompt, len(gen), image=IMAGE, stop_at_eos=False) == gen


@pytest.mark.parametrize("kind", sorted(GEMMA3))
def test_reference_mode_normalizes_every_pooled_row(kind):
    stages: dict = {}
    tokens = model(GEMMA3[kind], "reference").image_tokens(IMAGE, stages)
    assert np.abs(stages["pre_proj"] - ref(kind, "allrows/vit_pre_proj", (4, 64))).max() <= 1e-5
    assert np.abs(tokens - ref(kind, "allrows/image_tokens", (4, 128))).max() <= 1e-5
    # allrows/gen_logits: the all-rows norm with gemma.cpp's causal attention over the image
    md = meta(kind)
    ours = gemma_cpp_path(model(GEMMA3[kind]), md["prompt_ids"], md["generated_ids"][:-1], tokens)
    assert np.abs(ours - ref(kind, "allrows/gen_logits", (8, 512))).max() <= LOGIT_TOL
    # the reference mode attends bidirectionally within the image: later prompt logits change
    seq = md["prompt_ids"]
    causal = model(GEMMA3[kind]).logits(seq, image=tokens)
    bidir = model(GEMMA3[kind], "reference").logits(seq, image=tokens)
    np.testing.assert_allclose(causal[:18], bidir[:18], atol=1e-6)  # before the image: unchanged
    assert np.abs(causal[18:] - bidir[18:]).max() > 0.05


def test_gemmacpp_norm_is_row_zero_only():
    m = model(GEMMA3["bf16"])
    stages: dict = {}
    m.image_tokens(IMAGE, stages)
    np.testing.assert_array_equal(stages["pre_proj"][1:], stages["pooled"][1:])
    assert np.abs(stages["pre_proj"][0] - stages["pooled"][0]).max() > 0.01


# -- what the tiny files cannot tell apart ---------------------------------------------------------
@pytest.mark.parametrize("grid", [4, 8, 12, 64])
def test_pooling_on_any_grid(grid):
    rng = np.random.default_rng(grid)
    x = rng.standard_normal((grid * grid, 3)).astype(np.float32)
    pooled = vision.avg_pool(x, grid)
    g = grid // 4
    assert pooled.shape == (g * g, 3)
    img = x.reshape(grid, grid, 3)
    for r in range(g):
        for c in range(g):  # output row-major over the pooled grid; each a 4x4 block of patches
            np.testing.assert_allclose(pooled[r * g + c], img[4 * r:4 * r + 4, 4 * c:4 * c + 4].mean((0, 1)),
                                       rtol=1e-5, atol=1e-6)


def test_pooling_64x64_is_gemmacpps_avgpool4x4():
    """AvgPool4x4's own loop (64x64 -> 16x16, rows summed in block order then * 0.0625), bit for bit."""
    x = np.random.default_rng(0).standard_normal((4096, 5)).astype(np.float32)
    want = np.zeros((256, 5), np.float32)
    for orow in range(16):
        for ocol in range(16):
            acc = np.zeros(5, np.float32)
            for i in range(4):
                for j in range(4):
                    acc += x[(orow * 4 + i) * 64 + ocol * 4 + j]
            want[orow * 16 + ocol] = acc * np.float32(0.0625)
    np.testing.assert_array_equal(vision.avg_pool(x, 64), want)


def test_patch_order_on_non_square_content():
    """Raster order of 14x14 patches, each flattened (row, col, channel), on content that differs
    along x, y and channel (a transposed or channel-major patch would not match)."""
    h, w, p = 28, 42, 14  # 2 x 3 patches
    img = np.arange(h * w * 3, dtype=np.float32).reshape(h, w, 3)
    got = vision.patches(img, p)
    assert got.shape == (6, p * p * 3)
    for n in range(6):
        y0, x0 = n // 3 * p, n % 3 * p
        np.testing.assert_array_equal(got[n], img[y0:y0 + p, x0:x0 + p].reshape(-1))
    assert got[1, 3] == img[0, 15, 0] and got[3, 3 * p * 1] == img[15, 0, 0]


def test_resize_is_gemmacpps_nearest_neighbour():
    # NearestNeighbor: round(i * (in-1)/(out-1)), half away from zero, in float32
    np.testing.assert_array_equal(vision.nearest_index(4, 8), [0, 2, 5, 7])  # 2.333 -> 2, 4.667 -> 5
    np.testing.assert_array_equal(vision.nearest_index(5, 3), [0, 1, 1, 2, 2])  # 0.5 -> 1, 1.5 -> 2
    np.testing.assert_array_equal(vision.nearest_index(7, 7), np.arange(7))
    img = np.random.default_rng(1).standard_normal((30, 20, 3)).astype(np.float32)
    out = vision.resize(img, 14)
    assert out.shape == (14, 14, 3)
    np.testing.assert_array_equal(out[3, 5], img[vision.nearest_index(14, 30)[3], vision.nearest_index(14, 20)[5]])
    np.testing.assert_array_equal(vision.resize(img[:14, :14], 14), img[:14, :14])


def test_image_of_another_size_is_resized_first():
    m = model(GEMMA3["bf16"])
    big = np.asarray(vision.read_ppm(IMAGE.read_bytes())[0]).repeat(2, 0).repeat(2, 1)  # 224 x 224
    stages: dict = {}
    m.image_tokens(big, stages)
    want = vision.read_image(big)[vision.nearest_index(112, 224)][:, vision.nearest_index(112, 224)]
    np.testing.assert_array_equal(stages["pixels"], want)


def test_image_block_mask_is_bidirectional_within_the_image_only():
    mask = vision.image_block_mask(2, 5)(np.arange(7), np.arange(7), 8)
    assert mask[2, 4] and mask[3, 4] and not mask[1, 2] and not mask[5, 6]
    np.testing.assert_array_equal(mask & ~np.tri(7, dtype=bool), np.pad(np.ones((3, 3), bool) & ~np.tri(3, dtype=bool),
                                                                        ((2, 2), (2, 2))))


# -- the matmul emulation ---------------------------------------------------------------------------
@pytest.mark.parametrize("k, kc", [(16, 16), (32, 32), (64, 32), (128, 64), (588, 576), (1152, 576), (4304, 4288)])
def test_k_block_is_gemmacpps_first_candidate(k, kc):
    assert vision.k_block(k) == kc


def test_linear_rounds_output_per_k_block():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    w = ops.bf16_round(rng.standard_normal((5, 64)).astype(np.float32))
    plain = ops.bf16_round(x) @ w.T
    np.testing.assert_allclose(vision.linear(x, w, None, True), plain, rtol=1e-5, atol=1e-5)
    two = vision.linear(x, w, None, True, out_bf16=True)  # two blocks of 32, bf16 after each
    first = ops.bf16_round(ops.bf16_round(x[:, :32]) @ w[:, :32].T)
    np.testing.assert_allclose(two, ops.bf16_round(first + ops.bf16_round(x[:, 32:]) @ w[:, 32:].T), atol=1e-6)
    assert np.all(ops.bf16_round(two) == two)


# -- inputs and errors ------------------------------------------------------------------------------
def test_image_inputs_agree(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    arr, _ = vision.read_ppm(IMAGE.read_bytes())
    png = tmp_path / "img.png"
    PIL.fromarray(arr).save(png)
    np.testing.assert_array_equal(vision.read_image(png), vision.read_image(IMAGE))
    np.testing.assert_array_equal(vision.read_image(arr), vision.read_image(IMAGE))
    with pytest.raises(ValueError, match="uint8"):
        vision.read_image(arr.astype(np.float32))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not an image"):
        vision.read_image(bad)


def test_ppm_header_comments_and_maxval():
    data = b"P6\n# a comment\n2 1\n# another\n15\n" + bytes([0, 15, 3, 15, 0, 6])
    img, maxval = vision.read_ppm(data)
    assert img.shape == (1, 2, 3) and maxval == 15
    with pytest.raises(ValueError, match="bytes"):
        vision.read_ppm(data[:-1])
    with pytest.raises(ValueError, match="P6"):
        vision.read_ppm(b"P3\n1 1\n255\n0 0 0\n")


def test_placeholders_must_match_the_image():
    m = model(GEMMA3["bf16"])
    rows = ref("bf16", "image_tokens", (4, 128))
    ids = m.wrap("Describe:", image=IMAGE)
    with pytest.raises(ValueError, match="placeholders"):
        m.logits(ids[:19] + ids[20:], image=rows)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m.logits(ids)  # -2 without an image
    with pytest.raises(ValueError, match="num_image_tokens"):
        m.logits(ids, image=rows[:3])


def test_text_only_file_refuses_images():
    m = model(CORPUS / "v2" / "gemma3-1b-tiny-bf16.sbs")
    with pytest.raises(UnsupportedModel, match="no vision encoder"):
        m.image_tokens(IMAGE)


def test_unsupported_grid_is_refused():
    import dataclasses

    cfg = model(GEMMA3["bf16"]).config
    bad = dataclasses.replace(cfg, vit_config=dataclasses.replace(cfg.vit_config, image_size=14 * 6, seq_len=36))
    with pytest.raises(UnsupportedModel, match="divisible by 4"):
        vision.check_vit(bad)


def test_load_with_images_decodes_the_vit_and_drops_the_text_only_note():
    notes: list[str] = []
    m = inference.load(GEMMA3["sfp"], images=True, progress=False, log=notes.append)
    assert m._vit is not None
    assert not any("text-only" in n for n in notes)
    assert any("vision encoder: 2 ViT layers, 4 image tokens" in n for n in notes)
    notes.clear()
    inference.load(GEMMA3["sfp"], progress=False, log=notes.append)
    assert any("skipping the vision encoder" in n for n in notes)
    with pytest.raises(ValueError, match="vision must be"):
        inference.load(GEMMA3["sfp"], vision="published", progress=False)


# -- sbs run --image --------------------------------------------------------------------------------
def test_cli_run_with_image(capsys):
    from sbs_tools.cli import main

    md = meta("sfp")
    rc = main(["run", str(GEMMA3["sfp"]), "--image", str(IMAGE), "--prompt", "Describe:", "-n", "8"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    tok = model(GEMMA3["sfp"]).tokenizer
    text_ids = [t for t in md["prompt_ids"] if t >= 0]
    assert out.out == tok.decode(text_ids + md["generated_ids"])[len(tok.decode(text_ids)):] + "\n"
    assert "text-only" not in out.err and "4 image tokens" in out.err
    assert "prompt: 33 tokens" in out.err


def test_cli_run_image_errors(capsys, tmp_path):
    from sbs_tools.cli import main

    text_only = CORPUS / "v2" / "gemma3-1b-tiny-sfp.sbs"
    assert main(["run", str(text_only), "--image", str(IMAGE), "--prompt", "x"]) == 2
    assert "no vision encoder" in capsys.readouterr().err
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 not really")
    assert main(["run", str(GEMMA3["sfp"]), "--image", str(junk), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "[bad-image]" in err and len(err.strip().splitlines()[-1]) > 0 and "Traceback" not in err
    assert main(["run", str(GEMMA3["sfp"]), "--image", str(IMAGE), "--tokens", "2,3"]) == 2
    assert "--image only applies together with --prompt" in capsys.readouterr().err


# -- verify / inspect --------------------------------------------------------------------------------
def test_verify_and_inspect_name_the_vision_behaviours():
    import dataclasses

    import sbs_tools
    from sbs_tools.canonical import canonical_config, vit_pool_grid_problem
    from sbs_tools.summary import summarize
    from sbs_tools.verify import verify

    report = verify(GEMMA3["sfp"])
    codes = {f.code: f for f in report.findings}
    assert codes["vit-pool-grid"].severity == "warning" and "8x8" in codes["vit-pool-grid"].message
    assert codes["vision-quirk"].severity == "info" and "first image token" in codes["vision-quirk"].message
    with sbs_tools.open(GEMMA3["sfp"]) as f:
        notes = summarize(f)["notes"]
    assert any("AvgPool4x4" in n for n in notes) and any("vision=\"reference\"" in n for n in notes)
    real = canonical_config("GEMMA3_4B", "sfp")  # 896 px / 14: the 64x64 grid gemma.cpp pools
    assert vit_pool_grid_problem(real) is None
    small = dataclasses.replace(real, vit_config=dataclasses.replace(real.vit_config, image_size=448, seq_len=1024))
    assert "32x32" in vit_pool_grid_problem(small)
    # PaliGemma and text-only files: neither finding
    for path in (PALI, CORPUS / "v2" / "gemma3-1b-tiny-sfp.sbs"):
        assert not {"vit-pool-grid", "vision-quirk"} & {f.code for f in verify(path).findings}
