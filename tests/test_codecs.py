"""Codecs against gemma.cpp's own files (fixtures/corpus) and the spec's test vectors.

Blob bytes are sliced straight from each ``.sbs`` with the JSON's blob table, so
these tests do not depend on the container reader.

What the corpus shows about ``*.orig.f32``: they are the float32 values handed
to gemma.cpp's ``SbsWriter`` *before* ``ScaleWeights``; for SFP/NUQ tensors,
``scale_for_sfp(orig)`` reproduces the toc's ``scale`` exactly and encoding the
scaled values reproduces the SFP blob byte for byte. I8 tensors are encoded
from ``orig`` unscaled (scale 1.0). BF16 blobs have no orig file, but they are
the bf16 rounding of the same-named tensor of ``gemma2-2b-tiny-f32``.
"""
from __future__ import annotations

import json
import math
import mmap
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import sbs_tools.codecs as codecs
from sbs_tools.codecs import i8 as i8_mod
from sbs_tools.codecs import sfp as sfp_mod
from sbs_tools.errors import CodecError
from sbs_tools.types import Type

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "corpus"
ALL_TYPES = ["F32", "BF16", "SFP", "NUQ", "I8", "F64", "U32", "U64"]


def _load_entries() -> list[dict]:
    """One record per ``inspect.decompressed`` entry of every corpus file."""
    entries = []
    for jpath in sorted(CORPUS.glob("v*/*.json")):
        meta = json.loads(jpath.read_text())
        blobs = {b["key"]: b for b in meta["inspect"]["blobs"]}
        toc = {t["name"]: t for t in meta["inspect"]["toc"]}
        for e in meta["inspect"].get("decompressed", []):
            entries.append({
                "id": f"{jpath.parent.name}/{jpath.stem}:{e['name']}",
                "sbs": jpath.with_suffix(".sbs"), "dir": jpath.parent, "entry": e,
                "blob": blobs[e["name"]], "toc": toc[e["name"]],
            })
    return entries


ENTRIES = _load_entries()
_FILE_CACHE: dict[Path, bytes] = {}


def _blob(rec: dict) -> bytes:
    data = _FILE_CACHE.get(rec["sbs"])
    if data is None:
        data = _FILE_CACHE[rec["sbs"]] = rec["sbs"].read_bytes()
    b = rec["blob"]
    return data[b["offset"]:b["offset"] + b["bytes"]]


def _f32(rec: dict, key: str) -> np.ndarray:
    return np.fromfile(rec["dir"] / rec["entry"][key], dtype="<f4")


def _n(rec: dict) -> int:
    return rec["entry"]["rows"] * rec["entry"]["cols"]


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def test_corpus_is_present_and_covers_all_weight_types():
    assert len(ENTRIES) >= 60
    types = {r["entry"]["type"] for r in ENTRIES}
    assert {"f32", "bf16", "sfp", "nuq", "i8"} <= types


# ---------------------------------------------------------------- decoding

@pytest.mark.parametrize("rec", ENTRIES, ids=[r["id"] for r in ENTRIES])
def test_decode_reproduces_gemma_decompression_bit_for_bit(rec):
    raw = _blob(rec)
    ref = _f32(rec, "decompressed_file")
    assert ref.size == _n(rec) == rec["entry"]["decompressed_num_f32"]
    assert len(raw) == codecs.packed_size(rec["entry"]["type"], _n(rec))
    got = codecs.decode(rec["entry"]["type"], raw, _n(rec))
    assert got.dtype == np.float32 and got.shape == (_n(rec),)
    assert not np.isnan(ref).any()
    np.testing.assert_array_equal(_bits(got), _bits(ref))


