"""Regenerate ``tests/fuzz/seeds/``: a short seed corpus for the coverage-guided harness.

Seeds are small on purpose (coverage-guided fuzzers mutate every byte they are given):

* ``meta-<fixture>.sbs`` -- the ``config`` and ``toc`` blobs of each gemma.cpp-written corpus
  file (so the fuzzer starts from real gemma.cpp serializations of every family and type),
  repacked without tensor bytes as a pre-2025-style V1 store (no 64 KiB end padding);
* ``tiny-*.sbs`` -- complete, valid tiny models from the spec-derived generator: every era
  (E0 prefixed multi-file, E1 prefixed single-file, V1, V2), every weight type, a ViT model.

Run: ``python -m tests.fuzz.make_seeds`` (deterministic).
"""
from __future__ import annotations

from pathlib import Path

import sbs_tools
from sbs_tools.config import LayerConfig, ModelConfig, VitConfig

from . import model as M

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
FIXTURES = HERE.parents[1] / "fixtures"


def _cfg(*, vit: bool = False, qk: bool = False, weight: int = M.BF16, layers: int = 1) -> ModelConfig:
    lc = LayerConfig(model_dim=8, ff_hidden_dim=8, heads=2, kv_heads=1, qkv_dim=4, post_norm=1, use_qk_norm=qk)
    v = VitConfig()
    if vit:
        v = VitConfig(model_dim=8, seq_len=4, patch_width=2, image_size=4,
                      layer_configs=[LayerConfig(model_dim=8, ff_hidden_dim=8, heads=1, kv_heads=1, qkv_dim=4,
                                                 type=1)])
    return ModelConfig(display_name="seed", model=14 if vit else (15 if qk else 7), wrapping=2 if vit else 0,
                       weight=weight, num_layers=layers, model_dim=8, vocab_size=16, max_seq_len=16,
                       layer_configs=[lc] * layers, attention_window_sizes=[16] * layers, vit_config=v,
                       eos_id=1, secondary_eos_id=106)


def tiny_seeds() -> dict[str, bytes]:
    out = {}
    for name, kw, era, layout, forms in [
        ("tiny-v2-bf16", dict(), "single", "v2", ("ein", "ein", "ein")),
        ("tiny-v1-sfp-split", dict(weight=M.SFP, layers=2), "single", "v1", ("w", "split", "split")),
        ("tiny-v1-i8-qk", dict(weight=M.I8, qk=True), "single", "v1", ("ein", "ein", "ein")),
        ("tiny-v1-nuq", dict(weight=M.NUQ), "single", "v1", ("ein", "ein", "ein")),
        ("tiny-v1-f32", dict(weight=M.F32), "single", "v1", ("ein", "ein", "ein")),
        ("tiny-v1-vit", dict(vit=True, qk=True), "single", "v1", ("ein", "ein", "ein")),
        ("tiny-e0-sfp", dict(weight=M.SFP), "e0", "v1", ("ein", "ein", "ein")),
        ("tiny-e1-sfp", dict(weight=M.SFP), "e1", "v1", ("ein", "ein", "ein")),
    ]:
        cfg = _cfg(**kw)
        plan = M.ModelPlan(cfg, M.tensor_plan(cfg, cfg.weight, [forms] * cfg.num_layers), None, layout, era, seed=1)
        data = M.build(plan)
        if era == "single" and layout == "v1":  # drop the 64 KiB end padding: smaller seeds, same structure
            data = _unpad_v1(data)
        out[name] = data
    return out


def _unpad_v1(data: bytes) -> bytes:
    import struct

    n = struct.unpack_from("<I", data, 4)[0]
    ends = [sum(struct.unpack_from("<QQ", data, 16 + 16 * n + 16 * i)) for i in range(n)]
    end = M.round_up(max(ends), 256)
    out = bytearray(data[:end])
    struct.pack_into("<Q", out, 8, end)
    return bytes(out)


def meta_seeds() -> dict[str, bytes]:
    out = {}
    for p in sorted(FIXTURES.glob("corpus/v*/*.sbs")):
        with sbs_tools.open(p) as f:
            blobs = [("config", f.raw("config").tobytes()), ("tokenizer", b"unavailable"),
                     ("toc", f.raw("toc").tobytes())]
        out[f"meta-{p.parent.name}-{p.stem}"] = M.pack(blobs, "v1", pad_end=False)
    return out


def main() -> None:
    SEEDS.mkdir(exist_ok=True)
    for old in SEEDS.glob("*.sbs"):
        old.unlink()
    seeds = {**tiny_seeds(), **meta_seeds()}
    for name, data in seeds.items():
        (SEEDS / f"{name}.sbs").write_bytes(data)
    print(f"{len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes in {SEEDS}")


if __name__ == "__main__":
    main()
