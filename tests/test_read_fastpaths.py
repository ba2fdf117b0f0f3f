"""The read path's vectorized shortcuts give exactly what the general code gives.

``toc._decode_toc_fast``, ``fields._Reader.flat_vector`` (LayerConfig and u32
vectors) and ``blobstore._clean_payload_end`` exist only to make opening a
700-tensor file take ~3 ms instead of ~15 ms. Each either declines (None) or
must agree with the field-by-field / entry-by-entry code — on the corpus and
on randomly damaged copies of its metadata, including the error raised.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sbs_tools
from sbs_tools import blobstore, fields, toc
from sbs_tools.blobstore import BlobEntry
from sbs_tools.config import decode_config
from sbs_tools.fields import as_words

from .conftest import CLEAN_CORPUS, LEGACY

FILES = CLEAN_CORPUS + sorted(LEGACY.glob("*.sbs"))


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except sbs_tools.SbsError as e:
        return ("error", type(e).__name__, e.code, e.offset, str(e))


def _general_toc(words):
    saved = toc._decode_toc_fast
    toc._decode_toc_fast = lambda w: None
    try:
        return toc.decode_toc(words)
    finally:
        toc._decode_toc_fast = saved


def _general_config(words):
    saved = fields._Reader.flat_vector
    fields._Reader.flat_vector = lambda self, elem, count: None
    try:
        return decode_config(words)
    finally:
        fields._Reader.flat_vector = saved


def _general_layout(d):
    saved = blobstore._clean_payload_end
    blobstore._clean_payload_end = lambda d: None
    try:
        return blobstore.check_layout(d)
    finally:
        blobstore._clean_payload_end = saved


def _blob_words(path, key):
    with sbs_tools.open(path, strict=False) as f:
        if key not in f.blobs:
            return None
        return as_words(blobstore.blob_view(f.buf, f.blobs[key])).copy()


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shortcuts_taken_and_equal_on_corpus(path):
    words = _blob_words(path, "toc")
    if words is not None:
        fast = toc._decode_toc_fast(words)
        assert fast is not None  # every writer's toc takes the shortcut
        assert fast == _general_toc(words)
    cw = _blob_words(path, "config")
    if cw is not None:
        assert _outcome(decode_config, cw) == _outcome(_general_config, cw)
    with sbs_tools.open(path, strict=False) as f:
        assert blobstore._clean_payload_end(f.directory) is not None or "legacy" in str(path)
        assert blobstore.check_layout(f.directory) == _general_layout(f.directory)


def _mutate(words: np.ndarray, data) -> np.ndarray:
    w = words.copy()
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        kind = data.draw(st.sampled_from(["set", "truncate", "extend", "small"]), label="kind")
        if kind == "truncate" and w.size > 1:
            w = w[:data.draw(st.integers(0, w.size - 1))]
        elif kind == "extend":
            w = np.concatenate([w, np.asarray(data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=1,
                                                                   max_size=12)), dtype="<u4")])
        elif w.size:
            i = data.draw(st.integers(0, w.size - 1))
            hi = 20 if kind == "small" else 2**32 - 1  # small values hit counts, enums and bools
            w[i] = data.draw(st.integers(0, hi))
    return w.astype("<u4")


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_toc_shortcut_agrees_on_damaged_tocs(data):
    path = data.draw(st.sampled_from(FILES), label="file")
    words = _blob_words(path, "toc")
    if words is None:
        return
    bad = _mutate(words, data)
    fast = toc._decode_toc_fast(bad)
    general = _outcome(_general_toc, bad)
    if fast is not None:
        assert ("ok", fast) == general
    assert _outcome(toc.decode_toc, bad) == general


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_config_shortcut_agrees_on_damaged_configs(data):
    path = data.draw(st.sampled_from(FILES), label="file")
    words = _blob_words(path, "config")
    if words is None:
        return
    bad = _mutate(words, data)
    assert _outcome(decode_config, bad) == _outcome(_general_config, bad)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_layout_shortcut_agrees_on_damaged_directories(data):
    path = data.draw(st.sampled_from(FILES), label="file")
    with sbs_tools.open(path, strict=False) as f:
        d = f.directory
    entries = list(d.entries)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        i = data.draw(st.integers(0, len(entries) - 1))
        e = entries[i]
        what = data.draw(st.sampled_from(["offset", "size", "key", "dup", "swap"]))
        if what == "offset":
            e = dataclasses.replace(e, offset=max(0, e.offset + data.draw(st.sampled_from([-256, -1, 1, 256, 1 << 40]))))
        elif what == "size":
            e = dataclasses.replace(e, size=data.draw(st.sampled_from([0, 1, e.size + 300, 1 << 40])))
        elif what == "key":
            raw = bytearray(e.raw_key)
            raw[data.draw(st.integers(0, 15))] = data.draw(st.integers(0, 255))
            e = dataclasses.replace(e, raw_key=bytes(raw), key=blobstore.key_from_bytes(bytes(raw)))
        elif what == "dup":
            o = entries[data.draw(st.integers(0, len(entries) - 1))]
            e = dataclasses.replace(e, raw_key=o.raw_key, key=o.key)
        else:
            j = data.draw(st.integers(0, len(entries) - 1))
            entries[i], entries[j] = entries[j], entries[i]
            continue
        entries[i] = e
    entries = [BlobEntry(k, e.key, e.raw_key, e.offset, e.size) for k, e in enumerate(entries)]
    d2 = dataclasses.replace(d, entries=entries)
    assert blobstore.check_layout(d2) == _general_layout(d2)


def test_directory_entries_are_ordinary_blob_entries():
    with sbs_tools.open(CLEAN_CORPUS[0]) as f:
        e = f.directory.entries[0]
        assert e == BlobEntry(e.index, e.key, e.raw_key, e.offset, e.size)
        assert hash(e) == hash(BlobEntry(e.index, e.key, e.raw_key, e.offset, e.size))
        with pytest.raises(dataclasses.FrozenInstanceError):
            e.offset = 0  # type: ignore[misc]
        t = next(iter(f.tensors.values()))
        assert t == sbs_tools.TensorInfo(t.name, t.key, t.type, t.rows, t.cols, t.scale, t.bytes, t.offset,
                                         t.record)
        with pytest.raises(dataclasses.FrozenInstanceError):
            t.rows = 0  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=40),
       ranges=st.data())
def test_directory_keys_decode_like_key_from_bytes(keys, ranges):
    n = len(keys)
    rng = np.asarray(ranges.draw(st.lists(st.integers(0, 2**64 - 1), min_size=2 * n, max_size=2 * n)),
                     dtype="<u8")
    buf = np.frombuffer(b"".join(keys) + rng.tobytes(), dtype=np.uint8)
    entries = blobstore._entries(buf, 0, n)
    for i, (e, raw) in enumerate(zip(entries, keys)):
        assert e == BlobEntry(i, blobstore.key_from_bytes(raw), raw, int(rng[2 * i]), int(rng[2 * i + 1]))
