"""`sbs report` pages in a real browser: headless Chromium renders them, runs their script, dumps the DOM,
takes a screenshot and records its network log.

No WebDriver/DevTools client: one ``chromium --headless --dump-dom --screenshot --log-net-log`` run per
page (about a second each). Skipped, with the reason, only when Chromium is not installed
(``apt-get install -y chromium``; ``.ci/run`` installs it). ``SBS_CHROMIUM`` overrides the binary.

"No network request" is checked three ways:

1. statically: the page has no attribute, CSS rule or script call that could fetch anything
   (:func:`sbs_tools.report.check.external_references`), and carries a Content-Security-Policy
   meta with ``default-src 'none'``;
2. by Chromium's own network log (``--log-net-log``, what chrome://net-export records): every
   network request the browser starts is logged as ``URL_REQUEST_START_JOB`` with the
   top-frame site in its ``network_isolation_key``. Requests made for the report page carry
   ``file://`` there; Chromium's own background traffic (component updater, time queries,
   account checks), which no flag fully silences, carries none and is ignored. DNS failure or
   no network at all does not matter: the request is logged when it starts.
3. a control: a page that does reference http(s) resources (no CSP) must show up in that
   log (so the detector works on this Chromium), and the same page with the report's CSP
   must not (so the CSP blocks whatever a static check could miss).
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import sbs_tools
from sbs_tools.report import render_report
from sbs_tools.report.assets import CSP
from sbs_tools.report.check import Node, csp, external_references, parse

from .conftest import CORPUS

CHROMIUM = os.environ.get("SBS_CHROMIUM") or next(
    (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install -y chromium; "
                             ".ci/run installs it); set SBS_CHROMIUM to use another binary")

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
         "--mute-audio", "--force-color-profile=srgb", "--force-device-scale-factor=1")

VIT = CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs"
VIT_BF16 = CORPUS / "v2" / "gemma3-4b-vit-tiny-bf16.sbs"
BROKEN_VIT = CORPUS / "broken" / "broken-vit-missing-att_ein_1.sbs"


@dataclass
class Rendered:
    dom: Node
    html: str
    screenshot: Path
    page_requests: list[str]  # network requests made for the page
    all_requests: list[str]  # every request Chromium started (incl. its own background traffic)


def chromium(page: Path, tmp: Path, size: tuple[int, int] = (1400, 1000)) -> Rendered:
    """Render ``page`` once: DOM after the scripts ran, screenshot, network log."""
    tmp.mkdir(parents=True, exist_ok=True)
    png, netlog = tmp / "shot.png", tmp / "netlog.json"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--log-net-log={netlog}",
           f"--window-size={size[0]},{size[1]}", f"--screenshot={png}", "--dump-dom", page.resolve().as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, f"chromium failed ({p.returncode}): {p.stderr[-3000:]}"
    assert png.exists(), f"no screenshot: {p.stderr[-3000:]}"
    page_req, all_req = network_requests(netlog)
    return Rendered(parse(p.stdout), p.stdout, png, page_req, all_req)


def network_requests(netlog: Path) -> tuple[list[str], list[str]]:
    """(requests made for a file:// page, every request) from a Chromium net log."""
    text = netlog.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # a log cut short lacks its closing brackets (documented net-log behaviour)
        data = json.loads(text.rstrip().rstrip(",") + "]}")
    names = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    page, every = [], []
    for e in data["events"]:
        if names.get(e["type"]) != "URL_REQUEST_START_JOB":
            continue
        params = e.get("params") or {}
        url = params.get("url")
        if not url:
            continue
        every.append(url)
        initiator = str(params.get("initiator", ""))
        if "file://" in str(params.get("network_isolation_key", "")) or initiator == "null" \
                or initiator.startswith("file:"):
            page.append(url)
    return page, every


def read_png(path: Path, rows: int | None = None, cols: int | None = None) -> np.ndarray:
    """Decode the top-left ``rows`` x ``cols`` pixels of an 8-bit RGB/RGBA non-interlaced PNG (what Chromium
    writes) to (rows, cols, 3). PNG filters only look up and left, so the rest need not be decoded. Filters
    none/sub/up are vectorized; average/paeth rows run a byte loop."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, hdr = 8, [], None
    while pos < len(raw):
        n, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    w, h, depth, color, _, _, interlace = hdr
    assert depth == 8 and color in (2, 6) and interlace == 0, hdr
    ch = 3 if color == 2 else 4
    data = zlib.decompress(b"".join(idat))
    stride = 1 + w * ch
    w = w if cols is None else min(cols, w)
    out: list[bytes] = []
    prev = bytes(w * ch)
    for y in range(h if rows is None else min(rows, h)):
        f, line = data[y * stride], data[y * stride + 1:y * stride + 1 + w * ch]
        if f == 0:
            cur = line
        elif f == 1:
            cur = (np.cumsum(np.frombuffer(line, np.uint8).reshape(w, ch).astype(np.uint32), axis=0) & 255
                   ).astype(np.uint8).tobytes()
        elif f == 2:
            cur = ((np.frombuffer(line, np.uint8).astype(np.uint16) + np.frombuffer(prev, np.uint8)) & 255
                   ).astype(np.uint8).tobytes()
        else:
            buf = bytearray(line)
            for x in range(len(buf)):
                a, c = (buf[x - ch], prev[x - ch]) if x >= ch else (0, 0)
                b = prev[x]
                if f == 3:
                    pred = (a + b) >> 1
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                buf[x] = (buf[x] + pred) & 255
            cur = bytes(buf)
        out.append(cur)
        prev = cur
    return np.frombuffer(b"".join(out), np.uint8).reshape(len(out), w, ch)[:, :, :3]


def png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


def _directory(path: Path) -> list[tuple[str, int, int]]:
    with sbs_tools.SbsFile(path, strict=False) as f:
        return [(e.key, e.offset, e.size) for e in f.directory.entries]


def _assert_byte_map_complete(r: Rendered, path: Path) -> None:
    bands = {n.attrs["data-key"]: n for n in r.dom.find_all(lambda n: n.tag == "g" and "blob" in n.classes())}
    entries = _directory(path)
    assert sorted(bands) == sorted(k for k, _, _ in entries)
    for key, off, size in entries:
        g = bands[key]
        assert (int(g.attrs["data-offset"]), int(g.attrs["data-size"])) == (off, size)
        tip = g.attrs["data-tip"]  # what hovering shows
        assert key in tip and f"offset {off:,}" in tip and f"size {size:,} B" in tip
        assert g.find_all(lambda n: n.tag == "rect"), f"blob {key} has no band"
        assert not g.find_all(lambda n: n.tag == "title"), "the script replaces native tooltips"


def _assert_offline(r: Rendered) -> None:
    assert r.page_requests == [], f"the page made network requests: {r.page_requests}"
    assert external_references(r.html) == []
    policy = csp(r.html)
    assert policy is not None and "default-src 'none'" in policy


def _inject(page: str, script: str) -> str:
    """The page plus a test script that runs after the page's own (allowed by its CSP: inline)."""
    return page.replace("</body>", f"<script>{script}</script></body>")


HOLE_PROBE = """
  var h = document.getElementById("t-att_ein_1"), b = h.getBoundingClientRect(), s = getComputedStyle(h);
  var d = document.documentElement, c = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
  d.setAttribute("data-hole-box", [b.left, b.top + window.scrollY, b.width, b.height].join(","));
  d.setAttribute("data-hole-border", s.borderTopColor + " " + s.borderTopStyle);
  d.setAttribute("data-hole-on-top", String(c === h || h.contains(c)));
  var link = document.querySelector('#findings a[href="#t-att_ein_1"]');
  d.setAttribute("data-link", link ? link.getAttribute("data-target") : "");
"""

DIFF_DRIVER = """
  function th(label) { return Array.prototype.filter.call(document.querySelectorAll("#diff-table th"),
                         function (t) { return t.textContent.trim().indexOf(label) === 0; })[0]; }
  var d = document.documentElement, h = th("max |B");
  h.click(); h.click();  // descending
  var rows = document.querySelectorAll("#diff-table tbody tr");
  d.setAttribute("data-first", rows[0].getAttribute("data-tensor"));
  var f = document.querySelector("input[data-filter=diff-table]");
  f.value = "gating _2"; f.dispatchEvent(new Event("input"));
  d.setAttribute("data-shown", Array.prototype.filter.call(rows, function (r) { return !r.hidden; })
                                  .map(function (r) { return r.getAttribute("data-tensor"); }).join(","));
"""

CONTROL_BODY = ('<img src="http://sbs-report-probe.invalid/a.png">'
                '<script>fetch("https://sbs-report-probe.invalid/b.json").catch(function () {});</script>')


def _pages(tmp: Path) -> dict[str, tuple[Path, tuple[int, int]]]:
    """Every page the tests look at: the reports (some with a test script appended) and two control pages."""
    pages = {
        "corpus": (render_report([VIT], deep=True), (1400, 1000)),
        "broken": (_inject(render_report([BROKEN_VIT]), HOLE_PROBE), (1400, 2200)),
        "diff": (_inject(render_report([VIT_BF16, VIT], deep=True), DIFF_DRIVER), (1400, 1000)),
        "leaky": (f"<!DOCTYPE html><html><head></head><body>{CONTROL_BODY}</body></html>", (400, 300)),
        "guarded": (f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}">'
                    f"</head><body>{CONTROL_BODY}</body></html>", (400, 300)),
    }
    out = {}
    for name, (text, size) in pages.items():
        path = tmp / f"{name}.html"
        path.write_text(text, encoding="utf-8")
        out[name] = (path, size)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Rendered]:
    """All pages through Chromium, a few at a time (each run is a separate browser with its own profile)."""
    tmp = tmp_path_factory.mktemp("report-browser")
    pages = _pages(tmp)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(chromium, path, tmp / f"run-{name}", size) for name, (path, size) in pages.items()}
        done = {name: fut.result() for name, fut in futures.items()}
    return done


