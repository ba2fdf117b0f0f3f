"""``sbs verify --run``: a forward pass as a check (sbs_tools/verify/run.py).

Crafted files are re-written with the project's writer (``mutations.rebuild``) with one
tensor's bytes edited: each must give its run-* finding at the right place, and every
clean corpus file (the ViT files with the synthetic image) must pass.
"""
from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import sbs_tools
from sbs_tools.cli import main
from sbs_tools.verify import CODES, FAMILIES
from sbs_tools.verify.junit import to_junit
from sbs_tools.verify.run import gradient_image, prompt_ids

from .mutations import CORPUS, E0, G2_I8, record, rebuild

G3_BF16 = CORPUS / "v2" / "gemma3-1b-tiny-bf16.sbs"
VIT_BF16 = CORPUS / "v2" / "gemma3-4b-vit-tiny-bf16.sbs"
CLEAN = sorted(CORPUS.glob("v*/*.sbs"))
BF16_NAN = struct.pack("<H", 0x7FC0)
RUN_CODES = ("run-failed", "run-non-finite", "run-degenerate", "run-skipped")


def planted(tmp_path: Path, src: Path, name: str, edit) -> Path:
    """``src`` re-written with ``edit(raw uint8 array)`` applied to tensor ``name``'s bytes."""
    with sbs_tools.open(src) as f:
        raw = f.raw(name).copy()
    edit(raw)
    return rebuild(src, tmp_path / f"{src.stem}-{name}.sbs", replace={name: (record(src, name), raw.tobytes())})


def nan_at(byte: int):
    def edit(raw: np.ndarray) -> None:
        raw[byte:byte + 2] = np.frombuffer(BF16_NAN, np.uint8)
    return edit


def run_findings(report) -> list:
    return [f for f in report.findings if f.family == "run"]


def test_codes_registered():
    assert "run" in FAMILIES
    for code in RUN_CODES:
        assert CODES[code].family == "run"
    assert CODES["run-skipped"].severity == "info"
    assert all(CODES[c].severity == "error" for c in RUN_CODES[:3])


@pytest.mark.parametrize("path", CLEAN, ids=lambda p: p.name)
def test_clean_corpus_passes(path):
    report = sbs_tools.verify_file(path, run=True)
    assert report.ok, report.codes("error")
    assert run_findings(report) == []
    run = report.facts["run"]
    assert run["layers_run"] == run["layers"] == report.facts["num_layers"]
    assert run["decode_steps"] == 3
    assert run["vit_layers_run"] == report.facts["vit_layers"]  # the ViT ran on the synthetic image
    if report.facts["vit_layers"]:
        assert run["image_prompt_tokens"] > run["prompt_tokens"]


def test_clean_streaming_under_a_small_budget():
    report = sbs_tools.verify_file(VIT_BF16, run=True, max_memory="64k")
    assert report.ok and run_findings(report) == []
    assert report.facts["run"]["mode"] == "streaming"
    assert sbs_tools.verify_file(VIT_BF16, run=True, max_memory="1G").facts["run"]["mode"] == "resident"


def test_without_run_no_run_family():
    report = sbs_tools.verify_file(G3_BF16)
    assert report.run is False and "run" not in report.facts and run_findings(report) == []


@pytest.mark.parametrize("budget", [None, "64k"], ids=["resident", "streaming"])
def test_nan_in_one_layer_is_non_finite_at_that_layer(tmp_path, budget):
    bad = planted(tmp_path, G3_BF16, "linear_w_3", nan_at(2 * 200))
    report = sbs_tools.verify_file(bad, run=True, max_memory=budget)
    found = run_findings(report)
    assert [f.code for f in found] == ["run-non-finite"]
    assert (found[0].layer, found[0].layer_type) == (3, "kGemma")
    assert "layer 3" in found[0].message
    assert not report.ok


def test_nan_in_the_embedding_row_of_a_prompt_token(tmp_path):
    with sbs_tools.open(G3_BF16) as f:
        cols = f.tensors["c_embedding"].cols
    token = prompt_ids(512)[1]
    bad = planted(tmp_path, G3_BF16, "c_embedding", nan_at(2 * (token * cols + 5)))
    found = run_findings(sbs_tools.verify_file(bad, run=True))
    assert [(f.code, f.tensor, f.layer) for f in found] == [("run-non-finite", "c_embedding", None)]


def test_nan_in_a_vit_layer(tmp_path):
    bad = planted(tmp_path, VIT_BF16, "linear_1_w_1", nan_at(2 * 7))
    found = run_findings(sbs_tools.verify_file(bad, run=True))
    assert [(f.code, f.layer, f.layer_type) for f in found] == [("run-non-finite", 1, "kVit")]


