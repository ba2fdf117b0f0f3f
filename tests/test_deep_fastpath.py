"""``verify --deep``'s byte-level pre-check (``deep._fast_clean``) never changes a finding.

Every tensor chunk the pre-check clears is skipped by the full decode, so the
findings with the pre-check must equal the findings with it disabled, on clean
data and on every kind of damage the deep checks look for (NaN/Inf, all-zero,
SFP 0x80, unsorted or 0x80-holding NUQ tables, bad or overflowing I8 headers,
partial final groups). Chunks and pre-check blocks are made tiny here so that
every tensor spans many of both.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sbs_tools
from sbs_tools.config import ModelConfig
from sbs_tools.toc import TocRecord
from sbs_tools.types import Type, packed_bytes
from sbs_tools.verify import deep
from sbs_tools.writer import write_model

TYPES = [Type.BF16, Type.F32, Type.SFP, Type.NUQ, Type.I8]
DAMAGE = ["nan", "inf", "zero-run", "sfp-neg-zero", "nuq-unsorted", "nuq-neg-zero", "nuq-leading-zeros",
          "nuq-zero-table", "i8-zero-scale", "i8-inf-zp", "i8-huge", "i8-flat", "all-zero"]


def _clean_bytes(t: Type, n: int, rng: np.random.Generator) -> np.ndarray:
    if t == Type.F32:
        return (rng.standard_normal(n).astype(np.float32) * np.float32(0.02)).view(np.uint8).copy()
    if t == Type.BF16:
        x = rng.standard_normal(n).astype(np.float32) * np.float32(0.02)
        return (x.view(np.uint32) >> 16).astype("<u2").view(np.uint8).copy()
    if t == Type.SFP:
        b = rng.integers(0, 256, n, dtype=np.uint8)
        b[b == 0x80] = 0x81
        return b
    raw = rng.integers(0, 256, packed_bytes(t, n), dtype=np.uint8)
    if t == Type.NUQ:
        for g in range(-(-n // 256)):
            codes = rng.integers(0x41, 0x7F, 16, dtype=np.uint8)  # positive, non-zero centres
            raw[g * 144:g * 144 + 16] = np.sort(codes)
    else:
        for g in range(-(-n // 128)):
            inv = np.float32(2.0 ** -10)
            zp = np.float32(rng.integers(-128, 128))
            hdr = np.array([inv, zp], dtype=np.float32).view(np.uint32) >> 16
            raw[g * 132:g * 132 + 4] = hdr.astype("<u2").view(np.uint8)
    return raw


def _damage(t: Type, raw: np.ndarray, n: int, kind: str, pos: float) -> None:
    """Apply one kind of damage at relative position ``pos`` (a no-op where it does not apply)."""
    i = min(int(pos * n), n - 1)
    if kind == "all-zero":
        if t in (Type.F32, Type.BF16, Type.SFP):
            raw[:] = 0
        elif t == Type.NUQ:
            raw.reshape(-1)[:] = 0
        return
    if kind in ("nan", "inf") and t in (Type.F32, Type.BF16):
        pat = {Type.F32: {"nan": 0x7FC00000, "inf": 0xFF800000}, Type.BF16: {"nan": 0x7FC1, "inf": 0x7F80}}[t][kind]
        w = 4 if t == Type.F32 else 2
        raw[i * w:(i + 1) * w] = np.array([pat], dtype="<u4" if w == 4 else "<u2").view(np.uint8)
    elif kind == "zero-run" and t in (Type.F32, Type.BF16, Type.SFP):
        w = {Type.F32: 4, Type.BF16: 2, Type.SFP: 1}[t]
        raw[i * w:(i + 100) * w] = 0
    elif kind == "sfp-neg-zero" and t == Type.SFP:
        raw[i] = 0x80
    elif t == Type.NUQ and kind.startswith("nuq"):
        g = i // 256
        tab = raw[g * 144:g * 144 + 16]
        if kind == "nuq-unsorted":
            tab[3], tab[9] = tab[9], tab[3]
            if tab[3] == tab[9]:
                tab[3] = 0x7F
        elif kind == "nuq-neg-zero":
            tab[5] = 0x80
        elif kind == "nuq-leading-zeros":  # gemma.cpp's unused centres: zeros, then negatives: valid
            tab[:4] = 0
            tab[4:8] = [0xFE, 0xF0, 0xC1, 0x81]
        elif kind == "nuq-zero-table":
            tab[:] = 0
    elif t == Type.I8 and kind.startswith("i8"):
        g = i // 128
        hdr = raw[g * 132:g * 132 + 4].view("<u2")
        if kind == "i8-zero-scale":
            hdr[0] = 0
        elif kind == "i8-inf-zp":
            hdr[1] = 0x7F80
        elif kind == "i8-huge":
            hdr[0] = 0x7F00  # inv ~1.7e38: inv * q overflows
        elif kind == "i8-flat":
            end = min(g * 132 + 132, raw.size)
            raw[g * 132 + 4:end] = 7


def _findings(path, fast: bool, monkeypatch) -> list[dict]:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(deep, "_fast_clean", lambda *a, **k: False)
        f = sbs_tools.open(path, strict=False)
        try:
            return [x.to_dict() for x in deep.check_deep(f)]
        finally:
            f.close()


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(deep, "CHUNK_VALUES", 1024)
    monkeypatch.setattr(deep, "FAST_BLOCK", 192)
    monkeypatch.setattr(deep, "READ_BYTES", 4096)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fast_path_findings_equal_full_decode(tmp_path_factory, monkeypatch, small_chunks, data):
    tmp = tmp_path_factory.mktemp("deep")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    tensors = []
    for k in range(data.draw(st.integers(1, 4), label="tensors")):
        t = data.draw(st.sampled_from(TYPES), label="type")
        n = data.draw(st.integers(1, 5000), label="values")
        raw = _clean_bytes(t, n, rng)
        for _ in range(data.draw(st.integers(0, 3), label="damages")):
            _damage(t, raw, n, data.draw(st.sampled_from(DAMAGE)), data.draw(st.floats(0, 1)))
        name = data.draw(st.sampled_from(["w", "pre_att_ns"]), label="base") + f"_{k}"
        tensors.append((TocRecord.make(name, t, 1, n), raw))
    path = tmp / "t.sbs"
    write_model(path, ModelConfig(display_name="fastpath", model=7, weight=int(Type.BF16)), tensors)
    assert _findings(path, True, monkeypatch) == _findings(path, False, monkeypatch)


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("kind", ["clean"] + DAMAGE)
def test_every_damage_kind(tmp_path, monkeypatch, small_chunks, t, kind):
    rng = np.random.default_rng(7)
    n = 4000 + 37  # a partial final group for NUQ and I8
    raw = _clean_bytes(t, n, rng)
    if kind != "clean":
        _damage(t, raw, n, kind, 0.6)
    path = tmp_path / "t.sbs"
    write_model(path, ModelConfig(display_name="fastpath", model=7, weight=int(Type.BF16)),
                [(TocRecord.make("w_0", t, 1, n), raw), (TocRecord.make("x_1", t, 1, 256 * 9), _clean_bytes(t, 256 * 9, rng))])
    cleared = []
    real = deep._fast_clean
    monkeypatch.setattr(deep, "_fast_clean", lambda *a: cleared.append(real(*a)) or cleared[-1])
    fast = _findings(path, True, monkeypatch)
    assert fast == _findings(path, False, monkeypatch)
    codes = {f["code"] for f in fast}
    if kind == "clean":
        assert codes == set()
        assert sum(cleared) >= len(cleared) - 3, "clean chunks must skip the decode"
    expected = {("nan", Type.F32): "non-finite", ("inf", Type.BF16): "non-finite", ("sfp-neg-zero", Type.SFP):
                "sfp-noncanonical", ("nuq-unsorted", Type.NUQ): "nuq-table-invalid", ("nuq-neg-zero", Type.NUQ):
                "sfp-noncanonical", ("i8-zero-scale", Type.I8): "scale-invalid", ("i8-huge", Type.I8): "non-finite",
                ("all-zero", Type.SFP): "all-zero"}.get((kind, t))
    if expected:
        assert expected in codes
    if kind == "nuq-leading-zeros":
        assert "nuq-table-invalid" not in codes


def test_release_keeps_views_valid(tmp_path):
    data = np.arange(3 * 65536, dtype=np.uint8)
    path = tmp_path / "r.sbs"
    write_model(path, ModelConfig(display_name="r", model=7, weight=int(Type.SFP)),
                [(TocRecord.make("w_0", Type.SFP, 1, data.size), data)])
    with sbs_tools.open(path) as f:
        view = f.raw("w_0")
        before = view.copy()
        f.release(0, f.file_bytes)
        f.release(5, 100)  # unaligned, tiny
        f.release(f.file_bytes - 10, 1 << 30)  # past the end
        assert np.array_equal(view, before)
