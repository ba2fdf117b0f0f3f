"""Decoding a ``.sbs`` file's text-decoder weights into float32 arrays, once, at load.

gemma.cpp's numerics are followed by default (``numerics="gemmacpp"``, spec §5.2 and §8
corrections): its MatMul multiplies bf16 activations by weights decompressed to bf16, so every
matrix is rounded to bf16 (round-to-nearest-even of the *unscaled* decoded values) before its
``scale`` is applied; and for I8 files the split halves of ``qkv_ein`` / ``gating_ein`` and the
transposed ``att_ein`` are re-quantized with the I8 encoder, because gemma.cpp builds them that
way at load. ``numerics="f32"`` uses the decoded values as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from sbs_tools.errors import SbsError
from sbs_tools.types import I8_GROUP, NUQ_GROUP

from .ops import bf16_round, rope_base

NUMERICS = ("gemmacpp", "f32")
BF16_EXACT = ("BF16", "SFP")  # decoded values are already bf16 numbers: rounding is a no-op
GELU = 0
ROPE = 0
SCALE_POST_NORM = 1
VOCAB_CHUNK_BYTES = 32 << 20  # float32 bytes of the tied embedding per logits matmul


class UnsupportedModel(SbsError):
    """The file describes something this decoder does not implement."""

    code = "inference-unsupported"


@dataclass
class LayerWeights:
    """One decoder layer. Matrices are (out_features, in_features) float32 with the scale applied."""

    index: int
    heads: int
    kv_heads: int
    qkv_dim: int
    window: int
    rope_base: float
    w_q: np.ndarray  # (H*Dh, D)
    w_kv: np.ndarray  # (2*K*Dh, D): per kv head j, K_j rows then V_j rows
    w_o: np.ndarray  # (D, H*Dh)
    w_gate: np.ndarray  # (F, D), GELU input
    w_up: np.ndarray  # (F, D), linear half
    w_down: np.ndarray  # (D, F)
    pre_att_norm: np.ndarray
    pre_ff_norm: np.ndarray
    post_att_norm: np.ndarray | None = None
    post_ff_norm: np.ndarray | None = None
    query_norm: np.ndarray | None = None
    key_norm: np.ndarray | None = None


@dataclass
class Weights:
    """Every text weight decoded to float32 and kept (resident mode)."""

    embedding: np.ndarray  # (V, D) for the lookup, scale applied, not rounded
    unembedding: np.ndarray  # (V, D) for the tied logits matmul (bf16-rounded under gemmacpp numerics)
    final_norm: np.ndarray
    layers: list[LayerWeights]
    notes: list[str] = field(default_factory=list)

    streaming = False

    @property
    def nbytes(self) -> int:
        arrays = [self.embedding, self.unembedding, self.final_norm]
        return _nbytes(arrays + [a for layer in self.layers for a in vars(layer).values()])

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def layer(self, i: int) -> LayerWeights:
        return self.layers[i]

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        """Embedding rows of ``tokens`` (scale applied, before the sqrt(D) multiplier)."""
        return self.embedding[tokens]

    def unembedding_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) of the tied logits matrix, in :func:`vocab_chunks`."""
        for lo, hi in vocab_chunks(*self.unembedding.shape):
            yield lo, self.unembedding[lo:hi]


