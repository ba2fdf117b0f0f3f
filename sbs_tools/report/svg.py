"""Small pure functions that draw inline SVG: the byte map, value sparklines, a stacked share bar.

Every function returns an SVG (or SVG fragment) string with all text escaped;
nothing here opens files. Colours come from CSS classes (``cat-<category>``),
so the page's stylesheet is the one place that defines the palette.
"""
from __future__ import annotations

import html
import math
import re
from typing import Iterable, Sequence

from .model import CATEGORY_LABELS, Region


def esc(s: object) -> str:
    """HTML/SVG text and attribute escaping (quotes included)."""
    return html.escape(str(s), quote=True)


_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.-]")


def anchor(prefix: str, name: str) -> str:
    """A valid, unique HTML id for a tensor or blob name (unusual characters hex-escaped)."""
    return prefix + _UNSAFE_ID.sub(lambda m: f"~{ord(m.group()):x}", name)


def human_bytes(n: int | float) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def _num(x: float) -> str:
    """Compact coordinate formatting (keeps the page small)."""
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return s if s not in ("-0", "") else "0"


def region_tip(r: Region) -> str:
    """Hover text of a byte-map region: what, where, how big."""
    lines = []
    if r.kind == "blob":
        lines.append(r.key or "")
        t = r.tensor
        if t is not None:
            lines.append(f"{t.type_name} {t.rows} x {t.cols}" + (f", scale {t.scale:g}" if t.scale != 1.0 else ""))
        else:
            lines.append(CATEGORY_LABELS.get(r.category, r.category))
        lines.append(f"offset {r.start:,} (0x{r.start:x})")
        size = r.size if r.size is not None else r.length
        lines.append(f"size {size:,} B ({human_bytes(size)})")
        if size > r.length:
            lines.append(f"only {r.length:,} B of it inside the file" if r.length
                         else "entirely past the end of the file")
        if r.index is not None:
            lines.append(f"directory entry {r.index}")
        if r.codes:
            lines.append("findings: " + ", ".join(r.codes))
    else:
        lines.append(r.label)
        lines.append(f"offset {r.start:,} (0x{r.start:x})")
        lines.append(f"size {r.length:,} B ({human_bytes(r.length)})")
    return "\n".join(lines)


def choose_rows(num_blobs: int) -> int:
    """Rows of the wrapped byte map: more blobs, more rows (so small blobs keep a visible width)."""
    return max(4, min(24, math.ceil(1.25 * math.sqrt(max(num_blobs, 1)))))


def byte_map(regions: Sequence[Region], size: int, *, rows: int | None = None, width: float = 1100.0,
             gutter: float = 78.0, row_h: float = 24.0, row_gap: float = 7.0, id_prefix: str = "b-",
             min_w: float = 1.0) -> str:
    """The file as a wrapped strip: ``rows`` rows of equal byte spans, each region a proportional band.

    Blobs are ``<g class="blob cat-T" data-key data-offset data-size data-tip id>`` groups (one
    rect per row they touch); padding, gaps, header and directory are plain rects with a
    ``data-tip``. A band narrower than ``min_w`` units is widened to stay visible.
    """
    if size <= 0:
        return ""
    rows = rows or choose_rows(sum(r.kind == "blob" for r in regions))
    span = math.ceil(size / rows)
    rows = math.ceil(size / span)
    total_w = gutter + width
    height = rows * row_h + (rows - 1) * row_gap
    scale = width / span
    out = [f'<svg class="bytemap" viewBox="0 0 {_num(total_w)} {_num(height)}" width="100%" '
           f'role="img" aria-label="byte map of the file" xmlns="http://www.w3.org/2000/svg">',
           f'<defs><pattern id="{id_prefix}~hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="6" height="6" class="gap-bg"/>'
           '<rect width="2.5" height="6" class="gap-fg"/></pattern></defs>']
    for i in range(rows):
        y = i * (row_h + row_gap)
        out.append(f'<text class="axis" x="{_num(gutter - 8)}" y="{_num(y + row_h / 2 + 4)}" '
                   f'text-anchor="end">{esc(_axis_label(i * span, size))}</text>')
        row_w = min(span, size - i * span) * scale
        out.append(f'<rect class="rowbg" x="{_num(gutter)}" y="{_num(y)}" width="{_num(row_w)}" '
                   f'height="{_num(row_h)}"/>')
    seen_ids: dict[str, int] = {}
    for r in regions:
        segs = list(_segments(r.start, r.end, span, rows))
        if not segs:
            continue
        rects = []
        widest = (0.0, 0.0, 0)
        for row, a, b in segs:
            w = max((b - a) * scale, min_w)
            x = min(gutter + a * scale, gutter + width - w)  # an empty or past-the-end blob: a mark at the edge
            y = row * (row_h + row_gap)
            rects.append(f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(row_h)}"/>')
            if w > widest[1]:
                widest = (x, w, row)
        tip = esc(region_tip(r))
        if r.kind == "blob":
            base = anchor(id_prefix, r.key or "")
            k = seen_ids.get(base, 0)
            seen_ids[base] = k + 1
            rid = base if k == 0 else f"{base}~{k}"
            cls = f"blob cat-{r.category}" + (f" sev-{r.severity}" if r.severity else "")
            label = ""
            x, w, row = widest
            if w > 7.2 * len(r.key or "") + 10:
                ty = row * (row_h + row_gap) + row_h / 2 + 4
                label = (f'<text class="blabel" x="{_num(x + w / 2)}" y="{_num(ty)}" text-anchor="middle">'
                         f"{esc(r.key)}</text>")
            target = f' data-target="{esc(anchor("t-", r.tensor.name))}"' if r.tensor is not None else ""
            out.append(f'<g class="{cls}" id="{esc(rid)}" data-key="{esc(r.key)}" data-offset="{r.start}" '
                       f'data-size="{r.size}"{target} data-tip="{tip}"><title>{tip}</title>'
                       + "".join(rects) + label + "</g>")
        else:
            fill = f' style="fill:url(#{id_prefix}~hatch)"' if r.category == "gap" else ""
            out.append(f'<g class="region cat-{r.category}"{fill} data-kind="{r.kind}" data-offset="{r.start}" '
                       f'data-size="{r.length}" data-tip="{tip}"><title>{tip}</title>' + "".join(rects) + "</g>")
    out.append("</svg>")
    return "".join(out)


