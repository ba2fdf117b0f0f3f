"""Write full-size synthetic ``.sbs`` files shaped like real gemma.cpp models, streaming.

The config is gemma.cpp's canonical one (:mod:`sbs_tools.canonical`: Gemma 2
2B, Gemma 3 4B with its 27-layer ViT, ...); the tensor list, shapes and
element types are what gemma.cpp's exporter writes for it
(:func:`sbs_tools.tensors.canonical_tensors`; big LLM matrices in the weight
type, embedding/norms/vision tower BF16, biases and ``img_pos_emb`` F32). Every
tensor is streamed through :meth:`sbs_tools.writer.BlobWriter.add_stream` in
chunks of ``--chunk-mib``, so peak memory is a few chunks whatever the file
size (the 8.5 GB Gemma 3 4B BF16 file is written in < 200 MB of RSS).

Values are random but valid and plausible, drawn directly as bit patterns
(no encoder runs over gigabytes): BF16/F32 get a random sign and mantissa and
an exponent in [2^-11, 2^-4); SFP bytes lie in the "large" range [2^-7, 1.875]
(bit 6 set, so never the reserved 0x80) where scaled weights live; NUQ
groups get ascending 16-entry SFP cluster tables and random 4-bit indices; I8
groups a finite bf16 ``inv_scale`` and an integral bf16 zero point. Each
tensor has its own random stream derived from ``(seed, tensor index)``, so a
file is a pure function of (model, weight, scale, seed, layout).

``--scale s`` multiplies every dimension (model/ff/head/vocab dims, ViT dims
and image side) by ``s`` and keeps layer and head counts, so the tensor count
and the size of ``config``/``toc`` stay those of the full model while the
bytes shrink by about ``s**2``: ``--scale 1`` is full size, ``--scale 0.01``
gives a ~1 MB file with the same 400-odd tensors (what the flat-open
benchmark and the smoke test use).

Usage::

    python bench/make_large.py gemma3-4b sfp -o bench/data/gemma3-4b-sfp.sbs
    python bench/make_large.py gemma2-2b bf16 --scale 0.45 -o /tmp/g2-1gb.sbs
    python bench/make_large.py --list
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sbs_tools.canonical import canonical_config  # noqa: E402
from sbs_tools.config import ModelConfig  # noqa: E402
from sbs_tools.tensors import TensorSpec, canonical_tensors  # noqa: E402
from sbs_tools.toc import TocRecord, encode_toc  # noqa: E402
from sbs_tools.types import Type, packed_bytes, type_from_name  # noqa: E402
from sbs_tools.writer import BlobWriter  # noqa: E402

#: Short model names -> gemma.cpp Model enum names.
MODELS = {
    "gemma2-2b": "GEMMA2_2B",
    "gemma3-4b": "GEMMA3_4B",
    "gemma3-1b": "GEMMA3_1B",
    "gemma3-270m": "GEMMA3_270M",
    "gemma2-9b": "GEMMA2_9B",
    "gemma3-12b": "GEMMA3_12B",
    "gemma3-27b": "GEMMA3_27B",
}
WEIGHTS = ("sfp", "bf16", "f32", "nuq", "i8")
#: LLM matrices that take the file's weight type (gemma.cpp's exporter; same rule as sbs convert).
BIG_MATRICES = frozenset({"att_ein", "att_w", "qkv_ein", "qkv1_w", "qkv2_w", "gating_ein", "gating1_w",
                          "gating2_w", "linear_w"})
MOCK_TOKENIZER = b"unavailable"
DIM_MULTIPLE = 8


# -- config and tensor plan ---------------------------------------------------------------------

def _dim(x: int, s: float) -> int:
    if s == 1.0:
        return x
    return max(DIM_MULTIPLE, int(round(x * s / DIM_MULTIPLE)) * DIM_MULTIPLE)


def synthetic_config(model: str, weight: str, scale: float = 1.0) -> ModelConfig:
    """gemma.cpp's canonical config for ``model``/``weight``, every dimension times ``scale``."""
    cfg = canonical_config(MODELS.get(model, model), weight)
    if scale == 1.0:
        return cfg
    if not 0 < scale <= 1:
        raise ValueError(f"--scale must be in (0, 1], not {scale}")

    def layer(lc):
        return replace(lc, model_dim=_dim(lc.model_dim, scale), ff_hidden_dim=_dim(lc.ff_hidden_dim, scale),
                       qkv_dim=_dim(lc.qkv_dim, scale))

    cfg.model_dim = _dim(cfg.model_dim, scale)
    cfg.vocab_size = _dim(cfg.vocab_size, scale)
    cfg.layer_configs = [layer(lc) for lc in cfg.layer_configs]
    cfg.display_name = f"{cfg.display_name}_x{scale:g}"[:64]
    v = cfg.vit_config
    if v.layer_configs:
        side = v.image_size // v.patch_width
        side = max(4, int(round(side * scale / 4)) * 4)
        v.model_dim = _dim(v.model_dim, scale)
        v.image_size = side * v.patch_width
        v.seq_len = side * side
        v.layer_configs = [layer(lc) for lc in v.layer_configs]
    return cfg


