"""What every checkpoint reader provides, and how its self-description becomes a gemma.cpp config.

A reader (:class:`Source`) describes the network it holds as an
:class:`Arch` (dims, layer pattern, caps, what it knows about query scaling
and RoPE) and hands out gemma.cpp tensors by name as float32, already in
gemma.cpp's layout (:meth:`Source.get`), or row chunks of them
(:meth:`Source.chunks`) for tensors too large to hold twice.

:func:`resolve_config` turns an :class:`Arch` into the ``ModelConfig`` to
write: the canonical config of the gemma.cpp model with that architecture
(``canonical.match_canonical``), or of the model named by ``--model`` (which
must then fit), or — for architectures gemma.cpp has no canonical config for,
such as small test models — a config built from the checkpoint itself under
the nearest model enum of the same family.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from .. import canonical as C
from ..config import GEMMA3_LM_MODELS, LayerConfig, ModelConfig, VitConfig
from ..deduce import VIT, model_for
from ..tensors import TensorSpec
from ..types import Type
from . import ConvertError


@dataclass
class Arch:
    """A checkpoint's own description of its network (before matching to gemma.cpp)."""

    family: int  # 2 (Gemma 2 / PaliGemma 2) or 3 (Gemma 3)
    num_layers: int
    model_dim: int
    vocab_size: int  # rows of the checkpoint's embedding
    max_seq_len: int
    heads: int
    kv_heads: int
    qkv_dim: int
    ff_hidden_dim: list[int]  # per layer
    windows: list[int]  # per layer; 0 = global attention
    att_cap: float = 0.0
    final_cap: float = 0.0
    query_scale: int | None = None  # None: the checkpoint does not say (GGUF)
    rope_global: float | None = None
    rope_local: float | None = None
    vit: VitConfig | None = None  # vision tower present in the checkpoint
    paligemma: bool = False
    name: str = ""
    wrapping_hint: int | None = None  # GEMMA_IT / GEMMA_PT if the checkpoint tells, else None
    wrapping_reason: str = ""
    model_hint: int | None = None  # model enum recorded by `sbs export --hf` (keeps custom configs' enum)
    display_name: str | None = None  # likewise, the original display name
    eos_ids: tuple[int, int] | None = None  # (eos_id, secondary_eos_id) if the checkpoint says


@dataclass
class Resolved:
    """The config chosen for the output and why."""

    config: ModelConfig
    canonical: bool
    notes: list[str] = field(default_factory=list)
    vocab_rows: int = 0  # how many embedding rows to write (may drop padding rows of the checkpoint)


