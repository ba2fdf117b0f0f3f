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

import numpy as np

from sbs_tools.errors import SbsError

from .ops import bf16_round, rope_base

NUMERICS = ("gemmacpp", "f32")
BF16_EXACT = ("BF16", "SFP")  # decoded values are already bf16 numbers: rounding is a no-op
GELU = 0
ROPE = 0
SCALE_POST_NORM = 1


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
    embedding: np.ndarray  # (V, D) for the lookup, scale applied, not rounded
    unembedding: np.ndarray  # (V, D) for the tied logits matmul (bf16-rounded under gemmacpp numerics)
    final_norm: np.ndarray
    layers: list[LayerWeights]
    notes: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        arrays = {id(a): a for a in (self.embedding, self.unembedding, self.final_norm)}
        for layer in self.layers:
            arrays.update({id(a): a for a in vars(layer).values() if isinstance(a, np.ndarray)})
        return sum(a.nbytes for a in arrays.values())


#: Models whose architecture (MoE, PLE, MLA, encoder-decoder, Qwen3) this decoder does not implement.
UNIMPLEMENTED_MODELS = frozenset({19, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32})


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
    notes = []
    if cfg.vit_config.layer_configs:
        notes.append(f"skipping the vision encoder ({len(cfg.vit_config.layer_configs)} ViT layers and the "
                     "image tensors): text-only run")
    if cfg.model_name.startswith("PALIGEMMA"):
        notes.append("PaliGemma: text-only run with a causal mask (no image prefix)")
    return notes


class _Reader:
    """Decodes tensors of one file, applying the chosen numerics."""

    def __init__(self, f, numerics: str) -> None:
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, not {numerics!r}")
        self.f, self.numerics = f, numerics
        self.emulate = numerics == "gemmacpp"

    def has(self, name: str) -> bool:
        return name in self.f.tensors

    def info(self, name: str):
        info = self.f.tensors.get(name)
        if info is None:
            raise UnsupportedModel(f"tensor {name!r} is missing", code="inference-missing-tensor", tensor=name)
        return info

    def unscaled(self, name: str) -> np.ndarray:
        """Decoded values (rows, cols) without the scale."""
        from sbs_tools import codecs

        info = self.info(name)
        raw = self.f.tensor(name, decode=False)
        n = info.num_values
        size = codecs.packed_size(info.type_name, n)
        if raw.size < size:
            raise UnsupportedModel(f"tensor {name!r}: blob of {raw.size} bytes, {info.type_name} "
                                   f"{info.rows}x{info.cols} needs {size}", code="tensor-size-mismatch", tensor=name)
        return codecs.decode(info.type_name, raw[:size], n).reshape(info.rows, info.cols)

    def vector(self, name: str, size: int) -> np.ndarray:
        v = self.unscaled(name).reshape(-1) * np.float32(self.info(name).scale)
        if v.size != size:
            raise UnsupportedModel(f"tensor {name!r} has {v.size} values, expected {size}", tensor=name)
        return v

    def matrices(self, name: str, splits: list[int], shape: tuple[int, int], transform=None) -> list[np.ndarray]:
        """Tensor ``name`` as float32 with scale applied, reshaped/transformed, cut into row blocks
        of the given sizes, each block as gemma.cpp's MatMul sees it."""
        info = self.info(name)
        if info.num_values != shape[0] * shape[1] and transform is None:
            raise UnsupportedModel(f"tensor {name!r} is {info.rows}x{info.cols}, expected {shape[0]}x{shape[1]}",
                                   tensor=name)
        w = self.unscaled(name)
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
            if info.scale != 1.0:
                b = b * np.float32(info.scale)
            out.append(b)
        return out

    @staticmethod
    def requantize_i8(w: np.ndarray) -> np.ndarray:
        from sbs_tools import codecs

        return codecs.decode("I8", codecs.encode("I8", w), w.size).reshape(w.shape)


def load_weights(f, *, rope: str = "gemmacpp", numerics: str = "gemmacpp", progress=None) -> Weights:
    """All text weights of an opened :class:`sbs_tools.SbsFile`. ``progress(done, total, name)``
    is called after each layer if given."""
    cfg = f.config
    notes = check_supported(cfg)
    r = _Reader(f, numerics)
    D, V = cfg.model_dim, cfg.vocab_size
    emb = r.unscaled("c_embedding")
    if emb.shape != (V, D):
        raise UnsupportedModel(f"c_embedding is {emb.shape[0]}x{emb.shape[1]}, expected {V}x{D}", tensor="c_embedding")
    scale = np.float32(r.info("c_embedding").scale)
    exact = r.info("c_embedding").type_name in BF16_EXACT
    unemb = bf16_round(emb) if r.emulate and not exact else emb  # shared when rounding changes nothing
    embedding = emb * scale if scale != 1 else emb
    unembedding = embedding if unemb is emb else (unemb * scale if scale != 1 else unemb)
    final_norm = r.vector("c_final_norm", D)
    layers = []
    total = len(cfg.layer_configs)
    if progress:
        progress(0, total, "embedding")
    for i, lc in enumerate(cfg.layer_configs):
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
        layers.append(LayerWeights(
            index=i, heads=H, kv_heads=K, qkv_dim=Dh, window=window,
            rope_base=rope_base(cfg.model, window, cfg.max_seq_len, rope),
            w_q=w_q, w_kv=w_kv, w_o=w_o, w_gate=w_gate, w_up=w_up, w_down=w_down,
            pre_att_norm=r.vector(f"pre_att_ns_{i}", D), pre_ff_norm=r.vector(f"pre_ff_ns_{i}", D),
            post_att_norm=r.vector(f"post_att_ns_{i}", D) if post else None,
            post_ff_norm=r.vector(f"post_ff_ns_{i}", D) if post else None,
            query_norm=r.vector(f"query_norm_{i}", Dh) if lc.use_qk_norm else None,
            key_norm=r.vector(f"key_norm_{i}", Dh) if lc.use_qk_norm else None,
        ))
        if progress:
            progress(i + 1, total, f"layer {i}")
    return Weights(embedding, unembedding, final_norm, layers, notes)
