"""gemma.cpp's canonical :class:`~sbs_tools.config.ModelConfig` for every model it knows.

gemma.cpp (``gemma/configs.cc``) builds one fixed config per ``Model`` enum
value; the values here are the same numbers (spec §3, §5.3, §8; addendum §1.2
for the 2026 models, whose table is :mod:`sbs_tools.canonical_2026`). Use this
module whenever a config must be made up rather than read: converting
checkpoints, repairing pre-2025 files that carry no ``config`` blob, or telling
whether a file's config is the stock one.

Entry points::

    canonical_config("GEMMA3_270M", "bf16")            # wrapping: the model's default
    canonical_config(18, Type.SFP, wrapping="GEMMA_PT")
    from_specifier("gemma3-270m-bf16-it")               # ModelConfig(specifier), as gemma.cpp parses it
    match_canonical(cfg)                                # which canonical model has this architecture?
    config_differences(a, b)                            # field-by-field differences, for messages

Arguments accept names or numbers: a model as ``"GEMMA3_270M"``, its
specifier prefix ``"gemma3-270m"`` or ``18``; a weight type as ``"sfp"``,
``"SFP"``, :class:`~sbs_tools.types.Type` or ``3``; a wrapping as
``"GEMMA_PT"``, ``"pt"`` or ``1``.

Defaults follow gemma.cpp: with ``wrapping=None`` the wrapping is what
``ChooseWrapping`` picks without a ``--wrapping`` flag — ``PALIGEMMA`` for
PaliGemma 2, ``GEMMA_VLM`` for Gemma 3 1B/4B/12B/27B, otherwise ``GEMMA_IT``
(gemma.cpp's tokenizer-less default; pass ``"pt"`` for base models).
``ModelConfig(model, weight, wrapping)`` up to 1bdde1a stores the wrapping it
is given, even for VLM models; the 2026 builds keep a VLM model's own wrapping.

Generations: ``generation=None`` gives current gemma.cpp's values in the form
sbs writes (:meth:`ModelConfig.compact_form`, the compatible-writer recipe);
a generation key of ``sbs verify`` (``"2025-10-15"`` = 3ed403e, ``"2025-10-24"``
= 1bdde1a, ``"2026-07-10"``, ``"2026-08-27"``) gives exactly what that
generation's ``ModelConfig(model, weight, wrapping).Write()`` stores, so a
canonical config for a 3ed403e-era file serializes as 3ed403e did.

Quirk worth knowing (spec §8, §12): gemma.cpp 3ed403e applies the global
RoPE base 1e6 only to the models in :data:`GLOBAL_ROPE_1E6_MODELS`; Gemma 3
270M's global layers therefore run with base 10,000 in gemma.cpp, unlike the
original model definition (1e6). :func:`rope_bases` returns both.
"""
from __future__ import annotations

from dataclasses import dataclass, fields as dc_fields, replace
from typing import Iterable

from .canonical_2026 import SPECS, build as _build_2026
from .config import (CURRENT, GEMMA_IT, GEMMA_PT, GEMMA_VLM, MODEL_NAMES, MODEL_PREFIX, NEW_LAYER_FIELD_NAMES,
                     PALIGEMMA, POST_NORM_SCALE, SCALE_BASE_NAMES, SCHEMAS, SQRT_KEY_SIZE,
                     SQRT_MODEL_DIM_DIV_NUM_HEADS, WRAPPING_NAMES, LayerConfig, ModelConfig, VitConfig)
from .errors import ConfigError
from .types import GEMMA_TYPE_NAMES, Type, type_from_name

KVIT = 1  # LayerAttentionType::kVit since 2025-09-05 (2 before)

#: ``WrappingSuffix``: what a specifier carries for each wrapping.
WRAPPING_SUFFIX = {GEMMA_IT: "-it", GEMMA_PT: "-pt", GEMMA_VLM: "-vlm", PALIGEMMA: "-pg"}

GEMMA2_VOCAB = 256000
GEMMA3_VOCAB = 262144
PALIGEMMA_VOCAB = 256000 + 1024 + 128  # 257152: Gemma 2 vocabulary plus location and segmentation tokens

