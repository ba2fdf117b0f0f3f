"""sbs verify on the gemma.cpp-written corpus, the legacy fixtures, the CLI and the Python API."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

import sbs_tools
from sbs_tools.cli import main
from sbs_tools.verify import CODES, FAMILIES, GENERATIONS, verify

from .conftest import BROKEN_CORPUS, CLEAN_CORPUS, CORPUS, LEGACY, ROOT, reference
from .mutations import CATALOGUE

LEGACY_FILES = sorted(LEGACY.glob("*.sbs"))
VIT = CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs"
VIT_BROKEN = CORPUS / "broken" / "broken-vit-missing-att_ein_1.sbs"


# -- clean files ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", CLEAN_CORPUS + LEGACY_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
@pytest.mark.parametrize("deep", [False, True], ids=["shallow", "deep"])
def test_clean_files_have_no_errors(path, deep):
    r = verify(path, deep=deep)
    assert r.ok, [(f.code, f.message) for f in r.errors]
    # gemma.cpp-written files are clean apart from compatibility notes -- and every Gemma 3 1B/4B/12B/27B
    # single-file config written before 2025-10-24 lacks use_global_timescale (addendum §6.3); Gemma 2 and
    # pre-2025 files (canonical config at load) do not; the tiny Gemma 3 ViTs' 8x8 patch grid cannot be
    # pooled by gemma.cpp's image path (vit-pool-grid).
    warn = {f.code for f in r.warnings}
    gemma3 = r.facts.get("model") in ("GEMMA3_1B", "GEMMA3_4B", "GEMMA3_12B", "GEMMA3_27B")
    assert ("global-timescale-missing" in warn) == gemma3
    assert warn - {"global-timescale-missing"} <= {"legacy-only", "runtime-unsupported", "vit-pool-grid"}
    assert not [f for f in r.findings if f.family == "deep"]


# -- the corpus' deliberately broken files ------------------------------------------------------------------------
#: What gemma.cpp printed (blobs_run / store_run / infer_run stderr) -> the code verify must report.
GEMMA_MESSAGES = [
    (r"Assert offset % kBlobAlign == 0", "blob-misaligned"),
    (r"Failed to read BlobStore header or directory", "bad-magic"),
    (r"Assert attn_vec_einsum_w\.HasPtr\(\) \^ att_weights\.HasPtr\(\)", "missing-tensor"),
]


def _implied_codes(ref: dict) -> set[str]:
    text = " ".join(ref.get(k, {}).get("stderr", "") for k in ("blobs_run", "store_run", "infer_run"))
    return {code for pattern, code in GEMMA_MESSAGES if re.search(pattern, text)}


@pytest.mark.parametrize("path", BROKEN_CORPUS, ids=lambda p: p.stem)
def test_broken_corpus_reports_what_gemma_cpp_hit(path):
    ref = reference(path)
    implied = _implied_codes(ref)
    assert implied, "every broken file documents a gemma.cpp failure"
    r = verify(path)
    assert {f.code for f in r.errors} == implied
    assert not r.ok


def test_broken_misaligned_location():
    r = verify(CORPUS / "broken" / "broken-misaligned-offset.sbs")
    (f,) = r.errors
    assert f.blob == "c_final_norm" and "65808" in f.message


def test_broken_truncated_explains_truncation():
    (f,) = verify(CORPUS / "broken" / "broken-truncated.sbs").errors
    assert f.code == "bad-magic" and "truncated" in f.message and f.offset == 157286 - 16


# -- Gemma 3 + ViT, both ways ------------------------------------------------------------------------------------------
def test_gemma3_vit_correct_file_passes():
    r = verify(VIT, deep=True)
    assert r.ok and sorted(f.code for f in r.warnings) == ["global-timescale-missing", "vit-pool-grid"]
    assert r.compat[-1].loads and r.compat[-1].runs
    # The 2025-05-06 builds crash on any ViT model regardless of contents.
    may6 = next(g for g in r.compat if g.key == "2025-05-06")
    assert not may6.loads or may6.runs is False


def test_gemma3_vit_missing_attention_einsum_fails_naming_layer_and_type():
    r = verify(VIT_BROKEN)
    (f,) = r.errors
    assert (f.code, f.tensor, f.layer, f.layer_type) == ("missing-tensor", "att_ein_1", 1, "kGemma")
    assert "att_weights" in f.message and "att_w_1" in f.message
    # ViT layer 1 exists too and needs no attention einsum.
    assert not [x for x in r.findings if x.layer_type == "kVit"]


# -- compatibility (corpus README: facts verified with both gemma.cpp builds) -------------------------------------
def _gen(r, key):
    return next(g for g in r.compat if g.key == key)


def test_compat_matches_cross_version_facts():
    for path in CORPUS.glob("v2/*.sbs"):  # V2: e9ecb77 says "Invalid BlobStore (empty)"
        r = verify(path)
        assert not _gen(r, "2025-05-07").loads and _gen(r, "2025-10-15").loads
        assert any("V2 layout" in why for why in _gen(r, "2025-05-07").reasons)
    r = verify(CORPUS / "v1" / "gemma2-2b-tiny-sfp.sbs")  # read by both builds
    assert _gen(r, "2025-05-07").loads and _gen(r, "2025-10-15").loads
    r = verify(LEGACY / "e2-gemma3-vit-type2-sfp.sbs")  # V1 + ViT type 2: e9ecb77 yes, HEAD "Invalid enum 2"
    assert _gen(r, "2025-05-07").loads and not _gen(r, "2025-10-15").loads
    assert any("Invalid enum 2" in why for why in _gen(r, "2025-10-15").reasons)
    assert r.ok and sorted(f.code for f in r.warnings if f.code != "vit-pool-grid") == ["global-timescale-missing",
                                                                                          "legacy-only"]


def test_compat_nuq_and_i8():
    r = verify(CORPUS / "v2" / "gemma2-2b-tiny-nuq.sbs")
    cur = r.compat[-1]
    assert cur.loads and cur.runs is False and any("NUQ" in why for why in cur.reasons)
    r = verify(CORPUS / "v2" / "gemma2-2b-tiny-i8.sbs")
    assert [g.key for g in r.compat if g.loads] == ["2025-10-15", "2025-10-24", "2026-07-10", "2026-08-27"]


def test_compat_legacy_eras():
    e0 = verify(LEGACY / "e0-gemma2-tiny-sfp.sbs")
    assert [g.key for g in e0.compat if g.loads] == ["pre-2025"]
    e1 = verify(LEGACY / "e1-gemma2-tiny-sfp.sbs")
    assert [g.key for g in e1.compat if g.loads] == ["pre-2025"]
    assert any("prefix" in why for why in e1.compat[-1].reasons)
    assert [g.key for g in GENERATIONS] == [g.key for g in e0.compat]


# -- the CLI ---------------------------------------------------------------------------------------------------------
def test_cli_exit_codes(tmp_path, capsys):
    clean = str(CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs")
    assert main(["verify", clean]) == 0
    assert main(["verify", clean, str(VIT_BROKEN)]) == 1
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello")
    assert main(["verify", str(junk)]) == 2  # not a gemma.cpp file: unusable input, one error line
    err = capsys.readouterr().err
    assert err.startswith("error: [not-sbs] ") and err.count("\n") == 1
    assert main(["verify", str(tmp_path / "missing.sbs")]) == 2
    assert main(["verify", clean, str(junk), str(VIT_BROKEN)]) == 2  # the others are still checked
    assert "missing-tensor" in capsys.readouterr().out
    assert main(["verify"]) == 2
    legacy = str(LEGACY / "e2-gemma3-vit-type2-sfp.sbs")  # only a warning
    assert main(["verify", legacy]) == 0
    assert main(["verify", "--strict", legacy]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_cli_json(capsys):
    paths = [str(CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs"), str(VIT_BROKEN), str(ROOT / "pyproject.toml")]
    assert main(["verify", "--json", *paths]) == 2  # pyproject.toml is no .sbs file
    doc = json.loads(capsys.readouterr().out)
    assert doc["unreadable"] == 1 and [f["unreadable"] for f in doc["files"]] == [False, False, True]
    files = doc["files"]
    assert [f["path"] for f in files] == paths and [f["ok"] for f in files] == [True, False, False]
    for f in files:
        assert isinstance(f["compat"], list)
        for x in f["findings"]:
            assert x["severity"] in ("error", "warning", "info") and x["code"] in CODES and x["message"]
            assert set(x) <= {"code", "severity", "message", "offset", "blob", "tensor", "layer", "layer_type",
                              "hint"}
    # the Gemma 3 4B file also lacks use_global_timescale (a warning since gemma.cpp 1bdde1a)
    (miss,) = [x for x in files[1]["findings"] if x["code"] == "missing-tensor"]
    assert miss["tensor"] == "att_ein_1" and miss["layer"] == 1 and miss["layer_type"] == "kGemma"
    assert files[2]["findings"][0]["code"] == "not-sbs"


def test_cli_deep_json(capsys):
    assert main(["verify", "--deep", "--json", str(CORPUS / "v2" / "gemma2-2b-tiny-i8.sbs")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["files"][0]["deep"] is True


def test_cli_junit(tmp_path):
    out = tmp_path / "verify.xml"
    paths = [str(CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs"), str(VIT_BROKEN), str(ROOT / "README.md")]
    assert main(["verify", "--junit", str(out), *paths]) == 2  # README.md is no .sbs file
    root = ET.parse(out).getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == paths
    for s in suites:
        assert [c.get("classname") for c in s.findall("testcase")] == [f"sbs.verify.{f}" for f in FAMILIES]
    fails = {s.get("name"): [c.get("classname") for c in s.findall("testcase") if c.find("failure") is not None]
             for s in suites}
    assert fails == {paths[0]: [], paths[1]: ["sbs.verify.layers"], paths[2]: ["sbs.verify.format"]}
    deep = suites[0].findall("testcase")[-1]
    assert deep.find("skipped") is not None  # not run without --deep
    assert root.get("failures") == "2"


# -- API and registry ----------------------------------------------------------------------------------------------
def test_python_api():
    r = sbs_tools.verify_file(VIT_BROKEN)
    assert isinstance(r, sbs_tools.verify.Report) and not r.ok
    assert [f["code"] for f in r.to_dict()["findings"] if f["severity"] == "error"] == ["missing-tensor"]
    assert sbs_tools.verify.verify is not None


ISSUE_CODES = """not-sbs bad-magic file-size-mismatch too-many-blobs empty-store blob-out-of-bounds blob-misaligned
blob-overlap blob-gap zero-size-blob duplicate-key bad-key nonzero-padding end-not-aligned config-missing
config-undecodable config-invalid newer-format toc-missing toc-undecodable toc-blob-missing blob-not-in-toc
tensor-size-mismatch weight-type-mismatch tokenizer-missing tokenizer-invalid vocab-mismatch missing-tensor
unexpected-tensor shape-mismatch type-unsupported both-forms non-finite all-zero scale-invalid sfp-noncanonical
nuq-table-invalid norm-suspicious""".split()


def test_every_issue_code_is_registered_and_provoked(tmp_path):
    assert set(ISSUE_CODES) <= set(CODES)
    provoked = set()
    for m in CATALOGUE:
        d = tmp_path / m.name
        d.mkdir()
        provoked.add(m.apply(d)[1].code)
    assert set(ISSUE_CODES) <= provoked


def test_docs_list_every_code():
    doc = (ROOT / "docs" / "verify.md").read_text()
    rows = set(re.findall(r"^\| `([a-z0-9-]+)` \| (?:error|warning|info) \|", doc, re.M))
    assert rows == set(CODES)
    for code, info in CODES.items():
        assert re.search(rf"^\| `{code}` \| {info.severity} \| {info.family} \|", doc, re.M), code