def _segments(start: int, end: int, span: int, rows: int) -> Iterable[tuple[int, int, int]]:
    """(row, a, b) pieces of ``[start, end)`` with a, b relative to the row start; zero-length kept as a point."""
    if end <= start:
        row = min(start // span, rows - 1)
        yield row, start - row * span, start - row * span
        return
    pos = start
    while pos < end:
        row = pos // span
        if row >= rows:
            return
        row_end = min((row + 1) * span, end)
        yield row, pos - row * span, row_end - row * span
        pos = row_end


def _axis_label(offset: int, size: int) -> str:
    if offset == 0:
        return "0"
    return human_bytes(offset) if size >= 10 * 1024 else f"{offset:,}"


def share_bar(parts: Sequence[tuple[str, int, str]], *, width: float = 1178.0, height: float = 14.0) -> str:
    """A 100 % stacked bar: ``parts`` = (category, bytes, tooltip)."""
    total = sum(p[1] for p in parts) or 1
    out = [f'<svg class="sharebar" viewBox="0 0 {_num(width)} {_num(height)}" width="100%" '
           f'preserveAspectRatio="none" role="img" aria-label="bytes by category" '
           f'xmlns="http://www.w3.org/2000/svg">']
    x = 0.0
    for cat, n, tip in parts:
        w = n / total * width
        if w <= 0:
            continue
        out.append(f'<rect class="cat-{esc(cat)}" x="{_num(x)}" y="0" width="{_num(max(w, 0.8))}" '
                   f'height="{_num(height)}" data-tip="{esc(tip)}"><title>{esc(tip)}</title></rect>')
        x += w
    out.append("</svg>")
    return "".join(out)


def sparkline(hist: Sequence[int], lo: float | None, hi: float | None, *, non_finite: int = 0,
              width: float = 132.0, height: float = 26.0) -> str:
    """A value histogram as a filled step curve; bar heights are log-scaled counts so sparse tails show.

    A vertical tick marks 0 when it lies inside ``[lo, hi]``; a red bar at the right
    edge marks non-finite values.
    """
    if not hist:
        return ('<svg class="spark empty" viewBox="0 0 1 1" width="0" height="0" '
                'xmlns="http://www.w3.org/2000/svg"></svg>')
    pad_r = 6.0 if non_finite else 0.0
    w = width - pad_r
    top = max(math.log1p(c) for c in hist) or 1.0
    bw = w / len(hist)
    pts = [f"M0 {_num(height)}"]
    for i, c in enumerate(hist):
        y = height - (math.log1p(c) / top) * (height - 1.5) if c else height
        pts.append(f"L{_num(i * bw)} {_num(y)}L{_num((i + 1) * bw)} {_num(y)}")
    pts.append(f"L{_num(w)} {_num(height)}Z")
    tip = f"{sum(hist):,} finite values in {len(hist)} bins"
    if lo is not None and hi is not None:
        tip += f" from {lo:.4g} to {hi:.4g}"
    tip += "\nbar height: log(1 + count)" + (f"\nred: {non_finite:,} NaN/Inf" if non_finite else "")
    parts = [f'<svg class="spark" viewBox="0 0 {_num(width)} {_num(height)}" width="{_num(width)}" '
             f'height="{_num(height)}" role="img" aria-label="value histogram" data-tip="{esc(tip)}" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<path class="spark-area" d="{"".join(pts)}"/>']
    if lo is not None and hi is not None and lo < 0 < hi:
        x = (0 - lo) / (hi - lo) * w
        parts.append(f'<line class="spark-zero" x1="{_num(x)}" y1="0" x2="{_num(x)}" y2="{_num(height)}"/>')
    if non_finite:
        parts.append(f'<rect class="spark-nan" x="{_num(w + 2)}" y="0" width="4" height="{_num(height)}"/>')
    parts.append("</svg>")
    return "".join(parts)
