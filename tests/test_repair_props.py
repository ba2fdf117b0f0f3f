"""Property tests: for random valid files and every repairable corruption, repair restores the file exactly.

Valid files come from the fuzz suite's generator (``tests/fuzz``: random configs
of every family, random tensor types, forms, scales, tokenizer and layout,
packed by an independent implementation of the spec). Each corruption below is
one a gemma.cpp file can suffer and that repair documents as fixable; where a
fix depends on the data (e.g. relocating a shifted blob needs its first bytes
to be non-zero), the corruption checks that precondition itself and draws
again otherwise. Properties:

* the input file is never modified;
* ``repair(corrupt(f))`` succeeds and its output is **byte-identical** to
  ``f`` (so it verifies exactly as clean as ``f`` and decodes to exactly its
  tensors);
* ``repair(f)`` has nothing to do (idempotence);
* a pre-2025 (E0) or type-prefixed (E1) rendering of ``f`` migrates back to
  ``f`` byte for byte.

The default run uses a small derandomized budget; ``pytest -m fuzz`` runs the
long one.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sbs_tools import blobstore
from sbs_tools.blobstore import BLOB_ALIGN, END_ALIGN, HEADER_BYTES, KEY_BYTES
from sbs_tools.repair import repair
from sbs_tools.toc import TocRecord, decode_toc, encode_toc
from sbs_tools.verify.metadata import config_field_offsets

from .fuzz import model as M
from .fuzz.strategies import model_plans

FAST = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=600, deadline=None, derandomize=False, database=None,
                suppress_health_check=list(HealthCheck))
TYPES = (M.F32, M.BF16, M.SFP, M.NUQ, M.I8)
#: Scratch space: tmpfs when there is one (every repair fsyncs its output; on tmpfs that is free).
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


class NotApplicable(Exception):
    """The corruption's precondition does not hold for this file."""


