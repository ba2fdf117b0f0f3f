"""The HF-BPE tokenizer blob (addendum §7; gemma.cpp ``tokenizer/bpe_tokenizer.cc@4b26b039``).

Stored when ``config.tokenizer_kind`` is ``kHfBpe`` (1): one IFields object,
``BpeTokenizerBlob``, as raw u32 words::

    [m] flags unk_id vocab(vector<string>) merges(vector<u32>, (left, right) pairs) added_ids(vector<u32>)

:func:`problems` is gemma.cpp's reader plus the checks its packer never makes
(each a reason gemma.cpp aborts or mis-tokenizes); :func:`pack` writes a blob
as ``pack_bpe_tokenizer`` does.
"""
from __future__ import annotations

import numpy as np

from .errors import SbsError
from .fields import Field, Schema, read_struct, write_struct, words_to_bytes

FLAG_BYTE_FALLBACK = 1
FLAG_SPACE_REPLACE = 2

SCHEMA = Schema("BpeTokenizerBlob", (
    Field("flags", "u32"),
    Field("unk_id", "u32"),
    Field("vocab", "vector", [], elem=Field("token", "string", "")),
    Field("merges", "vector", [], elem=Field("id", "u32")),
    Field("added_ids", "vector", [], elem=Field("id", "u32")),
))


def pack(vocab: list[str], merges: list[tuple[int, int]], added_ids: list[int] = (), unk_id: int = 0,
         flags: int | None = None) -> bytes:
    """A blob as the Python exporter writes it: ``flags = 2 | (1 if any <0xHH> token)``."""
    if flags is None:
        flags = FLAG_SPACE_REPLACE | (FLAG_BYTE_FALLBACK if any(
            len(t) == 6 and t.startswith("<0x") and t.endswith(">") for t in vocab) else 0)
    values = {"flags": flags, "unk_id": unk_id, "vocab": list(vocab),
              "merges": [i for pair in merges for i in pair], "added_ids": sorted(added_ids)}
    return words_to_bytes(write_struct(SCHEMA, values))


def parse(data: bytes) -> dict:
    """Decode a blob as gemma.cpp's ``ReadVisitor`` does; raises :class:`SbsError` when it cannot."""
    if len(data) % 4:
        raise SbsError(f"{len(data)} bytes, not a multiple of 4 (gemma.cpp warns, then 'Failed to load "
                       "BpeTokenizer from compact blob')", code="tokenizer-invalid")
    words = np.frombuffer(data, dtype="<u4")
    if words.size == 0:
        raise SbsError("empty blob", code="tokenizer-invalid")
    try:
        r = read_struct(SCHEMA, words, 0, blob="tokenizer")
    except SbsError as e:
        raise SbsError(f"not a BpeTokenizerBlob: {e.message}", code="tokenizer-invalid") from None
    if r.pos == 0:
        raise SbsError("not a BpeTokenizerBlob (nothing read)", code="tokenizer-invalid")
    return r.values


def problems(data: bytes) -> tuple[list[str], dict | None]:
    """Why gemma.cpp cannot use this blob (empty: it can), and the decoded blob."""
    try:
        v = parse(data)
    except SbsError as e:
        return [e.message], None
    out = []
    n = len(v["vocab"])
    if v["flags"] & ~(FLAG_BYTE_FALLBACK | FLAG_SPACE_REPLACE):
        out.append(f"flags {v['flags']:#x} has bits other than byte-fallback (1) and space-replace (2)")
    if n and v["unk_id"] >= n:
        out.append(f"unk_id {v['unk_id']} is not a token id (vocabulary of {n})")
    merges = v["merges"]
    if len(merges) % 2:
        out.append(f"merges has an odd number of ids ({len(merges)}): the last is ignored")
    bad = [i for i in merges if i >= n]
    if bad:
        out.append(f"{len(bad)} merge id(s) beyond the vocabulary (first {bad[0]})")
    bad = [i for i in v["added_ids"] if i >= n or not v["vocab"][i]]
    if bad:
        out.append(f"{len(bad)} added id(s) naming no token (first {bad[0]})")
    if n == 0:
        out.append("the vocabulary is empty")
    return out, v
