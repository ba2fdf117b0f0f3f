"""`sbs report` without a browser: the data model, the page as written, the diff view and the CLI.

The browser half (the page as Chromium renders it, screenshots, no network
traffic) is in ``test_report_browser.py``.
"""
from __future__ import annotations


import shutil

import numpy as np
import pytest

import sbs_tools
from sbs_tools.cli import main
from sbs_tools.dump import tensor_stats
from sbs_tools.report import render_report
from sbs_tools.report.check import csp, external_references, parse
from sbs_tools.report.diffview import _own_diff, diff_models
from sbs_tools.report.model import build_file_model, value_stats
from sbs_tools.report.svg import anchor, sparkline

from .conftest import BROKEN_CORPUS, CLEAN_CORPUS, CORPUS, LEGACY
from .mutations import CATALOGUE, rebuild

VIT = CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs"
VIT_BF16 = CORPUS / "v2" / "gemma3-4b-vit-tiny-bf16.sbs"
BROKEN_VIT = CORPUS / "broken" / "broken-vit-missing-att_ein_1.sbs"
G2 = CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs"
ALL_FILES = CLEAN_CORPUS + sorted(LEGACY.glob("*.sbs")) + BROKEN_CORPUS


def _chips(m):
    for t in m.towers:
        yield from ((t, None, c) for c in t.globals)
        for r in t.rows:
            for chips in r.slots.values():
                yield from ((t, r, c) for c in chips)


# -- byte map ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_byte_regions_cover_every_byte_once(path):
    m = build_file_model(path)
    if m.open_error:
        assert not m.regions
        return
    _assert_tiling(m)
    with sbs_tools.SbsFile(path, strict=False) as f:
        keys = [e.key for e in f.directory.entries]
    assert [r.key for r in m.regions if r.kind == "blob"] == sorted(keys, key=lambda k: f.blobs[k].offset)


def _assert_tiling(m):
    """Non-empty regions tile [0, size) in order; empty ones (size-0 or past-the-end blobs) sit in between."""
    pos = 0
    for r in m.regions:
        if r.end == r.start:
            assert r.kind == "blob"
            continue
        assert r.start == pos or (r.kind == "blob" and r.start < pos), (r.kind, r.label, r.start, pos)
        pos = max(pos, r.end)
    assert pos == m.size


def test_byte_regions_v2_layout_and_padding():
    m = build_file_model(VIT)
    kinds = [r.kind for r in m.regions]
    assert kinds[:2] == ["header", "pad"] and kinds[-2:] == ["directory", "header"]
    assert not [r for r in m.regions if r.kind == "gap"]
    cats = {r.key: r.category for r in m.regions if r.kind == "blob"}
    assert cats["config"] == cats["toc"] == cats["tokenizer"] == "meta"
    assert cats["att_ein_0"] == "SFP" and cats["c_embedding"] == "BF16" and cats["img_emb_bias"] == "F32"
    # every padding region after a blob ends on a 256-byte boundary
    for prev, r in zip(m.regions, m.regions[1:]):
        if r.kind == "pad" and prev.kind == "blob" and r.end < m.size - 65536:
            assert r.end % 256 == 0


def test_byte_regions_v1_front_directory():
    m = build_file_model(CORPUS / "v1" / "gemma2-2b-tiny-sfp.sbs")
    assert [r.kind for r in m.regions[:3]] == ["header", "directory", "pad"]
    assert m.regions[1].length == 32 * m.blob_count


def test_gap_is_visible_for_a_misaligned_blob():
    m = build_file_model(CORPUS / "broken" / "broken-misaligned-offset.sbs")
    gaps = [r for r in m.regions if r.kind == "gap"]
    assert len(gaps) == 1 and "c_final_norm" in gaps[0].label
    blob = next(r for r in m.regions if r.key == "c_final_norm")
    assert blob.severity == "error" and "blob-misaligned" in blob.codes
    chip = next(c for t in m.towers for c in t.globals if c.name == "c_final_norm")
    assert chip.severity == "error" and chip.codes == ["blob-misaligned"]