#: Models whose global layers gemma.cpp 3ed403e runs with RoPE base 1e6 (``IsVLM``).
GLOBAL_ROPE_1E6_MODELS = frozenset({14, 15, 16, 17})
#: Models whose *original* definition uses RoPE base 1e6 on global layers (all of Gemma 3).
REFERENCE_GLOBAL_ROPE_1E6_MODELS = frozenset({14, 15, 16, 17, 18})
PALIGEMMA_MODELS = frozenset({10, 11, 12, 13})


@dataclass(frozen=True)
class _Arch:
    """One LLM as gemma.cpp's config functions describe it."""

    display_name: str
    family: int  # 2 or 3
    model_dim: int
    ff_hidden_dim: int
    heads: int
    kv_heads: int
    qkv_dim: int
    num_layers: int
    vocab_size: int
    max_seq_len: int
    windows: tuple[int, ...]  # repeating pattern; 0 stands for max_seq_len (global layer)
    query_scale: int = SQRT_KEY_SIZE
    image_size: int = 0  # > 0: the model has gemma.cpp's SigLIP ViT at this resolution
    wrapping: int = GEMMA_IT  # what ConfigFromModel stores before the caller's wrapping overrides it
    global_rope_theta: float = 1e6  # set since PR #994 (2026-08-27); ConfigBaseGemmaV2 and Gemma 3 270M: 1e4


_G2 = dict(family=2, max_seq_len=8192, windows=(4096, 0), qkv_dim=256, global_rope_theta=1e4)
_G3 = dict(family=3, vocab_size=GEMMA3_VOCAB, max_seq_len=32768)
_LOCAL5_512 = (512, 512, 512, 512, 512, 0)
_LOCAL5_1024 = (1024, 1024, 1024, 1024, 1024, 0)

#: Model enum value -> architecture (gemma.cpp 3ed403e ``ConfigFromModel``).
ARCHS: dict[int, _Arch] = {
    7: _Arch("Gemma2_2B", model_dim=2304, ff_hidden_dim=9216, heads=8, kv_heads=4, num_layers=26,
             vocab_size=GEMMA2_VOCAB, **_G2),
    3: _Arch("Gemma2_9B", model_dim=3584, ff_hidden_dim=14336, heads=16, kv_heads=8, num_layers=42,
             vocab_size=GEMMA2_VOCAB, **_G2),
    4: _Arch("Gemma2_27B", model_dim=4608, ff_hidden_dim=36864, heads=32, kv_heads=16, num_layers=46,
             vocab_size=GEMMA2_VOCAB, query_scale=SQRT_MODEL_DIM_DIV_NUM_HEADS,
             **{**_G2, "qkv_dim": 128}),
    10: _Arch("PaliGemma2_3B_224", model_dim=2304, ff_hidden_dim=9216, heads=8, kv_heads=4, num_layers=26,
              vocab_size=PALIGEMMA_VOCAB, image_size=224, wrapping=PALIGEMMA, **_G2),
    11: _Arch("PaliGemma2_3B_448", model_dim=2304, ff_hidden_dim=9216, heads=8, kv_heads=4, num_layers=26,
              vocab_size=PALIGEMMA_VOCAB, image_size=448, wrapping=PALIGEMMA, **_G2),
    12: _Arch("PaliGemma2_10B_224", model_dim=3584, ff_hidden_dim=14336, heads=16, kv_heads=8, num_layers=42,
              vocab_size=PALIGEMMA_VOCAB, image_size=224, wrapping=PALIGEMMA, **_G2),
    13: _Arch("PaliGemma2_10B_448", model_dim=3584, ff_hidden_dim=14336, heads=16, kv_heads=8, num_layers=42,
              vocab_size=PALIGEMMA_VOCAB, image_size=448, wrapping=PALIGEMMA, **_G2),
    18: _Arch("Gemma3_270M", model_dim=640, ff_hidden_dim=2048, heads=4, kv_heads=1, qkv_dim=256,
              num_layers=18, windows=_LOCAL5_512, global_rope_theta=1e4, **_G3),
    15: _Arch("Gemma3_1B", model_dim=1152, ff_hidden_dim=6912, heads=4, kv_heads=1, qkv_dim=256,
              num_layers=26, windows=_LOCAL5_512, wrapping=GEMMA_VLM, **_G3),
    14: _Arch("Gemma3_4B", model_dim=2560, ff_hidden_dim=10240, heads=8, kv_heads=4, qkv_dim=256,
              num_layers=34, windows=_LOCAL5_1024, image_size=896, wrapping=GEMMA_VLM, **_G3),
    16: _Arch("Gemma3_12B", model_dim=3840, ff_hidden_dim=15360, heads=16, kv_heads=8, qkv_dim=256,
              num_layers=48, windows=_LOCAL5_1024, image_size=896, wrapping=GEMMA_VLM, **_G3),
    17: _Arch("Gemma3_27B", model_dim=5376, ff_hidden_dim=21504, heads=32, kv_heads=16, qkv_dim=128,
              num_layers=62, windows=_LOCAL5_1024, image_size=896, wrapping=GEMMA_VLM, **_G3),
}
# Text-only Gemma 3 (addendum §1.2, configs.cc@0224dcbd): the 4B/12B/27B LLM without the ViT, GEMMA_IT,
# use_global_timescale false (upstream's canonical value).
for _m, _base, _name in ((20, 14, "Gemma3_4B_LM"), (21, 16, "Gemma3_12B_LM"), (22, 17, "Gemma3_27B_LM")):
    ARCHS[_m] = replace(ARCHS[_base], display_name=_name, image_size=0, wrapping=GEMMA_IT)

