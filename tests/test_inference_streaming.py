"""Streaming weights (issue #16): the same logits as resident weights, bounded memory, the mode
chosen from a memory budget, a KV cache that grows with use."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import inference
import sbs_tools
from inference import memory, weights
from inference.weights import UnsupportedModel
from sbs_tools.cli import main
from sbs_tools.writer import write_model

from .conftest import CLEAN_CORPUS, CORPUS

G2 = CORPUS / "v2" / "gemma2-2b-tiny-bf16.sbs"
G3 = CORPUS / "v2" / "gemma3-1b-tiny-sfp.sbs"
SEQ = [2, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]  # longer than the 1B files' window (8)


@pytest.fixture
def odd_chunks(monkeypatch):
    """Matrix products in row blocks of 37 rows (of D=128 values), so that every matrix is cut into
    several uneven blocks."""
    monkeypatch.setattr(weights, "BLOCK_BYTES", 4 * 128 * 37)


def both(path):
    try:
        resident = inference.load(path, mode="resident", progress=False)
    except UnsupportedModel as e:
        pytest.skip(f"inference does not run this file: {e}")
    return resident, inference.load(path, mode="streaming", progress=False)


def decode_path(m, seq):
    cache = m.new_cache()
    return np.concatenate([m.forward(seq[:3], cache)] + [m.forward([t], cache) for t in seq[3:]])


@pytest.mark.parametrize("path", CLEAN_CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_streaming_and_resident_logits_are_bit_identical(path, odd_chunks):
    resident, streaming = both(path)
    assert streaming.streaming and not resident.streaming
    assert len(weights.row_blocks(resident.vocab_size, resident.config.model_dim)) > 1
    np.testing.assert_array_equal(streaming.logits(SEQ), resident.logits(SEQ))
    np.testing.assert_array_equal(decode_path(streaming, SEQ), decode_path(resident, SEQ))
    last = streaming.forward(SEQ, streaming.new_cache(), last_only=True)
    np.testing.assert_array_equal(last, resident.forward(SEQ, resident.new_cache(), last_only=True))
    assert streaming.generate(SEQ[:4], 5, stop_at_eos=False) == resident.generate(SEQ[:4], 5, stop_at_eos=False)
    # the dry run that sizes the streaming weights predicts what resident decoding allocates
    assert streaming.weights.nbytes == resident.weights.nbytes


def test_streaming_keeps_less_than_one_layer(odd_chunks):
    """Decoded blocks are dropped as soon as they are multiplied: a pass never holds a whole layer."""
    m = inference.load(G3, mode="streaming", progress=False)
    assert isinstance(m.weights.layers[0].w_down, inference.Streamed)
    cache = m.new_cache()
    m.forward(SEQ[:3], cache)  # warm up (imports, caches)
    tracemalloc.start()
    try:
        m.forward(SEQ[3:], cache)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < m.weights.layer_nbytes < m.weights.nbytes / 4


@pytest.mark.parametrize("mode", ["resident", "streaming"])
def test_mapped_pages_are_released_after_decoding(monkeypatch, mode):
    released: list[tuple[int, int]] = []
    real = sbs_tools.SbsFile.release
    monkeypatch.setattr(sbs_tools.SbsFile, "release",
                        lambda self, off, n: (released.append((off, n)), real(self, off, n))[1])
    m = inference.load(G3, mode=mode, progress=False)
    m.logits([2, 10, 20])
    f = sbs_tools.open(G3)
    text = [t for name, t in f.tensors.items() if not name.startswith(("enc_", "img_", "mm_"))]
    for t in text:
        covered = sum(max(0, min(o + n, t.offset + t.bytes) - max(o, t.offset)) for o, n in released)
        assert covered >= t.bytes, t.name


def test_rows_of_grouped_codecs_decode_like_the_whole_tensor():
    """Row ranges (how the streamed embedding is read) that start and end inside NUQ/I8 groups."""
    for path in (CORPUS / "v2" / "gemma2-2b-tiny-nuq.sbs", CORPUS / "v2" / "gemma2-2b-tiny-i8.sbs"):
        f = sbs_tools.open(path)
        r = weights._Reader(f, "f32")
        name = next(n for n, t in f.tensors.items() if t.type_name in ("NUQ", "I8") and t.cols % 128)
        whole = r.unscaled(name)
        rows = whole.shape[0]
        for lo, hi in [(0, 1), (1, 3), (rows // 2 - 1, rows // 2 + 2), (rows - 1, rows), (0, rows)]:
            np.testing.assert_array_equal(r.unscaled(name, lo, hi), whole[lo:hi])


def test_on_layer_hook_sees_every_layer_and_can_stop_the_pass(monkeypatch):
    m = inference.load(G3, mode="streaming", progress=False)
    seen, trace = [], []
    m.forward([2, 10, 20], m.new_cache(), trace=trace, on_layer=lambda i, x: seen.append((i, x)))
    assert [i for i, _ in seen] == list(range(m.weights.num_layers))
    assert all(x is t for (_, x), t in zip(seen, trace))

    class Stop(Exception):
        pass

    def stop_at_2(i, x):
        if i == 2:
            raise Stop

    decoded = []
    real = weights._Reader.values
    monkeypatch.setattr(weights._Reader, "values", lambda self, name, *a: (decoded.append(name), real(self, name, *a))[1])
    with pytest.raises(Stop):
        m.logits([2, 10, 20], on_layer=stop_at_2)
    layers = {int(n.rpartition("_")[2]) for n in decoded if n[-1].isdigit()}
    assert layers == {0, 1, 2}  # later layers are never decoded


# -- choosing the mode -----------------------------------------------------------------------------
def test_budget_picks_the_mode():
    need = inference.load(G2, mode="streaming", progress=False).weights.nbytes
    notes: list[str] = []
    assert not inference.load(G2, max_memory=need, progress=False, log=notes.append).streaming
    assert inference.load(G2, max_memory=need - 1, progress=False, log=notes.append).streaming
    assert notes[0].startswith("resident mode: float32 weights") and " fit " in notes[0]
    mode_lines = [n for n in notes if " mode: " in n]
    assert len(mode_lines) == 2 and mode_lines[1].startswith("streaming mode:") and "exceed" in mode_lines[1]
    # a forced mode wins over any budget
    assert inference.load(G2, mode="streaming", max_memory="1T", progress=False).streaming
    assert not inference.load(G2, mode="resident", max_memory=1, progress=False).streaming
    with pytest.raises(ValueError, match="mode"):
        inference.load(G2, mode="lazy", progress=False)


def test_default_budget_is_a_fraction_of_available_memory(monkeypatch, tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:    8388608 kB\n")
    assert memory.available_memory(str(meminfo)) == 8 << 30
    monkeypatch.setattr(memory, "available_memory", lambda: 8 << 30)
    assert memory.default_budget()[0] == int((8 << 30) * memory.DEFAULT_FRACTION)
    half = int((8 << 30) * memory.DEFAULT_FRACTION)
    assert memory.choose_mode(half)[0] == "resident"
    assert memory.choose_mode(half + 1)[0] == "streaming"
    monkeypatch.setattr(memory, "available_memory", lambda: None)  # neither /proc/meminfo nor sysconf
    assert memory.default_budget()[0] == memory.FALLBACK_BUDGET


def test_available_memory_falls_back_without_meminfo(tmp_path):
    n = memory.available_memory(str(tmp_path / "absent"))
    assert n is None or n > 0


@pytest.mark.parametrize("text, n", [("4G", 4 << 30), ("4g", 4 << 30), ("1.5GiB", 3 << 29), ("512M", 512 << 20),
                                     ("512MB", 512 << 20), ("1000", 1000), (" 2 k ", 2048), (7, 7)])
def test_parse_size(text, n):
    assert inference.parse_size(text) == n


@pytest.mark.parametrize("text", ["", "G", "4X", "-1G", "0", "four"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        inference.parse_size(text)


def test_missing_tensor_is_named_in_streaming_mode_at_load(tmp_path):
    f = sbs_tools.open(G2)
    items = [(r, f.tensor(r.name, decode=False).tobytes()) for r in f.toc if r.name != "linear_w_1"]
    write_model(tmp_path / "x.sbs", f.config, items, f.tokenizer_bytes)
    with pytest.raises(UnsupportedModel, match="linear_w_1"):
        inference.load(tmp_path / "x.sbs", mode="streaming", progress=False)


# -- KV cache -------------------------------------------------------------------------------------
def test_kv_cache_grows_with_the_tokens_used():
    m = inference.load(G2, progress=False)
    cache = m.new_cache()
    assert cache.nbytes == 0  # nothing allocated up front
    m.forward([2, 10, 20], cache)
    small = cache.nbytes
    assert 0 < small and cache.k[0].shape[1] < m.config.max_seq_len
    assert all(k.dtype == np.float32 for k in cache.k + cache.v)
    m.forward(list(range(3, 40)), cache)
    assert cache.length == 40 and cache.nbytes > small
    assert 40 <= cache.k[0].shape[1] <= 2 * 40
    m.forward(list(range(3, 3 + m.config.max_seq_len - 40)), cache)
    assert cache.k[0].shape[1] == m.config.max_seq_len  # never beyond the context


# -- sbs run --------------------------------------------------------------------------------------
def run(capsys, *args):
    rc = main(list(map(str, args)))
    out = capsys.readouterr()
    return rc, out.out, " ".join(out.err.split()).replace("│ ", "")


def test_run_modes_give_the_same_tokens_and_say_why(capsys):
    args = ("run", G3, "--tokens", "2,10,20,30", "-n", "6")
    rc, resident, err = run(capsys, *args, "--resident")
    assert rc == 0 and "resident mode: requested" in err
    rc, streaming, err = run(capsys, *args, "--streaming")
    assert rc == 0 and streaming == resident and "streaming mode: requested" in err
    rc, budget, err = run(capsys, *args, "--max-memory", "1K")
    assert rc == 0 and budget == resident and "streaming mode:" in err and "1.0 KiB" in err
    assert "forward pass layer" not in err  # the per-pass progress bar only on a terminal
    rc, _, err = run(capsys, *args, "--max-memory", "1G")
    assert rc == 0 and "resident mode:" in err and " fit " in err


def test_streaming_progress_bar_per_forward_pass_on_a_terminal(monkeypatch, capsys):
    from rich.console import Console

    assert inference.load(G3, mode="streaming").progress is inference.no_progress  # not a terminal
    assert inference.load(G3, mode="streaming", progress=False).progress is inference.no_progress
    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    assert inference.load(G3, mode="resident").progress is inference.no_progress
    m = inference.load(G3, mode="streaming")
    assert m.progress is not inference.no_progress
    capsys.readouterr()
    out = m.generate([2, 10, 20], 2, stop_at_eos=False)
    err = capsys.readouterr().err
    assert "forward pass" in err and out == inference.load(G3, progress=False).generate([2, 10, 20], 2, stop_at_eos=False)


@pytest.mark.parametrize("args, text", [
    (("--streaming", "--resident"), "--streaming and --resident cannot be combined"),
    (("--max-memory", "4X"), "not a size"),
    (("--max-memory", "0"), "must be positive"),
])
def test_run_mode_usage_errors(capsys, args, text):
    rc, _, err = run(capsys, "run", G2, "--tokens", "2", *args)
    assert rc == 2 and text in err


@pytest.mark.parametrize("name", ["gemma3-4b-vit-tiny-sfp", "gemma3-4b-vit-tiny-bf16"])
def test_image_runs_are_bit_identical_in_both_modes(name):
    """The vision path (ViT rows in the prompt, gemma.cpp's image attention) streams like the text path."""
    from .conftest import CORPUS, FIXTURES

    path, img = CORPUS / "v2" / f"{name}.sbs", FIXTURES / "vision" / "gemma3-112px.ppm"
    res = inference.load(path, progress=False, mode="resident")
    stream = inference.load(path, progress=False, mode="streaming")
    ids = res.wrap("Describe:", image=img)
    assert np.array_equal(res.logits(ids, image=img), stream.logits(ids, image=img))
    assert res.generate(ids, 3, image=img) == stream.generate(ids, 3, image=img)