def tensor_type(spec: TensorSpec, weight: Type) -> Type:
    """Element type gemma.cpp's exporter writes for ``spec`` in a ``weight`` file."""
    if spec.kind == "bias" or spec.base == "img_pos_emb" or spec.types == frozenset({Type.F32}):
        return Type.F32
    if weight == Type.F32:
        return Type.F32
    if spec.base in BIG_MATRICES and spec.layer_type == "kGemma":
        return weight
    return Type.BF16


def plan(cfg: ModelConfig) -> list[TocRecord]:
    """Toc records (name, type, shape) of every tensor, in gemma.cpp's writing order."""
    weight = Type(cfg.weight)
    return [TocRecord.make(s.name, tensor_type(s, weight), s.rows, s.cols) for s in canonical_tensors(cfg)]


# -- random but valid tensor bytes --------------------------------------------------------------

def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence([seed, index])))


def _random_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random uint64 words covering ``n`` bytes (the fastest numpy draw: ~1.5 GB/s with SFC64)."""
    return rng.bit_generator.random_raw(-(-n // 8))


def _random_u8(rng: np.random.Generator, n: int) -> np.ndarray:
    return _random_words(rng, n).view(np.uint8)[:n]


def _bf16_bits(w: np.ndarray) -> None:
    """Random uint64 words -> bf16 patterns in place: random sign and mantissa, exponent 2^-11 .. 2^-4
    (finite). Four bf16 lanes per word; no lane carries into the next (max 0x83FF + 0x3A00)."""
    np.bitwise_and(w, np.uint64(0x83FF_83FF_83FF_83FF), out=w)  # sign, 3 low exponent bits, mantissa
    np.add(w, np.uint64(0x3A00_3A00_3A00_3A00), out=w)  # biased exponent 116 .. 123


def _f32_bits(w: np.ndarray) -> None:
    """Random uint64 words -> float32 patterns in place, same magnitudes as :func:`_bf16_bits`."""
    np.bitwise_and(w, np.uint64(0x83FF_FFFF_83FF_FFFF), out=w)
    np.add(w, np.uint64(0x3A00_0000_3A00_0000), out=w)


def _sfp_bytes(w: np.ndarray) -> None:
    """Random uint64 words -> SFP codes in place: bit 6 set in every byte, i.e. the "large" range
    [2^-7, 1.875] where almost every value of a scaled weight tensor lies; never the reserved 0x80."""
    np.bitwise_or(w, np.uint64(0x4040_4040_4040_4040), out=w)


def _sfp_lut() -> np.ndarray:
    from sbs_tools.codecs import sfp

    return np.asarray(sfp.lut())


def _nuq_tables(rng: np.random.Generator, count: int = 4096) -> np.ndarray:
    """``count`` valid NUQ cluster tables: 16 SFP codes each, ascending by decoded value."""
    words = _random_words(rng, 16 * count)
    _sfp_bytes(words)
    codes = words.view(np.uint8).reshape(count, 16)
    order = np.argsort(_sfp_lut()[codes], axis=1, kind="stable")
    return np.take_along_axis(codes, order, axis=1)


def _i8_headers(rng: np.random.Generator, count: int = 4096) -> np.ndarray:
    """``count`` I8 group headers: bf16 inv_scale in [2^-12, 2^-8), bf16 integral zero point."""
    inv = (np.ldexp(1.0 + rng.random(count), rng.integers(-12, -8, count))).astype(np.float32)
    zp = rng.integers(-128, 128, count).astype(np.float32)
    hdr = np.empty((count, 2), dtype="<u2")
    hdr[:, 0] = inv.view(np.uint32) >> 16
    hdr[:, 1] = zp.view(np.uint32) >> 16
    return hdr.view(np.uint8).reshape(count, 4)


def tensor_chunks(rec: TocRecord, seed: int, index: int, chunk_bytes: int) -> Iterator[np.ndarray]:
    """The packed bytes of tensor ``rec`` as a stream of uint8 arrays of at most ~``chunk_bytes``."""
    t = Type(rec.type)
    n = rec.rows * rec.cols
    rng = _rng(seed, index)
    if t in (Type.NUQ, Type.I8):
        group, gbytes, hdr_len = (256, 144, 16) if t == Type.NUQ else (128, 132, 4)
        heads = _nuq_tables(rng) if t == Type.NUQ else _i8_headers(rng)
        groups_total = -(-n // group)
        per_chunk = max(1, chunk_bytes // gbytes)
        g = 0
        while g < groups_total:
            k = min(per_chunk, groups_total - g)
            full = k if g + k < groups_total or n % group == 0 else k - 1
            nbytes = packed_bytes(t, min(n, (g + k) * group)) - packed_bytes(t, g * group)
            raw = _random_u8(rng, nbytes)
            body = raw[:full * gbytes].reshape(full, gbytes)
            body[:, :hdr_len] = heads[rng.integers(0, len(heads), full)]
            if full < k:  # a final partial group
                raw[full * gbytes:full * gbytes + hdr_len] = heads[0]
                last = n - (groups_total - 1) * group
                if t == Type.NUQ and last % 2:
                    raw[-1] &= 0x0F  # the unused high nibble of an odd final value is zero
            yield raw
            g += k
        return
    item = {Type.F32: 4, Type.BF16: 2, Type.SFP: 1}[t]
    per_chunk = max(1, chunk_bytes // item)
    done = 0
    while done < n:
        k = min(per_chunk, n - done)
        words = _random_words(rng, k * item)
        (_bf16_bits if t == Type.BF16 else _f32_bits if t == Type.F32 else _sfp_bytes)(words)
        yield words.view(np.uint8)[:k * item]
        done += k


# -- the file -----------------------------------------------------------------------------------

def make_large(path: str | os.PathLike, model: str = "gemma3-4b", weight: str = "sfp", *, scale: float = 1.0,
               seed: int = 0, layout: str = "v2", chunk_mib: int = 16, tokenizer: bytes | None = None,
               progress: bool = False) -> dict:
    """Write the synthetic file; returns a small description (path, bytes, tensors, largest tensor, seconds)."""
    cfg = synthetic_config(model, weight, scale)
    records = plan(cfg)
    chunk = chunk_mib << 20
    t0 = time.perf_counter()
    w = BlobWriter(path, layout)
    written = 0
    try:
        for i, rec in enumerate(records):
            nbytes = packed_bytes(rec.type, rec.rows * rec.cols)
            w.add_stream(rec.name, nbytes, lambda rec=rec, i=i: tensor_chunks(rec, seed, i, chunk))
            written += nbytes
            if progress and (i % 25 == 0 or i == len(records) - 1):
                print(f"\r  {i + 1}/{len(records)} tensors, {written / 1e9:.2f} GB", end="", file=sys.stderr,
                      flush=True)
        w.add("config", cfg.to_bytes())
        w.add("tokenizer", tokenizer or MOCK_TOKENIZER)
        w.add("toc", encode_toc(records))
    except BaseException:
        w.abort()
        raise
    size = w.finish()
    if progress:
        print(file=sys.stderr)
    largest = max(records, key=lambda r: packed_bytes(r.type, r.rows * r.cols))
    return {"path": os.fspath(path), "model": model, "weight": weight, "scale": scale, "seed": seed,
            "layout": layout, "file_bytes": size, "tensors": len(records),
            "largest_tensor": largest.name,
            "largest_tensor_bytes": packed_bytes(largest.type, largest.rows * largest.cols),
            "seconds": time.perf_counter() - t0}


def expected_size(model: str, weight: str, scale: float = 1.0) -> int:
    """Approximate file size (tensor bytes plus blob padding) without writing anything."""
    recs = plan(synthetic_config(model, weight, scale))
    return sum(-(-packed_bytes(r.type, r.rows * r.cols) // 256) * 256 for r in recs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", choices=sorted(MODELS), help="model shape")
    ap.add_argument("weight", nargs="?", choices=WEIGHTS, help="weight type of the big LLM matrices")
    ap.add_argument("-o", "--output", help="output path (default bench/data/<model>-<weight>[-x<scale>].sbs)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every dimension by this (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", choices=("v1", "v2"), default="v2")
    ap.add_argument("--chunk-mib", type=int, default=16, help="bytes generated per write (default 16 MiB)")
    ap.add_argument("--tokenizer", type=Path, help="file to store as the tokenizer blob (default: the "
                                                   "'unavailable' mock)")
    ap.add_argument("--list", action="store_true", help="print the full-size file sizes and exit")
    args = ap.parse_args(argv)
    if args.list:
        for m in MODELS:
            sizes = "  ".join(f"{wt} {expected_size(m, wt) / 1e9:5.2f} GB" for wt in WEIGHTS)
            print(f"{m:12} {sizes}")
        return 0
    if not args.model or not args.weight:
        ap.error("model and weight are required")
    type_from_name(args.weight)
    out = args.output or (Path(__file__).resolve().parent / "data" /
                          f"{args.model}-{args.weight}{'' if args.scale == 1 else f'-x{args.scale:g}'}.sbs")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tok = args.tokenizer.read_bytes() if args.tokenizer else None
    info = make_large(out, args.model, args.weight, scale=args.scale, seed=args.seed, layout=args.layout,
                      chunk_mib=args.chunk_mib, tokenizer=tok, progress=sys.stderr.isatty())
    print(f"{info['path']}: {info['file_bytes'] / 1e9:.3f} GB, {info['tensors']} tensors, largest "
          f"{info['largest_tensor']} {info['largest_tensor_bytes'] / 1e6:.0f} MB, "
          f"{info['seconds']:.1f} s ({info['file_bytes'] / 1e9 / info['seconds']:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