#: Model enum values gemma.cpp can build a config for, in enum order (``ForEachModel``).
CANONICAL_MODELS: tuple[int, ...] = tuple(sorted({*ARCHS, *SPECS}))

# SigLIP So400m ViT as gemma.cpp configures it (``LayerConfigVit`` / ``AddVitConfig``).
VIT_MODEL_DIM, VIT_FF, VIT_HEADS, VIT_QKV_DIM, VIT_LAYERS, VIT_PATCH = 1152, 4304, 16, 72, 27, 14


def model_enum(model: str | int) -> int:
    """Model enum value from ``"GEMMA3_270M"``, ``"gemma3-270m"``, ``"Gemma3_270M"`` or ``18``."""
    if isinstance(model, bool):
        raise ConfigError(f"not a model: {model!r}", code="unknown-model")
    if isinstance(model, int):
        if model in MODEL_NAMES:
            return model
        raise ConfigError(f"unknown model number {model}", code="unknown-model")
    key = str(model).strip()
    from .config import MODEL_ALIASES
    if key.upper() in MODEL_ALIASES:
        return MODEL_ALIASES[key.upper()]
    for value, name in MODEL_NAMES.items():
        if key.upper() == name:
            return value
    for value, prefix in MODEL_PREFIX.items():
        if key.lower() == prefix:
            return value
    for value, arch in ARCHS.items():
        if key.lower() == arch.display_name.lower():
            return value
    known = ", ".join(MODEL_NAMES[m] for m in CANONICAL_MODELS)
    raise ConfigError(f"unknown model {model!r} (known: {known})", code="unknown-model")


def wrapping_enum(wrapping: str | int) -> int:
    """PromptWrapping value from ``"GEMMA_PT"``, ``"pt"``, ``"-pt"``, ``"it"``, ``"vlm"``, ``"paligemma"`` or 0..3."""
    if isinstance(wrapping, int) and not isinstance(wrapping, bool):
        if wrapping in WRAPPING_NAMES:
            return wrapping
        raise ConfigError(f"unknown wrapping number {wrapping}", code="unknown-wrapping")
    key = str(wrapping).strip().upper().lstrip("-")
    aliases = {"IT": GEMMA_IT, "PT": GEMMA_PT, "VLM": GEMMA_VLM, "PG": PALIGEMMA, "PALIGEMMA": PALIGEMMA}
    if key in aliases:
        return aliases[key]
    for value, name in WRAPPING_NAMES.items():
        if key == name:
            return value
    raise ConfigError(f"unknown wrapping {wrapping!r} (it, pt, vlm, paligemma)", code="unknown-wrapping")


