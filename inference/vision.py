"""The vision encoder (ViT) of Gemma 3 and PaliGemma files and where its rows enter the prompt, as
gemma.cpp 3ed403e computes them (``gemma/vit.cc``, ``paligemma/image.cc``, ``gemma/gemma.cc``).

    pixels = byte / 255 * 2 - 1, nearest-neighbour resized to image_size x image_size
    x = patches @ img_emb_kernel.T + img_emb_bias + img_pos_emb       (raster order, (row, col, rgb))
    per ViT layer:  x += attention(LayerNorm_0(x));  x += mlp(LayerNorm_1(x))
    x = LayerNorm(x; enc_norm)
    Gemma 3:  x = avgpool_4x4(x);  x[0] = rmsnorm(x[0], mm_embed_norm)      (every row: vision="reference")
    image_tokens = x @ img_head_kernel.T + img_head_bias                    (num_image_tokens, model_dim)

Every matmul rounds both operands to bf16 and accumulates in f32, like gemma.cpp's MatMul (the
weights come rounded from the reader; ``numerics="f32"`` rounds nothing). Where gemma.cpp differs
from the published models (``vision="gemmacpp"``, the default, reproduces it):

1. ``AvgPool4x4`` hard-codes a 64x64 patch grid; on any other grid gemma.cpp reads past its
   matrix. Here the same 4x4 pooling runs on any grid divisible by 4 (identical at 64x64); ``sbs
   verify`` reports other grids (``vit-pool-grid``).
2. The soft-embedding RMSNorm (``mm_embed_norm``) normalizes pooled row 0 only (``vit.cc``
   passes ``x.Row(0)`` with the row length); the published model normalizes every row.
3. Gemma 3 text layers attend causally (with their sliding window) over the image tokens; the
   published model attends bidirectionally within an image. PaliGemma attends over its whole
   prompt (image + text) as a prefix, bounded below by each layer's window, in both modes.
4. Image rows enter the residual stream as they are (no sqrt(D) scaling); Gemma 3 puts them at
   the placeholders -2 of the prompt, PaliGemma at its first num_image_tokens positions.
5. PaliGemma generation re-feeds the last prompt token at position len(prompt) (gemma.cc rewinds
   after a prefix prefill) and samples the first token from there, so generated token k sits at
   len(prompt) + 1 + k; the published model (``vision="reference"``) samples from the last prompt
   position and places token k at len(prompt) + k. Both prefill the whole prompt as the prefix.
6. Builds with native bf16 dot products (AVX-512 BF16, where the image references were made)
   run the old text attention kernel, whose softmax also takes in the entries of its probability
   buffer before a sliding window, left there by the buffer row's previous use; builds without
   (the portable build of the text references) run flash attention. A run with an image follows
   the former from its prompt on (``numerics="gemmacpp"``), a text run the latter.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .ops import bf16_round, gelu, rmsnorm, softmax
from .tokenizer import BOS_ID
from .weights import GELU, UnsupportedModel, _Reader

VISION_MODES = ("gemmacpp", "reference")
GEMMA_VLM, PALIGEMMA = 2, 3  # PromptWrapping
VIT_TYPES = (1, 2)  # LayerAttentionType kVit: 1 since 2025-09-05, 2 before
POOL = 4  # AvgPool4x4
IMAGE_ID = -2  # Gemma 3 placeholder (gemma.cc EmbedMMToken)
PALI_ID = 0  # PaliGemma placeholder (tokenizer.cc WrapPali)
F32 = np.float32
LN_EPS = 1e-6

#: ``mask(q_pos, k_pos, window) -> (Tq, Tk) bool``, like :func:`inference.ops.attention_mask`.
MaskFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@dataclass
class VitLayer:
    heads: int
    qkv_dim: int
    w_qkv: np.ndarray  # (H*3*Dh, Dv): per head q, k, v rows
    b_qkv: np.ndarray  # (H*3*Dh,)
    w_o: np.ndarray  # (Dv, H*Dh)
    b_o: np.ndarray
    w_up: np.ndarray  # (F, Dv)
    b_up: np.ndarray | None
    w_down: np.ndarray  # (Dv, F)
    b_down: np.ndarray | None
    ln0: tuple[np.ndarray, np.ndarray]  # (scale, bias)
    ln1: tuple[np.ndarray, np.ndarray]


@dataclass
class VitWeights:
    wrapping: int
    image_size: int
    patch: int
    grid: int  # patches per side
    num_tokens: int  # image rows that enter the prompt
    emulate: bool  # round matmul activations to bf16 (numerics="gemmacpp")
    w_patch: np.ndarray  # (Dv, P*P*3)
    b_patch: np.ndarray
    pos_emb: np.ndarray  # (grid*grid, Dv)
    layers: list[VitLayer]
    enc_norm: tuple[np.ndarray, np.ndarray]
    w_head: np.ndarray  # (D, Dv)
    b_head: np.ndarray
    mm_norm: np.ndarray | None  # Gemma 3 only


def num_image_tokens(cfg) -> int:
    """Rows an image contributes to the prompt: ``seq_len / pool_dim**2`` (gemma.cpp run.cc)."""
    v = cfg.vit_config
    return v.seq_len // max(1, v.pool_dim) ** 2


def check_vit(cfg) -> int:
    """Raise :class:`UnsupportedModel` for a vision config this encoder cannot run; return the grid."""
    v = cfg.vit_config

    def refuse(what: str, why: str) -> None:
        raise UnsupportedModel(f"{what}: {why}", code="inference-unsupported")

    if not v.layer_configs:
        refuse("vit_config.layer_configs", "the file has no vision encoder")
    if cfg.wrapping not in (GEMMA_VLM, PALIGEMMA):
        refuse("wrapping", f"{cfg.wrapping}; images need GEMMA_VLM (2) or PALIGEMMA (3)")
    if v.patch_width <= 0 or v.image_size % v.patch_width:
        refuse("vit_config.image_size", f"{v.image_size} is not a multiple of patch_width {v.patch_width}")
    grid = v.image_size // v.patch_width
    if v.seq_len != grid * grid:
        refuse("vit_config.seq_len", f"{v.seq_len}, but a {v.image_size} px image has {grid}x{grid} patches")
    if cfg.wrapping == GEMMA_VLM and (grid % POOL or v.pool_dim != POOL):
        refuse("vit_config", f"Gemma 3 pools 4x4: needs a patch grid divisible by 4 and pool_dim 4, "
                             f"not {grid}x{grid} and {v.pool_dim}")
    if cfg.wrapping == PALIGEMMA and v.pool_dim != 1:
        refuse("vit_config.pool_dim", f"{v.pool_dim}; PaliGemma does not pool (1)")
    for i, lc in enumerate(v.layer_configs):
        where = f"vit_config.layer_configs[{i}]"
        if lc.type not in VIT_TYPES:
            refuse(f"{where}.type", f"{lc.type} is not kVit")
        if lc.heads <= 0 or lc.heads != lc.kv_heads:
            refuse(f"{where}.kv_heads", f"the ViT is multi-head attention: heads {lc.heads}, kv_heads {lc.kv_heads}")
        if lc.activation != GELU:
            refuse(f"{where}.activation", f"{lc.activation}; only Gelu (0) is implemented")
        if lc.model_dim != v.model_dim:
            refuse(f"{where}.model_dim", f"{lc.model_dim} differs from vit_config.model_dim {v.model_dim}")
    return grid


def load_vit(f, numerics: str = "gemmacpp") -> VitWeights:
    """Every vision weight of an opened :class:`sbs_tools.SbsFile` as float32 (scale applied;
    matrices rounded to bf16 under ``gemmacpp`` numerics, as gemma.cpp's MatMul reads them)."""
    cfg = f.config
    grid = check_vit(cfg)
    r = _Reader(f, numerics)
    v = cfg.vit_config
    Dv, D, P = v.model_dim, cfg.model_dim, v.patch_width

    def mat(name: str, rows: int, cols: int) -> np.ndarray:
        return r.matrices(name, [rows], (rows, cols))[0]

    def vec(name: str, size: int) -> np.ndarray:
        return r.vector(name, size)

    layers = []
    for i, lc in enumerate(v.layer_configs):
        H, Dh, F = lc.heads, lc.qkv_dim, lc.ff_hidden_dim
        layers.append(VitLayer(
            heads=H, qkv_dim=Dh,
            w_qkv=mat(f"qkv_ein_w_{i}", H * 3 * Dh, Dv), b_qkv=vec(f"qkv_ein_b_{i}", H * 3 * Dh),
            w_o=mat(f"attn_out_w_{i}", Dv, H * Dh), b_o=vec(f"attn_out_b_{i}", Dv),
            w_up=mat(f"linear_0_w_{i}", F, Dv), b_up=vec(f"linear_0_b_{i}", F) if lc.ff_biases else None,
            w_down=mat(f"linear_1_w_{i}", Dv, F), b_down=vec(f"linear_1_b_{i}", Dv) if lc.ff_biases else None,
            ln0=(vec(f"ln_0_scale_{i}", Dv), vec(f"ln_0_bias_{i}", Dv)),
            ln1=(vec(f"ln_1_scale_{i}", Dv), vec(f"ln_1_bias_{i}", Dv)),
        ))
    pos = r.unscaled("img_pos_emb") * F32(r.info("img_pos_emb").scale)
    if pos.size != v.seq_len * Dv:
        raise UnsupportedModel(f"img_pos_emb has {pos.size} values, expected {v.seq_len}x{Dv}", tensor="img_pos_emb")
    return VitWeights(
        wrapping=cfg.wrapping, image_size=v.image_size, patch=P, grid=grid, num_tokens=num_image_tokens(cfg),
        emulate=r.emulate, w_patch=mat("img_emb_kernel", Dv, P * P * 3), b_patch=vec("img_emb_bias", Dv),
        pos_emb=pos.reshape(v.seq_len, Dv), layers=layers,
        enc_norm=(vec("enc_norm_scale", Dv), vec("enc_norm_bias", Dv)),
        w_head=mat("img_head_kernel", D, Dv), b_head=vec("img_head_bias", D),
        mm_norm=vec("mm_embed_norm", Dv) if cfg.wrapping == GEMMA_VLM else None,
    )


# -- the image -----------------------------------------------------------------------------------
def read_ppm(data: bytes) -> tuple[np.ndarray, int]:
    """A binary PPM (P6, maxval <= 255) as (H, W, 3) uint8 and its maxval, parsed like
    gemma.cpp's ``Image::ReadPPM`` (whitespace and ``#`` comments between the header fields)."""
    pos, fields = 2, []
    if data[:2] != b"P6":
        raise ValueError("not a binary PPM (P6)")
    while len(fields) < 3:
        while pos < len(data) and (data[pos:pos + 1].isspace() or data[pos:pos + 1] == b"#"):
            if data[pos:pos + 1] == b"#":
                while pos < len(data) and data[pos:pos + 1] not in (b"\n", b"\r"):
                    pos += 1
            else:
                pos += 1
        start = pos
        while pos < len(data) and data[pos:pos + 1].isdigit():
            pos += 1
        if pos == start:
            raise ValueError("PPM header: expected width, height and maxval")
        fields.append(int(data[start:pos]))
    width, height, maxval = fields
    if not 0 < maxval <= 255:
        raise ValueError(f"PPM maxval {maxval}: only 1..255 is supported")
    if not data[pos:pos + 1].isspace():
        raise ValueError("PPM header: missing whitespace after maxval")
    pixels = np.frombuffer(data, np.uint8, width * height * 3, pos + 1) if len(data) - pos - 1 >= width * height * 3 \
        else None
    if pixels is None:
        raise ValueError(f"PPM data: {width}x{height} needs {width * height * 3} bytes, "
                         f"{len(data) - pos - 1} present")
    return pixels.reshape(height, width, 3), maxval


def read_image(image) -> np.ndarray:
    """``image`` as gemma.cpp normalizes it: (H, W, 3) float32 in [-1, 1] (byte / maxval * 2 - 1).
    ``image``: a path (PPM without Pillow; PNG, JPEG, ... with Pillow) or an (H, W, 3) uint8 array."""
    maxval = 255
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise ValueError(f"an image array must be (H, W, 3) uint8, not {image.shape} {image.dtype}")
        pixels = image
    else:
        with open(os.fspath(image), "rb") as fh:
            data = fh.read()
        if data[:2] == b"P6":
            pixels, maxval = read_ppm(data)
        else:
            pixels = _decode_with_pillow(data, image)
    return (pixels.astype(F32) / F32(maxval)) * F32(2) - F32(1)


def _decode_with_pillow(data: bytes, name) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{name}: reading PNG/JPEG needs Pillow: pip install 'sbs-tools[vision]' "
                          "(binary PPM works without it)") from None
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:  # PIL.UnidentifiedImageError, truncated files, ...
        raise ValueError(f"{name}: not an image Pillow can read ({e})") from None


def nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Source index of each of ``n_out`` outputs: gemma.cpp's ``NearestNeighbor`` (float32 scale
    (n_in-1)/(n_out-1), rounded half away from zero, clamped)."""
    scale = F32(n_in - 1) / F32(n_out - 1) if n_out > 1 else F32(0)
    p = (np.arange(n_out, dtype=F32) * scale).astype(np.float64)
    return np.clip(np.floor(p + 0.5), 0, n_in - 1).astype(np.int64)


def resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize to ``size`` x ``size`` (``Image::Resize``; the identity at that size)."""
    h, w = pixels.shape[:2]
    return pixels[nearest_index(size, h)][:, nearest_index(size, w)]


def patches(pixels: np.ndarray, p: int) -> np.ndarray:
    """(grid*grid, p*p*3): patches in raster order, each flattened (row, col, channel)
    (``Image::GetPatch``)."""
    h, w, c = pixels.shape
    g_h, g_w = h // p, w // p
    return pixels.reshape(g_h, p, g_w, p, c).transpose(0, 2, 1, 3, 4).reshape(g_h * g_w, p * p * c)


# -- the encoder ---------------------------------------------------------------------------------
def layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """gemma.cpp's LayerNorm: moments in float64, then (x - mu) * (scale * rsqrt(var + 1e-6)) + bias."""
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=-1, keepdims=True)
    var = np.maximum((x64 * x64).mean(axis=-1, keepdims=True) - mu * mu, 0.0)
    inv = (1.0 / np.sqrt(var + LN_EPS)).astype(F32)
    return ((x - mu.astype(F32)) * (scale * inv) + bias).astype(F32)


