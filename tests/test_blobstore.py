"""Container layout: the spec's worked example byte for byte, layout choice, and bad input."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import sbs_tools
from sbs_tools import ContainerError, WriteError
from sbs_tools.blobstore import check_layout, read_directory
from sbs_tools.writer import BlobWriter, write_blobstore

from .conftest import CORPUS

BLOBS = [("config", b"c" * 300), ("tokenizer", b"unavailable"), ("toc", b"t" * 520)]


def _buf(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def test_spec_example_v1(tmp_path):
    p = tmp_path / "a.sbs"
    assert write_blobstore(p, BLOBS, layout="v1") == 65536
    data = p.read_bytes()
    assert data[:16] == b"SBS\n" + struct.pack("<IQ", 3, 65536)
    assert data[16:64] == b"config".ljust(16, b"\0") + b"tokenizer".ljust(16, b"\0") + b"toc".ljust(16, b"\0")
    assert data[64:112] == struct.pack("<6Q", 256, 300, 768, 11, 1024, 520)
    assert data[64:80].hex(" ") == "00 01 00 00 00 00 00 00 2c 01 00 00 00 00 00 00"
    assert data[256:556] == b"c" * 300 and data[768:779] == b"unavailable" and data[1024:1544] == b"t" * 520
    assert not any(data[112:256]) and not any(data[1544:])


def test_spec_example_v1_pre2025(tmp_path):
    p = tmp_path / "a.sbs"
    assert write_blobstore(p, BLOBS, layout="v1", pad_end=False) == 1792
    assert p.read_bytes()[8:16] == struct.pack("<Q", 1792)


def test_spec_example_v2(tmp_path):
    p = tmp_path / "a.sbs"
    assert write_blobstore(p, BLOBS, layout="v2") == 65536
    data = p.read_bytes()
    assert data[:16].hex() == "5342530a000000000000010000000000"
    assert not any(data[16:256])
    assert data[256:556] == b"c" * 300
    assert not any(data[1792:65424])
    assert data[65472:65520] == struct.pack("<6Q", 256, 300, 768, 11, 1024, 520)
    assert data[65520:].hex() == "5342530a030000000000010000000000"


def test_v1_first_blob_moves_with_eight_blobs(tmp_path):
    p = tmp_path / "a.sbs"
    write_blobstore(p, [(f"b{i}", b"x") for i in range(8)], layout="v1")
    with sbs_tools.open(p) as f:
        assert f.directory.entries[0].offset == 512


def test_v2_with_destroyed_placeholder_still_reads(tmp_path):
    p = tmp_path / "a.sbs"
    write_blobstore(p, BLOBS)
    data = bytearray(p.read_bytes())
    data[:16] = bytes(16)
    d = read_directory(_buf(bytes(data)))
    assert d.layout == "v2" and [e.key for e in d.entries] == ["config", "tokenizer", "toc"]
    assert [n.code for n in d.notes] == ["bad-placeholder"]


@pytest.mark.parametrize("data, code", [
    (b"", "empty-file"),
    (b"GGUF" + bytes(300), "not-sbs"),
    (b"SBS\n" + struct.pack("<IQ", 0, 65536) + bytes(400), "bad-magic"),
    # V1 counts below kMaxBlobs (1 Mi since 0d8948f7) are read: 70000 is plausible, its directory does not fit
    (b"SBS\n" + struct.pack("<IQ", 70000, 100) + bytes(400), "directory-out-of-bounds"),
    (b"SBS\n" + struct.pack("<IQ", 1 << 20, 100) + bytes(400), "too-many-blobs"),  # V1 commits, then asserts
    (b"SBS\n" + struct.pack("<IQ", (1 << 20) + 1, 100) + bytes(400), "too-many-blobs"),  # V2 fallback: no trailer
    (b"SBS\n" + struct.pack("<IQ", 1000, 100) + bytes(400), "directory-out-of-bounds"),
    (bytes(400) + b"SBS\n" + struct.pack("<IQ", 0, 416), "empty-store"),
    (bytes(400) + b"SBS\n" + struct.pack("<IQ", (1 << 20) + 1, 416), "too-many-blobs"),  # kMaxBlobs 1 Mi (0d8948f7)
    (bytes(400) + b"SBS\n" + struct.pack("<IQ", 1 << 20, 416), "directory-out-of-bounds"),  # V2 may reach it
    # 20000 is within the 2026 limit: the count is plausible, the directory just does not fit
    (bytes(400) + b"SBS\n" + struct.pack("<IQ", 20000, 416), "directory-out-of-bounds"),
    (bytes(300) + b"SBS\n" + struct.pack("<IQ", 10, 316), "directory-out-of-bounds"),
    (b"SBS", "not-sbs"),
])
def test_unreadable_containers(data, code):
    with pytest.raises(ContainerError) as e:
        read_directory(_buf(data))
    assert e.value.code == code


def _mutate(tmp_path, fn, layout="v2"):
    p = tmp_path / "a.sbs"
    write_blobstore(p, BLOBS, layout=layout, overwrite=True)
    data = bytearray(p.read_bytes())
    fn(data)
    return _buf(bytes(data))


def _codes(buf):
    return [(p.code, p.severity) for p in check_layout(read_directory(buf), buf) if p.severity != "info"]


def test_clean_files_have_no_layout_problems(tmp_path):
    for layout in ("v1", "v2"):
        assert _codes(_mutate(tmp_path, lambda d: None, layout)) == []


def test_layout_problems(tmp_path):
    def set_range(i, off, size):
        def fn(d):
            at = 65536 - 16 - 48 + 16 * i
            d[at:at + 16] = struct.pack("<QQ", off, size)
        return fn

    assert ("blob-misaligned", "error") in _codes(_mutate(tmp_path, set_range(1, 784, 11)))
    assert ("blob-gap", "error") in _codes(_mutate(tmp_path, set_range(1, 1024, 11)))
    assert ("blob-overlap", "error") in _codes(_mutate(tmp_path, set_range(1, 512, 11)))
    assert ("zero-size-blob", "error") in _codes(_mutate(tmp_path, set_range(1, 768, 0)))
    assert ("blob-out-of-bounds", "error") in _codes(_mutate(tmp_path, set_range(2, 1024, 1 << 40)))

    def dup(d):
        d[65424 + 16:65424 + 32] = b"config".ljust(16, b"\0")
    assert ("duplicate-key", "error") in _codes(_mutate(tmp_path, dup))

    def pad(d):
        d[600] = 1
    assert _codes(_mutate(tmp_path, pad)) == [("nonzero-padding", "warning")]


def test_file_size_mismatch_and_trailing_bytes(tmp_path):
    p = tmp_path / "a.sbs"
    write_blobstore(p, BLOBS, layout="v1", pad_end=False)
    data = p.read_bytes()
    assert ("file-size-mismatch", "error") in _codes(_buf(data + b"junk"))
    (tmp_path / "b.sbs").write_bytes(data[:1700])
    with pytest.raises(ContainerError) as e:
        sbs_tools.open(tmp_path / "b.sbs")
    assert e.value.code in ("file-size-mismatch", "blob-out-of-bounds")


def test_writer_rejects_bad_input(tmp_path):
    for blobs, code in [([("", b"x")], "bad-key"), ([("a" * 17, b"x")], "bad-key"), ([("a", b"")], "zero-size-blob"),
                        ([("a", b"x"), ("a", b"y")], "duplicate-key"), ([], "empty-store"),
                        ([("caf\u00e9", b"x")], "bad-key")]:
        with pytest.raises(WriteError) as e:
            write_blobstore(tmp_path / "x.sbs", blobs)
        assert e.value.code == code
        assert not (tmp_path / "x.sbs").exists()
        assert not list(tmp_path.glob(".sbs-*"))  # no temp file left behind


keys = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16)
blob_sets = st.lists(st.tuples(keys, st.binary(min_size=1, max_size=700)), min_size=1, max_size=40,
                     unique_by=lambda kv: kv[0])


@settings(max_examples=120, deadline=None)
@given(blob_sets, st.sampled_from(["v1", "v2"]))
def test_write_read_roundtrip(tmp_path_factory, blobs, layout):
    p = tmp_path_factory.mktemp("rt") / "r.sbs"
    size = write_blobstore(p, blobs, layout=layout)
    assert size % 65536 == 0 and p.stat().st_size == size
    buf = _buf(p.read_bytes())
    d = read_directory(buf)
    assert d.layout == layout
    assert [e.key for e in d.entries] == [k for k, _ in blobs]
    assert [buf[e.offset:e.end].tobytes() for e in d.entries] == [v for _, v in blobs]
    assert check_layout(d, buf) == [p for p in check_layout(d, buf) if p.severity == "info"]
    # Re-writing what was read gives the identical file.
    q = p.with_name("r2.sbs")
    write_blobstore(q, [(e.key, buf[e.offset:e.end]) for e in d.entries], layout=layout)
    assert q.read_bytes() == p.read_bytes()


def test_blobwriter_streams_v2(tmp_path):
    """V2 writes blobs as they are added: the temp file grows before finish()."""
    w = BlobWriter(tmp_path / "s.sbs")
    w.add("a", np.ones(1000, dtype=np.float32))
    w._f.flush()
    import os
    assert os.path.getsize(w._out.path) == 256 + 4096
    w.finish()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.partial')]


# -- blob counts: kMaxBlobs 64 Ki (May 2025), 16 Ki (2025-07-31), 1 Mi (0d8948f7, 2026) -----------------------
def _many_blobs_v1(path, extra: int):
    """The tiny Gemma 2 model as a V1 file plus ``extra`` one-byte blobs after its own, written by the writer."""
    with sbs_tools.open(CORPUS / "v1" / "gemma2-2b-tiny-sfp.sbs") as f:
        blobs = [(e.key, f.raw(e.key).tobytes()) for e in f.directory.entries]
    write_blobstore(path, blobs + [(f"x{i}", b"\1") for i in range(extra)], layout="v1")
    return len(blobs) + extra


@pytest.mark.parametrize("extra", [16400, 70000])
def test_v1_with_more_blobs_than_old_readers_take(tmp_path, extra):
    """2026 readers take V1 directories below 1 Mi; the compatibility table names the builds that do not."""
    p = tmp_path / "many.sbs"
    n = _many_blobs_v1(p, extra)
    with sbs_tools.open(p) as f:
        assert f.layout == "v1" and len(f.directory.entries) == n and f.config is not None
    r = sbs_tools.verify_file(p)
    assert not r.by_code("too-many-blobs") and not r.errors and not r.by_code("legacy-only")
    gens = {g.key: g for g in r.compat}
    assert gens["2026-08-27"].loads and gens["2026-07-10"].loads
    assert any("before 0d8948f7" in c and "16384" in c for c in gens["2026-07-10"].reasons)
    for g in ("2025-07-31", "2025-09-05", "2025-10-15", "2025-10-24"):
        assert not gens[g].loads and any(f"{n} blobs" in w and "fewer than 16384" in w for w in gens[g].reasons)
    may = gens["2025-05-07"]  # kMaxBlobs 64 Ki
    assert may.loads == (n < 65536)
    assert may.loads or any("fewer than 65536" in w for w in may.reasons)


def test_blob_count_limits_per_layout():
    from sbs_tools.blobstore import reads_blob_count
    # V1 commits below the limit and asserts at it; V2 may reach it (base §1.4)
    assert reads_blob_count(16383, "v1", 16384) and not reads_blob_count(16384, "v1", 16384)
    assert reads_blob_count(16384, "v2", 16384) and not reads_blob_count(16385, "v2", 16384)
    assert reads_blob_count(10 ** 6, "v1", None)  # pre-2025 readers had no limit


def test_v1_count_above_the_limit_falls_back_to_the_trailer(tmp_path):
    """A front header claiming more than 1 Mi blobs is not V1 for gemma.cpp: it reads the V2 trailer."""
    p = tmp_path / "a.sbs"
    write_blobstore(p, BLOBS)
    data = bytearray(p.read_bytes())
    data[:16] = struct.pack("<IIQ", 0x0A534253, (1 << 20) + 1, 65536)
    d = read_directory(_buf(bytes(data)))
    assert d.layout == "v2" and [e.key for e in d.entries] == ["config", "tokenizer", "toc"]
    assert [(x.code, x.severity) for x in d.notes] == [("bad-placeholder", "warning")]
