"""An independent, minimal re-implementation of the parts of the spec the fuzz oracles need.

Nothing here imports the code under test except plain data (the IFields schemas, the
``ModelConfig``/``TocRecord`` containers and their encoders, which are themselves tested against
gemma.cpp-written files). In particular the BlobStore packer, the tensor list of a config
(spec §5), the payload generators and the payload defect checker (spec §6) are written from
the spec, so the properties compare two implementations rather than one with itself.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from sbs_tools.config import ModelConfig

MAGIC = b"SBS\n"
F32, BF16, SFP, NUQ, F64, U32, U64, I8, Q4_0, MXFP4 = 1, 2, 3, 4, 5, 6, 7, 8, 12, 13
TYPE_BITS = {F32: 32, BF16: 16, SFP: 8, NUQ: 4, F64: 64, U32: 32, U64: 64, I8: 8, Q4_0: 4, MXFP4: 4}
TYPE_PREFIX = {F32: "F", BF16: "B", SFP: "$", NUQ: "2", I8: "I", Q4_0: "4"}  # MXFP4 has no prefix
#: Bytes per 32-value block of the block types (addendum §2.2, §2.3).
BLOCK_BYTES = {Q4_0: 18, MXFP4: 17}
#: FP4 E2M1 nibble values (addendum §2.3).
FP4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float64)


def round_up(x: int, a: int) -> int:
    return -(-x // a) * a


# -- BlobStore packing (spec §1.2, §1.3) -------------------------------------------------------

def _key(name: str) -> bytes:
    raw = name.encode("ascii")
    assert 1 <= len(raw) <= 16
    return raw.ljust(16, b"\0")


def pack(blobs: list[tuple[str, bytes]], layout: str = "v2", *, pad_end: bool = True) -> bytes:
    """A BlobStore holding ``blobs`` in order, laid out as gemma.cpp's writers do."""
    n = len(blobs)
    dir_bytes = 32 * n
    first = round_up(16 + dir_bytes, 256) if layout == "v1" else 256
    ranges, pos = [], first
    for _, data in blobs:
        ranges.append((pos, len(data)))
        pos += round_up(len(data), 256)
    if layout == "v1":
        file_bytes = round_up(pos, 65536) if pad_end else pos
    else:
        file_bytes = round_up(pos + round_up(16 + dir_bytes, 256), 65536)
    out = bytearray(file_bytes)
    directory = b"".join(_key(k) for k, _ in blobs) + b"".join(struct.pack("<QQ", o, s) for o, s in ranges)
    header = MAGIC + struct.pack("<IQ", n, file_bytes)
    if layout == "v1":
        out[0:16] = header
        out[16:16 + dir_bytes] = directory
    else:
        out[0:16] = MAGIC + struct.pack("<IQ", 0, 65536)
        out[file_bytes - 16 - dir_bytes:file_bytes - 16] = directory
        out[file_bytes - 16:] = header
    for (_, data), (o, s) in zip(blobs, ranges):
        out[o:o + s] = data
    return bytes(out)


# -- sizes and element codecs (spec §4.3, §6) --------------------------------------------------