KC_STEP = 32  # bf16 values per AVX-512 vector: one step of gemma.cpp's MatMul kernel over K
LANES = 16  # f32 lanes of the accumulators
EXACT_MAX = 1 << 26  # M*N*K up to which the kernel's f32 summation order is emulated exactly


def k_block(k: int) -> int:
    """K columns per pass of gemma.cpp's MatMul (``kc``) in the first candidate of its autotuner,
    the one a first call runs (``GenerateCandidates::KC``; K <= 8192): it splits K whenever it
    can. K rounded down to a multiple of 32 if that is less than K; else the largest multiple of
    32 below K that divides it; K itself if K <= 32."""
    if k <= KC_STEP:
        return k
    if k % KC_STEP:
        return k // KC_STEP * KC_STEP
    return next(kc for kc in range(k - KC_STEP, 0, -KC_STEP) if k % kc == 0)  # 32 divides k: found


def _block_sum(a: np.ndarray, w: np.ndarray, tree: bool = False) -> np.ndarray:
    """a @ w.T over one K block in the kernel's order: lane j accumulates columns 2j+1 then 2j of
    each 32-column step (VDPBF16PS; zero-padded), then the 16 lanes are added in lane order
    (``Reduce4x4``), or, with ``tree``, by halves (what the ViT's Q.K^T MatMul matches)."""
    k = a.shape[1]
    pad = -k % KC_STEP
    a = np.pad(a, ((0, 0), (0, pad))).reshape(a.shape[0], -1, LANES, 2)
    w = np.pad(w, ((0, 0), (0, pad))).reshape(w.shape[0], -1, LANES, 2)
    acc = np.zeros((a.shape[0], w.shape[0], LANES), F32)
    for c in range(a.shape[1]):
        for t in (1, 0):
            acc += a[:, None, c, :, t] * w[None, :, c, :, t]
    if tree:
        while acc.shape[-1] > 1:
            acc = acc[..., :acc.shape[-1] // 2] + acc[..., acc.shape[-1] // 2:]
        return acc[..., 0]
    out = acc[..., 0].copy()
    for j in range(1, LANES):
        out += acc[..., j]
    return out


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, bf16: bool, out_bf16: bool = False,
           tree: bool = False) -> np.ndarray:
    """``x @ w.T + b``. Under gemma.cpp numerics (``bf16``) as its MatMul computes it: x rounded to
    bf16 (w already is), K summed in blocks of :func:`k_block` columns, each block's sum added to
    the bias / the previous blocks in the output, which is rounded to bf16 after every block when
    the output matrix is bf16 (``out_bf16``). Small products follow the kernel's f32 summation
    order exactly; large ones use BLAS within a block (differences of f32 rounding only)."""
    if not bf16:
        y = x @ w.T
        return y + b if b is not None else y
    x = bf16_round(x)
    K = x.shape[1]
    kc = k_block(K)
    exact = x.shape[0] * w.shape[0] * K <= EXACT_MAX
    out = np.zeros((x.shape[0], w.shape[0]), F32) if b is None else np.broadcast_to(b, (x.shape[0], w.shape[0]))
    for lo in range(0, K, kc):
        xs, ws = x[:, lo:lo + kc], w[:, lo:lo + kc]
        out = out + (_block_sum(xs, ws, tree) if exact else xs @ ws.T)
        if out_bf16:
            out = bf16_round(out)
    return out