def weight_enum(weight: str | int | Type) -> Type:
    """Weight type from ``"sfp"``, ``"SFP"``, :class:`Type` or 3 (never UNKNOWN)."""
    try:
        t = type_from_name(weight)
    except Exception:
        raise ConfigError(f"unknown weight type {weight!r}", code="unknown-type") from None
    if t == Type.UNKNOWN:
        raise ConfigError("weight type must not be unknown", code="unknown-type")
    return t


def _own_wrapping(m: int) -> int:
    """The wrapping ``ConfigFromModel(m)`` stores."""
    return ARCHS[m].wrapping if m in ARCHS else SPECS[m].fields["wrapping"]


def default_wrapping(model: str | int) -> int:
    """gemma.cpp's ``ChooseWrapping(model)`` without a flag: the model's own VLM wrapping (PALIGEMMA,
    GEMMA_VLM), else GEMMA_IT (T5Gemma's own GEMMA_PT included)."""
    m = model_enum(model)
    own = _own_wrapping(m) if m in CANONICAL_MODELS else GEMMA_IT
    return own if own in (GEMMA_VLM, PALIGEMMA) else GEMMA_IT


def _vit_config(image_size: int, gemma3: bool) -> VitConfig:
    layer = LayerConfig(model_dim=VIT_MODEL_DIM, ff_hidden_dim=VIT_FF, heads=VIT_HEADS, kv_heads=VIT_HEADS,
                        qkv_dim=VIT_QKV_DIM, ff_biases=True, type=KVIT)
    side = image_size // VIT_PATCH
    return VitConfig(model_dim=VIT_MODEL_DIM, seq_len=side * side, num_scales=4 * VIT_LAYERS,
                     patch_width=VIT_PATCH, image_size=image_size,
                     layer_configs=[replace(layer) for _ in range(VIT_LAYERS)], pool_dim=4 if gemma3 else 1)


def _from_arch(m: int, arch: _Arch) -> ModelConfig:
    """``ConfigFromModel(m)`` for a Gemma 2 / PaliGemma 2 / Gemma 3 model."""
    g3 = arch.family == 3
    layer = LayerConfig(model_dim=arch.model_dim, ff_hidden_dim=arch.ff_hidden_dim, heads=arch.heads,
                        kv_heads=arch.kv_heads, qkv_dim=arch.qkv_dim, optimized_gating=g3,
                        post_norm=POST_NORM_SCALE, use_qk_norm=g3)
    n = arch.num_layers
    windows = [w or arch.max_seq_len for w in arch.windows]
    cfg = ModelConfig(
        display_name=arch.display_name, model=m, wrapping=arch.wrapping, num_layers=n,
        model_dim=arch.model_dim, vocab_size=arch.vocab_size, max_seq_len=arch.max_seq_len,
        att_cap=0.0 if g3 else 50.0, final_cap=0.0 if g3 else 30.0, query_scale=arch.query_scale,
        layer_configs=[replace(layer) for _ in range(n)],
        attention_window_sizes=[windows[i % len(windows)] for i in range(n)],
        eos_id=1, secondary_eos_id=106 if g3 else 107, scale_base_names=list(SCALE_BASE_NAMES),
        global_rope_theta=arch.global_rope_theta)
    if arch.image_size:
        cfg.vit_config = _vit_config(arch.image_size, g3)
    cfg.use_global_timescale = m in GLOBAL_ROPE_1E6_MODELS  # since 1bdde1a (2025-10-24)
    return cfg


@dataclass(frozen=True)
class _Writer:
    """What one gemma.cpp generation's ``ModelConfig::Write`` stores, and which models it knows."""

    last_field: str | None  # the last ModelConfig field it has (None: every field this release knows)
    layer_fields: int | None  # LayerConfig fields it has (None: all)
    max_model: int  # Model values from here on do not exist yet
    keeps_vlm_wrapping: bool  # ModelConfig(model, weight, wrapping) keeps a VLM model's own wrapping