def test_zeroed_embedding_is_degenerate(tmp_path):
    def zero(raw):
        raw[:] = 0
    report = sbs_tools.verify_file(planted(tmp_path, G3_BF16, "c_embedding", zero), run=True)
    found = run_findings(report)
    assert [f.code for f in found] == ["run-degenerate"]
    assert "same value" in found[0].message


def test_final_norm_that_zeroes_is_degenerate(tmp_path):
    # gemma.cpp applies 1 + w: stored weights of -1 zero the final norm's output
    def minus_one(raw):
        raw[:] = np.frombuffer(struct.pack("<H", 0xBF80) * (raw.size // 2), np.uint8)
    found = run_findings(sbs_tools.verify_file(planted(tmp_path, G3_BF16, "c_final_norm", minus_one), run=True))
    assert [f.code for f in found] == ["run-degenerate"]


@pytest.mark.parametrize("budget", [None, "64k"], ids=["resident", "streaming"])
def test_tensor_whose_decoding_raises_is_run_failed_with_layer(tmp_path, budget):
    # A NaN I8 inv_scale: the values decode to NaN and re-quantizing the qkv halves (as gemma.cpp
    # does at load) raises; the structural checks (no --deep) do not look at values.
    bad = planted(tmp_path, G2_I8, "qkv_ein_1", nan_at(0))
    report = sbs_tools.verify_file(bad, run=True, max_memory=budget)
    assert report.codes("error") == ["run-failed"]
    f = report.by_code("run-failed")[0]
    assert (f.layer, f.layer_type, f.tensor) == (1, "kGemma", "qkv_ein_1")
    assert "CodecError" in f.message


def test_structural_errors_skip_the_run():
    report = sbs_tools.verify_file(CORPUS / "broken" / "broken-vit-missing-att_ein_1.sbs", run=True)
    skipped = report.by_code("run-skipped")
    assert len(skipped) == 1 and "missing-tensor" in skipped[0].message
    assert "run" not in report.facts


def test_pre2025_file_is_skipped_not_an_error():
    report = sbs_tools.verify_file(E0, run=True)
    assert report.ok
    assert [f.code for f in run_findings(report)] == ["run-skipped"]
    assert "no config" in report.by_code("run-skipped")[0].message


def test_bad_budget_raises_value_error():
    with pytest.raises(ValueError, match="not a size"):
        sbs_tools.verify_file(G3_BF16, run=True, max_memory="lots")


def test_gradient_image_is_deterministic():
    a = gradient_image()
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    assert np.array_equal(a, gradient_image()) and a[0, 0].tolist() == [0, 0, 0] and a[-1, -1].tolist() == [255] * 3


def test_junit_run_family(tmp_path):
    clean = sbs_tools.verify_file(G3_BF16)
    cases = ET.fromstring(to_junit([clean])).findall(".//testcase")
    run_case = next(c for c in cases if c.get("classname") == "sbs.verify.run")
    assert run_case.find("skipped").get("message") == "run with --run"
    bad = sbs_tools.verify_file(planted(tmp_path, G3_BF16, "linear_w_3", nan_at(0)), run=True)
    run_case = next(c for c in ET.fromstring(to_junit([bad])).findall(".//testcase")
                    if c.get("classname") == "sbs.verify.run")
    assert run_case.find("failure").get("type") == "run-non-finite"


def test_cli_run_json_and_exit_codes(tmp_path, capsys):
    bad = planted(tmp_path, G3_BF16, "linear_w_3", nan_at(0))
    capsys.readouterr()
    assert main(["verify", "--run", "--json", str(bad), str(G3_BF16)]) == 1
    first, second = json.loads(capsys.readouterr().out)["files"]
    assert first["run"] is True
    assert [(f["code"], f["layer"]) for f in first["findings"] if f["code"].startswith("run-")] == \
        [("run-non-finite", 3)]
    assert second["ok"] and second["facts"]["run"]["layers_run"] == 6
    assert main(["verify", "--run", "--max-memory", "64k", str(G3_BF16)]) == 0
    assert "run: streaming weights, 6 of 6 layers" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--max-memory", "1G"], ["--run", "--max-memory", "lots"]])
def test_cli_max_memory_usage_errors(args, capsys):
    assert main(["verify", *args, str(G3_BF16)]) == 2
    captured = capsys.readouterr()
    assert "--max-memory" in captured.err and "Traceback" not in captured.err + captured.out


def test_logits_identical_for_different_positions_are_degenerate():
    from sbs_tools.verify.run import _degenerate

    row = np.linspace(-1, 1, 16, dtype=np.float32)
    same = _degenerate(np.stack([row, row, row]), "logits")
    assert same is not None and same.code == "run-degenerate" and "identical for all 3 positions" in same.message
    varied = np.stack([row, row[::-1], row * 2])
    assert _degenerate(varied, "logits") is None
    assert _degenerate(row[None], "logits") is None  # one position: nothing to compare
