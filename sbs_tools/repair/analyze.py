"""Read a (possibly broken) file as far as it goes: every fact the planner needs.

Unlike :func:`sbs_tools.open`, nothing here trusts the directory blindly:
blob positions are resolved with :mod:`.relayout`, the config and toc are
decoded from the resolved bytes, a damaged toc is scanned for surviving
records, and duplicate keys are compared by content. The input is opened
read-only (an mmap) and never written.
"""
from __future__ import annotations

import hashlib
import mmap
import os
from dataclasses import dataclass, field

import numpy as np

from .. import blobstore
from ..blobstore import Directory, Problem
from ..config import ModelConfig, decode_config
from ..errors import SbsError
from ..fields import as_words, read_struct
from ..sbsfile import METADATA_KEYS, MOCK_TOKENIZER, TYPE_PREFIX
from ..tensors import expected_tensors
from ..toc import MATPTR, TocRecord, decode_toc
from ..types import Type, packed_bytes
from .recover import readable_keys, recover_directory, salvage_notes, salvage_trailerless
from .relayout import Resolved, resolve

SCALES_KEYS = ("Fscales", "scales")  # "scales": the 2025-04 writers' misspelt key (spec §7)
MAX_METADATA_BYTES = 64 << 20


def strip_prefix(key: str) -> tuple[Type, str] | None:
    """``"$att_ein_0"`` -> ``(Type.SFP, "att_ein_0")``; None if ``key`` has no type prefix."""
    if len(key) >= 2 and key[0] in TYPE_PREFIX and key not in SCALES_KEYS:
        return TYPE_PREFIX[key[0]], key[1:]
    return None


def sha256(data) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(data)).cast("B")).hexdigest()


@dataclass
class Analysis:
    """Everything known about the input file."""

    path: str
    size: int
    buf: np.ndarray
    directory: Directory | None = None
    fatal: SbsError | None = None  # container unreadable: nothing can be located
    salvage: list[str] = field(default_factory=list)  # what survives when fatal
    problems: list[Problem] = field(default_factory=list)  # container problems (check_layout + padding)
    resolved: list[Resolved] = field(default_factory=list)
    chosen: dict[str, Resolved] = field(default_factory=dict)  # key -> entry whose bytes are used
    conflicts: dict[str, list[Resolved]] = field(default_factory=dict)  # duplicate keys, differing bytes
    dup_identical: dict[str, list[Resolved]] = field(default_factory=dict)  # duplicate keys, same bytes
    config: ModelConfig | None = None
    config_error: SbsError | None = None
    toc: list[TocRecord] | None = None
    toc_error: SbsError | None = None
    toc_partial: bool = False  # toc undecodable; ``toc`` holds the records a scan recovered
    tokenizer: bytes | None = None
    tokenizer_status: str = "absent"  # ok | mock | absent | invalid | lost
    tokenizer_error: str = ""
    era: str = "single-file-v2"
    scales: np.ndarray | None = None
    scales_key: str | None = None
    hints: dict[str, int] = field(default_factory=dict)
    header_fix: str | None = None  # how an unreadable header/directory was recovered
    config_lenient: bool = False  # decoded only with layer types 0..2 allowed everywhere
    salvaged_lost: list[str] = field(default_factory=list)  # trailerless salvage: blobs past the cut

    # -- helpers ---------------------------------------------------------------
    def data(self, r: Resolved) -> np.ndarray:
        assert r.ok
        return self.buf[r.offset:r.offset + r.size]

    def blob(self, key: str) -> np.ndarray | None:
        r = self.chosen.get(key)
        return self.data(r) if r is not None and r.ok else None

    @property
    def layout(self) -> str:
        return self.directory.layout if self.directory else "v2"

    @property
    def single_file(self) -> bool:
        return self.era != "pre-2025"

    @property
    def prefixed(self) -> bool:
        return self.era in ("pre-2025", "single-file-prefixed")

    def tensor_keys(self) -> list[str]:
        """Keys of blobs that hold tensors (not config/toc/tokenizer/scales), in directory order."""
        out: list[str] = []
        seen: set[str] = set()
        for r in self.resolved:
            if r.how == "duplicate-entry" or r.key in seen:
                continue
            if r.key in METADATA_KEYS or r.key in SCALES_KEYS:
                continue
            if self.prefixed and strip_prefix(r.key) is None:
                continue
            seen.add(r.key)
            out.append(r.key)
        return out

    def tensor_name(self, key: str) -> str:
        if self.prefixed:
            s = strip_prefix(key)
            return s[1] if s else key
        return key


