"""Decoding a ``.sbs`` file's text-decoder weights into float32: every matrix once, at load
(resident), or a row block at a time whenever a matrix product needs it (streaming, :class:`Streamed`).

gemma.cpp's numerics are followed by default (``numerics="gemmacpp"``, spec §5.2 and §8
corrections): its MatMul multiplies bf16 activations by weights decompressed to bf16, so every
matrix is rounded to bf16 (round-to-nearest-even of the *unscaled* decoded values) before its
``scale`` is applied; and for I8 files the split halves of ``qkv_ein`` / ``gating_ein`` and the
transposed ``att_ein`` are re-quantized with the I8 encoder, because gemma.cpp builds them that
way at load. ``numerics="f32"`` uses the decoded values as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Union

import numpy as np

from sbs_tools.config import NEW_ARCHITECTURE_MODELS
from sbs_tools.errors import SbsError
from sbs_tools.types import I8_GROUP, NUQ_GROUP

from .ops import bf16_round, rope_base

NUMERICS = ("gemmacpp", "f32")
BF16_EXACT = ("BF16", "SFP")  # decoded values are already bf16 numbers: rounding is a no-op
GELU = 0
ROPE = 0
SCALE_POST_NORM = 1
BLOCK_BYTES = 2 << 20  # float32 bytes of one row block of a matrix product (both modes)


class UnsupportedModel(SbsError):
    """The file describes something this decoder does not implement."""

    code = "inference-unsupported"


class Streamed:
    """A float32 matrix left in the memory-mapped file: :meth:`blocks` decodes it one row block at a
    time, for the product that needs it, and keeps nothing."""

    def __init__(self, shape: tuple[int, int], rows: Callable[[int, int], np.ndarray] | None = None,
                 whole: Callable[[], np.ndarray] | None = None) -> None:
        """``rows(lo, hi)`` decodes rows lo..hi; ``whole()`` the whole matrix, for those that cannot
        be cut before decoding (re-quantized I8 halves)."""
        self.shape, self._rows, self._whole = shape, rows, whole

    @property
    def nbytes(self) -> int:
        return 4 * self.shape[0] * self.shape[1]

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        w = self._whole() if self._whole else None
        for lo, hi in row_blocks(*self.shape):
            yield lo, w[lo:hi] if w is not None else self._rows(lo, hi)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """Rows by index, each decoded on its own (the embedding lookup)."""
        return np.concatenate([self._rows(r, r + 1) for r in np.asarray(rows).tolist()])


Matrix = Union[np.ndarray, Streamed]


def row_blocks(rows: int, cols: int) -> list[tuple[int, int]]:
    """Row ranges of a (rows, cols) matrix, one matrix product each: the same in both modes, so that
    streaming and resident logits are bit-identical (BLAS rounding depends on the blocking)."""
    step = max(1, BLOCK_BYTES // (4 * cols))
    return [(lo, min(rows, lo + step)) for lo in range(0, rows, step)]


def blocks(w: Matrix) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, row block) of ``w`` in :func:`row_blocks`, decoded or sliced."""
    if isinstance(w, Streamed):
        return w.blocks()
    return ((lo, w[lo:hi]) for lo, hi in row_blocks(*w.shape))


def linear(x: np.ndarray, w: Matrix) -> np.ndarray:
    """``x @ w.T`` for x (T, in) and w (out, in), one row block of w at a time."""
    out = np.empty((x.shape[0], w.shape[0]), np.float32)
    for lo, b in blocks(w):
        np.matmul(x, b.T, out=out[:, lo:lo + b.shape[0]])
    return out


@dataclass
class LayerWeights:
    """One decoder layer. Matrices are (out_features, in_features) float32 with the scale applied,
    decoded (resident) or :class:`Streamed`; norms are always decoded."""

    index: int
    heads: int
    kv_heads: int
    qkv_dim: int
    window: int
    rope_base: float
    w_q: Matrix  # (H*Dh, D)
    w_kv: Matrix  # (2*K*Dh, D): per kv head j, K_j rows then V_j rows
    w_o: Matrix  # (D, H*Dh)
    w_gate: Matrix  # (F, D), GELU input
    w_up: Matrix  # (F, D), linear half
    w_down: Matrix  # (D, F)
    pre_att_norm: np.ndarray
    pre_ff_norm: np.ndarray
    post_att_norm: np.ndarray | None = None
    post_ff_norm: np.ndarray | None = None
    query_norm: np.ndarray | None = None
    key_norm: np.ndarray | None = None