def weighted_sum(p: np.ndarray, v: np.ndarray, exact: bool) -> np.ndarray:
    """p @ v for (H, T, S) x (H, S, Dh). ``exact``: as gemma.cpp's ``MulByConstAndAdd`` loop, one
    fused multiply-add per key in key order (emulated in f64), when the product is small."""
    if not exact or p.size * v.shape[-1] > EXACT_MAX:
        return p @ v
    acc = np.zeros(p.shape[:2] + v.shape[-1:], np.float64)
    for i in range(p.shape[-1]):
        acc = (acc + p[:, :, i, None].astype(np.float64) * v[:, None, i]).astype(F32).astype(np.float64)
    return acc.astype(F32)


def vit_attention(y: np.ndarray, L: VitLayer, bf16: bool, bf16_scores: bool) -> np.ndarray:
    """All-to-all multi-head attention with biases, (T, Dv) -> (T, H*Dh) before the output
    projection. Gemma 3 (``bf16_scores``) computes Q.K with a MatMul (bf16 operands); PaliGemma
    with f32 dot products accumulated in f64 (``Dot``)."""
    T, H, Dh = y.shape[0], L.heads, L.qkv_dim
    qkv = linear(y, L.w_qkv, L.b_qkv, bf16).reshape(T, H, 3, Dh).transpose(1, 2, 0, 3)  # (H, 3, T, Dh)
    q, k, v = qkv[:, 0] * (F32(1) / np.sqrt(F32(Dh))), qkv[:, 1], qkv[:, 2]
    if bf16_scores:
        s = np.stack([linear(q[h], bf16_round(k[h]), None, True, tree=True) for h in range(H)])
    else:
        s = (q.astype(np.float64) @ k.transpose(0, 2, 1).astype(np.float64)).astype(F32)
    return weighted_sum(softmax(s), v, bf16).transpose(1, 0, 2).reshape(T, H * Dh)