def analyze(path: str | os.PathLike, *, drop_duplicates: str | None = None,
            reference: str | os.PathLike | None = None) -> Analysis:
    """Map ``path`` read-only and collect every fact :mod:`.plan` needs."""
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size:
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            buf = np.frombuffer(mm, dtype=np.uint8)
        else:
            buf = np.zeros(0, dtype=np.uint8)
    finally:
        os.close(fd)
    a = Analysis(path, size, buf)
    try:
        a.directory = blobstore.read_directory(buf)
    except SbsError as e:
        rec = recover_directory(buf, e)
        if rec is None and reference is not None:
            rec = salvage_trailerless(buf, reference)
            if rec is not None:
                a.directory, a.header_fix, a.salvaged_lost, ref_meta = rec
                a.problems = []
                a.resolved = resolve(a.directory, buf)
                _choose(a, drop_duplicates)
                a.config, a.toc = ref_meta
                a.era = "single-file-v2"
                return a
        if rec is None:
            a.fatal = e
            a.salvage = salvage_notes(buf, e)
            return a
        a.directory, a.header_fix, buf = rec
        a.buf = buf
        a.size = int(buf.size)
        layout = None  # the recovered directory's layout: checked below
    else:
        d0 = a.directory
        layout = blobstore.check_layout(d0)
        placement = {"blob-misaligned", "blob-out-of-bounds", "blob-overlap", "blob-gap", "zero-size-blob", "bad-key"}
        if not readable_keys(d0) or any(p.code in placement for p in layout):
            # A wrong (but readable) num_blobs makes the directory read key bytes as ranges and vice versa.
            rec = recover_directory(buf, None)
            if rec is not None and len(rec[0].entries) != len(d0.entries):
                a.directory, a.header_fix, buf = rec
                a.buf = buf
                a.size = int(buf.size)
                layout = None
    d = a.directory
    if layout is None:
        layout = blobstore.check_layout(d)
    a.problems = layout + blobstore.check_padding(d, lambda at, n: buf[at:at + n])
    a.resolved = resolve(d, buf)
    _choose(a, drop_duplicates)
    _metadata(a)
    hints = _hints(a)
    if any(r.ok and r.key in hints and hints[r.key] != r.size for r in a.resolved) or \
            any(not r.ok and r.key in hints for r in a.resolved):
        a.hints = hints
        a.resolved = resolve(d, buf, hints)
        _choose(a, drop_duplicates)
        _metadata(a)
    return a


def _choose(a: Analysis, policy: str | None) -> None:
    groups: dict[str, list[Resolved]] = {}
    for r in a.resolved:
        if r.how == "duplicate-entry":
            groups.setdefault(r.key, []).append(r)
            continue
        groups.setdefault(r.key, []).append(r)
    a.chosen, a.conflicts, a.dup_identical = {}, {}, {}
    for key, rs in groups.items():
        live = [r for r in rs if r.ok]
        if len(rs) == 1:
            a.chosen[key] = rs[0]
            continue
        if not live:
            a.chosen[key] = rs[-1]
            continue
        digests = {sha256(a.data(r)) for r in live}
        if len(digests) == 1 and len(live) == len(rs):
            a.dup_identical[key] = rs
            a.chosen[key] = live[0]
        else:
            a.conflicts[key] = rs
            if policy == "first":
                a.chosen[key] = live[0]
            else:  # "last", or unresolved: analyse what gemma.cpp HEAD would use
                a.chosen[key] = live[-1]


def _metadata(a: Analysis) -> None:
    keys = set(a.chosen)
    a.config = a.toc = None
    a.config_error = a.toc_error = None
    a.toc_partial = False
    r = a.chosen.get("config")
    if r is not None:
        if not r.ok:
            a.config_error = SbsError(f"config blob not recoverable: {r.note}", code="config-undecodable")
        elif r.size > MAX_METADATA_BYTES:
            a.config_error = SbsError(f"config blob of {r.size} bytes", code="config-undecodable")
        else:
            try:
                a.config = decode_config(as_words(a.data(r), "config"))
            except SbsError as e:
                a.config_error = e
                a.config = _decode_lenient(a.data(r))
                if a.config is not None:
                    a.config_lenient = True
                    a.config_error = None
    r = a.chosen.get("toc")
    if r is not None:
        if not r.ok:
            a.toc_error = SbsError(f"toc blob not recoverable: {r.note}", code="toc-undecodable")
        elif r.size > MAX_METADATA_BYTES:
            a.toc_error = SbsError(f"toc blob of {r.size} bytes", code="toc-undecodable")
        else:
            try:
                # Every record must name a distinct blob, so more records than blobs cannot be a valid toc.
                a.toc = decode_toc(as_words(a.data(r), "toc"), max_records=len(a.resolved))
            except SbsError as e:
                a.toc_error = e
                a.toc = _scan_toc(a.data(r), keys)
                a.toc_partial = True
    r = a.chosen.get("tokenizer")
    a.tokenizer, a.tokenizer_status, a.tokenizer_error = None, "absent", ""
    if r is not None:
        if not r.ok:
            a.tokenizer_status, a.tokenizer_error = "lost", r.note
        else:
            data = a.data(r).tobytes()
            a.tokenizer = data
            if data == MOCK_TOKENIZER:
                a.tokenizer_status = "mock"
            else:
                if a.config is not None and a.config.tokenizer_kind == 1:  # HF BPE (addendum §7)
                    from ..bpe import problems

                    err = "; ".join(problems(data)[0])
                else:
                    err = tokenizer_problem(data)
                a.tokenizer_status, a.tokenizer_error = ("invalid", err) if err else ("ok", "")
    a.scales = a.scales_key = None
    for k in SCALES_KEYS:
        r = a.chosen.get(k)
        if r is not None and r.ok and r.size % 4 == 0:
            a.scales, a.scales_key = a.data(r).view("<f4"), k
            break
    has_meta = "config" in keys or "toc" in keys
    tensor_keys = [k for k in keys if k not in METADATA_KEYS and k not in SCALES_KEYS]
    prefixed = [k for k in tensor_keys if strip_prefix(k)]
    if not has_meta:
        a.era = "pre-2025" if prefixed else ("single-file-v2" if a.layout == "v2" else "single-file-v1")
    elif prefixed and len(prefixed) == len(tensor_keys) and not {"c_embedding", "c_final_norm"} & keys:
        a.era = "single-file-prefixed"
    else:
        a.era = "single-file-v2" if a.layout == "v2" else "single-file-v1"


