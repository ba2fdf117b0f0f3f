"""``sbs report A B``: what differs between two files, drawn over the layer stack and both byte maps.

The comparison comes from :func:`sbs_tools.diff.diff` (the engine of ``sbs diff``) when that module
is available and can open both files; otherwise (or for files its strict reader rejects) from a small
local comparison with the same meaning. Either way the result is a :class:`Diff`: file facts, config
fields that differ, and per tensor (matched by name) one status:

* ``same``: byte-identical blob with the same type, shape and scale;
* ``changed``: type, shape, scale or bytes differ (with ``deep``, the decoded values are compared
  too: verdict ``equal`` / ``close`` / ``different``, max |B - A| and max relative difference);
* ``only-a`` / ``only-b``: the tensor is in one file only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import SbsError
from ..sbsfile import SbsFile, TensorInfo
from . import html as H
from .model import Chip, FileModel, Row, Tower, _chunks
from .svg import anchor, esc, human_bytes

STATUS_LABELS = {"same": "same", "changed": "changed", "only-a": "only in A", "only-b": "only in B"}


@dataclass
class TensorDelta:
    name: str
    status: str  # "same", "changed", "only-a", "only-b"
    a: TensorInfo | None
    b: TensorInfo | None
    changes: list[str] = field(default_factory=list)
    values: dict[str, Any] | None = None  # deep: verdict, max_abs, max_rel (or error)


@dataclass
class Diff:
    a: FileModel
    b: FileModel
    facts: list[tuple[str, str, str]]
    config: list[tuple[str, str, str]]
    tensors: list[TensorDelta]
    deep: bool
    other: list[str] = field(default_factory=list)  # container / non-tensor blob differences
    engine: str = "report"  # "sbs diff" when sbs_tools.diff produced the comparison

    def count(self, status: str) -> int:
        return sum(t.status == status for t in self.tensors)

    @property
    def by_name(self) -> dict[str, TensorDelta]:
        return {t.name: t for t in self.tensors}


def _show(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v[:12])) + (", …" if len(v) > 12 else "") + f"] ({len(v)})"
    return str(v)


def _fact_rows(a: FileModel, b: FileModel) -> list[tuple[str, str, str]]:
    sa, sb = a.summary, b.summary
    keys = [("specifier", "specifier"), ("layout", "layout"), ("era", "era"), ("num_blobs", "blobs"),
            ("num_tensors", "tensors"), ("weight", "weight type"), ("num_layers", "text layers"),
            ("vit_layers", "vision layers")]
    rows = [("size", f"{human_bytes(a.size)} ({a.size:,})", f"{human_bytes(b.size)} ({b.size:,})")]
    rows += [(label, _show(sa.get(k)), _show(sb.get(k))) for k, label in keys]
    rows.append(("verify", "FAIL" if a.verify.errors else "OK", "FAIL" if b.verify.errors else "OK"))
    return rows


def _config_rows(a: FileModel, b: FileModel) -> list[tuple[str, str, str]]:
    if a.config is None or b.config is None:
        if (a.config is None) != (b.config is None):
            return [("config", "absent" if a.config is None else "present",
                     "absent" if b.config is None else "present")]
        return []
    from ..canonical import config_differences

    out = []
    for line in config_differences(a.config, b.config):
        name, _, rest = line.partition(": ")
        va, sep, vb = rest.partition(" != ")
        out.append((name, va, vb) if sep else (name, rest, ""))
    return out


def _ordered(a: FileModel, b: FileModel) -> list[str]:
    names = [t.name for t in a.tensors]
    known = set(names)
    return names + [t.name for t in b.tensors if t.name not in known]


def _from_engine(a: FileModel, b: FileModel, deep: bool, progress) -> Diff | None:
    """The comparison of ``sbs diff`` (``sbs_tools.diff``), or None when it is unavailable or cannot read a file."""
    try:
        from .. import diff as engine
    except ImportError:
        return None
    if a.open_error or b.open_error:
        return None
    cb = (lambda i, n, name: progress(f"comparing {name} ({i + 1}/{n})")) if progress else None
    try:
        rep = engine.diff(a.path, b.path, values=deep, progress=cb)
    except SbsError:
        return None
    ta = {t.name: t for t in a.tensors}
    tb = {t.name: t for t in b.tensors}
    changed = {t.name: t for t in rep.tensors}
    removed, added = set(rep.removed), set(rep.added)
    deltas = []
    for n in _ordered(a, b):
        if n in removed:
            deltas.append(TensorDelta(n, "only-a", ta.get(n), None))
        elif n in added:
            deltas.append(TensorDelta(n, "only-b", None, tb.get(n)))
        elif n in changed:
            t = changed[n]
            ch = [c.replace(" -> ", " → ") for c in t.changes]
            if not t.bytes_equal:
                ch.append("bytes")
            vals = None
            if deep and t.verdict != "incomparable":
                vals = {"verdict": t.verdict, "max_abs": t.max_abs, "max_rel": t.max_rel}
            deltas.append(TensorDelta(n, "changed", ta.get(n), tb.get(n), ch, vals))
        else:
            deltas.append(TensorDelta(n, "same", ta.get(n), tb.get(n),
                                      values={"verdict": "equal", "max_abs": 0.0, "max_rel": 0.0} if deep else None))
    other = list(rep.container) + list(rep.blobs)
    return Diff(a, b, _fact_rows(a, b), _config_rows(a, b), deltas, deep, other, engine="sbs diff")


def _same_bytes(fa: SbsFile, fb: SbsFile, ia: TensorInfo, ib: TensorInfo, chunk: int = 16 << 20) -> bool:
    """Byte equality of two blobs, read in chunks (the memory maps are not touched)."""
    if ia.bytes != ib.bytes:
        return False
    return all(np.array_equal(x, y) for x, y in zip(fa.chunks(ia.offset, ia.bytes, chunk_bytes=chunk),
                                                   fb.chunks(ib.offset, ib.bytes, chunk_bytes=chunk)))


def _value_delta(fa: SbsFile, fb: SbsFile, ia: TensorInfo, ib: TensorInfo) -> dict[str, Any]:
    """max |B - A| and max |B - A| / |B| over the decoded values (NaN/Inf in either side count as different)."""
    max_abs = max_rel = 0.0
    bad = 0
    for va, vb in zip(_chunks(fa, ia, 1 << 22), _chunks(fb, ib, 1 << 22)):
        d = np.abs(vb.astype(np.float64) - va)
        fin = np.isfinite(d)
        bad += int(d.size - np.count_nonzero(fin))
        d = np.where(fin, d, 0.0)
        if d.size:
            max_abs = max(max_abs, float(d.max()))
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(d == 0, 0.0, d / np.abs(vb.astype(np.float64)))
            max_rel = max(max_rel, float(np.nanmax(rel)))
    if bad:
        max_abs = max_rel = math.inf
    verdict = "equal" if max_abs == 0 else "different"
    return {"verdict": verdict, "max_abs": max_abs, "max_rel": max_rel}


def _decodable(f: SbsFile, i: TensorInfo) -> bool:
    want = i.expected_bytes
    return want is not None and want == i.bytes and i.offset + i.bytes <= f.file_bytes


def _own_diff(a: FileModel, b: FileModel, deep: bool, progress) -> Diff:
    """The local comparison: works on anything :class:`SbsFile` opens leniently."""
    ta = {t.name: t for t in a.tensors}
    tb = {t.name: t for t in b.tensors}
    deltas: list[TensorDelta] = []
    fa = fb = None
    try:
        if not (a.open_error or b.open_error):
            fa, fb = SbsFile(a.path, strict=False), SbsFile(b.path, strict=False)
        names = _ordered(a, b)
        for k, n in enumerate(names):
            ia, ib = ta.get(n), tb.get(n)
            if ia is None or ib is None:
                deltas.append(TensorDelta(n, "only-b" if ia is None else "only-a", ia, ib))
                continue
            ch = []
            if ia.type_name != ib.type_name:
                ch.append(f"type {ia.type_name} → {ib.type_name}")
            if (ia.rows, ia.cols) != (ib.rows, ib.cols):
                ch.append(f"shape {ia.rows}x{ia.cols} → {ib.rows}x{ib.cols}")
            if ia.scale != ib.scale:
                ch.append(f"scale {ia.scale:g} → {ib.scale:g}")
            ok = fa is not None and _decodable(fa, ia) and _decodable(fb, ib)
            same = ok and ia.type == ib.type and _same_bytes(fa, fb, ia, ib)
            if not same:
                ch.append("bytes")
            vals = None
            if deep and ok and ia.num_values == ib.num_values:
                if progress:
                    progress(f"comparing {n} ({k + 1}/{len(names)})")
                vals = ({"verdict": "equal", "max_abs": 0.0, "max_rel": 0.0} if same and not ch
                        else _value_delta(fa, fb, ia, ib))
            deltas.append(TensorDelta(n, "changed" if ch else "same", ia, ib, ch, vals))
    finally:
        for f in (fa, fb):
            if f is not None:
                f.close()
    other = []
    if a.summary.get("layout") != b.summary.get("layout"):
        other.append(f"layout: {a.summary.get('layout')} != {b.summary.get('layout')}")
    return Diff(a, b, _fact_rows(a, b), _config_rows(a, b), deltas, deep, other)


def diff_models(a: FileModel, b: FileModel, deep: bool = False,
                progress: Callable[[str], None] | None = None) -> Diff:
    """Compare two files (``sbs diff``'s engine when available, else the local comparison)."""
    return _from_engine(a, b, deep, progress) or _own_diff(a, b, deep, progress)


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------

def _merge_towers(a: FileModel, b: FileModel) -> list[Tower]:
    """The union of both files' towers: B's chip where B has the tensor (or a hole), else A's."""
    out: list[Tower] = []
    ta = {t.key: t for t in a.towers}
    tb = {t.key: t for t in b.towers}
    for key in [k for k in ("text", "vision") if k in ta or k in tb]:
        x, y = ta.get(key), tb.get(key)
        base = y or x
        cols = list(base.columns)
        if x is not None and y is not None:
            known = {c.key for c in cols}
            cols += [c for c in x.columns if c.key not in known]
        rows: dict[int, Row] = {}
        for t in (x, y):
            if t is None:
                continue
            for r in t.rows:
                row = rows.setdefault(r.index, Row(r.id, r.label, r.index, r.layer_type, list(r.tags), {}, set()))
                row.applicable |= r.applicable
                for col, chips in r.slots.items():
                    slot = row.slots.setdefault(col, [])
                    for c in chips:
                        _put(slot, c)
        globs: list[Chip] = []
        for t in (x, y):
            if t is not None:
                for c in t.globals:
                    _put(globs, c)
        out.append(Tower(key, base.title, cols, [rows[i] for i in sorted(rows)], globs))
    return out


def _put(slot: list[Chip], c: Chip) -> None:
    """Add ``c`` (from B, called after A) to ``slot``, replacing A's chip of the same name."""
    for i, old in enumerate(slot):
        if old.name == c.name:
            if c.state != "missing" or old.state == "missing":
                slot[i] = c
            return
    slot.append(c)


def _vals_cells(d: TensorDelta) -> str:
    v = d.values
    if v is None:
        return '<td data-v="">–</td><td class="num" data-v="">–</td><td class="num" data-v="">–</td>'
    verdict = v.get("verdict", "")
    cls = {"equal": "st-same", "close": "st-changed", "different": "st-only-a"}.get(verdict, "")
    return (f'<td data-v="{esc(verdict)}"><span class="tchip {cls}">{esc(verdict)}</span></td>'
            f'<td class="num" data-v="{v["max_abs"]!r}">{H.fnum(v["max_abs"])}</td>'
            f'<td class="num" data-v="{v["max_rel"]!r}">{H.fnum(v["max_rel"])}</td>')


def _side(i: TensorInfo | None) -> str:
    if i is None:
        return '<td class="muted" data-v="">absent</td>'
    cat = i.type_name if i.type_name in ("F32", "BF16", "SFP", "NUQ", "I8") else "other"
    return (f'<td data-v="{esc(i.type_name)} {i.rows}x{i.cols}"><span class="tchip cat-{cat}">'
            f"{esc(i.type_name)}</span> "
            f'{i.rows:,} × {i.cols:,} <span class="muted">{esc(human_bytes(i.bytes))}</span></td>')


def diff_card(d: Diff) -> str:
    counts = "".join(f'<span class="st-{s}" data-count="{s}">{esc(STATUS_LABELS[s])}: <b>{d.count(s)}</b></span>'
                     for s in ("same", "changed", "only-a", "only-b"))
    facts = "".join(f'<tr{H.attr("class", "changed-field" if va != vb else None)}><td>{esc(k)}</td>'
                    f"<td>{esc(va)}</td><td>{esc(vb)}</td></tr>" for k, va, vb in d.facts)
    cfg_rows = "".join(f"<tr><td class=\"mono\">{esc(k)}</td><td>{esc(va)}</td><td>{esc(vb)}</td></tr>"
                       for k, va, vb in d.config[:400])
    more = f'<p class="muted">… and {len(d.config) - 400} more fields.</p>' if len(d.config) > 400 else ""
    cfg = (f'<h3>Config <span class="muted">{len(d.config)} field(s) differ</span></h3>'
           + (f'<table class="data"><thead><tr><th>field</th><th>A</th><th>B</th></tr></thead><tbody>{cfg_rows}'
              f"</tbody></table>{more}" if d.config else '<p class="none">identical configs.</p>'))
    rows = []
    for t in d.tensors:
        tid = anchor("t-", t.name)
        rows.append(f'<tr{H.attr("data-tensor", t.name)} data-status="{t.status}"'
                    f'{" hidden" if t.status == "same" else ""}>'
                    f'<td data-v="{esc(t.name)}"><a class="mono" href="#{esc(tid)}" data-target="{esc(tid)}">'
                    f"{esc(t.name)}</a></td>"
                    f'<td data-v="{t.status}"><span class="tchip st-{t.status}">{esc(STATUS_LABELS[t.status])}'
                    "</span></td>"
                    f"{_side(t.a)}{_side(t.b)}"
                    f'<td data-v="{esc(", ".join(t.changes))}">{esc(", ".join(t.changes)) or "–"}</td>'
                    f"{_vals_cells(t) if d.deep else ''}</tr>")
    vals_head = ('<th data-sort="text">values</th><th data-sort="num">max |B − A|</th>'
                 '<th data-sort="num">max rel.</th>' if d.deep else "")
    note = ("type, shape, scale and bytes compared, and the decoded values where the shapes agree" if d.deep else
            "type, shape, scale and bytes compared; add --deep to compare the decoded values")
    other = ""
    if d.other:
        other = ('<h3>Container and other blobs</h3><ul class="plain">'
                 + "".join(f"<li>{esc(x)}</li>" for x in d.other) + "</ul>")
    shown = len(d.tensors) - d.count("same")
    return (f'<section class="card" id="diff"><h2>Differences</h2><p class="sub">A = {esc(d.a.path)}<br>'
            f"B = {esc(d.b.path)}<br>Tensors matched by name; {esc(note)} (by {esc(d.engine)}).</p>"
            f'<div class="dstat">{counts}</div>'
            f'<h3>Files</h3><table class="data"><thead><tr><th></th><th>A</th><th>B</th></tr></thead>'
            f"<tbody>{facts}</tbody></table>{other}{cfg}"
            f'<h3>Tensors</h3><div class="tools"><input type="search" placeholder="filter, e.g. changed or att_ein" '
            f'data-filter="diff-table" aria-label="filter tensors"><span class="count" id="diff-table-count">'
            f'{shown} changed shown · {d.count("same")} same hidden until you filter</span></div>'
            f'<table class="data sortable" id="diff-table"><thead><tr><th data-sort="text">tensor</th>'
            f'<th data-sort="text">status</th><th data-sort="text">A</th><th data-sort="text">B</th>'
            f'<th data-sort="text">changes</th>{vals_head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            "</section>")


def diff_report(a: FileModel, b: FileModel, deep: bool = False,
                progress: Callable[[str], None] | None = None) -> str:
    d = diff_models(a, b, deep=deep, progress=progress)
    by = d.by_name

    def status_of(c: Chip) -> str | None:
        t = by.get(c.name)
        return t.status if t is not None and c.state != "missing" else None

    def blob_prefix_of(c: Chip) -> str:
        t = by.get(c.name)
        return "bb-" if t is not None and t.status == "only-b" else "b-"

    towers = _merge_towers(a, b)
    legend_items = "".join(f'<span><i class="st-{s}"></i>{esc(STATUS_LABELS[s])}</span>'
                           for s in ("same", "changed", "only-a", "only-b"))
    legend = (f'<div class="stacklegend">{legend_items}<span><i class="missing"></i>missing (required, in '
              "neither file)</span></div>")
    stack = ('<section class="card" id="layers"><h2>Layer stack</h2><p class="sub">The union of both files\' tensors, '
             "coloured by what changed from A to B. Red hatched holes are required tensors that are missing.</p>"
             + "".join(H.tower_html(t, status_of=status_of, blob_prefix_of=blob_prefix_of) for t in towers)
             + legend + "</section>")
    maps = ('<section class="card" id="bytemap"><h2>Byte maps</h2><p class="sub">Both files to scale, each on its '
            "own width. Hover a band for key, offset and size.</p>"
            f'<h3>A <span class="muted">{esc(a.name)}</span></h3>{H.bytemap_section(a, id_prefix="b-")}'
            f'<h3>B <span class="muted">{esc(b.name)}</span></h3>{H.bytemap_section(b, id_prefix="bb-")}'
            "</section>")
    cards = ('<div class="row2">' + H.summary_card(a, heading="A", anchor_id="summary")
             + H.summary_card(b, heading="B", anchor_id="summary-b", blob_prefix="bb-") + "</div>")
    body = "\n".join([cards, diff_card(d), stack, maps])
    nav = [("summary", "Summary"), ("diff", "Differences"), ("layers", "Layers"), ("bytemap", "Byte maps")]
    return H.page(f"sbs report · {a.name} vs {b.name}", f"{a.path}  ⇄  {b.path}", nav, body)