@dataclass
class Weights:
    """The text weights of a file: decoded to float32 and kept (resident), or with every matrix
    :class:`Streamed` from the open ``file`` (streaming)."""

    embedding: Matrix  # (V, D) for the lookup, scale applied, not rounded
    unembedding: Matrix  # (V, D) for the tied logits matmul (bf16-rounded under gemmacpp numerics)
    final_norm: np.ndarray
    layers: list[LayerWeights]
    notes: list[str] = field(default_factory=list)
    file: object = None  # the SbsFile streamed matrices read from

    @property
    def streaming(self) -> bool:
        return isinstance(self.unembedding, Streamed)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def nbytes(self) -> int:
        """Bytes of the float32 weights (what resident mode holds)."""
        return _nbytes([self.embedding, self.unembedding, self.final_norm] + [
            a for layer in self.layers for a in vars(layer).values()])

    @property
    def layer_nbytes(self) -> int:
        return max(_nbytes(vars(layer).values()) for layer in self.layers)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _nbytes(arrays) -> int:
    """Bytes of the distinct float32 matrices and vectors among ``arrays``."""
    unique = {id(a): a for a in arrays if isinstance(a, (np.ndarray, Streamed))}
    return sum(a.nbytes for a in unique.values())


#: Models whose architecture (MoE, PLE, MLA, encoder-decoder, Qwen3; CUSTOM) this decoder does not implement.
UNIMPLEMENTED_MODELS = NEW_ARCHITECTURE_MODELS | {19}


def check_supported(cfg) -> list[str]:
    """Raise :class:`UnsupportedModel` naming the config field this decoder cannot run; return
    informational notes (e.g. ViT layers that a text-only run skips)."""
    if cfg is None:
        raise UnsupportedModel("the file has no config blob (pre-2025 multi-file format); "
                               "convert it to a single-file .sbs first", code="inference-no-config")

    def refuse(what: str, why: str) -> None:
        raise UnsupportedModel(f"{what}: {why}")

    if cfg.model in UNIMPLEMENTED_MODELS or cfg.model >= 33 or cfg.is_encoder_decoder:
        raise UnsupportedModel(f"model {cfg.model_name}: this decoder implements Gemma 2 and Gemma 3 (including "
                               "the text-only GEMMA3_*_LM) only; gemma.cpp itself runs this architecture",
                               code="inference-unsupported")

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
        for name, default in (("num_experts", 0), ("ple_dim", 0), ("kv_lora_rank", 0), ("kv_share_layer_idx", -1),
                              ("activation", 0), ("norm_v", False)):
            if getattr(lc, name) != default:
                refuse(f"{where}.{name}", f"{getattr(lc, name)}: not implemented (a 2026 architecture feature)")
        if lc.post_qk not in (0, 1):
            refuse(f"{where}.post_qk", f"{lc.post_qk}: only Rope and HalfRope are implemented")
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
    return text_only_notes(cfg)


def text_only_notes(cfg) -> list[str]:
    """What a run without an image leaves out (a run with one decodes the ViT: ``inference.vision``)."""
    notes = []
    if cfg.vit_config.layer_configs:
        notes.append(f"skipping the vision encoder ({len(cfg.vit_config.layer_configs)} ViT layers and the "
                     "image tensors): text-only run")
    if cfg.model_name.startswith("PALIGEMMA"):
        notes.append("PaliGemma: text-only run with a causal mask (no image prefix)")
    return notes