def test_unreadable_file_has_a_report_but_no_map(tmp_path):
    p = tmp_path / "notes.sbs"
    p.write_text("this is not a weight file\n" * 20)
    m = build_file_model(p)
    assert m.open_error and not m.regions and not m.towers
    assert m.verify.codes("error") == ["not-sbs"]
    page = render_report([p])
    assert 'data-verdict="fail"' in page and "not-sbs" in page and "cannot be read as a BlobStore" in page


# -- layer stack ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", CLEAN_CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_clean_files_have_no_holes_and_every_tensor_once(path):
    m = build_file_model(path)
    chips = [c for _, _, c in _chips(m)] + m.stray
    assert not [c.name for c in chips if c.state == "missing"]
    names = [c.name for c in chips]
    assert sorted(names) == sorted(t.name for t in m.tensors)


def test_missing_att_ein_is_a_hole_in_text_layer_1():
    m = build_file_model(BROKEN_VIT)
    holes = [(t.key, r.label if r else None, c) for t, r, c in _chips(m) if c.state == "missing"]
    assert len(holes) == 1
    tower, row, chip = holes[0]
    assert (tower, row, chip.name) == ("text", "L1", "att_ein_1")
    assert chip.severity == "error" and chip.codes == ["missing-tensor"]
    assert "att_w_1" in chip.note  # the hole says what would fill it
    text = next(t for t in m.towers if t.key == "text")
    vision = next(t for t in m.towers if t.key == "vision")
    assert [r.label for r in text.rows] == ["L0", "L1", "L2", "L3"] and [r.label for r in vision.rows] == ["V0", "V1"]
    assert text.missing == 1 and vision.missing == 0
    assert text.rows[1].slots["att"][0] is chip
    assert [r.tags for r in text.rows] == [["local 8"], ["local 8"], ["local 8"], ["global"]]
    assert {c.name for c in vision.globals} >= {"img_emb_kernel", "img_pos_emb", "mm_embed_norm"}


def test_alternative_forms_half_pairs_and_extra_tensors(tmp_path):
    """att_w instead of att_ein is shown as the alternative form; a lone gating1_w gets a gating2_w hole;
    a tensor the config does not use lands in the 'other' column."""
    from sbs_tools import codecs
    from sbs_tools.toc import TocRecord

    with sbs_tools.open(G2) as f:
        rec = next(r for r in f.toc if r.name == "gating_ein_0")
        half = f.raw("gating_ein_0").tobytes()[:len(f.raw("gating_ein_0")) // 2]
        ein = f.tensor("att_ein_1")
        cfg = f.config
    lc = cfg.layer_configs[1]
    H, D, Dh = lc.heads, cfg.model_dim, lc.qkv_dim
    att_w = ein.reshape(H, D, Dh).transpose(1, 0, 2).reshape(D, H * Dh)
    data = codecs.encode("BF16", att_w)
    dst = rebuild(G2, tmp_path / "edited.sbs", drop=("gating_ein_0", "att_ein_1"), add=[
        (TocRecord("gating1_w_0", rec.type, rec.element_bytes, len(half), rec.rows // 2, rec.cols, rec.scale,
                   rec.cols), "gating1_w_0", half),
        (TocRecord("att_w_1", 2, 2, D * H * Dh, D, H * Dh, 1.0, H * Dh), "att_w_1", data),
        (TocRecord("q_ein_0", 2, 2, 4 * D, 4, D, 1.0, D), "q_ein_0", bytes(8 * D)),
    ])
    m = build_file_model(dst)
    text = m.towers[0]
    l0, l1 = text.rows
    assert [(c.name, c.state) for c in l0.slots["gating"]] == [("gating1_w_0", "present"),
                                                               ("gating2_w_0", "missing")]
    assert [(c.name, c.state) for c in l1.slots["att"]] == [("att_w_1", "alt")]
    assert [(c.name, c.state) for c in l0.slots["other"]] == [("q_ein_0", "extra")]
    assert "other" in [c.key for c in text.columns]
    page = render_report([dst])
    dom = parse(page)
    hole = dom.by_id(anchor("t-", "gating2_w_0"))
    assert hole is not None and hole.attrs["data-missing"] == "true"


def test_file_without_config_is_laid_out_from_names():
    m = build_file_model(LEGACY / "e0-gemma2-tiny-sfp.sbs")
    assert m.config is None and m.towers and m.towers[0].key == "text"
    assert not [c for _, _, c in _chips(m) if c.state == "missing"]
    assert "No usable config" in render_report([LEGACY / "e0-gemma2-tiny-sfp.sbs"])


# -- values --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [G2, CORPUS / "v2" / "gemma2-2b-tiny-nuq.sbs", CORPUS / "v2" / "gemma2-2b-tiny-i8.sbs",
                                  VIT_BF16], ids=lambda p: p.stem)