def _html_attrs(r: Rendered) -> dict[str, str]:
    return next(n for n in r.dom.iter() if n.tag == "html").attrs


def test_corpus_file_report_renders_offline(runs):
    r = runs["corpus"]
    assert _html_attrs(r).get("data-ready") == "1", "the page's script did not finish"
    assert r.dom.by_id("summary") is not None
    _assert_byte_map_complete(r, VIT)
    assert not r.dom.find_all(lambda n: n.attrs.get("data-missing") == "true")
    assert r.dom.find_all(lambda n: n.attrs.get("data-verdict") == "ok")
    rows = r.dom.by_id("values-table").find_all(lambda n: n.tag == "tr" and "data-tensor" in n.attrs)
    assert len(rows) == 74 and len(r.dom.find_all(lambda n: n.tag == "svg" and "spark" in n.classes())) == 74
    _assert_offline(r)
    assert png_size(r.screenshot) == (1400, 1000)
    assert read_png(r.screenshot, rows=160).std() > 10  # a real picture (the header card), not a blank page


def test_missing_attention_einsum_is_a_red_hole(runs):
    """The broken Gemma 3 + ViT file: att_ein_1 is drawn as a hole in text layer 1, the finding links to it,
    every blob is in the byte map, and the hole really is red on screen."""
    r = runs["broken"]
    _assert_offline(r)
    _assert_byte_map_complete(r, BROKEN_VIT)
    hole = r.dom.by_id("t-att_ein_1")
    assert hole is not None and hole.attrs.get("data-missing") == "true" and "missing" in hole.classes()
    assert "MISSING" in hole.attrs["data-tip"] and "att_w_1" in hole.attrs["data-tip"]
    assert any(a.attrs.get("id") == "tower-text" for a in hole.ancestors())
    holes = r.dom.find_all(lambda n: n.attrs.get("data-missing") == "true")
    assert [n.attrs["id"] for n in holes] == ["t-att_ein_1"]
    assert "has-missing" in r.dom.by_id("row-text-1").classes()
    attrs = _html_attrs(r)
    assert attrs["data-link"] == "t-att_ein_1"  # the finding links to the hole
    assert attrs["data-hole-border"] == "rgb(207, 34, 46) dashed"
    assert attrs["data-hole-on-top"] == "true"  # nothing covers it
    x, y, w, h = (float(v) for v in attrs["data-hole-box"].split(","))
    assert w > 40 and h > 25 and y + h < 2200, "the hole is not on screen"
    assert png_size(r.screenshot) == (1400, 2200)
    pixels = read_png(r.screenshot, rows=int(y + h) + 1, cols=int(x + w) + 1)
    box = pixels[int(y):int(y + h), int(x):int(x + w)].astype(int)
    red = (box[:, :, 0] > 180) & (box[:, :, 1] < 90) & (box[:, :, 2] < 90)
    assert red.sum() > 50, "no red pixels where the hole is drawn"


def test_diff_page_sorts_and_filters(runs):
    """BF16 vs SFP: the two-file page, driven by a test script: sort by max |B - A|, filter by words."""
    r = runs["diff"]
    _assert_offline(r)
    attrs = _html_attrs(r)
    assert attrs.get("data-ready") == "1"
    assert len(r.dom.find_all(lambda n: n.tag == "svg" and "bytemap" in n.classes())) == 2
    changed = r.dom.find_all(lambda n: n.tag == "tr" and n.attrs.get("data-status") == "changed")
    assert len(changed) == 16
    assert attrs["data-first"] == "linear_w_0"  # the SFP one with scale 1.6: the largest absolute difference
    assert attrs["data-shown"] == "gating_ein_2"
    assert "st-changed" in r.dom.by_id("t-att_ein_0").classes()


def test_network_detector_and_csp_control(runs):
    """The net-log detector sees a page's http(s) fetches; the report's CSP stops them."""
    leaky, guarded = runs["leaky"], runs["guarded"]
    assert "http://sbs-report-probe.invalid/a.png" in leaky.page_requests, leaky.all_requests
    assert external_references(CONTROL_BODY)
    assert guarded.page_requests == [], guarded.page_requests