# -- the file under test ------------------------------------------------------------------------------------------
class Clean:
    """A valid file and what the corruptions need to know about it."""

    def __init__(self, data: bytes, plan: M.ModelPlan) -> None:
        self.data = data
        self.plan = plan
        self.buf = np.frombuffer(data, dtype=np.uint8)
        self.d = blobstore.read_directory(self.buf)
        self.by_key = {e.key: e for e in self.d.entries}
        toc = self.by_key["toc"]
        self.toc = decode_toc(self.buf[toc.offset:toc.offset + toc.size].view("<u4"))
        self.kinds = {tp.name: tp.kind for tp in plan.tensors}

    def range_at(self, key: str) -> int:
        e = self.by_key[key]
        return self.d.dir_offset + KEY_BYTES * len(self.d.entries) + 16 * e.index

    def key_at(self, key: str) -> int:
        return self.d.dir_offset + KEY_BYTES * self.by_key[key].index

    def blob(self, key: str) -> bytes:
        e = self.by_key[key]
        return self.data[e.offset:e.offset + e.size]

    def config_word(self, path: str) -> int:
        e = self.by_key["config"]
        return config_field_offsets(self.plan.config, e.offset, e.size // 4)[path]

    def synthesizable(self, rec: TocRecord) -> bool:
        """Whether a lost toc record can be rebuilt: one element type fits the blob size, and the
        scale is 1 by the writer rules (BF16/F32/I8, or a norm/bias)."""
        n = rec.rows * rec.cols
        fits = [t for t in TYPES if M.packed_bytes(t, n) == M.packed_bytes(rec.type, n)]
        kind = self.kinds.get(rec.name, "matrix")
        return len(fits) == 1 and rec.scale == 1.0 and (rec.type in (M.F32, M.BF16, M.I8) or kind != "matrix")

    def blobs(self) -> list[tuple[str, bytes]]:
        return [(e.key, self.blob(e.key)) for e in self.d.entries]

    def with_toc(self, records: list[TocRecord]) -> bytes:
        return M.pack([(k, encode_toc(records) if k == "toc" else v) for k, v in self.blobs()], self.d.layout)


def _u64(data: bytearray, at: int, value: int) -> None:
    data[at:at + 8] = struct.pack("<Q", value)


def _u32(data: bytearray, at: int, value: int) -> None:
    data[at:at + 4] = struct.pack("<I", value)


# -- corruptions: (clean, draw) -> corrupted bytes -------------------------------------------------------------
def c_misaligned(c: Clean, draw) -> bytes:
    e = draw(st.sampled_from(c.d.entries))
    delta = draw(st.integers(1, BLOB_ALIGN - 1))
    if not any(c.data[e.offset:e.offset + delta]):
        raise NotApplicable("the skipped bytes are zero: the shift is undetectable")
    d = bytearray(c.data)
    _u64(d, c.range_at(e.key), e.offset + delta)
    return bytes(d)


def c_shifted_aligned(c: Clean, draw) -> bytes:
    e = draw(st.sampled_from(c.d.entries))
    k = draw(st.sampled_from([-2, -1, 1, 2, 7]))
    new = e.offset + k * BLOB_ALIGN
    if new < 0 or not any(c.data[e.offset:e.offset + e.size]):
        raise NotApplicable("no such offset")
    if k > 0 and not any(c.data[e.offset:min(new, e.offset + e.size)]):
        raise NotApplicable("the skipped bytes are zero")
    d = bytearray(c.data)
    _u64(d, c.range_at(e.key), new)
    return bytes(d)


def c_out_of_bounds(c: Clean, draw) -> bytes:
    e = draw(st.sampled_from(c.d.entries))
    d = bytearray(c.data)
    _u64(d, c.range_at(e.key), len(d) + draw(st.integers(0, 1 << 40)))
    return bytes(d)


def c_overlap(c: Clean, draw) -> bytes:
    i = draw(st.integers(1, len(c.d.entries) - 1))
    e, prev = c.d.entries[i], c.d.entries[i - 1]
    d = bytearray(c.data)
    _u64(d, c.range_at(e.key), prev.offset)
    return bytes(d)


def c_gap(c: Clean, draw) -> bytes:
    from .mutations import insert_gap

    e = draw(st.sampled_from(c.d.entries))
    try:
        return bytes(insert_gap(bytearray(c.data), e.key, BLOB_ALIGN * draw(st.integers(1, 3))))
    except AssertionError:
        raise NotApplicable("no slack for a gap") from None


def c_file_bytes(c: Clean, draw) -> bytes:
    d = bytearray(c.data)
    v = draw(st.one_of(st.integers(0, 1 << 40), st.sampled_from([len(d) - 1, len(d) + 1, len(d) + END_ALIGN])))
    if v == len(d):
        raise NotApplicable("unchanged")
    _u64(d, c.d.header.offset + 8, v)
    return bytes(d)


def c_magic(c: Clean, draw) -> bytes:
    d = bytearray(c.data)
    at = c.d.header.offset
    bits = draw(st.integers(1, (1 << 32) - 1))
    _u32(d, at, blobstore.MAGIC ^ bits)
    return bytes(d)


def c_num_blobs(c: Clean, draw) -> bytes:
    d = bytearray(c.data)
    n = len(c.d.entries)
    v = draw(st.one_of(st.integers(0, 70000), st.sampled_from([0, 1, n - 1, n + 1, 16384, 65536])))
    if v == n:
        raise NotApplicable("unchanged")
    _u32(d, c.d.header.offset + 4, v)
    return bytes(d)


def c_nonzero_padding(c: Clean, draw) -> bytes:
    used = []
    if c.d.layout == "v1":
        used.append((0, c.d.dir_offset + c.d.dir_bytes))
    else:
        used += [(0, HEADER_BYTES), (c.d.dir_offset, len(c.data))]
    used += [(e.offset, e.offset + e.size) for e in c.d.entries]
    used.sort()
    free, pos = [], 0
    for a, b in used + [(len(c.data), len(c.data))]:
        if a > pos:
            free.append((pos, a))
        pos = max(pos, b)
    d = bytearray(c.data)
    for _ in range(draw(st.integers(1, 5))):
        a, b = draw(st.sampled_from(free))
        at = draw(st.integers(a, b - 1))
        d[at] = draw(st.integers(1, 255))
    return bytes(d)


def c_v1_end(c: Clean, draw) -> bytes:
    if c.d.layout != "v1":
        raise NotApplicable("V1 only")
    last = max(blobstore.round_up(e.offset + e.size, BLOB_ALIGN) for e in c.d.entries)
    how = draw(st.sampled_from(["append", "append-header", "cut"]))
    d = bytearray(c.data)
    if how == "cut":
        if last == len(d):
            raise NotApplicable("no end padding")
        del d[draw(st.integers(last, len(d) - 1)):]
    else:
        d += bytes(draw(st.binary(min_size=1, max_size=300)))
        if how == "append-header":
            _u64(d, 8, len(d))
    return bytes(d)


def c_v2_appended(c: Clean, draw) -> bytes:
    if c.d.layout != "v2":
        raise NotApplicable("V2 only")
    return c.data + draw(st.binary(min_size=1, max_size=300))


def c_key_garbage(c: Clean, draw) -> bytes:
    e = draw(st.sampled_from([e for e in c.d.entries if len(e.key) <= 14]))
    junk = draw(st.binary(min_size=1, max_size=KEY_BYTES - len(e.key) - 1).filter(any))
    d = bytearray(c.data)
    at = c.key_at(e.key)
    raw = (e.key.encode() + b"\0" + junk).ljust(KEY_BYTES, b"\0")
    d[at:at + KEY_BYTES] = raw
    return bytes(d)


def c_duplicate(c: Clean, draw) -> bytes:
    blobs = c.blobs()
    i = draw(st.integers(0, len(blobs) - 1))
    j = draw(st.integers(i + 1, len(blobs)))
    blobs.insert(j, blobs[i])
    return M.pack(blobs, c.d.layout)


def c_toc_record_damaged(c: Clean, draw) -> bytes:
    good = [r for r in c.toc if c.synthesizable(r)]
    if not good:
        raise NotApplicable("no rebuildable record")
    r = draw(st.sampled_from(good))
    d = bytearray(c.data)
    at = c.by_key["toc"].offset + 4 * (r.word_pos + 2)  # first word of the name
    _u32(d, at, draw(st.sampled_from([0x80808080, 0, 0xFFFFFFFF])))
    return bytes(d)


def c_toc_fields(c: Clean, draw) -> bytes:
    recs = copy.deepcopy(c.toc)
    r = draw(st.sampled_from(recs))
    field = draw(st.sampled_from(["element_bytes", "num_elements", "stride"]))
    setattr(r, field, getattr(r, field) + draw(st.integers(1, 1000)))
    return c.with_toc(recs)


def c_toc_duplicate(c: Clean, draw) -> bytes:
    recs = copy.deepcopy(c.toc)
    k = draw(st.integers(0, len(recs) - 1))
    recs.insert(draw(st.integers(k + 1, len(recs))), copy.copy(recs[k]))  # after the original
    return c.with_toc(recs)


def c_toc_missing(c: Clean, draw) -> bytes:
    if not all(c.synthesizable(r) for r in c.toc):
        raise NotApplicable("some tensor's type or scale would be lost with the toc")
    return M.pack([(k, v) for k, v in c.blobs() if k != "toc"], c.d.layout)


def c_scale_zero(c: Clean, draw) -> bytes:
    good = [r for r in c.toc if r.scale == 1.0 and (r.type in (M.F32, M.BF16, M.I8)
                                                   or c.kinds.get(r.name) != "matrix")]
    if not good:
        raise NotApplicable("no tensor whose scale the writer rules fix")
    recs = copy.deepcopy(c.toc)
    pick = draw(st.sampled_from(good)).name
    next(r for r in recs if r.name == pick).scale = 0.0
    return c.with_toc(recs)


def c_reshaped_vector(c: Clean, draw) -> bytes:
    vecs = [r for r in c.toc if r.rows == 1 and r.cols % 2 == 0 and r.cols >= 4]
    if not vecs:
        raise NotApplicable("no vector")
    recs = copy.deepcopy(c.toc)
    pick = draw(st.sampled_from(vecs)).name
    r = next(x for x in recs if x.name == pick)
    k = draw(st.sampled_from([k for k in (2, 4) if r.cols % k == 0]))
    r.rows, r.cols, r.stride = k, r.cols // k, r.cols // k
    r.num_elements = TocRecord.make(r.name, r.type, r.rows, r.cols).num_elements
    return c.with_toc(recs)


def c_blob_oversized(c: Clean, draw) -> bytes:
    name = draw(st.sampled_from([r.name for r in c.toc]))
    extra = bytes(draw(st.integers(1, 600)))
    return M.pack([(k, v + extra if k == name else v) for k, v in c.blobs()], c.d.layout)


def c_weight(c: Clean, draw) -> bytes:
    d = bytearray(c.data)
    w = draw(st.sampled_from([t for t in TYPES if t != c.plan.config.weight
                              and (t != M.I8 or c.plan.config.schema_revision == "2025-10")]))
    _u32(d, c.config_word("weight"), w)
    return bytes(d)


def c_num_layers(c: Clean, draw) -> bytes:
    d = bytearray(c.data)
    _u32(d, c.config_word("num_layers"), c.plan.config.num_layers + draw(st.integers(1, 5)))
    return bytes(d)


def c_layer_dim(c: Clean, draw) -> bytes:
    cfg = c.plan.config
    i = draw(st.integers(0, cfg.num_layers - 1))
    names = {r.name for r in c.toc}
    fields = ["ff_hidden_dim"]
    if f"att_ein_{i}" in names or f"key_norm_{i}" in names:
        fields.append("qkv_dim")
    fld = draw(st.sampled_from(fields))
    old = getattr(cfg.layer_configs[i], fld)
    new = draw(st.sampled_from([v for v in (2, 4, 8, 12, 16, 24, 2048) if v != old]))
    d = bytearray(c.data)
    _u32(d, c.config_word(f"layer_configs[{i}].{fld}"), new)
    return bytes(d)


def c_vit_type(c: Clean, draw) -> bytes:
    cfg = c.plan.config
    if not cfg.vit_config.layer_configs:
        raise NotApplicable("no ViT layers")
    i = draw(st.integers(0, len(cfg.vit_config.layer_configs) - 1))
    d = bytearray(c.data)
    old = cfg.vit_config.layer_configs[i].type
    new = draw(st.sampled_from([v for v in (0, 1, 2) if v != old]))
    if new == 2:  # the pre-September-2025 numbering, in every ViT layer, as May-2025 gemma.cpp wrote it
        for j in range(len(cfg.vit_config.layer_configs)):
            _u32(d, c.config_word(f"vit_config.layer_configs[{j}].type"), 2)
    else:
        _u32(d, c.config_word(f"vit_config.layer_configs[{i}].type"), new)
    return bytes(d)


def c_both_forms(c: Clean, draw) -> bytes:
    cfg = c.plan.config
    layers = [i for i in range(cfg.num_layers) if f"att_ein_{i}" in c.by_key]
    if not layers:
        raise NotApplicable("no att_ein")
    i = draw(st.sampled_from(layers))
    lc = cfg.layer_configs[i]
    ein = next(r for r in c.toc if r.name == f"att_ein_{i}")
    rec = TocRecord.make(f"att_w_{i}", ein.type, cfg.model_dim, lc.heads * lc.qkv_dim, ein.scale)
    data = draw(st.binary(min_size=len(c.blob(ein.name)), max_size=len(c.blob(ein.name))))
    blobs = c.blobs()
    pos = [k for k, _ in blobs].index("config")
    blobs.insert(pos, (rec.name, data))
    return M.pack([(k, encode_toc(c.toc + [rec]) if k == "toc" else v) for k, v in blobs], c.d.layout)


CORRUPTIONS = {f.__name__[2:]: f for f in (
    c_misaligned, c_shifted_aligned, c_out_of_bounds, c_overlap, c_gap, c_file_bytes, c_magic, c_num_blobs,
    c_nonzero_padding, c_v1_end, c_v2_appended, c_key_garbage, c_duplicate, c_toc_record_damaged, c_toc_fields,
    c_toc_missing, c_scale_zero, c_reshaped_vector, c_blob_oversized, c_weight, c_num_layers, c_layer_dim,
    c_vit_type, c_both_forms)}


# -- properties ---------------------------------------------------------------------------------------------------
def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _clean_file(plan: M.ModelPlan, tmp: Path) -> tuple[Clean, Path]:
    data = M.build(plan)
    path = tmp / "clean.sbs"
    path.write_bytes(data)
    return Clean(data, plan), path


def _check_restores(plan: M.ModelPlan, name: str, data) -> None:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        tmp = Path(tmp)
        clean, clean_path = _clean_file(plan, tmp)
        base = repair(clean_path, tmp / "unused.sbs")
        # Files valid at current gemma.cpp have nothing to repair (idempotence on clean files).
        assume(base.status == "nothing-to-repair")
        assert not (tmp / "unused.sbs").exists()
        try:
            bad = CORRUPTIONS[name](clean, data.draw)
        except NotApplicable:
            assume(False)
        assume(bad != clean.data)
        bad_path = tmp / "bad.sbs"
        bad_path.write_bytes(bad)
        out = tmp / "out.sbs"
        r = repair(bad_path, out)
        assert _sha(bad_path.read_bytes()) == _sha(bad), "the input was modified"
        assert r.status == "repaired", (name, r.status, [x.to_dict() for x in r.plan.refusals], r.problems)
        assert all(p.status in ("identical", "dropped") for p in r.proof)
        assert out.read_bytes() == clean.data, (name, [a.kind for a in r.plan.actions])
        assert not list(tmp.glob(".sbs-*"))


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@FAST
@given(plan=model_plans(eras=("single",)), data=st.data())
def test_repair_restores_exactly(name, plan, data):
    _check_restores(plan, name, data)


@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@LONG
@given(plan=model_plans(eras=("single",)), data=st.data())
def test_repair_restores_exactly_long(name, plan, data):
    _check_restores(plan, name, data)


def _check_migration(plan: M.ModelPlan, era: str) -> None:
    assume(plan.config.schema_revision == "2025-10")
    single = dataclasses.replace(plan, era="single")
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        tmp = Path(tmp)
        clean, clean_path = _clean_file(single, tmp)
        base = repair(clean_path, tmp / "unused.sbs")
        assume(base.status == "nothing-to-repair")
        old = tmp / "old.sbs"
        old.write_bytes(M.build(plan))
        h = _sha(old.read_bytes())
        out = tmp / "out.sbs"
        opts = {"layout": plan.layout}
        if era == "e0":
            opts.update(target="current", config_from=clean_path)
            if plan.tokenizer is not None:
                opts["tokenizer"] = plan.tokenizer
        r = repair(old, out, **opts)
        assert _sha(old.read_bytes()) == h
        assert r.status == "repaired", ([x.to_dict() for x in r.plan.refusals], r.problems)
        assert out.read_bytes() == clean.data
        assert repair(out, tmp / "again.sbs").status == "nothing-to-repair"


@pytest.mark.parametrize("era", ["e0", "e1"])
@FAST
@given(plan=st.data())
def test_old_generations_migrate_exactly(era, plan):
    _check_migration(plan.draw(model_plans(eras=(era,))), era)


@pytest.mark.fuzz
@pytest.mark.parametrize("era", ["e0", "e1"])
@LONG
@given(plan=st.data())
def test_old_generations_migrate_exactly_long(era, plan):
    _check_migration(plan.draw(model_plans(eras=(era,))), era)