def test_value_stats_match_tensor_stats_and_chunking(path):
    with sbs_tools.open(path) as f:
        for info in f.tensors.values():
            ref = tensor_stats(f.tensor(info.name))
            st = value_stats(f, info)
            assert st.error is None
            assert (st.count, st.zeros, st.non_finite) == (ref["count"], ref["zeros"], ref["non_finite"])
            assert st.min == ref["min"] and st.max == ref["max"]
            assert st.mean == pytest.approx(ref["mean"], rel=1e-9, abs=1e-12)
            assert st.std == pytest.approx(ref["std"], rel=1e-9, abs=1e-12)
            assert sum(st.hist) == st.count - st.non_finite and len(st.hist) == 48
            small = value_stats(f, info, chunk=1024)  # many chunks: Chan's combination and a second pass
            assert small.hist == st.hist and small.min == st.min and small.max == st.max
            assert small.mean == pytest.approx(st.mean, rel=1e-9, abs=1e-12)
            assert small.std == pytest.approx(st.std, rel=1e-9, abs=1e-12)


def test_value_stats_nan_and_undecodable(tmp_path):
    from sbs_tools.toc import TocRecord

    with sbs_tools.open(G2) as f:
        rec = next(r for r in f.toc if r.name == "c_final_norm")
    vals = np.linspace(-1, 1, rec.cols).astype(np.float32)
    vals[3] = np.nan
    data = vals.tobytes()
    dst = rebuild(G2, tmp_path / "nan.sbs", replace={
        "c_final_norm": (TocRecord("c_final_norm", 1, 4, rec.cols, 1, rec.cols, 1.0, rec.cols), data)})
    with sbs_tools.open(dst) as f:
        st = value_stats(f, f.tensors["c_final_norm"])
        assert st.non_finite == 1 and sum(st.hist) == rec.cols - 1 and st.min == -1.0
        bad = f.tensors["att_ein_0"]
        from dataclasses import replace

        st = value_stats(f, replace(bad, bytes=bad.bytes - 1))
        assert st.error and st.hist == []
    page = render_report([dst], deep=True)
    row = parse(page).by_id("s-c_final_norm")
    assert "bad" in row.find_all(lambda n: n.tag == "td")[10].classes()  # the non-finite cell is flagged


def test_sparkline_marks_zero_and_non_finite():
    svg = sparkline([0, 3, 10, 3, 0], -1.0, 2.0, non_finite=2)
    assert "spark-zero" in svg and "spark-nan" in svg
    assert "spark-zero" not in sparkline([1, 2], 0.5, 2.0)


# -- the page as written -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,deep", [(G2, False), (VIT, True), (BROKEN_VIT, True),
                                       (CORPUS / "v1" / "gemma2-2b-tiny-sfp.sbs", False),
                                       (LEGACY / "e1-gemma2-tiny-sfp.sbs", True)],
                         ids=lambda x: getattr(x, "stem", str(x)))
def test_page_is_self_contained(path, deep):
    page = render_report([path], deep=deep)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    policy = csp(page)
    assert policy and "default-src 'none'" in policy and "connect-src" not in policy
    assert external_references(page) == []
    dom = parse(page)
    with sbs_tools.SbsFile(path, strict=False) as f:
        entries = [(e.key, e.offset, e.size) for e in f.directory.entries]
    bands = {n.attrs["data-key"]: n for n in dom.find_all(lambda n: n.tag == "g" and "blob" in n.classes())}
    assert set(bands) == {k for k, _, _ in entries}
    for key, off, size in entries:
        g = bands[key]
        assert (int(g.attrs["data-offset"]), int(g.attrs["data-size"])) == (off, size)
        tip = g.attrs["data-tip"]
        assert key in tip and f"offset {off:,}" in tip and f"size {size:,} B" in tip
    _assert_ids_and_links(dom)


