"""The page's stylesheet and script, inlined into every report (no file is ever fetched).

Kept as plain strings so the package needs no data files. The script is small
and optional: without it the page still shows everything (native tooltips come
from ``<title>`` elements and links are ordinary anchors); with it, tooltips are
instant, tables sort and filter, and clicking a tensor jumps between the layer
stack and the byte map. When it has run it sets ``data-ready="1"`` on ``<html>``.
"""
from __future__ import annotations

#: Content-Security-Policy of the page: nothing may be fetched; inline style/script and data: images only.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")

CSS = r"""
:root {
  --bg: #f4f5f7; --card: #ffffff; --ink: #1f2328; --muted: #5b6470; --faint: #8b949e; --line: #d9dee4;
  --ok: #1a7f37; --warn: #b7791f; --err: #cf222e; --info: #0969da;
  --F32: #3d6fb6; --BF16: #4f9a48; --SFP: #8a63c4; --NUQ: #e8862a; --I8: #138a8a; --other: #9c755f;
  --meta: #6e7781; --blob: #a4abb6; --header: #1f2937; --directory: #4b5563; --pad: #e3e6ea;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
html { scroll-behavior: smooth; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
a { color: var(--info); text-decoration: none; }
a:hover { text-decoration: underline; }
code, .mono { font-family: var(--mono); font-size: 12.5px; }
.topbar { position: sticky; top: 0; z-index: 10; background: #111827; color: #e5e7eb;
  display: flex; align-items: center; gap: 18px; padding: 9px 28px; font-size: 13px; }
.topbar .brand { font-weight: 700; letter-spacing: .02em; color: #fff; white-space: nowrap; flex: none; }
.topbar .file { font-family: var(--mono); color: #cbd5e1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  min-width: 0; flex: 1 1 auto; }
.topbar nav { margin-left: auto; display: flex; gap: 16px; white-space: nowrap; flex: none; }
.topbar nav a { color: #cbd5e1; }
main { max-width: 1340px; margin: 0 auto; padding: 20px 28px 48px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px;
  margin: 0 0 18px; box-shadow: 0 1px 2px rgba(16,24,40,.04); }
.card > h2 { margin: 0 0 2px; font-size: 17px; }
.card > .sub { margin: 0 0 14px; color: var(--muted); font-size: 13px; }
.row2 { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.row2 > .card { margin: 0; }
.title { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
.title h1 { font-size: 21px; margin: 0; }
.title .spec { font-family: var(--mono); font-size: 14px; color: var(--muted); }
.path { font-family: var(--mono); font-size: 12px; color: var(--faint); margin: 3px 0 14px; word-break: break-all; }
.verdict { margin-left: auto; display: inline-flex; align-items: center; gap: 8px; border-radius: 999px;
  padding: 4px 14px; font-weight: 700; font-size: 14px; }
.verdict small { font-weight: 500; font-size: 12.5px; }
.verdict.ok { background: #dafbe1; color: var(--ok); }
.verdict.warn { background: #fff4d6; color: #8a5a00; }
.verdict.fail { background: #ffebe9; color: var(--err); }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 8px 24px; margin: 0; }
.facts div { min-width: 0; }
.facts dt { font-size: 11px; text-transform: uppercase; letter-spacing: .05em; color: var(--faint); margin: 0; }
.facts dd { margin: 1px 0 0; overflow-wrap: anywhere; }
h3 { font-size: 14px; margin: 18px 0 8px; }
h3 .muted, .muted { color: var(--muted); font-weight: 400; }
.compat { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.gen { display: inline-flex; align-items: center; gap: 6px; border: 1px solid var(--line); border-radius: 6px;
  padding: 3px 9px; font-size: 12.5px; background: #fff; }
.gen i { width: 8px; height: 8px; border-radius: 50%; display: inline-block; }
.gen.yes i { background: var(--ok); } .gen.partial i { background: var(--warn); } .gen.no i { background: var(--err); }
.gen.no { color: var(--muted); }
details.reasons { margin-top: 6px; font-size: 12.5px; color: var(--muted); }
details.reasons summary { cursor: pointer; }
details.reasons ul { margin: 6px 0 0; padding-left: 18px; }
.findings { list-style: none; margin: 0; padding: 0; }
.findings li { display: grid; grid-template-columns: 74px 1fr; gap: 2px 10px; padding: 9px 0;
  border-top: 1px solid #eef0f2; }
.findings li:first-child { border-top: 0; }
.sev { display: inline-block; border-radius: 4px; padding: 1px 6px; font-size: 11px; font-weight: 700;
  text-transform: uppercase; letter-spacing: .03em; text-align: center; align-self: start; }
.sev.error { background: #ffebe9; color: var(--err); } .sev.warning { background: #fff4d6; color: #8a5a00; }
.sev.info { background: #ddf4ff; color: var(--info); }
.findings .head { font-weight: 600; }
.findings .head code { font-weight: 700; }
.findings .msg { grid-column: 2; color: #333a42; }
.findings .hint { grid-column: 2; color: var(--ok); font-size: 13px; }
.findings .where { font-weight: 400; margin-left: 6px; }
.none { color: var(--muted); font-style: italic; }
/* byte map */
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 8px 0 14px; font-size: 12.5px; color: var(--muted); }
.legend span { display: inline-flex; align-items: center; gap: 6px; }
.legend i { width: 12px; height: 12px; border-radius: 3px; display: inline-block; }
.sharebar { display: block; height: 14px; border-radius: 4px; overflow: hidden; }
svg.bytemap { display: block; overflow: visible; }
svg.bytemap .axis { font: 11px var(--mono); fill: var(--faint); }
svg.bytemap .rowbg { fill: #f6f7f9; }
svg.bytemap .blabel { font: 600 11px var(--mono); fill: #fff; pointer-events: none; }
svg.bytemap g.blob rect { stroke: #fff; stroke-width: .6; }
svg.bytemap g.blob, svg.bytemap g.region { cursor: default; }
svg.bytemap g.blob[data-target] { cursor: pointer; }
svg.bytemap g.blob:hover rect, svg.bytemap g.region:hover rect { filter: brightness(1.18); }
svg.bytemap g.sev-error rect { stroke: var(--err); stroke-width: 2; }
svg.bytemap g.sev-warning rect { stroke: var(--warn); stroke-width: 1.6; }
svg.bytemap g.flash rect, svg.bytemap g:target rect { stroke: #111; stroke-width: 2.5; }
.cat-F32 { fill: var(--F32); background: var(--F32); } .cat-BF16 { fill: var(--BF16); background: var(--BF16); }
.cat-SFP { fill: var(--SFP); background: var(--SFP); } .cat-NUQ { fill: var(--NUQ); background: var(--NUQ); }
.cat-I8 { fill: var(--I8); background: var(--I8); } .cat-other { fill: var(--other); background: var(--other); }
.cat-meta { fill: var(--meta); background: var(--meta); } .cat-blob { fill: var(--blob); background: var(--blob); }
.cat-header { fill: var(--header); background: var(--header); }
.cat-directory { fill: var(--directory); background: var(--directory); }
.cat-pad { fill: var(--pad); background: var(--pad); }
.cat-gap { background: repeating-linear-gradient(45deg, #ffd7d5 0 3px, var(--err) 3px 5px); }
.gap-bg { fill: #ffd7d5; } .gap-fg { fill: var(--err); }
/* layer stack */
.tower { margin-top: 8px; }
.tower + .tower { margin-top: 26px; }
.tower h3 { display: flex; align-items: center; gap: 10px; margin-top: 4px; }
.badge { display: inline-block; border-radius: 999px; padding: 1px 9px; font-size: 12px; font-weight: 600; }
.badge.err { background: var(--err); color: #fff; } .badge.ok { background: #dafbe1; color: var(--ok); }
.globals { display: flex; flex-wrap: wrap; gap: 5px; align-items: center; margin: 0 0 10px; }
.globals .glabel { width: 122px; font-size: 12px; color: var(--muted); }
.globals .chip { min-width: 118px; }
.stack { display: grid; grid-template-columns: 122px repeat(var(--cols), minmax(62px, 1fr)); gap: 4px;
  align-items: stretch; }
.stack .hdr { font: 600 11px var(--mono); color: var(--muted); text-align: center; padding: 0 2px 2px;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; align-self: end; }
.stack .corner { text-align: left; font-family: inherit; }
.rowhead { display: flex; align-items: center; gap: 6px; font-weight: 600; padding: 0 6px; border-radius: 6px;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
.rowhead .tag { font-weight: 500; font-size: 11px; color: var(--muted); background: #eef1f4; border-radius: 4px; padding: 0 5px; }
.rowhead .tag.global { background: #e6efff; color: #174ea6; }
.rowhead .tag.warn { background: #fff4d6; color: #8a5a00; }
.rowhead.has-missing { background: #ffebe9; color: var(--err); }
.slot { display: flex; gap: 2px; min-height: 34px; }
.slot.na { border: 1px dashed #e1e4e8; border-radius: 6px; }
.chip { flex: 1 1 0; min-width: 0; display: flex; flex-direction: column; justify-content: center; align-items: center;
  border-radius: 6px; color: #fff; padding: 2px 3px; line-height: 1.15; text-decoration: none !important;
  position: relative; overflow: hidden; min-height: 34px; }
.chip .t { font: 700 11px var(--mono); white-space: nowrap; }
.chip .s { font-size: 10.5px; opacity: .92; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 100%; }
.chip:hover { filter: brightness(1.12); }
.chip.state-alt { box-shadow: inset 0 0 0 2px rgba(255,255,255,.55); }
.chip.state-extra { opacity: .75; outline: 2px dashed var(--warn); outline-offset: -2px; }
.chip.sev-warning { box-shadow: inset 0 0 0 2px #ffd33d; }
.chip.sev-error { box-shadow: inset 0 0 0 2px var(--err), 0 0 0 1px var(--err); }
.chip.missing { color: var(--err); background: repeating-linear-gradient(45deg, #fff0ef 0 5px, #ffd7d5 5px 10px);
  border: 2px dashed var(--err); box-shadow: none; }
.chip.missing .t { font-family: inherit; text-transform: uppercase; letter-spacing: .04em; }
.chip.missing .s { font-family: var(--mono); font-weight: 600; opacity: 1; }
.chip.flash, .chip:target { outline: 3px solid #111; outline-offset: 1px; }
.stacklegend { display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 12.5px; color: var(--muted); margin: 14px 0 0; }
.stacklegend span { display: inline-flex; align-items: center; gap: 6px; }
.stacklegend i { width: 16px; height: 12px; border-radius: 3px; display: inline-block; }
.stacklegend i.missing { background: repeating-linear-gradient(45deg, #fff0ef 0 3px, #ffd7d5 3px 6px); border: 1.5px dashed var(--err); }
.stacklegend i.extra { background: #c9ced6; outline: 1.5px dashed var(--warn); outline-offset: -1.5px; }
.stacklegend i.alt { background: var(--SFP); box-shadow: inset 0 0 0 2px rgba(255,255,255,.6); }
.stacklegend i.na { border: 1px dashed #c9ced6; }
/* tables */
.tools { display: flex; gap: 12px; align-items: center; margin-bottom: 10px; }
.tools input { font: inherit; padding: 5px 10px; border: 1px solid var(--line); border-radius: 6px; width: 280px; }
.tools .count { color: var(--muted); font-size: 12.5px; }
table.data { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
table.data th { text-align: left; font-size: 11.5px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
  border-bottom: 1px solid var(--line); padding: 6px 8px; white-space: nowrap; position: sticky; top: 38px; background: #fff; }
table.data th[data-sort] { cursor: pointer; user-select: none; }
table.data th[data-sort]::after { content: " \2195"; color: #c0c6cd; }
table.data th.asc::after { content: " \2191"; color: var(--ink); } table.data th.desc::after { content: " \2193"; color: var(--ink); }
table.data td { padding: 4px 8px; border-bottom: 1px solid #f0f2f4; white-space: nowrap; vertical-align: middle; }
table.data td.num { text-align: right; }
table.data tr:hover td { background: #f8fafc; }
table.data tr.sev-error td:first-child { box-shadow: inset 3px 0 0 var(--err); }
table.data tr.sev-warning td:first-child { box-shadow: inset 3px 0 0 var(--warn); }
table.data td.bad { color: var(--err); font-weight: 700; }
.tchip { display: inline-block; min-width: 40px; text-align: center; border-radius: 4px; color: #fff;
  font: 700 10.5px var(--mono); padding: 1px 5px; }
svg.spark { display: block; }
.spark-area { fill: #7b8da6; }
.spark-zero { stroke: #d1242f; stroke-width: 1; stroke-dasharray: 2 2; opacity: .7; }
.spark-nan { fill: var(--err); }
/* diff */
.dstat { display: flex; gap: 10px; flex-wrap: wrap; margin: 4px 0 12px; }
.dstat span { border-radius: 6px; padding: 4px 10px; font-size: 13px; }
.st-same { background: #d0d7de; color: #24292f; } .st-changed { background: #e3a21a; color: #fff; }
.st-only-a { background: #cf222e; color: #fff; } .st-only-b { background: #1a7f37; color: #fff; }
.chip.st-same { color: #24292f; } .stacklegend i.st-same { background: #d0d7de; }
.vs { color: var(--muted); }
.changed-field { background: #fff4d6; }
#tip { position: fixed; z-index: 50; pointer-events: none; background: #111827; color: #f9fafb;
  font: 12px/1.45 var(--mono); padding: 7px 10px; border-radius: 6px; white-space: pre-line; max-width: 460px;
  box-shadow: 0 6px 20px rgba(0,0,0,.25); }
#tip[hidden] { display: none; }
footer { color: var(--faint); font-size: 12px; text-align: center; margin-top: 8px; }
@media print { .topbar { position: static; } table.data th { position: static; } }
"""