@pytest.mark.parametrize("type_name", ["bf16", "sfp", "nuq", "i8", "f32"])
def test_decode_accepts_bytes_memoryview_and_readonly_mmap_views(type_name, tmp_path):
    rec = next(r for r in ENTRIES if r["entry"]["type"] == type_name)
    ref = _bits(_f32(rec, "decompressed_file"))
    b = rec["blob"]
    with open(rec["sbs"], "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = np.frombuffer(mm, dtype=np.uint8)[b["offset"]:b["offset"] + b["bytes"]]
        assert not view.flags.writeable
        got = codecs.decode(type_name, view, _n(rec))
        np.testing.assert_array_equal(_bits(got), ref)
        got = codecs.decode(type_name, memoryview(mm)[b["offset"]:b["offset"] + b["bytes"]], _n(rec))
        np.testing.assert_array_equal(_bits(got), ref)
        del view, got
    out = np.full(_n(rec), np.nan, dtype=np.float32)
    res = codecs.decode(type_name.upper(), bytearray(_blob(rec)), _n(rec), out=out)
    assert res is out
    np.testing.assert_array_equal(_bits(out), ref)


# ---------------------------------------------------------------- encoding

ORIG = [r for r in ENTRIES if "original_file" in r["entry"]]


@pytest.mark.parametrize("rec", [r for r in ORIG if r["entry"]["type"] == "sfp"],
                         ids=lambda r: r["id"])
def test_sfp_encode_of_scaled_orig_reproduces_blob(rec):
    orig = _f32(rec, "original_file")
    scaled, scale = codecs.scale_for_sfp(orig)
    assert np.float32(scale) == np.float32(rec["toc"]["scale"])
    assert codecs.encode("SFP", scaled) == _blob(rec)


def test_corpus_has_a_rescaled_sfp_tensor():
    assert any(r["toc"]["scale"] != 1.0 for r in ORIG if r["entry"]["type"] == "sfp")


@pytest.mark.parametrize("rec", [r for r in ORIG if r["entry"]["type"] == "i8"],
                         ids=lambda r: r["id"])
def test_i8_encode_of_orig_reproduces_blob(rec):
    assert rec["toc"]["scale"] == 1.0
    assert codecs.encode("I8", _f32(rec, "original_file")) == _blob(rec)


def _gemma2_f32_sources() -> dict[str, np.ndarray]:
    recs = [r for r in ENTRIES if r["sbs"].stem == "gemma2-2b-tiny-f32"]
    return {r["entry"]["name"]: _f32(r, "decompressed_file") for r in recs}


def test_f32_and_bf16_encode_reproduce_blobs():
    sources = _gemma2_f32_sources()
    checked = 0
    for rec in ENTRIES:
        t = rec["entry"]["type"]
        if t == "f32":
            assert codecs.encode("F32", _f32(rec, "decompressed_file")) == _blob(rec)
            checked += 1
        elif t == "bf16" and rec["entry"]["name"] in sources:
            src = sources[rec["entry"]["name"]]
            if src.size == _n(rec):
                assert codecs.encode("BF16", src) == _blob(rec), rec["id"]
                checked += 1
    assert checked >= 30


NUQ_ORIG = [r for r in ORIG if r["entry"]["type"] == "nuq"]


@pytest.mark.parametrize("rec", NUQ_ORIG, ids=lambda r: r["id"])
def test_nuq_encoder_error_no_worse_than_gemma(rec):
    """Reconstruction error of our NUQ encoder vs gemma.cpp's, on gemma.cpp's input."""
    orig = _f32(rec, "original_file").astype(np.float64)
    scale = np.float32(rec["toc"]["scale"])
    gemma = _f32(rec, "decompressed_file") * scale
    scaled, my_scale = codecs.scale_for_sfp(orig.astype(np.float32))
    assert np.float32(my_scale) == scale
    mine = codecs.decode("NUQ", codecs.encode("NUQ", scaled), orig.size) * np.float32(my_scale)
    err_g, err_m = gemma - orig, mine - orig
    mse_g, mse_m = np.mean(err_g ** 2), np.mean(err_m ** 2)
    print(f"{rec['id']}: gemma mse {mse_g:.4e} max {np.abs(err_g).max():.4e}; "
          f"ours mse {mse_m:.4e} max {np.abs(err_m).max():.4e}")
    assert mse_m <= mse_g
    assert np.abs(err_m).max() <= np.abs(err_g).max()


def test_nuq_encode_decode_matches_corpus_layout():
    """Our NUQ blob for the corpus tensors has gemma's size and decodes to SFP centres."""
    for rec in NUQ_ORIG:
        scaled, _ = codecs.scale_for_sfp(_f32(rec, "original_file"))
        blob = codecs.encode("NUQ", scaled)
        assert len(blob) == len(_blob(rec))


# ---------------------------------------------------------------- SFP vectors

def _sfp_by_bit_recipe(b: int) -> float:
    """Spec §6.2 'generic DecBytes' recipe, independent of the formula in sfp.py."""
    sign, e = b & 0x80, b & 0x7F
    if e == 0:
        return -0.0 if sign else 0.0
    if e >= 64:
        hi, lo = 0x38 + (e >> 4), (e << 4) & 0xFF
    else:
        hi, lo = 0x34 + (e >> 3), (e << 5) & 0xFF
    u16 = ((sign | hi) << 8) | lo
    return float(np.array([u16], dtype=np.uint16).view(ml_dtypes.bfloat16)[0])


def test_sfp_all_256_bytes_decode_per_spec():
    got = codecs.decode("SFP", bytes(range(256)), 256)
    want = np.array([_sfp_by_bit_recipe(b) for b in range(256)], dtype=np.float32)
    np.testing.assert_array_equal(_bits(got), _bits(want))
    # and the closed formula of §6.2
    for b in range(256):
        e = b & 0x7F
        if e == 0:
            mag = 0.0
        elif e >= 64:
            mag = 2.0 ** (((e - 64) >> 3) - 7) * (1 + (e & 7) / 8)
        else:
            mag = 2.0 ** ((e >> 2) - 23) * (1 + (e & 3) / 4)
        assert abs(float(got[b])) == mag
        assert math.copysign(1.0, float(got[b])) == (-1.0 if b & 0x80 else 1.0)
    assert _bits(got)[0x80] == 0x80000000  # reserved byte decodes to -0.0
    assert got.max() == 1.875 and got.min() == -1.875


def test_sfp_odd_and_even_lengths_decode_alike():
    data = bytes(range(256)) * 3
    full = codecs.decode("SFP", data, len(data))
    for n in (0, 1, 2, 3, 255, 767):
        np.testing.assert_array_equal(_bits(codecs.decode("SFP", data[:n], n)), _bits(full[:n]))


def test_sfp_encode_decode_roundtrip_all_canonical_bytes():
    codes = bytes(b for b in range(256) if b != 0x80)
    values = codecs.decode("SFP", codes, 255)
    assert codecs.encode("SFP", values) == codes
    assert bytes(sfp_mod.encode_nearest(values)) == codes


def test_sfp_appendix_a_vectors():
    enc = lambda v: codecs.encode("SFP", np.array([v], dtype=np.float32))  # noqa: E731
    assert enc(1.875) == b"\x7f"
    assert enc(-1.875) == b"\xff"
    assert enc(2.0 ** -7) == b"\x40"
    assert enc(1e-9) == b"\x00"
    assert enc(-1e-9) == b"\x00"
    assert enc(-0.0) == b"\x00"
    dec = lambda b: float(codecs.decode("SFP", bytes([b]), 1)[0])  # noqa: E731
    assert dec(0x01) == 1.25 * 2.0 ** -23
    assert dec(0x3F) == 1.75 * 2.0 ** -8
    assert dec(0x40) == 2.0 ** -7


def test_sfp_encoder_is_not_round_to_nearest():
    """Spec §6.2: truncation to bf16 and 6 mantissa bits makes ~5% of values round 'wrong'."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.875, 1.875, 20000).astype(np.float32)
    gemma = np.frombuffer(codecs.encode("SFP", x), dtype=np.uint8)
    near = sfp_mod.encode_nearest(x)
    frac = float(np.mean(gemma != near))
    assert 0.01 < frac < 0.10


def test_sfp_range_is_enforced():
    for bad in (1.8751, -1.9, 2.0, 1e6):
        with pytest.raises(CodecError) as ei:
            codecs.encode("SFP", [0.5, bad])
        assert ei.value.code == "out-of-range"
    with pytest.raises(CodecError) as ei:
        codecs.encode("NUQ", np.full(300, 1.9))
    assert ei.value.code == "out-of-range"


def test_scale_for_sfp_matches_scaleweights():
    x = np.array([3.0, -2.5, 0.1, 0.0, -0.0], dtype=np.float32)
    scaled, scale = codecs.scale_for_sfp(x)
    assert np.float32(scale) == np.float32(3.0) / np.float32(1.875)
    inv = np.float32(1.0 / np.float64(np.float32(scale)))
    want = np.copysign(np.minimum(np.float32(1.875), np.abs(x * inv)), x)
    np.testing.assert_array_equal(_bits(scaled), _bits(want))
    assert scaled[0] == np.float32(1.875)
    small, one = codecs.scale_for_sfp(np.array([[1.875, -1.0]], dtype=np.float32))
    assert one == 1.0 and small.shape == (1, 2)


# ---------------------------------------------------------------- NUQ / I8 layout

def test_nuq_300_values_layout():
    assert codecs.packed_size("NUQ", 300) == 182
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, 300).astype(np.float32)
    blob = codecs.encode("nuq", x)
    assert len(blob) == 182
    y = codecs.decode("NUQ", blob, 300)
    b = np.frombuffer(blob, dtype=np.uint8)
    for g, (start, count) in enumerate([(0, 256), (144, 44)]):
        centres = sfp_mod.lut()[b[start:start + 16]]
        nib = b[start + 16:start + 16 + (count + 1) // 2]
        assert nib.size == (128 if g == 0 else 22)
        idx = np.stack([nib & 15, nib >> 4], axis=1).reshape(-1)[:count]
        np.testing.assert_array_equal(y[256 * g:256 * g + count], centres[idx])
        # centres ascend (nearest-rounded means of sorted clusters)
        assert np.all(np.diff(centres) >= 0)
    assert np.abs(y - x).max() < 0.1


def test_nuq_extreme_values_stay_encodable():
    """Cluster means of +-1.875 must not round past the SFP range (regression)."""
    for x in ([1.875] + [2.78e-11] * 7, [-1.875] * 300, [1.875, -1.875] * 200):
        x = np.array(x, dtype=np.float32)
        y = codecs.decode("NUQ", codecs.encode("NUQ", x), x.size)
        assert np.abs(y - x).max() <= 1.875 / 16


def test_bf16_decode_all_patterns_is_shift():
    u = np.arange(65536, dtype=np.uint16)
    got = codecs.decode("BF16", u.astype("<u2").tobytes(), 65536)
    np.testing.assert_array_equal(got.view(np.uint32), u.astype(np.uint32) << 16)  # NaN payloads too


def test_nuq_hand_built_blob_decodes_per_spec():
    """A blob built by hand from §6.3 (not by our encoder): N = 259, odd tail."""
    n = 259
    rng = np.random.default_rng(3)
    centres = [rng.integers(0, 256, 16, dtype=np.uint8) for _ in range(2)]
    idx = rng.integers(0, 16, n)
    blob = bytearray()
    for g, count in enumerate([256, 3]):
        blob += bytes(centres[g])
        ii = list(idx[256 * g:256 * g + count]) + [0]
        for j in range((count + 1) // 2):
            blob.append(int(ii[2 * j]) | (int(ii[2 * j + 1]) << 4))
    assert len(blob) == codecs.packed_size("NUQ", n) == 16 * 2 + 130
    got = codecs.decode("NUQ", bytes(blob), n)
    want = [_sfp_by_bit_recipe(int(centres[i // 256][idx[i]])) for i in range(n)]
    np.testing.assert_array_equal(_bits(got), _bits(np.array(want, dtype=np.float32)))


def test_i8_300_values_layout():
    assert codecs.packed_size("I8", 300) == 312
    rng = np.random.default_rng(4)
    x = rng.normal(0, 0.1, 300).astype(np.float32)
    blob = codecs.encode("I8", x)
    assert len(blob) == 312
    b = np.frombuffer(blob, dtype=np.uint8)
    y = codecs.decode("I8", blob, 300)
    for g, (start, count) in enumerate([(0, 128), (132, 128), (264, 44)]):
        inv, zp = b[start:start + 4].view("<u2").astype(np.uint32) << 16
        inv, zp = float(np.uint32(inv).view(np.float32)), float(np.uint32(zp).view(np.float32))
        q = b[start + 4:start + 4 + count].view(np.int8).astype(np.float64)
        zs = float(np.float32(-zp) * np.float32(inv))
        want = (inv * q + zs).astype(np.float32)
        np.testing.assert_array_equal(_bits(y[128 * g:128 * g + count]), _bits(want))
        grp = x[128 * g:128 * g + count]
        assert np.abs(y[128 * g:128 * g + count] - grp).max() <= (grp.max() - grp.min()) / 255


def test_i8_float32_decode_equals_float64_formula():
    """inv (bf16) * q (int8) is exact in f32, so f32 math == spec's f64 formula."""
    rng = np.random.default_rng(5)
    groups = 4000
    inv_bits = rng.integers(0x2000, 0x5F00, groups).astype(np.uint16)  # ~1e-19 .. 1e19
    zp = rng.integers(-300, 300, groups).astype(np.float32)
    zp[: groups // 4] = rng.uniform(-1e6, 1e6, groups // 4).astype(np.float32)
    zp_bits = (zp.view(np.uint32) >> 16).astype(np.uint16)  # truncated: any bf16 is valid
    q = rng.integers(-128, 128, (groups, 128)).astype(np.int8)
    raw = np.empty((groups, 132), dtype=np.uint8)
    raw[:, 0:2] = inv_bits.astype("<u2").view(np.uint8).reshape(-1, 2)
    raw[:, 2:4] = zp_bits.astype("<u2").view(np.uint8).reshape(-1, 2)
    raw[:, 4:] = q.view(np.uint8)
    got = codecs.decode("I8", raw.reshape(-1), groups * 128)
    inv = (inv_bits.astype(np.uint32) << 16).view(np.float32)
    zpf = (zp_bits.astype(np.uint32) << 16).view(np.float32)
    zs = (-zpf) * inv  # float32 product, as gemma.cpp
    want = (inv.astype(np.float64)[:, None] * q + zs.astype(np.float64)[:, None]).astype(np.float32)
    np.testing.assert_array_equal(_bits(got), _bits(want.reshape(-1)))


def test_i8_rejects_groups_gemma_cannot_quantize():
    x = np.full(128, 1.0e7, dtype=np.float32)  # zeropoint overflows int32
    with pytest.raises(CodecError) as ei:
        codecs.encode("I8", x)
    assert ei.value.code == "out-of-range"
    x = np.array([-3e38, 3e38] * 64, dtype=np.float32)  # range overflows float32
    with pytest.raises(CodecError) as ei:
        codecs.encode("I8", x)
    assert ei.value.code == "out-of-range"


def test_i8_constant_group_and_zero_point_sign():
    # -s*min - 128 = -0.5 truncates to 0: gemma.cpp goes through int32, so +0.0
    blob = codecs.encode("I8", np.array([-0.5, 0.5, 0.0], dtype=np.float32))
    assert blob[2:4] == b"\x00\x00"
    blob = codecs.encode("I8", np.zeros(130, dtype=np.float32))  # range 0 -> 1
    assert blob[2:4] == np.array([-128.0], "<f4").view("<u2")[1:].tobytes()
    np.testing.assert_array_equal(codecs.decode("I8", blob, 130), np.zeros(130, np.float32))
    x = np.full(5, 0.25, dtype=np.float32)
    assert np.abs(codecs.decode("I8", codecs.encode("I8", x), 5) - 0.25).max() <= 0.25 / 128


# ---------------------------------------------------------------- API contract

def test_type_names_case_and_enum():
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    for t in ("sfp", "Sfp", Type.SFP, 3):
        assert codecs.encode(t, x) == codecs.encode("SFP", x)
        assert codecs.packed_size(t, 50) == 50
    with pytest.raises(CodecError) as ei:
        codecs.decode("Q4", b"", 0)
    assert ei.value.code == "unknown-type"
    with pytest.raises(CodecError) as ei:
        codecs.packed_size("UNKNOWN", 1)
    assert ei.value.code == "unknown-type"


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_size_mismatch(type_name):
    n = 300
    size = codecs.packed_size(type_name, n)
    for wrong in (size - 1, size + 1, 0):
        with pytest.raises(CodecError) as ei:
            codecs.decode(type_name, bytes(wrong), n)
        assert ei.value.code == "size-mismatch"


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_non_finite_rejected(type_name):
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(CodecError) as ei:
            codecs.encode(type_name, np.array([0.0, bad, 1.0]))
        assert ei.value.code == "non-finite"


def test_out_parameter_is_checked():
    with pytest.raises(CodecError) as ei:
        codecs.decode("F32", bytes(8), 2, out=np.empty(3, dtype=np.float32))
    assert ei.value.code == "bad-out"
    with pytest.raises(CodecError):
        codecs.decode("F32", bytes(8), 2, out=np.empty(2, dtype=np.float64))


def test_encode_flattens_row_major_and_plain_types():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 16
    assert codecs.encode("BF16", x) == codecs.encode("BF16", x.reshape(-1))
    assert codecs.encode("F32", x.T) == np.ascontiguousarray(x.T).astype("<f4").tobytes()
    assert codecs.decode("U32", codecs.encode("U32", [0, 7, 2**24]), 3).tolist() == [0, 7, 2**24]
    assert codecs.decode("U64", codecs.encode("U64", np.array([5], np.uint64)), 1)[0] == 5
    assert codecs.decode("F64", codecs.encode("F64", [0.1]), 1)[0] == np.float32(0.1)
    for t, bad in (("U32", [-1]), ("U32", [2**32]), ("U32", [0.5]), ("U64", [-3]),
                   ("F32", [1e39]), ("BF16", [3.4e38])):
        with pytest.raises(CodecError) as ei:
            codecs.encode(t, bad)
        assert ei.value.code == "out-of-range", (t, bad)


def test_i8_module_constants():
    assert i8_mod.GROUP == 128 and i8_mod.GROUP_BYTES == 132
