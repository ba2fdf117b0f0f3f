"""GGUF -> .sbs on small synthetic llama.cpp-style files: layout, norms, config, tokenizer, errors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf")

import sbs_tools  # noqa: E402
from sbs_tools.cli import main  # noqa: E402
from sbs_tools.convert import ConvertError, names, spm  # noqa: E402
from sbs_tools.convert.build import convert  # noqa: E402
from sbs_tools.convert.gguf_file import GgufFile  # noqa: E402
from sbs_tools.convert.synthetic import TinySpec, gguf_vocab_from_spm, random_weights, write_gguf, write_hf  # noqa: E402
from sbs_tools.export import decoded  # noqa: E402

from .conftest import CORPUS  # noqa: E402

TOKENIZER = (CORPUS / "tiny_sp256.model").read_bytes()


@pytest.fixture(params=[2, 3], ids=["gemma2", "gemma3"])
def tiny(request, tmp_path):
    spec = TinySpec(family=request.param, layers=3, model_dim=64, heads=4, kv_heads=2, qkv_dim=32, ff=96, vocab=256,
                    pattern=3 if request.param == 3 else 0)
    w = random_weights(spec, seed=request.param)
    path = write_gguf(tmp_path / "tiny.gguf", spec, w, vocab=gguf_vocab_from_spm(TOKENIZER))
    return spec, w, path


def test_gguf_reader_metadata_and_tensors(tiny):
    spec, w, path = tiny
    with GgufFile(path) as g:
        arch = g.architecture
        assert arch == ("gemma3" if spec.family == 3 else "gemma2")
        assert g.get("{arch}.block_count") == 3
        assert len(g.metadata["tokenizer.ggml.tokens"]) == 256
        t = g.tensors["blk.1.attn_q.weight"]
        assert t.dims == (64, 128) and t.shape == (128, 64) and t.rows == 128 and t.cols == 64
        np.testing.assert_array_equal(g.dequantize("blk.1.attn_q.weight"), w["model.layers.1.self_attn.q_proj.weight"])
        np.testing.assert_array_equal(g.dequantize("token_embd.weight", 10, 20), w["model.embed_tokens.weight"][10:20])


def test_f32_conversion_is_exact_mapping(tiny, tmp_path):
    spec, w, path = tiny
    res = convert(path, tmp_path / "out.sbs", weight="f32")
    H, K, Dh = spec.heads, spec.kv_heads, spec.qkv_dim
    with sbs_tools.open(tmp_path / "out.sbs") as f:
        assert all(i.type_name == "F32" for i in f.tensors.values())
        np.testing.assert_array_equal(decoded(f, "c_embedding"), w["model.embed_tokens.weight"])
        # norms: GGUF stores 1 + w; the .sbs holds w (float32 (1 + w) - 1 may differ from w in the last bit)
        np.testing.assert_allclose(decoded(f, "c_final_norm")[0], w["model.norm.weight"], atol=2e-7)
        for i in range(spec.layers):
            b = f"model.layers.{i}."
            q, k, v = (w[b + f"self_attn.{x}_proj.weight"] for x in "qkv")
            qkv = decoded(f, f"qkv_ein_{i}")
            np.testing.assert_array_equal(qkv[:H * Dh], q)
            for j in range(K):  # per kv head: K rows then V rows
                base = H * Dh + 2 * j * Dh
                np.testing.assert_array_equal(qkv[base:base + Dh], k[j * Dh:(j + 1) * Dh])
                np.testing.assert_array_equal(qkv[base + Dh:base + 2 * Dh], v[j * Dh:(j + 1) * Dh])
            o = w[b + "self_attn.o_proj.weight"]
            att = decoded(f, f"att_ein_{i}").reshape(H, spec.model_dim, Dh)
            for h in range(H):
                np.testing.assert_array_equal(att[h], o[:, h * Dh:(h + 1) * Dh])
            g = decoded(f, f"gating_ein_{i}")
            np.testing.assert_array_equal(g[:spec.ff], w[b + "mlp.gate_proj.weight"])
            np.testing.assert_array_equal(g[spec.ff:], w[b + "mlp.up_proj.weight"])
            np.testing.assert_array_equal(decoded(f, f"linear_w_{i}"), w[b + "mlp.down_proj.weight"])
            np.testing.assert_allclose(decoded(f, f"pre_att_ns_{i}")[0], w[b + "input_layernorm.weight"], atol=2e-7)
            np.testing.assert_allclose(decoded(f, f"post_ff_ns_{i}")[0], w[b + "post_feedforward_layernorm.weight"],
                                       atol=2e-7)
            if spec.family == 3:
                np.testing.assert_allclose(decoded(f, f"query_norm_{i}")[0], w[b + "self_attn.q_norm.weight"],
                                           atol=2e-7)
            else:
                assert f"query_norm_{i}" not in f.tensors
        cfg = f.config
    assert not res.canonical
    assert cfg.model_name == ("GEMMA3_1B" if spec.family == 3 else "GEMMA2_2B")
    assert cfg.wrapping == 1  # name "tiny-gemma" is not instruction-tuned -> PT
    assert cfg.max_seq_len == 128
    if spec.family == 3:
        assert cfg.attention_window_sizes == [8, 8, 128] and cfg.att_cap == 0 and cfg.secondary_eos_id == 106
        assert all(lc.use_qk_norm and lc.optimized_gating for lc in cfg.layer_configs)
    else:
        assert cfg.attention_window_sizes == [8, 128, 8] and (cfg.att_cap, cfg.final_cap) == (50.0, 30.0)
        assert not any(lc.use_qk_norm or lc.optimized_gating for lc in cfg.layer_configs)


def test_gguf_and_hf_give_the_same_tensors(tiny, tmp_path):
    """Two independent mapping tables (GGUF names with 1 + w norms; HF names) agree."""
    spec, w, path = tiny
    # Round the norms through (1 + w) - 1 first so both sources hold exactly the same float32 values.
    w2 = {k: ((v + np.float32(1)) - np.float32(1)).astype(np.float32) if k.endswith("norm.weight") else v
          for k, v in w.items()}
    write_hf(tmp_path / "hf", spec, w2, tokenizer=TOKENIZER)
    for t in ("f32", "bf16", "sfp"):
        convert(path, tmp_path / "g.sbs", weight=t, overwrite=True)
        convert(tmp_path / "hf", tmp_path / "h.sbs", weight=t, overwrite=True)
        with sbs_tools.open(tmp_path / "g.sbs") as a, sbs_tools.open(tmp_path / "h.sbs") as b:
            assert list(a.tensors) == list(b.tensors)
            for n in a.tensors:
                assert a.tensors[n].scale == b.tensors[n].scale, n
                assert np.array_equal(a.raw(n), b.raw(n)), n
            assert a.config.to_words() == b.config.to_words()


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_0", "Q5_0"])
def test_quantized_gguf_dequantized(tmp_path, qtype):
    import gguf

    spec = TinySpec(family=3, layers=1, model_dim=64, heads=2, kv_heads=1, qkv_dim=32, ff=64, vocab=64)
    w = random_weights(spec, seed=7)
    path = write_gguf(tmp_path / "q.gguf", spec, w, qtype=qtype)
    res = convert(path, tmp_path / "q.sbs", weight="f32")
    assert any(qtype in n for n in res.notes)
    emb = w["model.embed_tokens.weight"]
    with GgufFile(path) as g:
        ref = gguf.quants.dequantize(g.raw("token_embd.weight"), gguf.GGMLQuantizationType[qtype])
    with sbs_tools.open(tmp_path / "q.sbs") as f:
        got = decoded(f, "c_embedding")
    np.testing.assert_array_equal(got, ref.reshape(got.shape))
    assert np.abs(got - emb).max() < {"F16": 1e-3, "Q8_0": 0.01, "Q5_0": 0.05, "Q4_0": 0.1}[qtype]


def test_tokenizer_rebuilt_matches_original(tiny, tmp_path):
    import sentencepiece as sentencepiece

    _, _, path = tiny
    res = convert(path, tmp_path / "t.sbs", weight="bf16")
    with sbs_tools.open(tmp_path / "t.sbs") as f:
        rebuilt = sentencepiece.SentencePieceProcessor(model_proto=f.tokenizer_bytes)
    orig = sentencepiece.SentencePieceProcessor(model_proto=TOKENIZER)
    assert rebuilt.get_piece_size() == orig.get_piece_size()
    for i in range(orig.get_piece_size()):
        assert rebuilt.id_to_piece(i) == orig.id_to_piece(i)
    # GGUF's add_space_prefix is false here while the tiny original adds a dummy prefix (and, unlike Gemma 3,
    # collapses whitespace): compare on single-spaced text whose rebuilt form starts with that space.
    for text in [" the cat sat on the mat", " she sells sea shells", " <start_of_turn>user"]:
        assert rebuilt.encode(text) == orig.encode(text[1:])
    assert rebuilt.piece_to_id("<start_of_turn>") == 4
    assert rebuilt.encode("<start_of_turn>")[:1] == [4]  # user-defined: encodable from text
    assert (rebuilt.unk_id(), rebuilt.bos_id(), rebuilt.eos_id(), rebuilt.pad_id()) == (3, 2, 1, 0)
    assert any("marked UNKNOWN" in n for n in res.notes)


def test_spm_fixes_and_errors():
    toks = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "  ", "\u2581a", "a", "b"]
    types = [3, 3, 3, 3, 3, 3, 4, 1, 1, 1]
    b = spm.build_from_gguf(toks, np.zeros(len(toks)), types)
    assert len(b.fixes) == 4
    assert spm.check_loadable(b.proto) == len(toks)
    with pytest.raises(ConvertError, match="duplicate"):
        spm.build_from_gguf(toks[:-1] + ["a"], None, None)
    with pytest.raises(ConvertError, match="outside"):
        spm.build_from_gguf(toks, None, None, unk_id=99)
    with pytest.raises(ConvertError, match="SentencePiece"):
        spm.build_from_gguf(toks, None, None, model="gpt2")
    with pytest.raises(ConvertError, match="length"):
        spm.build_from_gguf(toks, np.zeros(3), None)


def test_model_proto_bytes_equal_protobufs_own_serializer():
    pb = pytest.importorskip("sentencepiece.sentencepiece_model_pb2", exc_type=ImportError)
    toks = ["<pad>", "<eos>", "<bos>", "<unk>", "\u2581a", "b", "<0x00>"]
    sc = np.array([0, 0, 0, 0, -1.5, -2.25, 0], np.float32)
    ty = [3, 3, 3, 2, 1, 1, 6]
    ours = spm.encode_model_proto(toks, sc, ty, spm.TrainerOptions())
    m = pb.ModelProto()
    for p, s, t in zip(toks, sc, ty):
        m.pieces.add(piece=p, score=float(s), type=t)
    o = spm.TrainerOptions()
    ts = m.trainer_spec
    ts.model_type, ts.vocab_size = o.model_type, len(toks)
    ts.split_digits, ts.allow_whitespace_only_pieces, ts.byte_fallback = True, True, True
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 3, 2, 1, 0
    ts.unk_piece, ts.bos_piece, ts.eos_piece, ts.pad_piece = "<unk>", "<bos>", "<eos>", "<pad>"
    ns = m.normalizer_spec
    ns.name, ns.add_dummy_prefix, ns.remove_extra_whitespaces, ns.escape_whitespaces = "identity", False, False, True
    assert ours == m.SerializeToString()


def test_config_matching_and_model_option(tmp_path):
    # A GGUF with Gemma 3 270M's shape (but only 1/1000 of the vocabulary rows would not fit): use the real dims
    # of the canonical check via resolve_config directly, without writing 270M-sized tensors.
    from sbs_tools.convert.source import Arch, resolve_config
    from sbs_tools.types import Type

    arch = Arch(family=3, num_layers=18, model_dim=640, vocab_size=262144, max_seq_len=32768, heads=4, kv_heads=1,
                qkv_dim=256, ff_hidden_dim=[2048] * 18, windows=[0 if i % 6 == 5 else 512 for i in range(18)],
                name="Gemma_3_270m", wrapping_hint=1, wrapping_reason="test")
    r = resolve_config(arch, Type.SFP)
    assert r.canonical and r.config.specifier == "gemma3-270m-sfp-pt"
    assert any("10,000" in n for n in r.notes)
    r = resolve_config(arch, Type.BF16, specifier="gemma3-270m-bf16-it")
    assert r.config.wrapping == 0
    r = resolve_config(arch, Type.BF16, wrapping=0)
    assert r.config.specifier == "gemma3-270m-bf16-it"
    with pytest.raises(ConvertError, match="does not fit --model"):
        resolve_config(arch, Type.BF16, specifier="gemma3-1b-bf16")
    with pytest.raises(ConvertError, match="weight type"):
        resolve_config(arch, Type.BF16, specifier="gemma3-270m-sfp")
    # Gemma 3 4B text weights at 131072 context and 262208 rows: canonical 4B, text-only, rows trimmed
    a4 = dataclasses.replace(arch, num_layers=34, model_dim=2560, vocab_size=262208, max_seq_len=131072, heads=8,
                             kv_heads=4, ff_hidden_dim=[10240] * 34,
                             windows=[0 if i % 6 == 5 else 1024 for i in range(34)])
    r = resolve_config(a4, Type.SFP)
    assert r.config.model_name == "GEMMA3_4B" and not r.config.vit_config.layer_configs
    assert r.vocab_rows == 262144 and r.config.wrapping == 2
    assert any("padding rows" in n for n in r.notes) and any("131072" in n for n in r.notes)


def test_wrapping_from_gguf_name(tmp_path):
    spec = TinySpec(family=3, layers=1, model_dim=32, heads=2, kv_heads=1, qkv_dim=16, ff=32, vocab=64)
    w = random_weights(spec)
    write_gguf(tmp_path / "a.gguf", spec, w, name="Gemma 3 Tiny It", finetune="it")
    assert convert(tmp_path / "a.gguf", tmp_path / "a.sbs").config.wrapping == 0
    write_gguf(tmp_path / "b.gguf", spec, w, name="Gemma 3 Tiny")
    assert convert(tmp_path / "b.gguf", tmp_path / "b.sbs").config.wrapping == 1
    assert convert(tmp_path / "b.gguf", tmp_path / "c.sbs", wrapping="it").config.wrapping == 0


def test_errors(tmp_path, capsys):
    spec = TinySpec(family=3, layers=2, model_dim=32, heads=2, kv_heads=1, qkv_dim=16, ff=32, vocab=64)
    w = random_weights(spec)
    del w["model.layers.1.mlp.up_proj.weight"]
    path = write_gguf(tmp_path / "m.gguf", spec, w)
    with pytest.raises(ConvertError) as e:
        convert(path, tmp_path / "m.sbs")
    assert e.value.code == "missing-tensor" and not (tmp_path / "m.sbs").exists()
    data = path.read_bytes()
    (tmp_path / "trunc.gguf").write_bytes(data[:len(data) - 100])
    with pytest.raises(ConvertError) as e:
        convert(tmp_path / "trunc.gguf", tmp_path / "t.sbs")
    assert e.value.code == "gguf-truncated"
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\xff" * 40)
    with pytest.raises(ConvertError):
        convert(tmp_path / "junk.gguf", tmp_path / "j.sbs")
    import gguf

    g = gguf.GGUFWriter(str(tmp_path / "llama.gguf"), "llama")
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()
    rc = main(["convert", str(tmp_path / "llama.gguf"), str(tmp_path / "l.sbs")])
    assert rc == 2 and "unsupported-arch" in capsys.readouterr().err
    rc = main(["convert", str(path), str(tmp_path / "x.sbs"), "--type", "f16"])
    assert rc == 2


def test_cli_convert_json_and_layout_v1(tiny, tmp_path, capsys):
    import json

    _, _, path = tiny
    rc = main(["convert", str(path), str(tmp_path / "v1.sbs"), "--type", "sfp", "--layout", "v1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["specifier"].endswith("-sfp-pt")
    with sbs_tools.open(tmp_path / "v1.sbs") as f:
        assert f.layout == "v1" and f.file_bytes % 65536 == 0
    rc = main(["verify", str(tmp_path / "v1.sbs")])
    assert rc == 0


def test_type_policy():
    from sbs_tools.canonical import canonical_config
    from sbs_tools.tensors import canonical_tensors
    from sbs_tools.types import Type

    cfg = canonical_config("GEMMA3_4B", "sfp")
    by = {s.name: s for s in canonical_tensors(cfg)}
    t = lambda n, w=Type.SFP: names.tensor_type(by[n], w).name  # noqa: E731
    assert (t("qkv_ein_0"), t("linear_w_3"), t("c_embedding"), t("pre_att_ns_0"), t("query_norm_2")) == \
        ("SFP", "SFP", "BF16", "BF16", "BF16")
    assert (t("img_pos_emb"), t("img_emb_bias"), t("attn_out_b_0"), t("qkv_ein_b_5")) == ("F32",) * 4
    assert (t("qkv_ein_w_0"), t("img_emb_kernel"), t("mm_embed_norm")) == ("BF16",) * 3
    assert t("qkv_ein_w_0", Type.F32) == "F32" and t("qkv_ein_0", Type.I8) == "I8"


def test_layout_helpers_are_inverse():
    rng = np.random.default_rng(1)
    H, K, Dh, D = 4, 2, 8, 16
    q, k, v = rng.standard_normal((H * Dh, D)), rng.standard_normal((K * Dh, D)), rng.standard_normal((K * Dh, D))
    for a, b in zip(names.split_qkv_ein(names.qkv_ein(q, k, v, H, K, Dh), H, K, Dh), (q, k, v)):
        np.testing.assert_array_equal(a, b)
    o = rng.standard_normal((D, H * Dh))
    np.testing.assert_array_equal(names.o_proj_from_att_ein(names.att_ein(o, H, Dh), H, D), o)
    with pytest.raises(ValueError):
        names.qkv_ein(q, k, v[:-1], H, K, Dh)


def test_progress_callback(tiny, tmp_path):
    _, _, path = tiny
    seen = []
    convert(path, tmp_path / "p.sbs", progress=lambda d, t, n: seen.append((d, t, n)))
    assert seen and seen[-1][0] == seen[-1][1]
    assert Path(tmp_path / "p.sbs").exists()


def _ggml_blocks_by_tensor(path, res, qtype):
    """gguf's own dequantization of every big matrix, arranged as gemma.cpp's tensor (via GgufSource.get)."""
    from sbs_tools.convert.gguf_import import GgufSource
    from sbs_tools.tensors import canonical_tensors

    src = GgufSource(path)
    try:
        return {s.name: src.get(s, res.config) for s in canonical_tensors(res.config)
                if s.name in {t.name for t in res.tensors if t.type == qtype}}
    finally:
        src.close()


@pytest.mark.parametrize("family", [2, 3])
def test_q4_0_gguf_imported_block_for_block(tmp_path, family):
    import gguf
    from sbs_tools.codecs import q4_0
    from sbs_tools.codecs.bf16 import round_f32

    spec = TinySpec(family=family, layers=2, model_dim=64, heads=2, kv_heads=1, qkv_dim=32, ff=96, vocab=64,
                    pattern=2 if family == 3 else 0)
    w = random_weights(spec, seed=11)
    path = write_gguf(tmp_path / "q.gguf", spec, w, qtype="Q4_0")
    res = convert(path, tmp_path / "q.sbs", weight="q4_0")
    refs = _ggml_blocks_by_tensor(path, res, "Q4_0")
    # per layer: qkv_ein, att_ein, gating_ein, linear_w (the embedding is BF16, as in gemma.cpp's exports)
    assert len(refs) == 4 * spec.layers
    note = [n for n in res.notes if "block for block" in n]
    assert len(note) == 1 and note[0].startswith(f"{len(refs)} Q4_0 tensors") and "bf16" in note[0]
    changed_total = blocks_total = 0
    with sbs_tools.open(tmp_path / "q.sbs") as f, GgufFile(path) as g:
        for name, ref in refs.items():
            raw = np.frombuffer(f.raw(name), dtype=np.uint8)
            got = decoded(f, name)
            # the same nibbles as ggml's, the scale ggml's fp16 d rounded to bf16: nothing else differs
            blocks = raw.reshape(-1, 18)
            d = q4_0.scales(raw, got.size)
            nib = q4_0.nibbles(blocks[:, 2:]).astype(np.float32) - 8
            ref_b = ref.reshape(-1, 32)
            with np.errstate(invalid="ignore", divide="ignore"):
                d_ggml = np.nanmax(np.where(nib != 0, ref_b / np.where(nib != 0, nib, 1), np.nan), axis=1)
            has = ~np.isnan(d_ggml)
            np.testing.assert_array_equal(d[has], round_f32(d_ggml[has].astype(np.float32)))
            np.testing.assert_array_equal(got.reshape(-1, 32), nib * d[:, None])
            # off by exactly the bf16 rounding of the scale: max|nibble - 8| * |d_bf16 - d_fp16| <= 8 * |...|
            err = np.abs(got.reshape(-1, 32) - ref_b).max(axis=1)
            np.testing.assert_array_equal(err[has], np.abs(nib[has]).max(axis=1) * np.abs(d[has] - d_ggml[has]))
            assert (err[~has] == 0).all()
            changed_total += int((got.reshape(-1, 32) != ref_b).any(axis=1).sum())
            blocks_total += blocks.shape[0]
        # linear_w's blocks are ffn_down's blocks in ggml's order, with other scale bytes
        down = g.raw("blk.1.ffn_down.weight").reshape(-1, 18)
        mine = np.frombuffer(f.raw("linear_w_1"), dtype=np.uint8).reshape(-1, 18)
        np.testing.assert_array_equal(mine[:, 2:], down[:, 2:])
        ref_down = gguf.quants.dequantize(down, gguf.GGMLQuantizationType.Q4_0)
        assert not np.array_equal(decoded(f, "linear_w_1"), ref_down.reshape(spec.model_dim, -1))  # lossy
    assert f"changed the values of {changed_total} of {blocks_total} blocks" in note[0]
    assert 0 < changed_total <= blocks_total


def test_mxfp4_gguf_imported_exactly(tmp_path):
    import gguf

    spec = TinySpec(family=3, layers=1, model_dim=64, heads=2, kv_heads=1, qkv_dim=32, ff=64, vocab=64)
    w = random_weights(spec, seed=5)
    path = write_gguf(tmp_path / "m.gguf", spec, w, qtype="MXFP4")
    res = convert(path, tmp_path / "m.sbs", weight="mxfp4")
    refs = _ggml_blocks_by_tensor(path, res, "MXFP4")
    assert len(refs) == 4
    assert any(n.startswith("4 MXFP4 tensors imported block for block") and "copied exactly" in n
               for n in res.notes)
    with sbs_tools.open(tmp_path / "m.sbs") as f, GgufFile(path) as g:
        for name, ref in refs.items():
            np.testing.assert_array_equal(decoded(f, name), ref, err_msg=name)
        assert bytes(f.raw("linear_w_0")) == bytes(g.raw("blk.0.ffn_down.weight"))
        # q's blocks, then k's and v's (one kv head)
        assert bytes(f.raw("qkv_ein_0")) == b"".join(bytes(g.raw(f"blk.0.attn_{x}.weight")) for x in "qkv")


def test_mxfp4_exponents_gemma_reads_as_zero_are_reencoded():
    import gguf
    from sbs_tools.codecs import mxfp4
    from sbs_tools.convert.gguf_import import _mxfp4_from_ggml

    blk = np.zeros((4, 17), dtype=np.uint8)
    blk[:, 1] = 0x21  # values 0.5 and 1.0 times the scale
    blk[:, 0] = [0x00, 0x7F, 0xFF, 0x00]
    blk[3, 1] = 0x88  # only -0 nibbles: 0 for both readers
    blk[2, 1] = 0x11  # 0.5 * 2**128 = 2**127: finite
    out, changed = _mxfp4_from_ggml(blk, "t")
    assert changed == 2
    np.testing.assert_array_equal(out[[1, 3]], blk[[1, 3]])
    ref = gguf.quants.dequantize(blk, gguf.GGMLQuantizationType.MXFP4).reshape(-1)
    got = mxfp4.decode(out.reshape(-1), 128, np.empty(128, np.float32))
    np.testing.assert_array_equal(got[32:], ref[32:])  # 2**127 is representable with exponent 0xFE
    # ggml's 2**-128 and 2**-127 need exponent 0x00, which gemma.cpp reads as 0: re-encoded at 2**-126,
    # 2**-128 rounds up to half of that (midpoints round to the larger magnitude)
    assert np.abs(got[:32] - ref[:32]).max() == np.float32(2.0 ** -128) and got[0] != 0
    assert not mxfp4.decode(blk[0], 32, np.empty(32, np.float32)).any()  # what the raw block would give
    bad = blk[2:3].copy()
    bad[0, 1] = 0x07  # 6 * 2**128 overflows
    with pytest.raises(sbs_tools.errors.CodecError):
        _mxfp4_from_ggml(bad, "t")


def test_block_import_falls_back_when_types_differ(tmp_path):
    spec = TinySpec(family=3, layers=1, model_dim=64, heads=2, kv_heads=1, qkv_dim=32, ff=64, vocab=64)
    w = random_weights(spec, seed=3)
    path = write_gguf(tmp_path / "q8.gguf", spec, w, qtype="Q8_0")
    res = convert(path, tmp_path / "a.sbs", weight="q4_0")
    assert not any("block for block" in n for n in res.notes)
    path = write_gguf(tmp_path / "q4.gguf", spec, w, qtype="Q4_0")
    res = convert(path, tmp_path / "b.sbs", weight="mxfp4")  # Q4_0 blocks are no MXFP4 blocks
    assert not any("block for block" in n for n in res.notes)
    assert any(t.type == "MXFP4" for t in res.tensors)


def test_block_import_refuses_mappings_that_split_blocks(tmp_path):
    from sbs_tools.convert.gguf_import import GgufSource
    from sbs_tools.tensors import canonical_tensors
    from sbs_tools.types import Type

    # qkv_dim 16: att_ein rows are half blocks of attn_output; everything else moves whole blocks
    spec = TinySpec(family=3, layers=1, model_dim=64, heads=2, kv_heads=1, qkv_dim=16, ff=64, vocab=64)
    w = random_weights(spec, seed=9)
    path = write_gguf(tmp_path / "q.gguf", spec, w, qtype="Q4_0")
    res = convert(path, tmp_path / "q.sbs", weight="q4_0")
    by = {s.name: s for s in canonical_tensors(res.config)}
    with GgufSource(path) as src:
        assert src.blocks(by["att_ein_0"], res.config, Type.Q4_0) is None
        assert src.blocks(by["linear_w_0"], res.config, Type.MXFP4) is None  # Q4_0 blocks are no MXFP4 blocks
        assert src.blocks(by["pre_att_ns_0"], res.config, Type.Q4_0) is None
        assert src.blocks(by["linear_w_0"], res.config, Type.Q4_0) is not None
    assert {t.name: t.type for t in res.tensors}["att_ein_0"] == "BF16"
    assert any(n.startswith("3 Q4_0 tensors imported block for block") for n in res.notes)