_W3ED403E = _Writer("scale_base_names", 15, 19, False)
#: Generation key (``sbs verify``) -> its writer. Single-file writers before 3ed403e wrote the same fields (the
#: ViT layer type number of those before 2025-09-05 is the reader's concern, see ``repair --target``).
#: 2026-07-10 has every field but global_rope_theta; its rope_theta values are those of 0224dcbd (UNCONFIRMED
#: for the builds before PR #994). 1bdde1a: configs.cc on gemma.cpp's dev branch.
WRITERS: dict[str, _Writer] = {
    "pre-2025": replace(_W3ED403E, max_model=18), "2025-05-06": replace(_W3ED403E, max_model=18),
    "2025-05-07": replace(_W3ED403E, max_model=18), "2025-07-31": _W3ED403E, "2025-09-05": _W3ED403E,
    "2025-10-15": _W3ED403E, "2025-10-24": _Writer("use_global_timescale", 15, 19, False),
    "2026-07-10": _Writer("is_encoder_decoder", None, 31, True), "2026-08-27": _Writer(None, None, 33, True),
}


def _build(m: int) -> ModelConfig:
    """``ConfigFromModel(m)`` of the newest gemma.cpp this release knows: every field, the model's own wrapping."""
    if m in ARCHS:
        return _from_arch(m, ARCHS[m])
    if m in SPECS:
        return _build_2026(m)
    raise ConfigError(f"gemma.cpp has no canonical config for {MODEL_NAMES[m]} (obsolete model, or CUSTOM)",
                      code="unknown-model")


def _top_fields_after(last: str | None) -> list[str]:
    """ModelConfig fields after ``last`` in serialization order (the ones a generation does not have)."""
    names = [f.name for f in SCHEMAS[CURRENT].fields]
    if last is None:
        return []
    tail = names[names.index(last) + 1:]
    if last == "is_encoder_decoder":  # the encoder/decoder block came with the flag
        tail = [n for n in tail if not n.startswith(("encoder_", "decoder_"))]
    return tail


def _as_written(cfg: ModelConfig, w: _Writer) -> ModelConfig:
    """``cfg`` as generation ``w`` writes it: fields it does not have at their defaults (as its reader's
    successors read them), and the number of fields it stores."""
    top, default = _top_fields_after(w.last_field), ModelConfig()
    for name in top:
        setattr(cfg, name, getattr(default, name))
    layer_default = LayerConfig()
    new_layer = NEW_LAYER_FIELD_NAMES if w.layer_fields else ()
    for lc in cfg.layer_configs + cfg.vit_config.layer_configs:
        for name in new_layer:
            setattr(lc, name, getattr(layer_default, name))
        lc.stored_fields = w.layer_fields
    visited = SCHEMAS[CURRENT].visited(cfg.to_values())
    cfg.stored_fields = len(visited) - len([f for f in visited if f.name in top]) if top else None
    return cfg


def generation_writer(generation: str | None) -> _Writer | None:
    """The writer of a generation key (None: sbs's own compact form)."""
    if generation is None:
        return None
    if generation not in WRITERS:
        raise ConfigError(f"unknown gemma.cpp generation {generation!r} (known: {', '.join(WRITERS)})",
                          code="unknown-generation")
    return WRITERS[generation]


def canonical_config(model: str | int, weight_type: str | int | Type, wrapping: str | int | None = None, *,
                     generation: str | None = None) -> ModelConfig:
    """``ModelConfig(model, weight, wrapping)`` as gemma.cpp builds it.

    ``wrapping=None`` picks :func:`default_wrapping`. ``generation=None``: current gemma.cpp's values in the
    compact form sbs writes (readable by 3ed403e when the model needs nothing newer); a generation key: the
    words that generation writes. Raises :class:`ConfigError` (``unknown-model``) for models gemma.cpp does
    not (or, at ``generation``, not yet) build: Gemma 1, PaliGemma 1, Griffin, the tiny model, CUSTOM.
    """
    m = model_enum(model)
    w = generation_writer(generation)
    if w is not None and m >= w.max_model:
        raise ConfigError(f"gemma.cpp of {generation} has no canonical config for {MODEL_NAMES[m]} (newer model)",
                          code="unknown-model")
    cfg = _build(m)
    cfg.weight = int(weight_enum(weight_type))
    keeps_vlm = w is None or w.keeps_vlm_wrapping
    if not (keeps_vlm and cfg.wrapping in (GEMMA_VLM, PALIGEMMA)):
        cfg.wrapping = default_wrapping(m) if wrapping is None else wrapping_enum(wrapping)
    return cfg.compact_form() if w is None else _as_written(cfg, w)