def _lenient_schema():
    """The current config schema, except that a layer's type may be any of 0..2 (kGemma, kVit, and the
    pre-September-2025 kVit): a layer's kind is decided by the list it is in, which repair then fixes."""
    from dataclasses import replace

    from ..config import SCHEMAS
    from ..fields import EnumSpec

    def fix(schema):
        out = []
        for f in schema.fields:
            if f.kind == "struct":
                f = replace(f, schema=fix(f.schema))
            elif f.kind == "vector" and f.elem is not None and f.elem.kind == "struct":
                f = replace(f, elem=replace(f.elem, schema=fix(f.elem.schema)))
            elif f.kind == "enum" and f.name == "type" and schema.name == "LayerConfig":
                f = replace(f, enum=EnumSpec("LayerAttentionType", {0: "kGemma", 1: "kVit", 2: "kVit(old)"},
                                             lambda v: v in (0, 1, 2)))
            out.append(f)
        return replace(schema, fields=tuple(out))

    return fix(SCHEMAS["2025-10"])


def _decode_lenient(blob: np.ndarray) -> ModelConfig | None:
    try:
        r = read_struct(_lenient_schema(), as_words(blob, "config"), 0, blob="config")
    except SbsError:
        return None
    return ModelConfig.from_values(r.values, revision="2025-10", missing_fields=r.missing_fields,
                                   extra_u32=r.extra_u32)


def tokenizer_problem(data: bytes) -> str:
    """Empty string if ``data`` is a loadable SentencePiece model, else why not."""
    try:
        import sentencepiece as spm
    except ImportError:  # pragma: no cover - sentencepiece is a dependency
        return ""
    try:
        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(data)
        if sp.GetPieceSize() <= 0:
            return "SentencePiece model with no pieces"
    except Exception as e:  # noqa: BLE001 - sentencepiece raises RuntimeError/OSError
        return f"not a SentencePiece model ({str(e).splitlines()[0][:120]})"
    return ""


def _scan_toc(blob: np.ndarray, keys: set[str]) -> list[TocRecord]:
    """Recover the records of a damaged toc: every word position where a MatPtr that names an
    existing blob decodes. Records are never invented, only found."""
    n = blob.size // 4
    words = blob[:4 * n].view("<u4")
    out: list[TocRecord] = []
    names: set[str] = set()
    pos = 0
    while pos < n:
        m = int(words[pos])
        if 7 <= m <= 64 and pos + 1 + m <= n:
            try:
                r = read_struct(MATPTR, words, pos, blob="toc")
            except SbsError:
                r = None
            if r is not None and r.values["name"] in keys and r.values["name"] not in names:
                out.append(TocRecord.from_values(r.values, word_pos=pos, extra_u32=r.extra_u32))
                names.add(r.values["name"])
                pos = r.pos
                continue
        pos += 1
    return out


def trusted_toc(a: Analysis) -> dict[str, TocRecord]:
    """Toc records whose rows x cols agree with the config (so their size can be believed)."""
    if a.toc is None or a.config is None:
        return {}
    try:
        specs = {t.name: t for t in expected_tensors(a.config)}
    except Exception:  # noqa: BLE001 - a config with absurd dims
        return {}
    out = {}
    for rec in a.toc:
        name = a.tensor_name(rec.name)
        spec = specs.get(name)
        if spec is None or (rec.rows, rec.cols) != spec.shape:
            continue
        try:
            packed_bytes(rec.type, rec.rows * rec.cols)
        except SbsError:
            continue
        out[rec.name] = rec
    return out


def _hints(a: Analysis) -> dict[str, int]:
    return {name: packed_bytes(rec.type, rec.rows * rec.cols) for name, rec in trusted_toc(a).items()}
