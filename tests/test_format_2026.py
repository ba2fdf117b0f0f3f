"""gemma.cpp after 3ed403e (addendum SBS_FORMAT_2026.md): new config fields, enums, types, codecs, tokenizer."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import sbs_tools
from sbs_tools import bpe, codecs
from sbs_tools.cli import main
from sbs_tools.codecs import mxfp4, q4_0
from sbs_tools.config import MODEL_NAMES, LayerConfig, ModelConfig, decode_config
from sbs_tools.repair import repair
from sbs_tools.toc import TocRecord
from sbs_tools.types import Type
from sbs_tools.writer import write_model

from .conftest import CORPUS

G3 = CORPUS / "v2" / "gemma3-1b-tiny-bf16.sbs"
G2 = CORPUS / "v2" / "gemma2-2b-tiny-bf16.sbs"


# -- the addendum's worked examples (§2.4) ---------------------------------------------------------------------
def test_q4_0_worked_examples():
    b = bytes([0x00, 0xBF, 0x80, 0xF7] + [0x88] * 14)
    v = codecs.decode("Q4_0", b, 32)
    assert (v[0], v[16], v[1], v[17]) == (4.0, 0.0, 0.5, -3.5) and not np.delete(v, [0, 1, 17]).any()
    assert codecs.encode("Q4_0", v) == b  # re-encoding gives the same bytes
    zero = bytes([0x00, 0x80] + [0x88] * 16)
    z = codecs.decode("q4_0", zero, 32)
    assert not z.any() and np.signbit(z).all()  # 32 x -0.0
    assert codecs.encode("q4_0", np.zeros(32)) == zero


def test_mxfp4_worked_examples():
    v = codecs.decode("MXFP4", bytes([0x7F, 0x21] + [0] * 15), 32)
    assert (v[0], v[16]) == (0.5, 1.0) and not np.delete(v, [0, 16]).any()
    b = bytes([0x80, 0xF7] + [0] * 15)
    v = codecs.decode("MXFP4", b, 32)
    assert (v[0], v[16]) == (12.0, -12.0)
    assert codecs.encode("MXFP4", v) == b  # max 12: 12/6 = 2, exponent 1 (exact log2; see mxfp4 doc)
    # rounding at scale 2^0: midpoints go to the larger magnitude, >= 5 saturates
    x = np.array([0.24, 0.25, 0.75, 2.4, 2.5, 5.0, 7.9], np.float32)
    assert mxfp4.FP4_VALUES[mxfp4.nibble_codes(x)].tolist() == [0, 0.5, 1.0, 2.0, 3.0, 6.0, 6.0]
    assert codecs.decode("MXFP4", bytes([0x00] + [0x11] * 16), 32).tolist() == [0.0] * 32  # e = 0: scale 0


def test_packed_sizes():
    assert codecs.packed_size("Q4_0", 33) == 36 and codecs.packed_size("MXFP4", 33) == 34
    assert codecs.packed_size("U16", 3) == 6 and codecs.packed_size("U8", 3) == 3 and codecs.packed_size("INT8", 3) == 3


finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=200), st.sampled_from(["Q4_0", "MXFP4"]))
@example([1.6521308894389593e-42], "Q4_0")  # a subnormal block maximum: the bf16 scale underflows to -0
def test_block_codecs_round_trip(xs, t):
    """Any length (a partial final block too): size, error bound per block, and decode(encode) re-encodes
    to the same bytes."""
    x = np.asarray(xs, dtype=np.float32)
    raw = codecs.encode(t, x)
    assert len(raw) == codecs.packed_size(t, x.size)
    y = codecs.decode(t, raw, x.size)
    pad = np.zeros(-(-x.size // 32) * 32, np.float32)
    pad[:x.size] = x
    m = np.abs(pad).reshape(-1, 32).max(axis=1)
    bound = (0.13 if t == "Q4_0" else 1 / 3 + 1e-6) * np.repeat(m, 32)[:x.size]
    assert (np.abs(y - x) <= bound + 1e-30).all()
    again = codecs.encode(t, y)
    if t == "Q4_0":
        # The decoded values re-encode to the same bytes -- except a block whose scale max/-8 underflows to
        # a bf16 zero although the block is not zero: 1/d is then infinite, gemma.cpp's encoder writes
        # nibble 0 (not 8) for its zeros, and the all-zero decode re-encodes as the zero block (nibbles 8).
        a, b = (np.frombuffer(r, np.uint8).reshape(-1, 18) for r in (raw, again))
        underflow = ((a[:, 0] == 0) & ((a[:, 1] & 0x7F) == 0)) & (m > 0)
        assert np.array_equal(a[~underflow], b[~underflow])
    else:  # MXFP4 may pick another exponent for them (24 = 6 x 4 = 3 x 8), but the values are a fixed point
        assert np.array_equal(codecs.decode(t, again, x.size), y)


def test_mxfp4_clobbered_blocks_found():
    x = np.ones(64, np.float32)
    raw = bytearray(codecs.encode("MXFP4", x))
    raw[17] = 0  # second block: exponent 0 with non-zero nibbles (the ee051c9c overwrite's remains)
    assert mxfp4.clobbered(np.frombuffer(bytes(raw), np.uint8), 64).tolist() == [1]


# -- files with the new elements, built with the project's writer ----------------------------------------------
def _rebuild(src: Path, out: Path, cfg: ModelConfig, *, types: dict[str, Type] | None = None,
             tokenizer: bytes | None = None) -> Path:
    with sbs_tools.open(src) as f:
        tensors = []
        for r in f.toc:
            t = (types or {}).get(r.name)
            if t is None:
                tensors.append((r, f.raw(r.name).tobytes()))
            else:
                vals = f.tensor(r.name).reshape(-1) * np.float32(r.scale)
                tensors.append((TocRecord.make(r.name, t, r.rows, r.cols), codecs.encode(t, vals)))
        tok = f.tokenizer_bytes if tokenizer is None else tokenizer
        write_model(out, cfg, tensors, tok)
    return out


def _cfg(src: Path) -> ModelConfig:
    with sbs_tools.open(src) as f:
        return f.config


def test_new_writer_config_reads_cleanly(tmp_path):
    """A config as the newest gemma.cpp writes it (38-field LayerConfigs, every trailing field) with the
    flag: no false alarm; 3ed403e would crash on it, and verify says so."""
    cfg = _cfg(G3)
    cfg.stored_fields = None
    cfg.use_global_timescale = True
    cfg.global_rope_theta = 1e6
    cfg.layer_configs = [replace(lc, stored_fields=None) for lc in cfg.layer_configs]
    p = _rebuild(G3, tmp_path / "new.sbs", cfg)
    r = sbs_tools.verify_file(p)
    assert r.ok and not r.warnings, [(x.code, x.message) for x in r.findings]
    gens = {g.key: g for g in r.compat}
    assert gens["2026-08-27"].loads and gens["2026-07-10"].loads
    assert not gens["2025-10-15"].loads and any("end_.empty" in w for w in gens["2025-10-15"].reasons)
    with sbs_tools.open(p) as f:
        assert len(f.config.layer_configs[0].__dict__) and f.config.layer_configs[0].kv_share_layer_idx == -1
        assert f.config.to_bytes() == f._metadata_words("config").tobytes()  # written back word for word


@pytest.mark.parametrize("model", sorted(m for m in MODEL_NAMES if m >= 19) + [57])
def test_every_new_model_enum(tmp_path, model, capsys):
    cfg = _cfg(G2)
    cfg.model = model
    p = _rebuild(G2, tmp_path / f"m{model}.sbs", cfg)
    r = sbs_tools.verify_file(p)
    codes = {x.code for x in r.findings}
    assert not codes & {"config-undecodable", "config-invalid"}
    assert main(["inspect", "--json", str(p)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["model"] == (MODEL_NAMES.get(model) or 57)
    if model == 57:
        assert "newer-format" in codes  # a number newer than this release: a warning, everything else checked
    gens = {g.key: g for g in r.compat}
    assert not gens["2025-10-15"].loads  # 3ed403e: 'Invalid enum'
    if model in (19, 57):
        assert not gens["2026-08-27"].loads


def test_q4_0_and_mxfp4_files(tmp_path):
    cfg = _cfg(G3)
    with sbs_tools.open(G3) as f:
        big = {r.name: r for r in f.toc if r.name.split("_")[0] in ("qkv", "gating", "linear") and r.cols % 32 == 0}
    assert big
    for t in (Type.Q4_0, Type.MXFP4):
        c = replace(cfg, weight=int(t))
        p = _rebuild(G3, tmp_path / f"{t.name}.sbs", c, types={n: t for n in big})
        r = sbs_tools.verify_file(p, deep=True)
        assert r.ok, [(x.code, x.message) for x in r.errors]
        assert not {x.code for x in r.findings} & {"type-unsupported", "weight-type-mismatch", "newer-format"}
        assert not {g.key for g in r.compat if g.loads} & {"2025-10-15", "2025-10-24"}
    # a clobbered MXFP4 block is found by --deep
    p = tmp_path / "MXFP4.sbs"
    data = bytearray(p.read_bytes())
    with sbs_tools.open(p) as f:
        info = f.tensors[next(iter(big))]
        off = info.offset
    data[off] = 0
    data[off + 16] = 0x77
    bad = tmp_path / "bad.sbs"
    bad.write_bytes(bytes(data))
    assert "mxfp4-block-invalid" in sbs_tools.verify_file(bad, deep=True).codes("error")


def test_utf8_display_name(tmp_path):
    cfg = replace(_cfg(G2), display_name="Gémma ✓")
    p = _rebuild(G2, tmp_path / "u.sbs", cfg)
    r = sbs_tools.verify_file(p)
    assert r.ok and not r.warnings
    gens = {g.key: g for g in r.compat}
    assert not gens["2025-10-15"].loads and any("UTF-8" in w for w in gens["2025-10-15"].reasons)
    with sbs_tools.open(p) as f:
        assert f.config.display_name == "Gémma ✓"


def test_bpe_tokenizer_blob(tmp_path):
    vocab = ["<unk>", "a", "b", "ab", "▁", "<0x41>"]
    blob = bpe.pack(vocab, [(1, 2)], added_ids=[0])
    v = bpe.parse(blob)
    assert v["vocab"] == vocab and v["merges"] == [1, 2] and v["flags"] == 3
    cfg = replace(_cfg(G2), tokenizer_kind=1)
    cfg.stored_fields = None
    ok = _rebuild(G2, tmp_path / "bpe.sbs", cfg, tokenizer=blob)
    r = sbs_tools.verify_file(ok)
    assert r.ok and "tokenizer-invalid" not in r.codes()
    broken = _rebuild(G2, tmp_path / "bad.sbs", cfg, tokenizer=bpe.pack(vocab, [(1, 99)]))
    assert "tokenizer-invalid" in sbs_tools.verify_file(broken).codes("error")
    # kind mismatch: a BPE blob under a SentencePiece config
    mism = _rebuild(G2, tmp_path / "mism.sbs", replace(cfg, tokenizer_kind=0), tokenizer=blob)
    f = sbs_tools.verify_file(mism).by_code("tokenizer-invalid")
    assert f and "kSentencePiece" in f[0].message


def test_bpe_vocabulary_larger_than_vocab_size(tmp_path):
    """Addendum §7: gemma.cpp never compares the BPE vocabulary with config.vocab_size; ids beyond it would
    index past the embedding, so verify warns (and only then)."""
    cfg = replace(_cfg(G2), tokenizer_kind=1)
    cfg.stored_fields = None
    n = cfg.vocab_size
    for count, warned in ((n, False), (n + 1, True)):
        blob = bpe.pack([f"t{i}" for i in range(count)], [])
        r = sbs_tools.verify_file(_rebuild(G2, tmp_path / f"bpe{count}.sbs", cfg, tokenizer=blob))
        found = r.by_code("bpe-vocab-size")
        assert bool(found) == warned and r.ok
        assert not found or (found[0].severity == "warning" and str(count) in found[0].message
                             and str(n) in found[0].message)


def test_encoder_decoder_config(tmp_path):
    lc = LayerConfig(model_dim=8, ff_hidden_dim=16, heads=2, kv_heads=2, qkv_dim=4, post_norm=1)
    cfg = ModelConfig(model=26, weight=2, num_layers=2, model_dim=8, vocab_size=16, max_seq_len=32,
                      layer_configs=[lc, lc], attention_window_sizes=[16, 32], is_encoder_decoder=True,
                      encoder_num_layers=2, encoder_layer_configs=[lc, lc], encoder_attention_window_sizes=[16, 32],
                      decoder_num_layers=2, decoder_layer_configs=[lc, lc], decoder_attention_window_sizes=[16, 32],
                      global_rope_theta=1e4)
    back = decode_config(np.frombuffer(cfg.to_bytes(), "<u4"))
    assert back == cfg and back.global_rope_theta == 1e4 and back.to_dict()["model"] == "T5GEMMA_S_S"
    bad = replace(cfg, encoder_num_layers=3)
    from sbs_tools.verify.metadata import Metadata, _check_config_values, config_field_offsets
    found, _ = _check_config_values(bad, config_field_offsets(bad, 0, 10**6), 0)
    assert any("encoder_num_layers" in x.message for x in found)


def test_gemma3_lm_variant_and_specifier():
    from sbs_tools.canonical import from_specifier, parse_specifier
    assert parse_specifier("gemma3-4b-lm-sfp-it")[0] == 20  # longest prefix, not gemma3-4b
    assert parse_specifier("gemma3-27b-lm-q4_0-it")[0:2] == (22, Type.Q4_0)
    cfg = from_specifier("gemma3-4b-lm-bf16-it")
    assert cfg.model_name == "GEMMA3_4B_LM" and not cfg.use_global_timescale and not cfg.vit_config.layer_configs


def test_global_timescale_repair_corpus(tmp_path):
    """Gemma 3 1B/4B from the corpus: warning, and repair --target current clears it (tensors identical);
    Gemma 2 and 270M never get it."""
    r = sbs_tools.verify_file(G3)
    (w,) = r.by_code("global-timescale-missing")
    out = tmp_path / "fixed.sbs"
    res = repair(G3, out, target="current")
    assert res.status == "repaired" and res.proof_summary().startswith(f"{res.proof_counts()[1]}/")
    assert not sbs_tools.verify_file(out).by_code("global-timescale-missing")
    assert not sbs_tools.verify_file(G2).by_code("global-timescale-missing")
    from sbs_tools.canonical import canonical_config
    c270 = canonical_config(18, "bf16")
    assert not c270.needs_global_timescale and not c270.use_global_timescale


def test_a_newer_element_type_is_reported_and_not_decoded():
    """A type number newer than this release: verify warns (newer-format, the file stays ok) and tensor()
    says it cannot decode that type (unknown-type), like inference.load."""
    from pathlib import Path

    from sbs_tools.errors import SbsError

    path = Path(__file__).resolve().parent / "fuzz" / "regressions" / "toc-type-255.sbs"
    rep = sbs_tools.verify_file(path, deep=True)
    assert rep.ok and any(f.code == "newer-format" and f.tensor == "linear_w_1" for f in rep.findings)
    with sbs_tools.open(path) as f:
        with pytest.raises(SbsError) as e:
            f.tensor("linear_w_1")
    assert e.value.code == "unknown-type" and "255" in e.value.message