def parse_specifier(specifier: str) -> tuple[int, Type, int]:
    """(model, weight type, wrapping) from a specifier, by gemma.cpp's rules.

    The model is the one whose ``ModelPrefix + "-"`` starts the string; the
    type is the one type name occurring in it; the wrapping is the one
    suffix (``-it``/``-pt``/``-vlm``/``-pg``) occurring in it, else the
    model's default. Ambiguity or absence raises ``bad-specifier``.
    """
    s = specifier.strip()
    # FindModel: the longest matching prefix wins (gemma3-4b-lm-... is not gemma3-4b), addendum §1.1
    models = [m for m in CANONICAL_MODELS if s.startswith(MODEL_PREFIX[m] + "-")]
    models = sorted(models, key=lambda m: -len(MODEL_PREFIX[m]))[:1]
    if len(models) != 1:
        raise ConfigError(f"specifier {specifier!r}: expected one model prefix "
                          f"({', '.join(MODEL_PREFIX[m] for m in CANONICAL_MODELS)}), found {len(models)}",
                          code="bad-specifier")
    rest = s[len(MODEL_PREFIX[models[0]]):]
    # Type names are searched in the whole specifier by gemma.cpp; none of today's prefixes contains one,
    # but searching the remainder keeps e.g. a future "...-f32x" prefix from matching.
    types = [t for t in (Type.F32, Type.BF16, Type.SFP, Type.NUQ, Type.F64, Type.U32, Type.U64, Type.I8, Type.Q4_0,
                         Type.MXFP4) if GEMMA_TYPE_NAMES[t] in rest]
    if len(types) != 1:
        raise ConfigError(f"specifier {specifier!r}: expected exactly one weight type name "
                          "(f32, bf16, sfp, nuq, i8)", code="bad-specifier")
    wraps = [w for w, suffix in WRAPPING_SUFFIX.items() if suffix in rest]
    if len(wraps) > 1:
        raise ConfigError(f"specifier {specifier!r}: more than one wrapping suffix", code="bad-specifier")
    wrap = wraps[0] if wraps else default_wrapping(models[0])
    return models[0], types[0], wrap


def from_specifier(specifier: str, *, generation: str | None = None) -> ModelConfig:
    """``ModelConfig(specifier)``: e.g. ``"gemma3-270m-bf16-it"``, ``"gemma3-1b-sfp"``, ``"9b-sfp-pt"``;
    ``generation`` as for :func:`canonical_config`."""
    m, t, w = parse_specifier(specifier)
    return canonical_config(m, t, w, generation=generation)


def rope_bases(config: ModelConfig, mode: str = "gemmacpp") -> list[float]:
    """RoPE base per LLM layer.

    ``mode="gemmacpp"``: what gemma.cpp 3ed403e computes (1e6 on global
    layers only for Gemma 3 1B/4B/12B/27B, else 10,000 everywhere).
    ``mode="reference"``: the original model definitions (1e6 on global
    layers of every Gemma 3 model, including 270M).
    """
    if mode not in ("gemmacpp", "reference"):
        raise ValueError(f"rope mode must be 'gemmacpp' or 'reference', not {mode!r}")
    models = GLOBAL_ROPE_1E6_MODELS if mode == "gemmacpp" else REFERENCE_GLOBAL_ROPE_1E6_MODELS
    return [1e6 if (config.model in models and config.is_global_layer(i)) else 1e4
            for i in range(len(config.layer_configs))]


def rope_discrepancy(config: ModelConfig) -> str | None:
    """A sentence about the 270M RoPE quirk if it affects ``config``, else None (for verify/inspect)."""
    gemmacpp, ref = rope_bases(config, "gemmacpp"), rope_bases(config, "reference")
    diff = [i for i, (a, b) in enumerate(zip(gemmacpp, ref)) if a != b]
    if not diff:
        return None
    return (f"gemma.cpp (3ed403e) runs the global-attention layer(s) {', '.join(map(str, diff))} of "
            f"{config.model_name} with RoPE base 10,000; the original model definition uses 1,000,000 there. "
            "Outputs follow gemma.cpp; `sbs run --rope reference` uses the original definition.")