class _Reader:
    """Decodes tensors of one file, applying the chosen numerics. The mapped pages of a tensor are
    released from the process once decoded (decoded arrays are copies). With ``lazy``, matrices
    come back :class:`Streamed` after their names and sizes are checked."""

    def __init__(self, f, numerics: str, lazy: bool = False) -> None:
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, not {numerics!r}")
        self.f, self.numerics, self.lazy = f, numerics, lazy
        self.emulate = numerics == "gemmacpp"

    def has(self, name: str) -> bool:
        return name in self.f.tensors

    def info(self, name: str):
        from sbs_tools import codecs

        info = self.f.tensors.get(name)
        if info is None:
            raise UnsupportedModel(f"tensor {name!r} is missing", code="inference-missing-tensor", tensor=name)
        size = codecs.packed_size(info.type_name, info.num_values)
        if info.bytes < size:
            raise UnsupportedModel(f"tensor {name!r}: blob of {info.bytes} bytes, {info.type_name} "
                                   f"{info.rows}x{info.cols} needs {size}", code="tensor-size-mismatch", tensor=name)
        return info

    def values(self, name: str, start: int, stop: int) -> np.ndarray:
        """Values start..stop (flat, row-major) of a tensor, decoded, without the scale."""
        from sbs_tools import codecs

        info = self.info(name)
        t = info.type_name
        group = GROUPS.get(t, 1)  # grouped codecs decode whole groups: start at the group of ``start``
        first, last = start // group * group, min(info.num_values, -(-stop // group) * group)
        b0, b1 = codecs.packed_size(t, first), codecs.packed_size(t, last)
        decoded = codecs.decode(t, self.f.tensor(name, decode=False)[b0:b1], last - first)
        # A page fault maps neighbouring cached pages too (fault-around, large folios): release a
        # margin behind, and ahead only at the tensor's end (ahead lies the next block of a pass).
        lo = max(0, info.offset + b0 - FAULT_AROUND)
        hi = info.offset + b1 + (FAULT_AROUND if last == info.num_values else 0)
        self.f.release(lo, hi - lo)
        return decoded[start - first:stop - first]

    def unscaled(self, name: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Rows lo..hi (all by default) of a tensor as stored, decoded, without the scale."""
        info = self.info(name)
        hi = info.rows if hi is None else hi
        return self.values(name, lo * info.cols, hi * info.cols).reshape(hi - lo, info.cols)

    def vector(self, name: str, size: int) -> np.ndarray:
        info = self.info(name)
        if info.num_values != size:
            raise UnsupportedModel(f"tensor {name!r} has {info.num_values} values, expected {size}", tensor=name)
        return _scaled(self.unscaled(name).reshape(-1), info.scale)

    def matrices(self, name: str, splits: list[int], shape: tuple[int, int], heads: int = 0) -> list[Matrix]:
        """Tensor ``name`` as a float32 ``shape`` matrix with scale applied, cut into row blocks of
        the given sizes, each block as gemma.cpp's MatMul sees it. ``heads``: the tensor is
        [heads, rows, cols / heads] and the matrix has the heads side by side (``att_ein``)."""
        info = self.info(name)
        if info.num_values != shape[0] * shape[1]:
            raise UnsupportedModel(f"tensor {name!r} is {info.rows}x{info.cols}, expected {shape[0]}x{shape[1]}",
                                   tensor=name)
        requant = self.emulate and info.type_name == "I8" and (len(splits) > 1 or heads > 0)
        if not self.lazy:
            return self._decoded(name, splits, shape, heads, requant)
        if requant:  # I8 groups are re-formed over the whole block: decode it whole
            return [Streamed((rows, shape[1]), whole=lambda k=k: self._decoded(name, splits, shape, heads, requant)[k])
                    for k, rows in enumerate(splits)]
        starts = np.cumsum([0] + splits[:-1]).tolist()
        return [Streamed((rows, shape[1]), rows=lambda lo, hi, a=a: self._finish(
                    self._rows(name, a + lo, a + hi, shape, heads), info, False)) for a, rows in zip(starts, splits)]

    def _rows(self, name: str, lo: int, hi: int, shape: tuple[int, int], heads: int) -> np.ndarray:
        """Rows lo..hi of the ``shape`` matrix view of a tensor, decoded, without the scale."""
        cols = shape[1]
        if not heads:
            return self.values(name, lo * cols, hi * cols).reshape(hi - lo, cols)
        dh = cols // heads  # head h's rows lo..hi are rows h*R + lo .. h*R + hi of the [H*R, dh] tensor
        return np.concatenate([self.values(name, (h * shape[0] + lo) * dh, (h * shape[0] + hi) * dh).reshape(
            hi - lo, dh) for h in range(heads)], axis=1)

    def _decoded(self, name: str, splits: list[int], shape: tuple[int, int], heads: int, requant: bool):
        w = self.unscaled(name)
        if heads:
            w = w.reshape(heads, shape[0], shape[1] // heads).transpose(1, 0, 2)
        w = w.reshape(shape)
        parts = np.split(w, np.cumsum(splits)[:-1], axis=0) if len(splits) > 1 else [w]
        return [self._finish(np.ascontiguousarray(b), self.info(name), requant) for b in parts]

    def _finish(self, b: np.ndarray, info, requant: bool) -> np.ndarray:
        """Decoded values of a (fresh) block as the matrix product uses them."""
        if requant:
            b = self.requantize_i8(b)
        if self.emulate and (requant or info.type_name not in BF16_EXACT):
            b = bf16_round(b)
        return _scaled(b, info.scale)

    def embedding(self, tied: bool) -> Matrix:
        """``c_embedding`` with its scale: for the lookup, or (``tied``) for the logits matmul,
        which gemma.cpp runs on bf16-rounded values. Decoded one row block at a time."""
        info = self.info("c_embedding")
        V, D = info.rows, info.cols
        rounded = tied and not self.embedding_exact

        def rows(lo: int, hi: int) -> np.ndarray:
            w = self.unscaled("c_embedding", lo, hi)
            return _scaled(bf16_round(w) if rounded else w, info.scale)

        if self.lazy:
            return Streamed((V, D), rows=rows)
        out = np.empty((V, D), np.float32)
        for lo, hi in row_blocks(V, D):
            out[lo:hi] = rows(lo, hi)
        return out

    @property
    def embedding_exact(self) -> bool:
        """True when the tied logits use the lookup's values unchanged (no bf16 rounding to do)."""
        return not self.emulate or self.info("c_embedding").type_name in BF16_EXACT

    @staticmethod
    def requantize_i8(w: np.ndarray) -> np.ndarray:
        from sbs_tools import codecs

        return codecs.decode("I8", codecs.encode("I8", w), w.size).reshape(w.shape)


GROUPS = {"NUQ": NUQ_GROUP, "I8": I8_GROUP}  # values per independently decodable group
FAULT_AROUND = 2 << 20  # Linux maps the whole page-cache folio (up to a huge page) around a faulting page


def _scaled(w: np.ndarray, scale: float) -> np.ndarray:
    """``w * scale`` computed in place (``w`` is a fresh decoded array), skipped for scale 1."""
    if scale != 1.0:
        w *= np.float32(scale)
    return w


def load_layer(r: _Reader, cfg, i: int, rope: str) -> LayerWeights:
    """Decoder layer ``i`` (matrices decoded, or Streamed from a lazy reader)."""
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
        (w_o,) = r.matrices(f"att_ein_{i}", [D], (D, H * Dh), heads=H)
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


def load_weights(f, *, rope: str = "gemmacpp", numerics: str = "gemmacpp", progress=None,
                 streaming: bool = False) -> Weights:
    """The text weights of an opened :class:`sbs_tools.SbsFile`, every matrix decoded, or with
    ``streaming`` checked and left in the file (which must then stay open: ``Weights.close``).
    ``progress(done, total, name)`` is called after each layer if given."""
    cfg = f.config
    notes = check_supported(cfg)
    r = _Reader(f, numerics, lazy=streaming)
    D, V = cfg.model_dim, cfg.vocab_size
    info = r.info("c_embedding")
    if (info.rows, info.cols) != (V, D):
        raise UnsupportedModel(f"c_embedding is {info.rows}x{info.cols}, expected {V}x{D}", tensor="c_embedding")
    embedding = r.embedding(tied=False)
    unembedding = embedding if r.embedding_exact else r.embedding(tied=True)
    final_norm = r.vector("c_final_norm", D)
    total = len(cfg.layer_configs)
    if progress:
        progress(0, total, "embedding")
    layers = []
    for i in range(total):
        layers.append(load_layer(r, cfg, i, rope))
        if progress:
            progress(i + 1, total, f"layer {i}")
    return Weights(embedding, unembedding, final_norm, layers, notes, file=f if streaming else None)
