"""Where each blob's bytes really are: the conservative relocation rule.

Every gemma.cpp writer (all eras, spec §1.1) stores blobs back to back in
directory order on the 256-byte grid and zero-fills all padding. A directory
whose offsets depart from that layout is either damaged or came from a foreign
writer. For every entry we weigh two hypotheses about where its bytes start:

* **R**, the recorded offset (what the directory says), and
* **B**, the back-to-back offset (where a gemma.cpp writer would have put it,
  right after the previous blob's padded end),

and, when a trusted toc gives a different size than the directory, two sizes
(recorded and toc). A hypothesis ``(p, s)`` is *consistent* when

1. ``[p, p + s)`` lies inside the payload (before the V2 directory / the end
   of a V1 file) and does not start before the previous blob's data ends;
2. every byte between the previous blob's data end and ``p`` is zero (bytes
   there would belong to no blob: padding is always zero);
3. the padding after it, ``[p + s, RoundUp(p + s, 256))``, is zero.

Decision (:func:`resolve`):

* the entry is accepted as recorded when ``R == B`` and no trusted toc size
  disagrees (nothing to decide; non-zero padding is fixed by rewriting);
* otherwise exactly one consistent position must remain, preferring the toc
  size when the toc is trusted; a relocation (``p != R``) must additionally be
  *anchored*: the next directory entry starts at ``RoundUp(p + s, 256)`` (or it
  is the last blob), and the relocated bytes must not be all zero;
* two consistent positions (possible only when the bytes that would tell them
  apart are zero) are ambiguous and the entry is left unrecovered, with the
  reason. So is an entry with no consistent position.

Before any of that, a *self-consistent* directory (every blob inside the
payload, 256-aligned, no two overlapping, all bytes outside blobs zero) is
trusted as is even if it is not back to back: that is a foreign writer's
layout (gaps, other order), and rewriting fixes it without moving any data.

Example, ``broken-misaligned-offset.sbs``: ``c_final_norm`` (128 bytes) is
recorded at 65808 (not a multiple of 256); the previous blob ends at 65792.
R is inconsistent (the 16 bytes [65792, 65808) before it are non-zero: they
are the tensor's own first bytes), B = 65792 is consistent (padding
[65920, 66048) is zero) and anchored (the next blob starts at 66048), so the
blob is recovered from 65792.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..blobstore import BLOB_ALIGN, BlobEntry, Directory, round_up


@dataclass
class Resolved:
    """One directory entry and where its bytes were found."""

    entry: BlobEntry
    offset: int | None  # resolved start (None: bytes not recoverable)
    size: int | None
    how: str  # "recorded", "foreign-layout", "relocated", "resized", "relocated+resized", "lost", "duplicate-entry"
    note: str = ""  # evidence (recovered) or reason (lost)
    duplicate_of: int | None = None  # exact copy (same key and range) of this earlier directory index

    @property
    def key(self) -> str:
        return self.entry.key

    @property
    def index(self) -> int:
        return self.entry.index

    @property
    def ok(self) -> bool:
        return self.offset is not None

    @property
    def moved(self) -> bool:
        return self.ok and (self.offset != self.entry.offset or self.size != self.entry.size)


def payload_end(d: Directory) -> int:
    """First byte that cannot hold blob data: the V2 directory, or the end of a V1 file."""
    return d.dir_offset if d.layout == "v2" else d.file_size


def _zero(buf: np.ndarray, a: int, b: int) -> bool:
    if b <= a:
        return True
    return not np.any(buf[a:b])


def self_consistent(d: Directory, buf: np.ndarray) -> bool:
    """Every blob inside the payload, aligned, sized, non-overlapping, and all other bytes zero."""
    first, end = d.first_blob_offset, payload_end(d)
    seen: dict[str, tuple[int, int]] = {}
    spans = []
    for e in d.entries:
        if e.size == 0 or e.offset % BLOB_ALIGN or e.offset < first or e.offset + e.size > end:
            return False
        if e.key in seen and seen[e.key] == (e.offset, e.size):
            continue  # exact duplicate entry: same bytes
        seen[e.key] = (e.offset, e.size)
        spans.append((e.offset, e.offset + e.size))
    spans.sort()
    pos = first
    for a, b in spans:
        if a < pos or not _zero(buf, pos, a):
            return False
        pos = b
    return _zero(buf, pos, end)


def resolve(d: Directory, buf: np.ndarray, hints: dict[str, int] | None = None) -> list[Resolved]:
    """Resolve every directory entry to the range that holds its bytes (see module doc).

    ``hints``: key -> blob size implied by a *trusted* toc record (its shape
    agrees with the config).
    """
    hints = hints or {}
    end = payload_end(d)
    out: list[Resolved] = []
    exact: dict[tuple[str, int, int], int] = {}
    for e in d.entries:
        k = (e.key, e.offset, e.size)
        if k in exact:
            out.append(Resolved(e, e.offset, e.size, "duplicate-entry",
                                f"same key and range as directory entry {exact[k]}", duplicate_of=exact[k]))
        else:
            exact[k] = e.index
            out.append(None)  # type: ignore[arg-type]
    todo = [e for e, r in zip(d.entries, out) if r is None]
    if self_consistent(d, buf) and not any(e.key in hints and hints[e.key] != e.size for e in todo):
        for e in todo:
            out[e.index] = Resolved(e, e.offset, e.size, "recorded")
        _mark_foreign(d, out)
        return out

    prev_end = d.first_blob_offset  # data end of the previous resolved blob
    expected = d.first_blob_offset  # back-to-back position
    after_lost = False
    # next_todo[i]: the first entry after i that still needs resolving (exact duplicates are skipped).
    next_todo: list[BlobEntry | None] = [None] * len(d.entries)
    following = None
    for i in range(len(d.entries) - 1, -1, -1):
        next_todo[i] = following
        if out[i] is None:
            following = d.entries[i]
    for i, e in enumerate(d.entries):
        if out[i] is not None:
            continue
        nxt = next_todo[i]
        hint = hints.get(e.key)
        if after_lost and e.offset >= prev_end and e.offset % BLOB_ALIGN == 0 and e.size and \
                e.offset + e.size <= end and (hint is None or hint == e.size):
            # The previous entry's extent is unknown: its slot ends where this one is recorded to start.
            r = Resolved(e, e.offset, e.size, "recorded", "taken as recorded: the previous entry's extent is unknown")
        else:
            r = _resolve_one(e, nxt, buf, prev_end, expected, end, hint)
        out[i] = r
        after_lost = not r.ok
        if r.ok:
            prev_end = r.offset + r.size
            expected = round_up(prev_end, BLOB_ALIGN)
        # A lost entry does not move the cursor: the next blob is judged from the last good one.
    return out


def _mark_foreign(d: Directory, out: list[Resolved]) -> None:
    expected = d.first_blob_offset
    for r in out:
        if r.how == "duplicate-entry":
            continue
        if r.offset != expected:
            r.how = "foreign-layout"
            r.note = "directory is self-consistent (no overlaps, zero gaps): bytes kept at the recorded offset"
        expected = round_up(r.offset + r.size, BLOB_ALIGN)


def _consistent(buf: np.ndarray, p: int, s: int, prev_end: int, end: int, recorded: tuple[int, int] = (0, 0)
                ) -> str | None:
    """None if hypothesis (p, s) is consistent, else why not."""
    if s <= 0:
        return "size 0"
    if p < prev_end:
        return f"would start at {p}, inside the previous blob (its data ends at {prev_end})"
    if p + s > end:
        return f"[{p}, {p + s}) runs past the end of the blob payload ({end})"
    if not _zero(buf, prev_end, p):
        return f"bytes [{prev_end}, {p}) before it are not zero (they would belong to no blob)"
    if not _zero(buf, p + s, min(round_up(p + s, BLOB_ALIGN), end)):
        return f"its padding [{p + s}, {round_up(p + s, BLOB_ALIGN)}) is not zero"
    R, S = recorded
    if p == R and s < S and not _zero(buf, p + s, min(R + S, end)):
        return f"the {S - s} bytes it would cut off [{p + s}, {R + S}) are not zero"
    return None


def _resolve_one(e: BlobEntry, nxt: BlobEntry | None, buf: np.ndarray, prev_end: int, expected: int,
                 end: int, hint: int | None) -> Resolved:
    R, B = e.offset, expected
    if R == B and (hint is None or hint == e.size) and e.size and R + e.size <= end:
        return Resolved(e, R, e.size, "recorded")
    sizes = [s for s in dict.fromkeys([hint, e.size]) if s]
    if not sizes:
        return Resolved(e, None, None, "lost", "its recorded size is 0 and no trusted toc record gives the size")
    positions = list(dict.fromkeys([R, B]))
    verdicts: dict[tuple[int, int], str | None] = {}
    for p in positions:
        for s in sizes:
            verdicts[(p, s)] = _consistent(buf, p, s, prev_end, end, (R, e.size))
    good = [h for h, why in verdicts.items() if why is None]
    if hint is not None:
        with_hint = [h for h in good if h[1] == hint]
        good = with_hint or good
    # One size per position: prefer the trusted toc size, else the recorded one.
    by_pos: dict[int, int] = {}
    for p, s in good:
        by_pos.setdefault(p, s)
    for p in list(by_pos):
        shrink = p == R and by_pos[p] < e.size  # cut-off bytes checked zero: the next blob is not affected
        if (p != R or by_pos[p] != e.size) and not shrink and not _anchored(p, by_pos[p], nxt, end):
            del by_pos[p]
        elif p != R and not np.any(buf[p:p + by_pos[p]]):
            del by_pos[p]  # all-zero bytes are no evidence of a blob
    if len(by_pos) == 1:
        (p, s), = by_pos.items()
        how = "relocated" if p != R else "recorded"
        if s != e.size:
            how = "relocated+resized" if p != R else "resized"
        rejected = "; ".join(f"offset {q} size {t}: {why}" for (q, t), why in verdicts.items() if why)
        note = f"bytes found at [{p}, {p + s})"
        if p != R:
            note += f" (directory said {R})"
        if s != e.size:
            note += f", size {s} from the toc (directory said {e.size})"
        if rejected:
            note += f"; rejected {rejected}"
        return Resolved(e, p, s, how, note)
    if len(by_pos) > 1:
        return Resolved(e, None, None, "lost",
                        "ambiguous: the bytes could start at " + " or ".join(map(str, by_pos))
                        + " and nothing in the file tells them apart")
    why = "; ".join(f"offset {q} size {t}: {w}" for (q, t), w in verdicts.items() if w)
    if R == B and hint is not None and e.size and R + e.size <= end:
        # The blob is where the writer put it; only the toc disagrees about its size. Keep it.
        return Resolved(e, R, e.size, "recorded", f"toc size {hint} not confirmed by the padding ({why})")
    return Resolved(e, None, None, "lost", f"no consistent position: {why or 'the anchoring next blob disagrees'}")


def _anchored(p: int, s: int, nxt: BlobEntry | None, end: int) -> bool:
    if nxt is None:
        return True
    return nxt.offset == round_up(p + s, BLOB_ALIGN)