def vision_discrepancy(config: ModelConfig) -> str | None:
    """A sentence about gemma.cpp's Gemma 3 image path where it differs from the published model
    (soft-embedding norm on the first image token only, causal attention over image tokens), for
    files with a ViT and GEMMA_VLM wrapping, else None (for verify/inspect)."""
    if not config.vit_config.layer_configs or config.wrapping != 2:
        return None
    return ("gemma.cpp (3ed403e) applies the soft-embedding norm (mm_embed_norm) to the first image token only "
            "and attends causally over the image tokens; the published Gemma 3 normalizes every image token and "
            "attends bidirectionally within an image. Outputs follow gemma.cpp; "
            "`inference.load(path, vision=\"reference\")` uses the published behaviour.")


def vit_pool_grid_problem(config: ModelConfig) -> str | None:
    """Why gemma.cpp's image path crashes on this Gemma 3 file, or None: its ``AvgPool4x4`` assumes a
    64x64 patch grid (896 px / 14) and reads past its matrix on any other."""
    v = config.vit_config
    if not v.layer_configs or config.wrapping != 2 or v.patch_width <= 0:
        return None
    grid = v.image_size // v.patch_width
    if grid == 64 and v.seq_len == 4096:
        return None
    return (f"the ViT patch grid is {grid}x{grid} ({v.image_size} px / patch {v.patch_width}, seq_len "
            f"{v.seq_len}); gemma.cpp's AvgPool4x4 assumes 64x64 and reads past its matrix on any other grid: "
            "its image path crashes (text-only runs are unaffected)")


# -- comparing configs ------------------------------------------------------------------------------

#: Fields that describe the network's shape and numerics (what must agree for weights to fit and behave).
ARCH_FIELDS = ("num_layers", "model_dim", "vocab_size", "att_cap", "final_cap", "absolute_pe", "query_scale",
               "model_family_version", "partial_rotary_factor", "ple_dim", "hc_mult", "num_mtp_layers",
               "is_encoder_decoder")
#: LayerConfig fields 1-15 that shape the math, then every field appended since (MoE, PLE, KV sharing, MLA).
LAYER_ARCH_FIELDS = ("model_dim", "ff_hidden_dim", "heads", "kv_heads", "qkv_dim", "ff_biases", "post_norm",
                     "type", "activation", "post_qk", "use_qk_norm",
                     *NEW_LAYER_FIELD_NAMES)