def vit_layer(x: np.ndarray, L: VitLayer, bf16: bool, bf16_scores: bool) -> np.ndarray:
    """One ViT layer. The attention output and the MLP hidden activations are bf16 matrices in
    gemma.cpp (``att_sums``, ``C1``): under its numerics they are rounded as it stores them."""
    a = linear(vit_attention(layer_norm(x, *L.ln0), L, bf16, bf16_scores), L.w_o, L.b_o, bf16, out_bf16=bf16)
    x = x + a
    h = linear(layer_norm(x, *L.ln1), L.w_up, L.b_up, bf16, out_bf16=bf16)
    h = bf16_round(gelu(h)) if bf16 else gelu(h)
    return x + linear(h, L.w_down, L.b_down, bf16)


def avg_pool(x: np.ndarray, grid: int, k: int = POOL) -> np.ndarray:
    """k x k average pooling of (grid*grid, C) rows in raster order -> ((grid/k)**2, C), summing the
    16 rows in ``AvgPool4x4``'s order and then multiplying by 1/16."""
    blocks = x.reshape(grid // k, k, grid // k, k, -1)
    acc = np.zeros(((grid // k), (grid // k), x.shape[-1]), F32)
    for i in range(k):
        for j in range(k):
            acc += blocks[:, i, :, j]
    return (acc * F32(1.0 / (k * k))).reshape(-1, x.shape[-1])


def encode(vit: VitWeights, pixels: np.ndarray, mode: str = "gemmacpp", stages: dict | None = None,
           on_layer: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """Image tokens (num_tokens, model_dim) of normalized ``pixels`` (H, W, 3). ``stages`` (a dict)
    receives pixels, patches, embed, encoder_norm, pooled, pre_proj and image_tokens;
    ``on_layer(i, x)`` is called after ViT layer i (raise in it to stop)."""
    if mode not in VISION_MODES:
        raise ValueError(f"vision must be one of {VISION_MODES}, not {mode!r}")
    bf16 = vit.emulate
    keep = stages if stages is not None else {}
    keep["pixels"] = px = resize(pixels, vit.image_size)
    keep["patches"] = p = patches(px, vit.patch)
    x = linear(p, vit.w_patch, vit.b_patch, bf16) + vit.pos_emb
    keep["embed"] = x
    gemma3 = vit.wrapping == GEMMA_VLM
    for i, L in enumerate(vit.layers):
        x = vit_layer(x, L, bf16, bf16_scores=gemma3 and bf16)
        if on_layer is not None:
            on_layer(i, x)
    keep["encoder_norm"] = x = layer_norm(x, *vit.enc_norm)
    if gemma3:
        keep["pooled"] = x = avg_pool(x, vit.grid)
        x = x.copy()
        rows = slice(None) if mode == "reference" else slice(0, 1)
        x[rows] = rmsnorm(x[rows], vit.mm_norm)
        keep["pre_proj"] = x
    keep["image_tokens"] = out = linear(x, vit.w_head, vit.b_head, bf16).astype(F32)
    return out


# -- the image in the prompt ---------------------------------------------------------------------
def image_slots(tokens: np.ndarray, pos: np.ndarray, wrapping: int, rows: int) -> np.ndarray:
    """For each token, the image row that replaces its embedding, or -1: the k-th -2 placeholder
    takes row k (Gemma 3); positions 0..rows-1 take rows 0..rows-1 (PaliGemma)."""
    if wrapping == PALIGEMMA:
        return np.where(pos < rows, pos, -1)
    slots = np.full(tokens.shape, -1)
    at = np.flatnonzero(tokens == IMAGE_ID)
    if at.size != rows:
        raise ValueError(f"the prompt has {at.size} image placeholders ({IMAGE_ID}), the image {rows} rows; "
                         "build it with Model.wrap(text, image=...)")
    slots[at] = np.arange(rows)
    return slots


def prefix_mask(prefix_end: int) -> MaskFn:
    """PaliGemma's prefix-LM mask (gemma.cpp ``attention.cc``): a query sees keys up to
    max(its position, prefix_end - 1), and none older than its layer's window."""
    def mask(q_pos: np.ndarray, k_pos: np.ndarray, window: int) -> np.ndarray:
        q, k = np.asarray(q_pos)[:, None], np.asarray(k_pos)[None, :]
        return (k <= np.maximum(q, prefix_end - 1)) & (k > q - window)
    return mask


def image_block_mask(lo: int, hi: int) -> MaskFn:
    """Causal sliding-window attention, plus every position of the image lo..hi-1 seeing the
    whole image (the published Gemma 3's bidirectional attention within an image)."""
    def mask(q_pos: np.ndarray, k_pos: np.ndarray, window: int) -> np.ndarray:
        q, k = np.asarray(q_pos)[:, None], np.asarray(k_pos)[None, :]
        causal = (k <= q) & (k > q - window)
        return causal | ((q >= lo) & (q < hi) & (k >= lo) & (k < hi))
    return mask


def embed_prompt(tokens: np.ndarray, pos: np.ndarray, rows: np.ndarray | None, wrapping: int, mode: str,
                 embed: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, MaskFn | None]:
    """The residual stream of a chunk of ``tokens`` at positions ``pos``, with image ``rows`` in
    place of the placeholders (unscaled), and the text layers' mask for it (None: causal).
    ``embed(ids)`` gives the scaled text embeddings."""
    if rows is None:
        return embed(tokens), None
    slots = image_slots(tokens, pos, wrapping, rows.shape[0])
    at = slots >= 0
    x = embed(np.where(at, 0, tokens))
    x[at] = rows[slots[at]]
    if wrapping == PALIGEMMA:
        return x, prefix_mask(int(pos[-1]) + 1)  # the chunk is the prompt, all of it the prefix
    if mode == "reference":
        return x, image_block_mask(int(pos[at].min()), int(pos[at].max()) + 1)
    return x, None


def describe(cfg, mode: str) -> str:
    """One line: what ``mode`` does with images for this file's family."""
    if cfg.wrapping == PALIGEMMA:
        return ("prefix attention over image and prompt; " +
                ("the last prompt token runs again before the first new token, as gemma.cpp" if mode == "gemmacpp"
                 else "the first new token from the last prompt position, as the published model"))
    if mode == "gemmacpp":
        return "soft-embedding norm on the first image token only, causal attention over the image, as gemma.cpp"
    return "soft-embedding norm on every image token, bidirectional attention within the image, as the published model"


def refeeds_last_token(wrapping: int, mode: str) -> bool:
    """gemma.cpp runs the last prompt token again at position len(prompt) after a PaliGemma prefix
    prefill and samples the first new token there (``gemma.cc`` ``attend_to_last_token``)."""
    return wrapping == PALIGEMMA and mode == "gemmacpp"


def wrap(tokenizer, wrapping: int, text: str, image_rows: int | None) -> list[int]:
    """The ids gemma.cpp's ``WrapAndTokenize`` builds at position 0: with an image, Gemma 3
    ``BOS <start_of_turn>user\\n TEXT \\n\\n<start_of_image> -2 x N <end_of_image>\\n\\n
    <end_of_turn>\\n <start_of_turn>model\\n``, PaliGemma ``0 x N BOS TEXT \\n``; without, the chat
    template for GEMMA_IT/GEMMA_VLM and ``BOS TEXT`` otherwise."""
    enc = lambda s: tokenizer.encode(s, bos=False)  # noqa: E731
    ids = enc(text)
    if image_rows is not None:
        if wrapping == PALIGEMMA:
            return [PALI_ID] * image_rows + [BOS_ID] + ids + enc("\n")
        if wrapping != GEMMA_VLM:
            raise ValueError("this file's wrapping does not take images (GEMMA_VLM or PALIGEMMA)")
        ids = ids + enc("\n\n<start_of_image>") + [IMAGE_ID] * image_rows + enc("<end_of_image>\n\n")
    if wrapping in (0, GEMMA_VLM):  # GEMMA_IT and GEMMA_VLM: GemmaChatTemplate::Apply
        return [BOS_ID] + enc("<start_of_turn>user\n") + ids + enc("<end_of_turn>\n") + enc("<start_of_turn>model\n")
    return [BOS_ID] + ids


__all__ = ["VISION_MODES", "VitWeights", "load_vit", "check_vit", "read_image", "read_ppm", "resize", "patches",
           "encode", "avg_pool", "layer_norm", "linear", "image_slots", "prefix_mask", "image_block_mask",
           "embed_prompt", "refeeds_last_token", "wrap", "num_image_tokens"]