def _assert_ids_and_links(dom):
    """Unique ids; every in-page link and every click target (data-target) exists."""
    ids = [n.attrs["id"] for n in dom.iter() if "id" in n.attrs]
    assert len(ids) == len(set(ids)), "duplicate element ids"
    ids = set(ids)
    for n in dom.iter():
        href = n.attrs.get("href", "") if n.tag == "a" else ""
        if href.startswith("#"):
            assert href[1:] in ids, f"dangling link {href}"
        if "data-target" in n.attrs:
            assert n.attrs["data-target"] in ids, f"dangling data-target {n.attrs['data-target']}"


def test_broken_page_marks_the_hole_and_links_the_finding():
    page = render_report([BROKEN_VIT])
    dom = parse(page)
    hole = dom.by_id("t-att_ein_1")
    assert hole is not None and hole.attrs["data-missing"] == "true" and "missing" in hole.classes()
    row = hole.parent.parent  # slot -> stack grid
    assert any(a.attrs.get("id") == "tower-text" for a in hole.ancestors())
    assert row.by_id("row-text-1") is not None and "has-missing" in row.by_id("row-text-1").classes()
    finding = dom.find_all(lambda n: n.tag == "li" and n.attrs.get("data-code") == "missing-tensor")
    assert len(finding) == 1
    links = finding[0].find_all(lambda n: n.tag == "a")
    assert [a.attrs["href"] for a in links] == ["#t-att_ein_1"]
    assert dom.find_all(lambda n: n.attrs.get("data-verdict") == "fail")
    assert 'data-missing-count="1"' in page


def test_names_are_escaped(tmp_path):
    """A blob key is attacker-controlled text: it must never become markup."""
    evil = "<b>x</b>&\"'"
    dst = rebuild(G2, tmp_path / "evil.sbs", add=[(None, evil, b"\x01" * 300)])
    page = render_report([dst], deep=True)
    assert "<b>x</b>" not in page
    dom = parse(page)
    g = [n for n in dom.find_all(lambda n: n.tag == "g" and n.attrs.get("data-key") == evil)]
    assert len(g) == 1 and g[0].attrs["data-tip"].startswith(evil)
    assert external_references(page) == []


@pytest.mark.parametrize("mutation", CATALOGUE, ids=lambda m: m.name)
def test_every_verify_mutation_renders(tmp_path, mutation):
    """Every damaged file of the verify mutation catalogue: a page with every directory entry in the byte
    map, every tensor finding linked, no duplicate ids, no dangling links, nothing external."""
    path, _ = mutation.apply(tmp_path)
    page = render_report([path], deep=True)
    assert external_references(page) == []
    dom = parse(page)
    _assert_ids_and_links(dom)
    m = build_file_model(path)
    # A tensor finding links to the tensor wherever the page draws it. A pre-2025 file missing a tensor
    # has neither a layer stack (no config) nor a blob for it: then there is nothing to link to.
    drawn = m.chip_names() | {x.key for x in m.regions if x.kind == "blob" and x.key}
    for li in dom.find_all(lambda n: n.tag == "li" and "data-tensor" in n.attrs):
        if li.attrs["data-tensor"] in drawn:
            assert li.find_all(lambda n: n.tag == "a"), f"finding {li.attrs['data-code']} is not linked"
    if m.open_error:
        return
    _assert_tiling(m)
    with sbs_tools.SbsFile(path, strict=False) as f:
        keys = sorted(e.key for e in f.directory.entries)
    bands = sorted(n.attrs["data-key"] for n in dom.find_all(lambda n: n.tag == "g" and "blob" in n.classes()))
    assert bands == keys


# -- diff view -----------------------------------------------------------------------------------------------------

def test_diff_sfp_vs_bf16_types_and_values():
    a, b = build_file_model(VIT_BF16), build_file_model(VIT)
    for d in (diff_models(a, b, deep=True), _own_diff(a, b, True, None)):
        assert d.count("changed") == 16 and d.count("only-a") == d.count("only-b") == 0
        t = d.by_name["att_ein_0"]
        assert "type BF16 → SFP" in t.changes and t.values["verdict"] in ("close", "different")
        assert 0 < t.values["max_abs"] < 0.01
        assert d.by_name["c_embedding"].status == "same"
        assert ("weight", "2", "3") in d.config