class Source:
    """Base class of checkpoint readers. Subclasses set ``kind``, ``path``, ``arch``, ``notes``."""

    kind = "?"
    path = ""
    arch: Arch
    notes: list[str]

    def tokenizer(self) -> bytes | None:
        """Serialized SentencePiece model found with the checkpoint, or None."""
        return None

    def has(self, spec: TensorSpec) -> bool:
        """Whether the checkpoint can produce ``spec`` (optional tensors may be absent)."""
        return True

    def get(self, spec: TensorSpec, config: ModelConfig) -> np.ndarray:
        """The tensor as float32 ``(spec.rows, spec.cols)`` in gemma.cpp's layout."""
        raise NotImplementedError

    def blocks(self, spec: TensorSpec, config: ModelConfig, t: Type) -> bytes | None:
        """``spec`` encoded as block type ``t`` straight from the checkpoint's own blocks, or None when the
        checkpoint's storage does not allow it (then :meth:`get` and the encoder are used)."""
        return None

    def block_notes(self) -> list[str]:
        """Notes on what :meth:`blocks` imports did (what they lost), added after all tensors are written."""
        return []

    def chunks(self, spec: TensorSpec, config: ModelConfig, rows: int) -> Iterator[np.ndarray] | None:
        """Row chunks of at most ``rows`` rows, or None if this tensor is only available whole."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _layer(arch: Arch, i: int) -> LayerConfig:
    g3 = arch.family == 3
    return LayerConfig(model_dim=arch.model_dim, ff_hidden_dim=arch.ff_hidden_dim[i], heads=arch.heads,
                       kv_heads=arch.kv_heads, qkv_dim=arch.qkv_dim, optimized_gating=g3,
                       post_norm=C.POST_NORM_SCALE, use_qk_norm=g3)


def candidate_config(arch: Arch, model: int, weight: Type, wrapping: int) -> ModelConfig:
    """A config that describes exactly the checkpoint (not necessarily a canonical one)."""
    n = arch.num_layers
    if len(arch.windows) != n or len(arch.ff_hidden_dim) != n:
        raise ConvertError(f"checkpoint describes {n} layers but {len(arch.windows)} windows and "
                           f"{len(arch.ff_hidden_dim)} FFW sizes", code="bad-checkpoint")
    g3 = arch.family == 3
    cfg = ModelConfig(
        display_name=(arch.display_name or arch.name or f"custom_gemma{arch.family}")[:64], model=model,
        wrapping=wrapping,
        weight=int(weight), num_layers=n, model_dim=arch.model_dim, vocab_size=arch.vocab_size,
        max_seq_len=arch.max_seq_len, att_cap=float(arch.att_cap), final_cap=float(arch.final_cap),
        query_scale=C.SQRT_KEY_SIZE if arch.query_scale is None else arch.query_scale,
        layer_configs=[_layer(arch, i) for i in range(n)],
        attention_window_sizes=[w if 0 < w < arch.max_seq_len else arch.max_seq_len for w in arch.windows],
        eos_id=arch.eos_ids[0] if arch.eos_ids else 1,
        secondary_eos_id=arch.eos_ids[1] if arch.eos_ids else (106 if g3 else 107),
        scale_base_names=list(C.SCALE_BASE_NAMES))
    if arch.vit is not None:
        cfg.vit_config = replace(arch.vit, layer_configs=[replace(lc) for lc in arch.vit.layer_configs])
    return cfg


def _display_ascii(name: str) -> str:
    s = "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in name)
    return s.replace(" ", "_")


def _family_default(arch: Arch) -> int:
    # gemma.cpp 3ed403e's deduction: the model numbers every build since 2025-09-05 accepts
    deduced = model_for(arch.num_layers, VIT if arch.vit is not None else 0, "2b4c16e")
    if deduced in C.ARCHS and C.ARCHS[deduced].family == arch.family:
        return deduced
    if arch.family == 2:
        return 10 if arch.paligemma else 7
    return 14 if arch.vit is not None else 15


def resolve_config(arch: Arch, weight: Type, *, specifier: str | None = None,
                   wrapping: int | None = None) -> Resolved:
    """Choose the output config for a checkpoint (see the module docstring).

    ``specifier`` (``--model``) names the gemma.cpp model, and optionally
    weight type and wrapping (``gemma3-270m-bf16-pt``); its weight type must
    agree with ``weight``. ``wrapping`` overrides everything else.
    """
    notes: list[str] = []
    spec_wrap = None
    if specifier:
        m, t, w = C.parse_specifier(specifier)
        if m not in C.ARCHS:
            known = ", ".join(C.MODEL_PREFIX[x] for x in sorted(C.ARCHS))
            raise ConvertError(f"--model {specifier!r}: {C.MODEL_NAMES[m]} is a canonical gemma.cpp model, but "
                               f"convert reads Gemma 2 / PaliGemma 2 / Gemma 3 checkpoints only ({known})",
                               code="bad-arguments")
        if t != weight:
            raise ConvertError(f"--model {specifier!r} names weight type {C.GEMMA_TYPE_NAMES[t]} but --type is "
                               f"{C.GEMMA_TYPE_NAMES[weight]}", code="bad-arguments")
        has_suffix = any(s in specifier[len(C.MODEL_PREFIX[m]):] for s in C.WRAPPING_SUFFIX.values())
        spec_wrap = w if has_suffix else None
        models = [m]
    else:
        models = sorted(C.ARCHS)  # the models a Gemma 2 / Gemma 3 checkpoint can be (not the 2026 families)
    with_vit = arch.vit is not None

    probe = candidate_config(arch, 0, weight, C.GEMMA_PT)
    matches = []
    for m in models:
        ref = C.canonical_config(m, weight)
        if not with_vit:
            ref.vit_config = VitConfig()
        # The query scaling is a constant of the math, not of the weights: gemma.cpp's canonical value wins
        # (noted below when the checkpoint's own definition differs).
        p = replace(probe, vocab_size=ref.vocab_size, query_scale=ref.query_scale)
        diffs = C.architecture_differences(p, ref, with_vit=with_vit)
        if arch.vocab_size < ref.vocab_size:
            diffs.append(f"vocab_size: {arch.vocab_size} < {ref.vocab_size}")
        if not diffs:
            matches.append(m)
        elif specifier:
            raise ConvertError(f"the checkpoint does not fit --model {specifier}: " + "; ".join(diffs[:6])
                               + (" ..." if len(diffs) > 6 else ""), code="config-mismatch")
    if len(matches) > 1 and not with_vit:
        matches = [m for m in matches if m not in C.PALIGEMMA_MODELS] or matches
    if len(matches) > 1:  # a text-only Gemma 3 fits GEMMA3_xB (ViT dropped) and GEMMA3_xB_LM alike: keep the base,
        # whose canonical config sets use_global_timescale (the _LM ones do not: addendum §6.3)
        matches = [m for m in matches if m not in GEMMA3_LM_MODELS] or matches
    if len(matches) > 1 and arch.paligemma:
        matches = [m for m in matches if m in C.PALIGEMMA_MODELS] or matches

    if wrapping is not None:
        wrap_src, wrap_why = wrapping, "--wrapping"
    elif spec_wrap is not None:
        wrap_src, wrap_why = spec_wrap, "--model"
    else:
        wrap_src, wrap_why = None, ""

    if len(matches) == 1:
        m = matches[0]
        default = C.default_wrapping(m)
        if wrap_src is None:
            if default in (C.GEMMA_VLM, C.PALIGEMMA):
                wrap_src, wrap_why = default, "gemma.cpp's default for this model"
            elif arch.wrapping_hint is not None:
                wrap_src, wrap_why = arch.wrapping_hint, arch.wrapping_reason
            else:
                wrap_src, wrap_why = C.GEMMA_PT, "no sign of instruction tuning in the checkpoint"
        cfg = C.canonical_config(m, weight, wrap_src)
        if not with_vit and cfg.vit_config.layer_configs:
            cfg.vit_config = VitConfig()
            notes.append(f"the checkpoint has no vision tower: writing {cfg.model_name} as text-only "
                         "(empty vit_config; gemma.cpp then needs no image tensors)")
        if arch.max_seq_len and arch.max_seq_len != cfg.max_seq_len:
            notes.append(f"the checkpoint's context length is {arch.max_seq_len}; gemma.cpp's canonical "
                         f"{cfg.model_name} config uses {cfg.max_seq_len}")
        if arch.vocab_size > cfg.vocab_size:
            notes.append(f"embedding has {arch.vocab_size} rows; keeping gemma.cpp's {cfg.vocab_size} "
                         f"(dropping {arch.vocab_size - cfg.vocab_size} padding rows)")
        notes.append(f"config: canonical {cfg.model_name} ({cfg.specifier}), wrapping "
                     f"{C.WRAPPING_NAMES[cfg.wrapping]} ({wrap_why})")
        if arch.query_scale is not None and arch.query_scale != cfg.query_scale:
            qs = {C.SQRT_KEY_SIZE: "1/sqrt(head_dim)", C.SQRT_MODEL_DIM_DIV_NUM_HEADS: "1/sqrt(model_dim/heads)"}
            notes.append(f"gemma.cpp scales queries of {cfg.model_name} by {qs[cfg.query_scale]}; the checkpoint's "
                         f"definition uses {qs[arch.query_scale]}")
        rope = C.rope_discrepancy(cfg)
        if rope:
            notes.append(rope)
        return Resolved(cfg, True, notes, cfg.vocab_size)

    # No canonical model has this architecture: describe the checkpoint itself.
    hint = arch.model_hint
    m = hint if hint in C.ARCHS and C.ARCHS[hint].family == arch.family else _family_default(arch)
    if wrap_src is None:
        wrap_src = arch.wrapping_hint if arch.wrapping_hint is not None else C.GEMMA_PT
        if arch.vit is not None:
            wrap_src = C.PALIGEMMA if arch.paligemma else C.GEMMA_VLM
    cfg = candidate_config(arch, m, weight, wrap_src)
    cfg.display_name = _display_ascii(cfg.display_name)
    notes.append(f"no gemma.cpp model has this architecture ({arch.num_layers} layers, D={arch.model_dim}, "
                 f"vocab {arch.vocab_size}); writing the checkpoint's own config under model enum "
                 f"{cfg.model_name} — gemma.cpp will warn that it cannot deduce the model")
    if arch.query_scale is None:
        notes.append("the checkpoint does not record the query scaling; assuming 1/sqrt(head_dim)")
    return Resolved(cfg, False, notes, arch.vocab_size)


def windows_from_pattern(num_layers: int, window: int, pattern: int) -> list[int]:
    """Per-layer windows (0 = global) when every ``pattern``-th layer is global and the others
    attend to ``window`` tokens; ``pattern <= 1`` means all layers are local, ``window == 0`` all global."""
    if not window:
        return [0] * num_layers
    if pattern <= 1:
        return [window] * num_layers
    return [0 if (i % pattern) == pattern - 1 else window for i in range(num_layers)]