def packed_bytes(t: int, n: int) -> int:
    if t == NUQ:
        return 16 * -(-n // 256) + -(-n // 2)
    if t == I8:
        return 4 * -(-n // 128) + n
    if t in BLOCK_BYTES:
        return BLOCK_BYTES[t] * -(-n // 32)
    return n * (TYPE_BITS[t] // 8)


def _sfp_value(b: int) -> float:
    e = b & 0x7F
    if e == 0:
        v = 0.0
    elif e >= 64:
        v = 2.0 ** (((e - 64) >> 3) - 7) * (1 + (e & 7) / 8)
    else:
        v = 2.0 ** ((e >> 2) - 23) * (1 + (e & 3) / 4)
    return -v if b & 0x80 else v


SFP_LUT = np.array([_sfp_value(b) for b in range(256)], dtype=np.float32)
#: Non-zero, canonical SFP bytes sorted by the value they decode to.
SFP_SORTED = np.array(sorted((b for b in range(256) if b & 0x7F), key=_sfp_value), dtype=np.uint8)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even f32 -> bf16 bit patterns (finite inputs)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_value(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32)


def make_payload(t: int, n: int, rng: np.random.Generator, *, kind: str = "matrix") -> bytes:
    """Valid, finite, not-all-zero packed bytes of ``n`` values: what a careful writer emits."""
    lo, hi = (-0.3, 0.3) if kind == "norm" else (-1.0, 1.0)
    if t in (F32, BF16):
        x = rng.uniform(lo, hi, n).astype(np.float32)
        x[np.abs(x) < 1e-3] = 0.5
        return x.astype("<f4").tobytes() if t == F32 else bf16_bits(x).astype("<u2").tobytes()
    if t == SFP:
        return rng.choice(SFP_SORTED, n).astype(np.uint8).tobytes()
    if t == NUQ:
        out = bytearray()
        for g in range(-(-n // 256)):
            ng = min(256, n - 256 * g)
            table = np.sort(rng.choice(len(SFP_SORTED), 16, replace=False))
            out += SFP_SORTED[table].tobytes()
            idx = rng.integers(0, 16, ng, dtype=np.uint8)
            if ng % 2:
                idx = np.append(idx, 0)
            out += (idx[0::2] | (idx[1::2] << 4)).astype(np.uint8).tobytes()
        return bytes(out)
    if t == I8:
        out = bytearray()
        for g in range(-(-n // 128)):
            ng = min(128, n - 128 * g)
            inv = bf16_bits(np.float32(rng.uniform(0.002, 0.02)))
            zp = bf16_bits(np.float32(rng.integers(-100, 100)))
            out += np.array([inv, zp], dtype="<u2").tobytes()
            out += rng.integers(-128, 128, ng).astype(np.int8).tobytes()
        return bytes(out)
    if t in BLOCK_BYTES:
        nb = -(-n // 32)
        qs = rng.integers(0, 256, (nb, 16), dtype=np.uint8)
        if t == Q4_0:  # a bf16 scale d (either sign), then the nibbles
            d = (rng.uniform(0.002, 0.05, nb) * rng.choice([-1.0, 1.0], nb)).astype(np.float32)
            head = bf16_bits(d).astype("<u2").view(np.uint8).reshape(nb, 2)
        else:  # an E8M0 exponent the encoder could write (2**-8 .. 2**0; 1..254 in general)
            head = rng.integers(119, 128, (nb, 1), dtype=np.uint8)
        return np.concatenate([head, qs], axis=1).tobytes()
    raise ValueError(t)


def decode_blocks(t: int, raw: bytes, n: int) -> np.ndarray:
    """The ``n`` float32 values of Q4_0/MXFP4 blocks ``raw`` (addendum §2.2/§2.3), computed in float64."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, BLOCK_BYTES[t])
    qs = b[:, -16:]
    nib = np.concatenate([qs & 15, qs >> 4], axis=1)  # value j: low nibble of byte j; j+16: high nibble
    if t == Q4_0:
        scale = bf16_value(b[:, :2].copy().view("<u2")[:, 0]).astype(np.float64)
        with np.errstate(all="ignore"):
            vals = (nib.astype(np.float64) - 8) * scale[:, None]
    else:
        e = b[:, 0].astype(np.int64)
        scale = np.where((e == 0) | (e == 255), 0.0, np.ldexp(1.0, e - 127))
        vals = FP4[nib] * scale[:, None]
    with np.errstate(all="ignore"):
        return vals.reshape(-1)[:n].astype(np.float32)


def payload_defects(t: int, raw: bytes, n: int) -> set[str]:
    """Which value defects ``verify --deep`` must report for a packed tensor (spec §6, addendum §2).

    Only the unambiguous ones: non-finite decoded values (F32, BF16, I8, Q4_0, MXFP4), an MXFP4
    block the encoder never writes (exponent 0xFF, or 0x00 with a non-zero nibble byte), SFP byte 0x80 in an
    SFP tensor, and an I8 group whose scale is zero or non-finite or whose zero point is
    not an integer within int32 range. (NUQ table order is not asserted: gemma.cpp's own encoder leaves unused
    low-index centres at 0.0, so tables are not always ascending.)
    """
    if len(raw) != packed_bytes(t, n) or n == 0:
        return set()
    b = np.frombuffer(raw, dtype=np.uint8)
    if t == F32:
        return {"non-finite"} if not np.isfinite(b.view("<f4")).all() else set()
    if t == BF16:
        return {"non-finite"} if not np.isfinite(bf16_value(b.view("<u2"))).all() else set()
    if t == SFP:
        return {"sfp-noncanonical"} if (b == 0x80).any() else set()
    if t in BLOCK_BYTES:
        out = set() if np.isfinite(decode_blocks(t, raw, n)).all() else {"non-finite"}
        if t == MXFP4:
            blk = b.reshape(-1, 17)
            if ((blk[:, 0] == 255) | ((blk[:, 0] == 0) & blk[:, 1:].any(axis=1))).any():
                out.add("mxfp4-block-invalid")
        return out
    if t == I8:
        out = set()
        with np.errstate(all="ignore"):
            for g in range(-(-n // 128)):
                grp = b[132 * g:132 * g + 4 + min(128, n - 128 * g)]
                inv, zp = bf16_value(grp[:4].view("<u2"))
                # the encoder writes zp = float(int32(a)) in bf16: an integer, |zp| <= 2^31
                if not (math.isfinite(inv) and math.isfinite(zp)) or inv == 0 or abs(zp) > 2.0**31 \
                        or float(zp) != math.trunc(float(zp)):
                    out.add("scale-invalid")
                    continue
                q = grp[4:].view(np.int8).astype(np.float64)
                zs = np.float32(-zp) * np.float32(inv)
                x = (np.float64(inv) * q + np.float64(zs)).astype(np.float32)
                if not np.isfinite(x).all():
                    out.add("non-finite")
        return out
    return set()


# -- which tensors a config needs (spec §5) ----------------------------------------------------

@dataclass
class TensorPlan:
    name: str
    rows: int
    cols: int
    t: int
    kind: str = "matrix"  # matrix | norm | bias | embedding
    scale: float = 1.0


@dataclass
class ModelPlan:
    """Everything needed to write one valid model file."""

    config: ModelConfig
    tensors: list[TensorPlan]
    tokenizer: bytes | None
    layout: str = "v2"
    era: str = "single"  # single | e0 | e1
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    def _repr_pretty_(self, p, cycle) -> None:  # hypothesis' printer ignores __repr__ of dataclasses
        p.text(repr(self))

    def __repr__(self) -> str:  # compact: hypothesis prints it for every failing example
        c = self.config
        types = sorted({tp.t for tp in self.tensors})
        return (f"ModelPlan(model={c.model}, rev={c.schema_revision}, weight={c.weight}, layers={c.num_layers}, "
                f"vit_layers={len(c.vit_config.layer_configs)}, D={c.model_dim}, V={c.vocab_size}, "
                f"tensors={len(self.tensors)}, types={types}, tokenizer={len(self.tokenizer or b'')}B, "
                f"layout={self.layout}, era={self.era}, seed={self.seed})")


def tensor_plan(cfg: ModelConfig, weight: int, forms: list[tuple[str, str, str]]) -> list[TensorPlan]:
    """The tensors of ``cfg`` with big matrices of type ``weight`` and the given per-layer
    choice forms (``("ein"|"w", "ein"|"split", "ein"|"split")`` for att, qkv, gating)."""
    small = F32 if weight == F32 else BF16
    D, V = cfg.model_dim, cfg.vocab_size
    out = [TensorPlan("c_embedding", V, D, small, "embedding"), TensorPlan("c_final_norm", 1, D, small, "norm")]
    vit = cfg.vit_config
    if vit.layer_configs:
        Dv, S, P = vit.model_dim, vit.seq_len, vit.patch_width
        out += [TensorPlan("enc_norm_bias", 1, Dv, small, "layernorm"),
                TensorPlan("enc_norm_scale", 1, Dv, small, "layernorm"),
                TensorPlan("img_emb_bias", 1, Dv, F32, "bias"),
                TensorPlan("img_emb_kernel", Dv, P * P * 3, small),
                TensorPlan("img_pos_emb", S, Dv, F32),
                TensorPlan("img_head_bias", 1, D, F32, "bias"),
                TensorPlan("img_head_kernel", D, Dv, small)]
        if cfg.wrapping == 2:
            out.append(TensorPlan("mm_embed_norm", 1, Dv, small, "norm"))
    for i, lc in enumerate(cfg.layer_configs):
        H, K, Dh, F = lc.heads, lc.kv_heads, lc.qkv_dim, lc.ff_hidden_dim
        att, qkv, gating = forms[i]
        s = f"_{i}"
        if att == "ein":
            out.append(TensorPlan("att_ein" + s, H * D, Dh, weight))
        else:
            out.append(TensorPlan("att_w" + s, D, H * Dh, weight))
        if qkv == "ein":
            out.append(TensorPlan("qkv_ein" + s, (H + 2 * K) * Dh, D, weight))
        else:
            out += [TensorPlan("qkv1_w" + s, H * Dh, D, weight), TensorPlan("qkv2_w" + s, 2 * K * Dh, D, weight)]
        if gating == "ein":
            out.append(TensorPlan("gating_ein" + s, 2 * F, D, weight))
        else:
            out += [TensorPlan("gating1_w" + s, F, D, weight), TensorPlan("gating2_w" + s, F, D, weight)]
        out += [TensorPlan("linear_w" + s, D, F, weight),
                TensorPlan("pre_att_ns" + s, 1, D, small, "norm"), TensorPlan("pre_ff_ns" + s, 1, D, small, "norm")]
        if lc.post_norm == 1:
            out += [TensorPlan("post_att_ns" + s, 1, D, small, "norm"),
                    TensorPlan("post_ff_ns" + s, 1, D, small, "norm")]
        if lc.use_qk_norm:
            out += [TensorPlan("key_norm" + s, 1, Dh, small, "norm"), TensorPlan("query_norm" + s, 1, Dh, small, "norm")]
        if lc.ff_biases:
            out += [TensorPlan("ffw_gat_b" + s, 1, 2 * F, F32, "bias"), TensorPlan("ffw_out_b" + s, 1, D, F32, "bias")]
    for i, lc in enumerate(vit.layer_configs):
        Dv = vit.model_dim
        H, K, Dh, F = lc.heads, lc.kv_heads, lc.qkv_dim, lc.ff_hidden_dim
        s = f"_{i}"
        out += [TensorPlan("attn_out_w" + s, Dv, H * Dh, small), TensorPlan("attn_out_b" + s, 1, Dv, F32, "bias"),
                TensorPlan("qkv_ein_w" + s, H * 3 * Dh, Dv, small), TensorPlan("qkv_ein_b" + s, H + 2 * K, Dh, F32, "bias"),
                TensorPlan("linear_0_w" + s, F, Dv, small), TensorPlan("linear_0_b" + s, 1, F, F32, "bias"),
                TensorPlan("linear_1_w" + s, Dv, F, small), TensorPlan("linear_1_b" + s, 1, Dv, F32, "bias")]
        out += [TensorPlan(f"ln_{j}_{w}" + s, 1, Dv, small, "layernorm") for j in (0, 1) for w in ("bias", "scale")]
    return out


def _matptr_words(name: str, t: int, rows: int, cols: int, scale: float) -> list[int]:
    """A serialized MatPtr record (spec §4.1), written from the spec."""
    raw = name.encode("ascii")
    k = -(-len(raw) // 4)
    words = [k] + list(struct.unpack(f"<{k}I", raw.ljust(4 * k, b"\0")))
    n = rows * cols
    nelem = packed_bytes(t, n) if t in (NUQ, I8, Q4_0, MXFP4) else n
    words += [t, -(-TYPE_BITS[t] // 8), nelem, rows, cols, struct.unpack("<I", struct.pack("<f", scale))[0], cols]
    return [len(words)] + words


def build(plan: ModelPlan) -> bytes:
    """The bytes of ``plan`` as a gemma.cpp writer of its era would lay them out."""
    rng = np.random.default_rng(plan.seed)
    tensor_blobs = [(tp, make_payload(tp.t, tp.rows * tp.cols, rng, kind=tp.kind)) for tp in plan.tensors]
    if plan.era == "e0":
        blobs = [(TYPE_PREFIX[tp.t] + tp.name, data) for tp, data in tensor_blobs]
        scaled = [tp for tp, _ in tensor_blobs if tp.name.rsplit("_", 1)[0] in ("att_ein", "qkv_ein", "gating_ein",
                                                                                   "linear_w")]
        scaled.sort(key=lambda tp: (int(tp.name.rsplit("_", 1)[1]),
                                    ("att_ein", "qkv_ein", "gating_ein", "linear_w").index(tp.name.rsplit("_", 1)[0])))
        if scaled:
            blobs.append(("Fscales", np.array([tp.scale for tp in scaled], dtype="<f4").tobytes()))
        return pack(blobs, "v1", pad_end=False)
    prefixed = plan.era == "e1"
    toc: list[int] = []
    blobs = []
    for tp, data in tensor_blobs:
        name = TYPE_PREFIX[tp.t] + tp.name if prefixed else tp.name
        blobs.append((name, data))
        toc += _matptr_words(name, tp.t, tp.rows, tp.cols, tp.scale)
    cfg = plan.config.to_bytes()
    tok = plan.tokenizer or b"unavailable"
    tocb = np.asarray(toc, dtype="<u4").tobytes()
    if prefixed:
        blobs += [("tokenizer", tok), ("toc", tocb), ("config", cfg)]
        return pack(blobs, "v1", pad_end=False)
    blobs += [("config", cfg), ("tokenizer", tok), ("toc", tocb)]
    return pack(blobs, plan.layout)
