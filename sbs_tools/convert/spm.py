"""Rebuild a SentencePiece ``ModelProto`` from the vocabulary a GGUF file carries (spec §12).

GGUF stores the tokenizer as three parallel arrays — ``tokenizer.ggml.tokens``
(piece strings), ``scores`` (float) and ``token_type`` (SentencePiece's own
piece-type numbers: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
6 byte) — plus the special ids. gemma.cpp wants the serialized ``ModelProto``
(what a ``tokenizer.model`` file holds) in the ``tokenizer`` blob.

The proto is written by a small built-in encoder of the protobuf wire format
(:func:`encode_model_proto`) rather than through ``sentencepiece_model_pb2``:
that generated module pins the ``protobuf`` runtime to the exact version it
was generated with (sentencepiece 0.2.1 needs protobuf >= 7.36), which would
make conversion depend on an unrelated version lock. The fields written are
the handful SentencePiece reads at encode time; the tests check the bytes
against ``sentencepiece_model_pb2`` wherever that module imports.

Gemma GGUF files carry three rewrites made by llama.cpp's converter, undone
here (each is reported in :attr:`SpmBuild.fixes`):

* the unknown piece is marked CONTROL; SentencePiece needs exactly one
  UNKNOWN piece, so the piece at ``unknown_token_id`` becomes UNKNOWN;
* ``<start_of_turn>`` / ``<end_of_turn>`` are marked CONTROL; they must be
  USER_DEFINED so chat templates can encode them from text;
* whitespace-run pieces are stored with plain spaces; SentencePiece escapes
  whitespace as U+2581 before matching, so a piece with a plain space could
  never match — spaces become U+2581.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import ConvertError

# SentencePiece piece types (sentencepiece_model.proto ModelProto.SentencePiece.Type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
TYPE_NAMES = {NORMAL: "NORMAL", UNKNOWN: "UNKNOWN", CONTROL: "CONTROL", USER_DEFINED: "USER_DEFINED",
              UNUSED: "UNUSED", BYTE: "BYTE"}
# TrainerSpec.ModelType
UNIGRAM, BPE = 1, 2
SPACE = "\u2581"
#: Control pieces that Gemma chat templates spell out in text.
CHAT_PIECES = ("<start_of_turn>", "<end_of_turn>")


@dataclass(frozen=True)
class TrainerOptions:
    """The TrainerSpec/NormalizerSpec fields SentencePiece consults when encoding."""

    model_type: int = BPE
    byte_fallback: bool = True
    split_digits: bool = True
    allow_whitespace_only_pieces: bool = True
    unk_id: int = 3
    bos_id: int = 2
    eos_id: int = 1
    pad_id: int = 0
    unk_piece: str = "<unk>"
    bos_piece: str = "<bos>"
    eos_piece: str = "<eos>"
    pad_piece: str = "<pad>"
    add_dummy_prefix: bool = False
    remove_extra_whitespaces: bool = False
    escape_whitespaces: bool = True
    normalizer_name: str = "identity"


@dataclass
class SpmBuild:
    """Result of :func:`build_from_gguf`: the serialized proto and what was changed."""

    proto: bytes
    fixes: list[str] = field(default_factory=list)
    vocab_size: int = 0


# -- protobuf wire format (just what ModelProto needs) ----------------------------------------------

def _varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64  # int32/int64/enum negatives are 10-byte two's complement varints
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(num: int, wire: int) -> bytes:
    return _varint((num << 3) | wire)


def _f_varint(num: int, v: int) -> bytes:
    return _key(num, 0) + _varint(int(v))


def _f_bytes(num: int, data: bytes) -> bytes:
    return _key(num, 2) + _varint(len(data)) + data


def _f_float(num: int, v: float) -> bytes:
    return _key(num, 5) + struct.pack("<f", v)


def encode_model_proto(pieces: Sequence[str], scores: Sequence[float] | np.ndarray,
                       types: Sequence[int] | np.ndarray, opts: TrainerOptions = TrainerOptions()) -> bytes:
    """Serialize a ``sentencepiece.ModelProto`` (fields in field-number order, as protobuf does)."""
    sc = np.asarray(scores, dtype="<f4")
    ty = np.asarray(types, dtype=np.int64)
    out = bytearray()
    for piece, score, t in zip(pieces, sc.tobytes() and sc, ty):
        body = (_f_bytes(1, piece.encode("utf-8", errors="surrogatepass")) + _key(2, 5) + score.tobytes()
                + _f_varint(3, int(t)))
        out += _f_bytes(1, body)
    trainer = (_f_varint(3, opts.model_type) + _f_varint(4, len(pieces))
               + _f_varint(25, opts.split_digits) + _f_varint(26, opts.allow_whitespace_only_pieces)
               + _f_varint(35, opts.byte_fallback)
               + _f_varint(40, opts.unk_id) + _f_varint(41, opts.bos_id) + _f_varint(42, opts.eos_id)
               + _f_varint(43, opts.pad_id)
               + b"".join(_f_bytes(num, p.encode("utf-8")) for num, p in
                          ((45, opts.unk_piece), (46, opts.bos_piece), (47, opts.eos_piece), (48, opts.pad_piece))))
    out += _f_bytes(2, trainer)
    normalizer = (_f_bytes(1, opts.normalizer_name.encode()) + _f_varint(3, opts.add_dummy_prefix)
                  + _f_varint(4, opts.remove_extra_whitespaces) + _f_varint(5, opts.escape_whitespaces))
    out += _f_bytes(3, normalizer)
    return bytes(out)


# -- GGUF -> ModelProto ------------------------------------------------------------------------------

def build_from_gguf(tokens: Sequence[str], scores: Sequence[float] | np.ndarray | None,
                    token_types: Sequence[int] | np.ndarray | None, *, unk_id: int = 3, bos_id: int = 2,
                    eos_id: int = 1, pad_id: int = 0, add_space_prefix: bool = False,
                    model: str = "llama") -> SpmBuild:
    """A SentencePiece model equivalent to the GGUF vocabulary (see the module docstring).

    ``model`` is ``tokenizer.ggml.model``; only ``"llama"`` (SentencePiece) is
    supported — Gemma's tokenizer. Raises :class:`ConvertError` when the
    vocabulary cannot form a valid model (empty, mismatched arrays, duplicate
    pieces after the fixes, ids out of range).
    """
    if model != "llama":
        raise ConvertError(f"GGUF tokenizer model {model!r} is not SentencePiece ('llama'); "
                           "pass --tokenizer tokenizer.model", code="unsupported-tokenizer")
    n = len(tokens)
    if n == 0:
        raise ConvertError("GGUF tokenizer has no tokens", code="bad-tokenizer")
    sc = np.zeros(n, np.float32) if scores is None else np.asarray(scores, dtype=np.float32)
    ty = np.full(n, NORMAL, np.int64) if token_types is None else np.asarray(token_types, dtype=np.int64).copy()
    if sc.shape != (n,) or ty.shape != (n,):
        raise ConvertError(f"GGUF tokenizer arrays differ in length: {n} tokens, {sc.size} scores, "
                           f"{ty.size} types", code="bad-tokenizer")
    for name, v in (("unknown", unk_id), ("bos", bos_id), ("eos", eos_id), ("padding", pad_id)):
        if not 0 <= v < n:
            raise ConvertError(f"GGUF {name} token id {v} outside the vocabulary of {n}", code="bad-tokenizer")
    fixes: list[str] = []
    pieces = list(tokens)

    bad_types = np.flatnonzero((ty < NORMAL) | (ty > BYTE))
    if bad_types.size:
        ty[bad_types] = NORMAL
        fixes.append(f"{bad_types.size} tokens with unknown type numbers treated as NORMAL")
    others = [i for i in np.flatnonzero(ty == UNKNOWN).tolist() if i != unk_id]
    if others:
        ty[others] = CONTROL
        fixes.append(f"{len(others)} extra UNKNOWN pieces marked CONTROL (SentencePiece allows one)")
    if ty[unk_id] != UNKNOWN:
        fixes.append(f"piece {unk_id} {pieces[unk_id]!r} marked UNKNOWN (was {TYPE_NAMES[int(ty[unk_id])]})")
        ty[unk_id] = UNKNOWN
    for i, p in enumerate(pieces):
        if p in CHAT_PIECES and ty[i] == CONTROL:
            ty[i] = USER_DEFINED
            fixes.append(f"piece {i} {p!r} marked USER_DEFINED (was CONTROL)")
    spaced = [i for i, p in enumerate(pieces) if " " in p and ty[i] != BYTE]
    for i in spaced:
        pieces[i] = pieces[i].replace(" ", SPACE)
    if spaced:
        fixes.append(f"{len(spaced)} pieces with plain spaces rewritten with U+2581 "
                     f"(ids {spaced[0]}..{spaced[-1]})")
    if len(set(pieces)) != n:
        seen: dict[str, int] = {}
        dup = next((i, seen[p]) for i, p in enumerate(pieces) if p in seen or seen.setdefault(p, i) is None)
        raise ConvertError(f"GGUF vocabulary has duplicate piece {pieces[dup[0]]!r} (ids {dup[1]} and {dup[0]})",
                           code="bad-tokenizer")
    if not np.isfinite(sc).all():
        raise ConvertError("GGUF tokenizer scores contain NaN/Inf", code="bad-tokenizer")
    opts = TrainerOptions(unk_id=unk_id, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id,
                          unk_piece=pieces[unk_id], bos_piece=pieces[bos_id], eos_piece=pieces[eos_id],
                          pad_piece=pieces[pad_id], add_dummy_prefix=bool(add_space_prefix),
                          # SentencePiece refuses byte fallback unless all 256 <0xNN> pieces exist
                          byte_fallback=int((ty == BYTE).sum()) == 256)
    proto = encode_model_proto(pieces, sc, ty, opts)
    return SpmBuild(proto, fixes, n)


def check_loadable(proto: bytes) -> int:
    """Load the proto with ``sentencepiece``; returns its vocabulary size or raises ConvertError."""
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_proto=proto)
    except Exception as e:  # RuntimeError from the C++ side
        raise ConvertError(f"the rebuilt tokenizer does not load in sentencepiece: {e}",
                           code="bad-tokenizer") from None
    return sp.get_piece_size()