def test_diff_missing_tensor_is_only_in_a_and_rendered():
    a, b = build_file_model(VIT), build_file_model(BROKEN_VIT)
    d = diff_models(a, b)
    assert [t.name for t in d.tensors if t.status != "same"] == ["att_ein_1"]
    assert d.by_name["att_ein_1"].status == "only-a"
    page = render_report([VIT, BROKEN_VIT])
    dom = parse(page)
    chip = dom.by_id("t-att_ein_1")
    assert "st-only-a" in chip.classes()
    assert external_references(page) == []
    assert len(dom.find_all(lambda n: n.tag == "svg" and "bytemap" in n.classes())) == 2
    _assert_ids_and_links(dom)
    links = dom.by_id("summary-b").find_all(lambda n: n.tag == "a" and "where" in n.classes())
    # the missing tensor and the config, which lacks use_global_timescale (3ed403e wrote the file;
    # global-timescale-missing), besides the config-level notes every tiny Gemma 3 ViT carries
    assert sorted(a.attrs["href"] for a in links) == ["#bb-config"] * (len(links) - 1) + ["#t-att_ein_1"]


def test_diff_with_an_unreadable_file_falls_back():
    page = render_report([G2, CORPUS / "broken" / "broken-truncated.sbs"])
    assert "only in A" in page and 'data-verdict="fail"' in page
    _assert_ids_and_links(parse(page))


def test_diff_blob_links_point_into_the_right_map():
    """B's findings and B-only tensors link into B's byte map (ids bb-...), A's into A's (b-...)."""
    page = render_report([G2, CORPUS / "broken" / "broken-misaligned-offset.sbs"], deep=True)
    dom = parse(page)
    _assert_ids_and_links(dom)
    b_links = [a.attrs["href"] for a in dom.by_id("summary-b").find_all(lambda n: n.tag == "a")]
    assert b_links and all(h.startswith("#bb-") or h.startswith("#t-") for h in b_links)


# -- CLI -----------------------------------------------------------------------------------------------------------

def run(capsys, *args):
    rc = main(list(map(str, args)))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_writes_the_page(capsys, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    rc, stdout, _ = run(capsys, "report", BROKEN_VIT, "-o", out)
    assert rc == 0 and "wrote" in stdout
    assert 'id="t-att_ein_1"' in out.read_text()
    monkeypatch.chdir(tmp_path)
    rc, _, _ = run(capsys, "report", G2, "--deep")
    assert rc == 0 and (tmp_path / "gemma2-2b-tiny-sfp.report.html").exists()
    rc, _, _ = run(capsys, "report", G2, VIT)
    assert rc == 0 and (tmp_path / "gemma2-2b-tiny-sfp-vs-gemma3-4b-vit-tiny-sfp.report.html").exists()


def test_cli_stdout_and_usage_errors(capsys, tmp_path):
    rc, stdout, _ = run(capsys, "report", G2, "-o", "-")
    assert rc == 0 and stdout.startswith("<!DOCTYPE html>")
    rc, _, err = run(capsys, "report", G2, G2, G2)
    assert rc == 2 and "one file, or two" in err
    rc, _, _ = run(capsys, "report", tmp_path / "nope.sbs")
    assert rc == 2


def test_write_report_goes_through_the_output_policy(tmp_path):
    """The API writer refuses an existing page unless overwrite=True, and never writes over its input."""
    from sbs_tools.errors import SbsError
    from sbs_tools.report import write_report

    src = tmp_path / "m.sbs"
    shutil.copyfile(CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs", src)
    before = src.read_bytes()
    out = tmp_path / "m.html"
    out.write_text("keep me")
    with pytest.raises(SbsError):
        write_report([src], out)
    assert out.read_text() == "keep me"
    with pytest.raises(SbsError):
        write_report([src], src, overwrite=True)
    assert src.read_bytes() == before
    assert write_report([src], out, overwrite=True).startswith("<!DOCTYPE html>")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.html", "m.sbs"]  # no temp file left