JS = r"""
(function () {
  "use strict";
  var doc = document, tip = doc.getElementById("tip");
  // One fast tooltip: the server wrote data-tip and a <title>/title fallback; drop the fallbacks.
  doc.querySelectorAll("svg title").forEach(function (t) { t.parentNode.removeChild(t); });
  doc.querySelectorAll("[data-tip][title]").forEach(function (el) { el.removeAttribute("title"); });
  function place(e) {
    var pad = 14, w = tip.offsetWidth, h = tip.offsetHeight;
    var x = e.clientX + pad, y = e.clientY + pad;
    if (x + w > window.innerWidth - 4) x = e.clientX - w - pad;
    if (y + h > window.innerHeight - 4) y = e.clientY - h - pad;
    tip.style.left = Math.max(4, x) + "px"; tip.style.top = Math.max(4, y) + "px";
  }
  doc.addEventListener("mousemove", function (e) {
    var el = e.target.closest ? e.target.closest("[data-tip]") : null;
    if (!el) { tip.hidden = true; return; }
    var text = el.getAttribute("data-tip");
    if (tip.textContent !== text) tip.textContent = text;
    tip.hidden = false; place(e);
  });
  doc.addEventListener("mouseleave", function () { tip.hidden = true; });
  // Cross links: a chip jumps to its blob in the byte map and back.
  function flash(el) {
    el.classList.remove("flash"); void el.getBoundingClientRect(); el.classList.add("flash");
    setTimeout(function () { el.classList.remove("flash"); }, 1800);
  }
  doc.addEventListener("click", function (e) {
    var el = e.target.closest ? e.target.closest("[data-target]") : null;
    if (!el) return;
    var t = doc.getElementById(el.getAttribute("data-target"));
    if (!t) return;
    e.preventDefault();
    t.scrollIntoView({ block: "center", behavior: "smooth" });
    flash(t);
  });
  function flashHash() {
    var id = decodeURIComponent(location.hash.slice(1)), t = id && doc.getElementById(id);
    if (t) flash(t);
  }
  window.addEventListener("hashchange", flashHash);
  // Sortable tables: th[data-sort="num"|"text"]; cells carry data-v.
  doc.querySelectorAll("table.sortable").forEach(function (table) {
    var ths = table.querySelectorAll("th");
    ths.forEach(function (th, col) {
      if (!th.hasAttribute("data-sort")) return;
      th.addEventListener("click", function () {
        var num = th.getAttribute("data-sort") === "num";
        var dir = th.classList.contains("asc") ? -1 : 1;
        ths.forEach(function (o) { o.classList.remove("asc", "desc"); });
        th.classList.add(dir === 1 ? "asc" : "desc");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
          if (num) {
            var fx = parseFloat(x), fy = parseFloat(y), nx = isNaN(fx), ny = isNaN(fy);
            if (nx || ny) return nx === ny ? 0 : (nx ? 1 : -1);
            return (fx - fy) * dir;
          }
          return String(x).localeCompare(String(y), undefined, { numeric: true }) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  // Filter boxes: input[data-filter=tableId] hides rows whose text lacks every word typed.
  doc.querySelectorAll("input[data-filter]").forEach(function (input) {
    var table = doc.getElementById(input.getAttribute("data-filter"));
    var count = doc.getElementById(input.getAttribute("data-filter") + "-count");
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean), shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        var text = r.textContent.toLowerCase();
        var ok = words.every(function (w) { return text.indexOf(w) >= 0; });
        r.hidden = !ok; if (ok) shown++;
      });
      if (count) count.textContent = shown + " shown";
    });
  });
  flashHash();
  doc.documentElement.setAttribute("data-ready", "1");
})();
"""
