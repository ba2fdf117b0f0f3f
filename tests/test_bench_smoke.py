"""``bench/make_large.py``, ``bench/run.py`` and ``bench/inference.py`` work, on tiny files (no
timing assertions).

The real benchmark writes multi-GB files; here every dimension is scaled by
0.01, which keeps the full tensor list of the model (674 tensors for Gemma 3
4B with its ViT) in about a megabyte.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import pytest

import sbs_tools
from sbs_tools.tensors import canonical_tensors
from sbs_tools.types import Type
from sbs_tools.verify.deep import check_deep

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import make_large as ML  # noqa: E402
import run as R  # noqa: E402

TINY = 0.01


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("model,weight", [("gemma3-4b", "sfp"), ("gemma2-2b", "bf16"), ("gemma2-2b", "nuq"),
                                          ("gemma2-2b", "i8"), ("gemma3-1b", "f32"), ("gemma3-12b", "sfp"),
                                          ("gemma3-27b", "sfp")])
def test_make_large_writes_valid_full_structure(tmp_path, model, weight):
    path = tmp_path / "m.sbs"
    info = ML.make_large(path, model, weight, scale=TINY, seed=3)
    cfg = ML.synthetic_config(model, weight, TINY)
    assert info["file_bytes"] == path.stat().st_size
    assert info["tensors"] == len(canonical_tensors(cfg))
    # + metadata (toc record and directory entry per tensor) and padding
    assert abs(ML.expected_size(model, weight, TINY) - info["file_bytes"]) < max(128 << 10, 160 * info["tensors"])
    with sbs_tools.open(path) as f:
        assert f.layout == "v2" and f.config.model == cfg.model and f.config.weight == int(Type[weight.upper()])
        assert len(f.tensors) == info["tensors"]
        if cfg.vit_config.layer_configs:
            assert len(f.config.vit_config.layer_configs) == 27 and "qkv_ein_w_26" in f.tensors
        big = {t.type_name for t in f.tensors.values() if t.name.startswith(("gating_ein", "att_ein"))}
        assert big == {weight.upper()}
        assert check_deep(f) == []  # random but valid values: nothing for --deep to report
    report = sbs_tools.verify_file(path)
    assert report.ok, [(x.code, x.message) for x in report.errors]


def test_make_large_is_a_function_of_the_seed(tmp_path):
    a, b, c = tmp_path / "a.sbs", tmp_path / "b.sbs", tmp_path / "c.sbs"
    ML.make_large(a, "gemma2-2b", "sfp", scale=TINY, seed=1)
    ML.make_large(b, "gemma2-2b", "sfp", scale=TINY, seed=1, chunk_mib=1)
    ML.make_large(c, "gemma2-2b", "sfp", scale=TINY, seed=2)
    assert _sha(a) == _sha(b) != _sha(c)


def test_make_large_cli_list(capsys):
    assert ML.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "gemma3-4b" in out and "bf16" in out


def test_full_size_plan_matches_the_real_models():
    """Full-size files are shaped like gemma.cpp's Gemma 2 2B and Gemma 3 4B (sizes within 1%)."""
    assert abs(ML.expected_size("gemma2-2b", "sfp") / 3.204e9 - 1) < 0.01
    assert abs(ML.expected_size("gemma3-4b", "bf16") / 8.61e9 - 1) < 0.01
    recs = ML.plan(ML.synthetic_config("gemma3-4b", "sfp"))
    emb = next(r for r in recs if r.name == "c_embedding")
    assert (emb.rows, emb.cols, Type(emb.type)) == (262144, 2560, Type.BF16)


def test_run_measures_and_tabulates(tmp_path):
    args = argparse.Namespace(data=str(tmp_path), quick=True, scale=TINY, keep=False, only=None, repeat=1,
                              open_repeat=2, proc_repeat=1, proc_runs=1, json_out=None, markdown=None)
    b = R.Bench(args)
    path, info = b.make(R.Case("gemma3-4b", "sfp", TINY))
    b.open_rows([(path, info)])
    b.deep_rows(path, info, path.name, ["SFP"])
    b.hash_rows(path, info, path.name)
    b.done(path)
    assert not path.exists()
    whats = [r.what for r in b.rows]
    assert "Python API open (config + toc decoded)" in whats and "sbs inspect --json (whole process)" in whats
    assert any(w.startswith("verify --deep scan, SFP") for w in whats)
    assert any(w.startswith("hash_file(per=tensor)") for w in whats)
    for r in b.rows:
        if r.ratio is not None:
            assert r.ratio > 0
        if r.rss_mb is not None:
            assert r.rss_mb > 0
    text = R.table(b.rows, markdown=False)
    md = R.table(b.rows, markdown=True)
    assert "inspect --json" in text and md.startswith("| what |")
    assert len(md.splitlines()) == len(b.rows) + 2


def test_inference_bench_runs_on_tiny_files(tmp_path):
    """Both parts of bench/inference.py: a resident row (a corpus file) and the streaming row (the
    12B-shaped file at 1/100 of each dimension), figures present and the file deleted after."""
    import json
    import subprocess

    corpus = BENCH.parent / "fixtures" / "corpus" / "v2" / "gemma3-1b-tiny-sfp.sbs"
    out = tmp_path / "r.json"
    subprocess.run([sys.executable, str(BENCH / "inference.py"), "--model", str(corpus), "--large-scale", "0.01",
                    "--data", str(tmp_path), "--repeat", "1", "--repeat-large", "1", "--prompt-tokens", "4",
                    "--new-tokens", "2", "--json", str(out)], check=True, capture_output=True, timeout=600)
    r = json.loads(out.read_text())
    (res,) = r["resident"]
    assert res["weights_bytes"] > 0 and res["kv_bytes"] > 0 and res["decode_vs_floor"] > 0
    assert res["peak_rss_mb"] > res["weights_bytes"] / 2**20
    s = r["streaming"]
    assert s["tensors"] == 814 and s["pass_s"] > 0 and s["decode_all_s"] > 0 and s["peak_rss_mb"] > 0
    assert not list(tmp_path.glob("*.sbs"))  # deleted after measuring


def test_startup_bench_tabulates(tmp_path):
    """bench/startup.py runs every command once per round and writes its table (no timing assertions)."""
    import subprocess

    out = tmp_path / "startup.md"
    r = subprocess.run([sys.executable, str(BENCH / "startup.py"), "--rounds", "1", "--markdown", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in out.read_text().splitlines() if ln.startswith("| `")]
    assert len(rows) == 6 and any("verify --deep" in ln for ln in rows)
    r = subprocess.run([sys.executable, str(BENCH / "startup.py"), "--rounds", "1", "--markdown", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "exists" in r.stderr  # the output policy: an existing table is kept
