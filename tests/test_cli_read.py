"""`sbs inspect` and `sbs dump` end to end, through the real entry point."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sbs_tools.cli import main

from .conftest import CLEAN_CORPUS, CORPUS, LEGACY

VIT = CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs"


def run(capsys, *args):
    rc = main(list(map(str, args)))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_version(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.startswith("sbs ")


def test_inspect_summary(capsys):
    rc, out, _ = run(capsys, "inspect", VIT)
    assert rc == 0
    for text in ("GEMMA3_4B", "gemma3-4b-sfp", "V2 layout", "4 kGemma", "2 kVit", "SFP", "tokenizer"):
        assert text in out


@pytest.mark.parametrize("path", CLEAN_CORPUS + sorted(LEGACY.glob("*.sbs")), ids=lambda p: p.stem)
def test_inspect_json(capsys, path):
    rc, out, _ = run(capsys, "inspect", "--json", path)
    assert rc == 0
    d = json.loads(out)
    for key in ("path", "file_bytes", "layout", "format", "blobs", "config", "tensors", "tokenizer"):
        assert key in d
    assert d["file_bytes"] == path.stat().st_size
    assert all(set(b) == {"key", "offset", "bytes"} for b in d["blobs"])
    assert all({"name", "type", "rows", "cols", "scale", "bytes", "offset"} <= set(t) for t in d["tensors"])
    if d["config"]:
        assert d["config"]["specifier"] and isinstance(d["config"]["model"], str)
        assert d["config"]["weight"] in ("f32", "bf16", "sfp", "nuq", "i8")


def test_inspect_json_vit_layer_types(capsys):
    _, out, _ = run(capsys, "inspect", "--json", VIT)
    cfg = json.loads(out)["config"]
    assert [lc["type"] for lc in cfg["layer_configs"]] == ["kGemma"] * 4
    assert [lc["type"] for lc in cfg["vit_config"]["layer_configs"]] == ["kVit"] * 2


@pytest.mark.parametrize("path, code", [
    (CORPUS / "broken" / "broken-truncated.sbs", "bad-magic"),
    (CORPUS / "README.md", "not-sbs"),
])
def test_unreadable_input_exit_2(capsys, path, code):
    rc, out, err = run(capsys, "inspect", path)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and code in err and "Traceback" not in err


def test_missing_file_exit_2(capsys, tmp_path):
    rc, _, err = run(capsys, "inspect", tmp_path / "nope.sbs")
    assert rc == 2 and "nope.sbs" in err


def test_usage_error_exit_2(capsys):
    rc, _, _ = run(capsys, "inspect")
    assert rc == 2


def test_dump_variants(capsys):
    rc, out, _ = run(capsys, "dump", VIT)
    assert rc == 0 and "Directory" in out and "ViT layers" in out and "qkv_ein_w_0" in out
    rc, out, _ = run(capsys, "dump", "--markdown", VIT)
    assert rc == 0 and "## Toc" in out and "| att_ein_0 | SFP |" in out
    rc, out, _ = run(capsys, "dump", "--json", VIT)
    d = json.loads(out)
    assert rc == 0 and len(d["toc"]) == 74 and d["header"]["num_blobs"] == 77
    assert d["config"]["vit_config"]["layer_configs"][0]["type"] == "kVit"


def test_dump_unknown_tensor(capsys):
    rc, _, err = run(capsys, "dump", "--tensor", "nope", VIT)
    assert rc == 2 and "no-such-tensor" in err


def test_python_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "sbs_tools", "inspect", "--json", str(VIT)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["layout"] == "v2"
