"""Bit-exact element codecs for gemma.cpp tensors (spec §6), vectorized numpy.

Public API::

    decode(type_name, raw, num_elements, out=None) -> np.ndarray[float32]
    encode(type_name, values) -> bytes
    packed_size(type_name, num_elements) -> int
    scale_for_sfp(values) -> (scaled_values, scale)

``type_name`` is "F32", "BF16", "SFP", "NUQ", "I8", "Q4_0", "MXFP4", "F64", "U32",
"U64", "U16", "U8" or "INT8"
(any case), a :class:`~sbs_tools.types.Type` or its number. ``decode`` never
applies ``MatPtr.scale`` (multiply by it yourself), reads ``raw`` (bytes,
memoryview or uint8 array, e.g. a read-only view of an mmap) in place and
writes a fresh float32 array, or ``out`` (a writable contiguous float32 array
of length ``num_elements``) when given. Every problem raises
:class:`~sbs_tools.errors.CodecError` with a stable ``code``:

* ``size-mismatch``: ``len(raw) != packed_size(type, num_elements)``;
* ``non-finite``: NaN/Inf among the values to encode;
* ``out-of-range``: SFP/NUQ value with ``|x| > 1.875`` (use ``scale_for_sfp``
  first), value overflowing float32/bf16, an I8 group gemma.cpp cannot
  quantize, or an unrepresentable U32/U64 value;
* ``unknown-type``, ``bad-count``, ``bad-input``, ``bad-out``: bad arguments.

Encoders of F32, BF16, SFP, I8, Q4_0 and MXFP4 are bit-identical to gemma.cpp (MXFP4
through an emulation of Highway's approximate ``Log2``, see ``hwy_log2``); NUQ is an
exact-DP k-means whose error is no worse than gemma.cpp's (see ``nuq``).
Error bounds of each lossy type are documented in its module.
"""
from __future__ import annotations

import numpy as np

from ..errors import CodecError
from ..types import Type, packed_bytes, type_from_name
from . import bf16, i8, mxfp4, nuq, plain, q4_0, sfp
from ._buffers import RawBuffer, checked_u8, finite_f32, prepare_out
from .sfp import SFP_MAX, scale_for_sfp

__all__ = ["decode", "encode", "packed_size", "scale_for_sfp", "SFP_MAX"]


def _type(type_name: str | Type | int) -> Type:
    t = type_from_name(type_name)
    if t == Type.UNKNOWN:
        raise CodecError("type UNKNOWN has no encoding", code="unknown-type")
    return t


def packed_size(type_name: str | Type | int, num_elements: int) -> int:
    """Exact blob size in bytes of ``num_elements`` values (spec §4.3)."""
    return packed_bytes(_type(type_name), int(num_elements))


def decode(type_name: str | Type | int, raw: RawBuffer, num_elements: int,
           out: np.ndarray | None = None) -> np.ndarray:
    """Decode a packed tensor to a 1-D float32 array of ``num_elements`` (scale not applied)."""
    t = _type(type_name)
    n = int(num_elements)
    u8 = checked_u8(t, raw, n)
    dst = prepare_out(out, n)
    if n == 0:
        return dst
    if t == Type.BF16:
        return bf16.decode(u8, n, dst)
    if t == Type.SFP:
        return sfp.decode(u8, n, dst)
    if t == Type.NUQ:
        return nuq.decode(u8, n, dst)
    if t == Type.I8:
        return i8.decode(u8, n, dst)
    if t == Type.Q4_0:
        return q4_0.decode(u8, n, dst)
    if t == Type.MXFP4:
        return mxfp4.decode(u8, n, dst)
    return plain.decode(t, u8, n, dst)


def encode(type_name: str | Type | int, values: object) -> bytes:
    """Encode ``values`` (any shape, flattened row-major) as packed bytes of the type."""
    t = _type(type_name)
    if t in plain.DTYPES:
        return plain.encode(t, values)
    x = finite_f32(values, t.name)
    if t == Type.BF16:
        return bf16.encode(x)
    if t == Type.SFP:
        return sfp.encode(x)
    if t == Type.NUQ:
        return nuq.encode(x)
    if t == Type.Q4_0:
        return q4_0.encode(x)
    if t == Type.MXFP4:
        return mxfp4.encode(x)
    return i8.encode(x)