def check_supported(cfg) -> list[str]:
    """Raise :class:`UnsupportedModel` naming the config field this decoder cannot run; return
    informational notes (e.g. ViT layers that a text-only run skips)."""
    if cfg is None:
        raise UnsupportedModel("the file has no config blob (pre-2025 multi-file format); "
                               "convert it to a single-file .sbs first", code="inference-no-config")

    def refuse(what: str, why: str) -> None:
        raise UnsupportedModel(f"{what}: {why}")

    if not cfg.layer_configs:
        refuse("layer_configs", "no text layers")
    if len(cfg.layer_configs) != cfg.num_layers:
        refuse("num_layers", f"{cfg.num_layers} but layer_configs has {len(cfg.layer_configs)} entries")
    if len(cfg.attention_window_sizes) != cfg.num_layers:
        refuse("attention_window_sizes", f"{len(cfg.attention_window_sizes)} entries for {cfg.num_layers} layers")
    if cfg.absolute_pe:
        refuse("absolute_pe", "absolute position embeddings are not implemented (Gemma uses RoPE)")
    if cfg.query_scale not in (0, 1):
        refuse("query_scale", f"unknown QueryScaleType {cfg.query_scale}")
    if cfg.max_seq_len <= 0:
        refuse("max_seq_len", f"{cfg.max_seq_len}")
    first = cfg.layer_configs[0]
    for i, lc in enumerate(cfg.layer_configs):
        where = f"layer_configs[{i}]"
        if lc.type != 0:
            refuse(f"{where}.type", f"{cfg.layer_type_name(lc.type)} ({lc.type}); only kGemma (0) text "
                                    "layers are supported")
        if lc.model_dim != cfg.model_dim:
            refuse(f"{where}.model_dim", f"{lc.model_dim} differs from the model's model_dim {cfg.model_dim}")
        if lc.activation != GELU:
            refuse(f"{where}.activation", f"{lc.activation}; only Gelu (0) is implemented")
        if lc.post_qk != ROPE:
            refuse(f"{where}.post_qk", f"{lc.post_qk} (HalfRope); only full RoPE (0) is implemented")
        if lc.ff_biases:
            refuse(f"{where}.ff_biases", "FFW biases are not implemented (no Gemma model uses them)")
        if lc.post_norm not in (0, SCALE_POST_NORM):
            refuse(f"{where}.post_norm", f"unknown PostNormType {lc.post_norm}")
        if lc.heads <= 0 or lc.kv_heads <= 0 or lc.heads % lc.kv_heads:
            refuse(f"{where}.kv_heads", f"heads {lc.heads} must be a positive multiple of kv_heads {lc.kv_heads}")
        if lc.qkv_dim <= 0 or lc.qkv_dim % 2:
            refuse(f"{where}.qkv_dim", f"{lc.qkv_dim}; RoPE needs an even head dimension")
        if (lc.kv_heads, lc.qkv_dim) != (first.kv_heads, first.qkv_dim):
            refuse(f"{where}.kv_heads/qkv_dim", "differ from layer 0 (the KV cache assumes one shape)")
        if cfg.attention_window_sizes[i] <= 0:
            refuse(f"attention_window_sizes[{i}]", f"{cfg.attention_window_sizes[i]}")
    notes = []
    if cfg.vit_config.layer_configs:
        notes.append(f"skipping the vision encoder ({len(cfg.vit_config.layer_configs)} ViT layers and the "
                     "image tensors): text-only run")
    if cfg.model_name.startswith("PALIGEMMA"):
        notes.append("PaliGemma: text-only run with a causal mask (no image prefix)")
    return notes


