"""Element types of gemma.cpp tensors (``compression/types.h``) and their packed sizes."""
from __future__ import annotations

from enum import IntEnum

from .errors import CodecError


class Type(IntEnum):
    """``gemma::Type`` as numbered at gemma.cpp 3ed403e, plus 9-13 (addendum §2.1, ``types.h@ee051c9c``)."""

    UNKNOWN = 0
    F32 = 1
    BF16 = 2
    SFP = 3
    NUQ = 4
    F64 = 5
    U32 = 6
    U64 = 7
    I8 = 8
    U16 = 9  # activation / KV type, never a weight
    U8 = 10  # activation / KV type, never a weight
    INT8 = 11  # activation / KV type, never a weight
    Q4_0 = 12  # 18-byte blocks of 32 values (bf16 scale + 16 nibble bytes)
    MXFP4 = 13  # 17-byte blocks of 32 values (E8M0 exponent + 16 FP4 nibble bytes)


#: Bits per element (``TypeBits``); NUQ is nominally 4.
TYPE_BITS = {Type.UNKNOWN: 0, Type.F32: 32, Type.BF16: 16, Type.SFP: 8, Type.NUQ: 4,
             Type.F64: 64, Type.U32: 32, Type.U64: 64, Type.I8: 8, Type.U16: 16, Type.U8: 8, Type.INT8: 8,
             Type.Q4_0: 4, Type.MXFP4: 4}

#: gemma.cpp's lower-case type names (``TypeName``), used in config ``weight`` and specifiers.
GEMMA_TYPE_NAMES = {Type.UNKNOWN: "unknown", Type.F32: "f32", Type.BF16: "bf16", Type.SFP: "sfp",
                    Type.NUQ: "nuq", Type.F64: "f64", Type.U32: "u32", Type.U64: "u64", Type.I8: "i8",
                    Type.U16: "u16", Type.U8: "u8", Type.INT8: "int8", Type.Q4_0: "q4_0", Type.MXFP4: "mxfp4"}
#: Types that are never weights (activations / KV cache); gemma.cpp aborts ("Unhandled type") on them.
NON_WEIGHT_TYPES = frozenset({Type.U16, Type.U8, Type.INT8})
#: Block-quantized types whose blocks of 32 values run across row boundaries.
BLOCK_TYPES = {Type.Q4_0: 18, Type.MXFP4: 17}
BLOCK = 32

NUQ_GROUP = 256
NUQ_CLUSTERS = 16
I8_GROUP = 128


def type_from_name(name: str | Type | int) -> Type:
    """Accept ``"SFP"``, ``"sfp"``, ``Type.SFP`` or ``3``."""
    if isinstance(name, Type):
        return name
    if isinstance(name, int):
        try:
            return Type(name)
        except ValueError:
            raise CodecError(f"unknown type number {name}", code="unknown-type") from None
    key = str(name).upper()
    if key in Type.__members__:
        return Type[key]
    raise CodecError(f"unknown type name {name!r}", code="unknown-type")


def type_name(t: Type | int) -> str:
    """Upper-case name as used in ``--json`` output ("F32", "BF16", ...); ``"TYPE<n>"`` if unknown."""
    try:
        return Type(t).name
    except ValueError:
        return f"TYPE{int(t)}"


def element_bytes(t: Type) -> int:
    """``ceil(TypeBits/8)``, what the toc's ``element_bytes`` must hold."""
    return (TYPE_BITS[Type(t)] + 7) // 8


def num_elements(t: Type, n: int) -> int:
    """Stored element count for ``n`` values, including NUQ/I8 side data (spec §4.3)."""
    t = Type(t)
    if t == Type.NUQ:
        return NUQ_CLUSTERS * -(-n // NUQ_GROUP) + -(-n // 2)
    if t == Type.I8:
        return 4 * -(-n // I8_GROUP) + n
    if t in BLOCK_TYPES:
        return BLOCK_TYPES[t] * -(-n // BLOCK)
    return n


def packed_bytes(t: Type | str | int, n: int) -> int:
    """Exact blob size in bytes of ``n`` values of type ``t`` stored packed."""
    t = type_from_name(t)
    if t == Type.UNKNOWN:
        raise CodecError("type UNKNOWN has no size", code="unknown-type")
    if n < 0:
        raise CodecError(f"negative element count {n}", code="bad-count")
    return num_elements(t, n) * element_bytes(t)
