"""The ``toc`` blob: one serialized ``MatPtr`` record per tensor (spec §4)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import _type_enum
from .errors import FieldsError, TocError
from .fields import Field, Schema, read_struct, write_struct
from .types import Type, element_bytes, num_elements, packed_bytes, type_name

MATPTR = Schema("MatPtr", (
    Field("name", "string", ""),
    Field("type", "enum", 0, _type_enum("2025-10")),
    Field("element_bytes", "u32"),
    Field("num_elements", "u32"),
    Field("rows", "u32"),
    Field("cols", "u32"),
    Field("scale", "f32", 1.0),
    Field("stride", "u32"),
))


@dataclass
class TocRecord:
    """One MatPtr as stored: what the writer claimed about a tensor."""

    name: str
    type: int
    element_bytes: int
    num_elements: int
    rows: int
    cols: int
    scale: float
    stride: int
    word_pos: int = 0  # position of the record in the toc's u32 stream
    extra_u32: int = 0

    @classmethod
    def make(cls, name: str, t: Type | int, rows: int, cols: int, scale: float = 1.0) -> "TocRecord":
        """The record gemma.cpp's writer emits for a packed tensor."""
        t = Type(t)
        return cls(name, int(t), element_bytes(t), num_elements(t, rows * cols), rows, cols, scale, cols)

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    def values(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "type", "element_bytes", "num_elements",
                                              "rows", "cols", "scale", "stride")}


#: A toc can hold at most this many records (one per blob; gemma.cpp allows < 65536 blobs).
MAX_RECORDS = 65536


def decode_toc(words: np.ndarray) -> list[TocRecord]:
    """Decode a whole toc as gemma.cpp's ``ModelStore::ReadMatPtrs`` walks it.

    Raises :class:`TocError` (``toc-undecodable``) with the byte offset of the
    record that fails.
    """
    out: list[TocRecord] = []
    pos = 0
    n = int(words.shape[0])
    while pos < n:
        if len(out) >= MAX_RECORDS:
            raise TocError(f"toc has more than {MAX_RECORDS} records", code="toc-undecodable",
                           offset=4 * pos, blob="toc")
        try:
            r = read_struct(MATPTR, words, pos, blob="toc")
        except FieldsError as e:
            raise TocError(f"toc record {len(out)}: {e.message}", code="toc-undecodable",
                           offset=e.offset, blob="toc") from None
        out.append(TocRecord(**r.values, word_pos=pos, extra_u32=r.extra_u32))
        pos = r.pos + r.extra_u32
    return out


def encode_toc(records: list[TocRecord]) -> bytes:
    words: list[int] = []
    for rec in records:
        words += write_struct(MATPTR, rec.values())
    return np.asarray(words, dtype="<u4").tobytes()


def expected_blob_bytes(rec: TocRecord) -> int | None:
    """Packed byte size implied by type and shape, or None for a type with no size."""
    try:
        return packed_bytes(rec.type, rec.rows * rec.cols)
    except Exception:
        return None