class _Reader:
    """Decodes tensors of one file, applying the chosen numerics. The mapped pages of a tensor are
    released from the process once it is decoded (the decoded arrays are copies). With
    ``decode=False`` only names and sizes are checked and the arrays are zero-byte placeholders
    of the right shape: a dry run of the loader that validates the file and sizes its weights."""

    def __init__(self, f, numerics: str, decode: bool = True) -> None:
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, not {numerics!r}")
        self.f, self.numerics, self.decode = f, numerics, decode
        self.emulate = numerics == "gemmacpp"

    def has(self, name: str) -> bool:
        return name in self.f.tensors

    def info(self, name: str):
        info = self.f.tensors.get(name)
        if info is None:
            raise UnsupportedModel(f"tensor {name!r} is missing", code="inference-missing-tensor", tensor=name)
        return info

    def unscaled(self, name: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Decoded values of rows lo..hi (all rows by default) without the scale."""
        from sbs_tools import codecs

        info = self.info(name)
        hi = info.rows if hi is None else hi
        t, n, cols = info.type_name, info.num_values, info.cols
        size = codecs.packed_size(t, n)
        if info.bytes < size:
            raise UnsupportedModel(f"tensor {name!r}: blob of {info.bytes} bytes, {t} "
                                   f"{info.rows}x{cols} needs {size}", code="tensor-size-mismatch", tensor=name)
        if not self.decode:
            return _placeholder(hi - lo, cols)
        group = GROUPS.get(t, 1)  # grouped codecs decode whole groups: start at the group of row lo
        first = lo * cols // group * group
        last = min(n, -(-hi * cols // group) * group)
        b0, b1 = codecs.packed_size(t, first), codecs.packed_size(t, last)
        raw = self.f.tensor(name, decode=False)[b0:b1]
        values = codecs.decode(t, raw, last - first)
        self.f.release(info.offset + b0, b1 - b0)
        return values[lo * cols - first:hi * cols - first].reshape(hi - lo, cols)

    def vector(self, name: str, size: int) -> np.ndarray:
        info = self.info(name)
        if info.num_values != size:
            raise UnsupportedModel(f"tensor {name!r} has {info.num_values} values, expected {size}", tensor=name)
        v = self.unscaled(name).reshape(-1)
        return _scaled(v, info.scale) if self.decode else v

    def matrices(self, name: str, splits: list[int], shape: tuple[int, int], transform=None) -> list[np.ndarray]:
        """Tensor ``name`` as float32 with scale applied, reshaped/transformed, cut into row blocks
        of the given sizes, each block as gemma.cpp's MatMul sees it."""
        info = self.info(name)
        if info.num_values != shape[0] * shape[1] and transform is None:
            raise UnsupportedModel(f"tensor {name!r} is {info.rows}x{info.cols}, expected {shape[0]}x{shape[1]}",
                                   tensor=name)
        w = self.unscaled(name)
        if not self.decode:
            return [_placeholder(rows, shape[1]) for rows in splits]
        w = transform(w) if transform else w.reshape(shape)
        blocks = np.split(w, np.cumsum(splits)[:-1], axis=0) if len(splits) > 1 else [w]
        requant = self.emulate and info.type_name == "I8" and (len(splits) > 1 or transform is not None)
        out = []
        for b in blocks:
            b = np.ascontiguousarray(b)
            if requant:
                b = self.requantize_i8(b)
            if self.emulate and (requant or info.type_name not in BF16_EXACT):
                b = bf16_round(b)
            out.append(_scaled(b, info.scale))
        return out

    def embedding_rows(self, lo: int, hi: int, tied: bool) -> np.ndarray:
        """Rows lo..hi of ``c_embedding``, scale applied: for the lookup, or (``tied``) for the
        logits matmul, which gemma.cpp runs on bf16-rounded values."""
        w = self.unscaled("c_embedding", lo, hi)
        if tied and self.emulate and self.decode and not self.embedding_exact:
            w = bf16_round(w)
        return _scaled(w, self.info("c_embedding").scale) if self.decode else w

    @property
    def embedding_exact(self) -> bool:
        """True when the tied logits use the lookup's values unchanged (no bf16 rounding to do)."""
        return not self.emulate or self.info("c_embedding").type_name in BF16_EXACT

    @staticmethod
    def requantize_i8(w: np.ndarray) -> np.ndarray:
        from sbs_tools import codecs

        return codecs.decode("I8", codecs.encode("I8", w), w.size).reshape(w.shape)


GROUPS = {"NUQ": NUQ_GROUP, "I8": I8_GROUP}  # values per independently decodable group


def _placeholder(rows: int, cols: int) -> np.ndarray:
    """A read-only (rows, cols) float32 array that occupies no memory (dry runs)."""
    return np.broadcast_to(np.float32(0), (rows, cols))


def _scaled(w: np.ndarray, scale: float) -> np.ndarray:
    """``w * scale`` computed in place (``w`` is a fresh decoded array), skipped for scale 1."""
    if scale != 1.0:
        w *= np.float32(scale)
    return w


def vocab_chunks(vocab: int, dim: int) -> list[tuple[int, int]]:
    """Row ranges of the tied embedding, each one matmul of the logits: the same in both modes, so
    that streaming and resident logits are bit-identical (BLAS rounding depends on the blocking)."""
    rows = max(1, VOCAB_CHUNK_BYTES // (4 * dim))
    return [(lo, min(vocab, lo + rows)) for lo in range(0, vocab, rows)]


def load_layer(r: _Reader, cfg, i: int, rope: str) -> LayerWeights:
    """Decoder layer ``i``, decoded (or, from a dry reader, checked)."""
    lc, D = cfg.layer_configs[i], cfg.model_dim
    H, K, Dh, F = lc.heads, lc.kv_heads, lc.qkv_dim, lc.ff_hidden_dim
    if r.has(f"qkv_ein_{i}"):
        w_q, w_kv = r.matrices(f"qkv_ein_{i}", [H * Dh, 2 * K * Dh], ((H + 2 * K) * Dh, D))
    else:
        (w_q,) = r.matrices(f"qkv1_w_{i}", [H * Dh], (H * Dh, D))
        (w_kv,) = r.matrices(f"qkv2_w_{i}", [2 * K * Dh], (2 * K * Dh, D))
    if r.has(f"att_ein_{i}"):
        # att_ein is [H, D, Dh]; att_w[m, h*Dh + d] = att_ein[h*D + m, d]
        if r.info(f"att_ein_{i}").num_values != H * D * Dh:
            raise UnsupportedModel(f"att_ein_{i} has {r.info(f'att_ein_{i}').num_values} values, "
                                   f"expected {H * D * Dh}", tensor=f"att_ein_{i}")
        (w_o,) = r.matrices(f"att_ein_{i}", [D], (D, H * Dh),
                            transform=lambda w: w.reshape(H, D, Dh).transpose(1, 0, 2).reshape(D, H * Dh))
    else:
        (w_o,) = r.matrices(f"att_w_{i}", [D], (D, H * Dh))
    if r.has(f"gating_ein_{i}"):
        w_gate, w_up = r.matrices(f"gating_ein_{i}", [F, F], (2 * F, D))
    else:
        (w_gate,) = r.matrices(f"gating1_w_{i}", [F], (F, D))
        (w_up,) = r.matrices(f"gating2_w_{i}", [F], (F, D))
    (w_down,) = r.matrices(f"linear_w_{i}", [D], (D, F))
    post = lc.post_norm == SCALE_POST_NORM
    window = cfg.attention_window_sizes[i]
    return LayerWeights(
        index=i, heads=H, kv_heads=K, qkv_dim=Dh, window=window,
        rope_base=rope_base(cfg.model, window, cfg.max_seq_len, rope),
        w_q=w_q, w_kv=w_kv, w_o=w_o, w_gate=w_gate, w_up=w_up, w_down=w_down,
        pre_att_norm=r.vector(f"pre_att_ns_{i}", D), pre_ff_norm=r.vector(f"pre_ff_ns_{i}", D),
        post_att_norm=r.vector(f"post_att_ns_{i}", D) if post else None,
        post_ff_norm=r.vector(f"post_ff_ns_{i}", D) if post else None,
        query_norm=r.vector(f"query_norm_{i}", Dh) if lc.use_qk_norm else None,
        key_norm=r.vector(f"key_norm_{i}", Dh) if lc.use_qk_norm else None,
    )


def _embedding(r: _Reader, V: int, D: int, tied: bool) -> np.ndarray:
    """The whole (V, D) embedding, decoded one vocabulary chunk at a time (bounded temporaries)."""
    if not r.decode:
        return r.unscaled("c_embedding")  # size checks only
    out = np.empty((V, D), np.float32)
    for lo, hi in vocab_chunks(V, D):
        out[lo:hi] = r.embedding_rows(lo, hi, tied)
    return out


def load_weights(f, *, rope: str = "gemmacpp", numerics: str = "gemmacpp", progress=None,
                 decode: bool = True) -> Weights:
    """All text weights of an opened :class:`sbs_tools.SbsFile`. ``progress(done, total, name)``
    is called after each layer if given. ``decode=False``: check every tensor and return
    placeholders (``nbytes`` is then what decoding would allocate)."""
    cfg = f.config
    notes = check_supported(cfg)
    r = _Reader(f, numerics, decode)
    D, V = cfg.model_dim, cfg.vocab_size
    info = r.info("c_embedding")
    if (info.rows, info.cols) != (V, D):
        raise UnsupportedModel(f"c_embedding is {info.rows}x{info.cols}, expected {V}x{D}", tensor="c_embedding")
    embedding = _embedding(r, V, D, tied=False)
    unembedding = embedding if r.embedding_exact else _embedding(r, V, D, tied=True)
    final_norm = r.vector("c_final_norm", D)
    total = len(cfg.layer_configs)
    if progress:
        progress(0, total, "embedding")
    layers = []
    for i in range(total):
        layers.append(load_layer(r, cfg, i, rope))
        if progress:
            progress(i + 1, total, f"layer {i}")
    return Weights(embedding, unembedding, final_norm, layers, notes)


class StreamingWeights:
    """The text weights of a memory-mapped file, decoded when the forward pass reaches them: one
    layer at a time, the tied embedding one vocabulary chunk at a time. Nothing decoded is kept,
    and the mapped pages are released behind each tensor, so the resident set stays near one
    layer's float32 weights whatever the file size. Same interface as :class:`Weights`."""

    streaming = True

    def __init__(self, f, *, rope: str = "gemmacpp", numerics: str = "gemmacpp", plan: Weights | None = None) -> None:
        """``plan``: the ``decode=False`` :func:`load_weights` of ``f`` if already made."""
        plan = plan or load_weights(f, rope=rope, numerics=numerics, decode=False)  # checks every tensor
        self.f, self.cfg, self.rope = f, f.config, rope
        self.r = _Reader(f, numerics)
        self.notes, self.nbytes, self.num_layers = plan.notes, plan.nbytes, plan.num_layers
        self.layer_nbytes = max(_nbytes(vars(L).values()) for L in plan.layers)
        self.final_norm = self.r.vector("c_final_norm", self.cfg.model_dim)

    def layer(self, i: int) -> LayerWeights:
        return load_layer(self.r, self.cfg, i, self.rope)

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        return np.concatenate([self.r.embedding_rows(t, t + 1, tied=False) for t in tokens.tolist()])

    def unembedding_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for lo, hi in vocab_chunks(self.cfg.vocab_size, self.cfg.model_dim):
            yield lo, self.r.embedding_rows(lo, hi, tied=True)

    def close(self) -> None:
        self.f.close()


def _nbytes(arrays) -> int:
    """Bytes of the distinct numpy arrays among ``arrays`` (what they would occupy decoded)."""
    unique = {id(a): a for a in arrays if isinstance(a, np.ndarray)}
    return sum(a.nbytes for a in unique.values())
