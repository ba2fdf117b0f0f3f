"""``sbs repair`` end to end through the CLI entry point: output, --json, --dry-run and exit codes."""
from __future__ import annotations

import hashlib
import json
import shutil

from sbs_tools.cli import main

from .conftest import CORPUS, LEGACY

BROKEN = CORPUS / "broken"
SP256 = CORPUS / "tiny_sp256.model"


def run(capsys, *args):
    rc = main(list(map(str, args)))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_repair_misaligned(capsys, tmp_path):
    out = tmp_path / "fixed.sbs"
    rc, text, _ = run(capsys, "repair", BROKEN / "broken-misaligned-offset.sbs", "-o", out)
    assert rc == 0 and out.exists()
    for s in ("blob-misaligned", "relocate-blob", "65792", "repaired", "32/32 tensors identical", "verify: clean"):
        assert s in text, s


def test_dry_run(capsys, tmp_path):
    out = tmp_path / "fixed.sbs"
    rc, text, _ = run(capsys, "repair", BROKEN / "broken-misaligned-offset.sbs", "-o", out, "--dry-run")
    assert rc == 0 and not out.exists()
    assert "dry run: repairable" in text and "relocate-blob" in text


def test_unrepairable_exit_1(capsys, tmp_path):
    out = tmp_path / "fixed.sbs"
    rc, text, _ = run(capsys, "repair", BROKEN / "broken-vit-missing-att_ein_1.sbs", "-o", out)
    assert rc == 1 and not out.exists()
    assert "cannot fix" in text and "att_ein_1" in text and "not repairable" in text
    rc, text, _ = run(capsys, "repair", BROKEN / "broken-truncated.sbs", "-o", out)
    assert rc == 1 and not out.exists() and "--config-from" in text


def test_force_partial_exit_1(capsys, tmp_path):
    out = tmp_path / "partial.sbs"
    rc, text, _ = run(capsys, "repair", BROKEN / "broken-vit-missing-att_ein_1.sbs", "-o", out, "--partial")
    assert rc == 1 and out.exists() and "partially repaired" in text and "missing-tensor" in text


def test_nothing_to_repair(capsys, tmp_path):
    out = tmp_path / "x.sbs"
    rc, text, _ = run(capsys, "repair", CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs", "-o", out)
    assert rc == 0 and "nothing to repair" in text and not out.exists()


def test_not_sbs_exit_2(capsys, tmp_path):
    rc, text, err = run(capsys, "repair", CORPUS / "README.md", "-o", tmp_path / "x.sbs")
    assert rc == 2 and err.startswith("error: [not-sbs] ") and not text


def test_usage_errors_exit_2(capsys, tmp_path):
    src = tmp_path / "m.sbs"
    shutil.copy(BROKEN / "broken-misaligned-offset.sbs", src)
    rc, _, err = run(capsys, "repair", src)
    assert rc == 2 and "-o OUT.sbs" in err
    rc, _, err = run(capsys, "repair", src, "--in-place")
    assert rc == 2 and "--backup" in err
    rc, _, err = run(capsys, "repair", src, "-o", tmp_path / "o.sbs", "--target", "1999")
    assert rc == 2 and "--target" in err and "2025-07-31" in err
    rc, _, err = run(capsys, "repair", tmp_path / "missing.sbs", "-o", tmp_path / "o.sbs")
    assert rc == 2


def test_in_place(capsys, tmp_path):
    src = tmp_path / "m.sbs"
    shutil.copy(BROKEN / "broken-misaligned-offset.sbs", src)
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    rc, text, _ = run(capsys, "repair", src, "--in-place", "--backup", ".orig")
    assert rc == 0 and "original kept as" in text
    assert hashlib.sha256((tmp_path / "m.sbs.orig").read_bytes()).hexdigest() == before


def test_json(capsys, tmp_path):
    out = tmp_path / "o.sbs"
    rc, text, _ = run(capsys, "repair", LEGACY / "e0-gemma2-tiny-sfp.sbs", "-o", out, "--target", "current",
                      "--config-from", CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs", "--tokenizer", SP256, "--json")
    assert rc == 0
    d = json.loads(text)
    assert d["status"] == "repaired" and d["exit_code"] == 0 and d["output"] == str(out)
    assert d["proof"]["identical"] == d["proof"]["total"] == 18
    assert {t["status"] for t in d["proof"]["tensors"]} == {"identical", "dropped"}
    assert d["plan"]["target"] == "2026-08-27"
    assert [a["action"] for a in d["plan"]["actions"]] == ["migrate-pre-2025", "convert-layout"]
    assert d["verify"]["ok"] is True
    item = d["plan"]["items"][0]
    assert item["finding"]["code"] == "pre-2025-format" and item["status"] == "fix"


def test_json_unrepairable(capsys, tmp_path):
    rc, text, _ = run(capsys, "repair", BROKEN / "broken-truncated.sbs", "-o", tmp_path / "o.sbs", "--json")
    assert rc == 1
    d = json.loads(text)
    assert d["status"] == "unrepairable" and d["output"] is None
    assert d["plan"]["refusals"][0]["code"] == "bad-magic"


def test_bad_output_location_exit_2(capsys, tmp_path):
    src = BROKEN / "broken-misaligned-offset.sbs"
    rc, _, err = run(capsys, "repair", src, "-o", tmp_path / "no" / "such" / "dir.sbs")
    assert rc == 2 and "cannot write" in err
    rc, _, err = run(capsys, "repair", src, "-o", tmp_path)
    assert rc == 2 and "directory" in err