def config_differences(a: ModelConfig, b: ModelConfig, *, ignore: Iterable[str] = ()) -> list[str]:
    """Human-readable field differences between two configs (``"model_dim: 640 != 1152"``).

    Compares every serialized field, recursing into layer and ViT configs;
    names in ``ignore`` (top-level or ``layer.<field>``/``vit.<field>``) are skipped.
    """
    skip = set(ignore)
    out: list[str] = []

    def cmp(prefix: str, x, y, names: Iterable[str]) -> None:
        for name in names:
            if prefix + name in skip:
                continue
            va, vb = getattr(x, name), getattr(y, name)
            if va != vb:
                out.append(f"{prefix}{name}: {_short(va)} != {_short(vb)}")

    top = [f.name for f in dc_fields(ModelConfig) if f.compare and f.name not in ("layer_configs", "vit_config")]
    cmp("", a, b, top)
    lnames = [f.name for f in dc_fields(LayerConfig)]
    if len(a.layer_configs) == len(b.layer_configs):
        for i, (la, lb) in enumerate(zip(a.layer_configs, b.layer_configs)):
            cmp(f"layer_configs[{i}].", la, lb, [n for n in lnames if f"layer.{n}" not in skip])
    elif "layer_configs" not in skip:
        out.append(f"layer_configs: {len(a.layer_configs)} layers != {len(b.layer_configs)}")
    va, vb = a.vit_config, b.vit_config
    if "vit_config" not in skip:
        cmp("vit_config.", va, vb, [f.name for f in dc_fields(VitConfig) if f.name != "layer_configs"
                                    and f"vit.{f.name}" not in skip])
        if len(va.layer_configs) != len(vb.layer_configs):
            out.append(f"vit_config.layer_configs: {len(va.layer_configs)} layers != {len(vb.layer_configs)}")
        else:
            for i, (la, lb) in enumerate(zip(va.layer_configs, vb.layer_configs)):
                cmp(f"vit_config.layer_configs[{i}].", la, lb, lnames)
    return out


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def architecture_differences(config: ModelConfig, canonical: ModelConfig, *, with_vit: bool = True) -> list[str]:
    """Differences that matter for the weights and the math: dims, layer structure, caps, query
    scale, local window sizes. Ignores names, wrapping, weight type, eos ids, ``max_seq_len`` and
    the window of global layers (which equals ``max_seq_len``), and ``optimized_gating`` (gemma.cpp's
    ``TestEqual`` ignores it too)."""
    out = []
    for name in ARCH_FIELDS:
        va, vb = getattr(config, name), getattr(canonical, name)
        if va != vb:
            out.append(f"{name}: {_short(va)} != {_short(vb)}")
    if len(config.layer_configs) != len(canonical.layer_configs):
        return out + [f"layers: {len(config.layer_configs)} != {len(canonical.layer_configs)}"]
    for stack, tag in (("layer_configs", "layer"), ("encoder_layer_configs", "encoder layer"),
                       ("decoder_layer_configs", "decoder layer")):
        out += _layer_differences(tag, getattr(config, stack), getattr(canonical, stack))
    wa, wb = config.attention_window_sizes, canonical.attention_window_sizes
    if len(wa) != len(wb):
        out.append(f"attention_window_sizes: {len(wa)} entries != {len(wb)}")
    else:
        for i, (x, y) in enumerate(zip(wa, wb)):
            ga, gb = x >= config.max_seq_len, y >= canonical.max_seq_len
            if ga != gb or (not ga and x != y):
                out.append(f"layer {i} window: {x} != {y}")
    if with_vit:
        out += [d for d in config_differences(config, canonical, ignore=("display_name",))
                if d.startswith("vit_config")]
    return out


def _layer_differences(tag: str, a: list[LayerConfig], b: list[LayerConfig]) -> list[str]:
    if len(a) != len(b):
        return [f"{tag}s: {len(a)} != {len(b)}"]
    return [f"{tag} {i} {name}: {getattr(la, name)} != {getattr(lb, name)}"
            for i, (la, lb) in enumerate(zip(a, b)) for name in LAYER_ARCH_FIELDS
            if getattr(la, name) != getattr(lb, name)]


def match_canonical(config: ModelConfig, *, with_vit: bool = True) -> int | None:
    """The canonical model whose architecture equals ``config``'s (see :func:`architecture_differences`),
    or None. Like gemma.cpp's ``OverwriteWithCanonical`` but tolerant of context length and names.
    ``with_vit=False`` ignores the ViT part (for text-only checkpoints of Gemma 3 4B/12B/27B)."""
    found = [m for m in CANONICAL_MODELS
             if not architecture_differences(config, canonical_config(m, Type.BF16), with_vit=with_vit)]
    if len(found) > 1:
        # Text-only Gemma 3 checkpoints keep the VLM model number, whose config has use_global_timescale
        # (the _LM configs run the global layers with RoPE base 1e4, addendum §1.2).
        found = [m for m in found if m not in (20, 21, 22)] or found
    if not with_vit and len(found) > 1:
        # PaliGemma 2 shares its LLM with Gemma 2; a text-only checkpoint is the plain Gemma 2.
        found = [m for m in found if m not in PALIGEMMA_MODELS] or found
    return found[0] if len(found) == 1 else None


def is_canonical(config: ModelConfig) -> bool:
    """True if ``config`` holds exactly the values of gemma.cpp's canonical config for its model, weight type
    and wrapping (display name included) as some generation wrote it -- gemma.cpp's own test compares configs
    by value (``AllEqual`` of both written in full), so the form (15- or 38-field layers, trailing fields left
    out) does not matter, but a field a generation did not have must hold its default."""
    for generation in WRITERS:
        try:
            ref = canonical_config(config.model, config.weight, config.wrapping, generation=generation)
        except ConfigError:
            continue
        if ref == config:
            return True
    return False

