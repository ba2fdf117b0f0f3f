"""gemma.cpp's guess of the model of a file without a config (``DeduceModel``; base §7, addendum §1.4).

gemma.cpp deduces a model from the blob keys of every file: the layer count is 1 + the largest
number after the last ``_`` of any key (``LayerIdxFromKey``; the type prefix of a pre-2025 key
does not matter), and flags come from key substrings. With a ``config`` a disagreement only warns;
a pre-2025 (E0) file gets the canonical config of the deduced model, and a deduced UNKNOWN aborts.

The table changed over time. :data:`RULES` holds every version, named by the gemma.cpp commit
that introduced it (read in ``gemma/configs.cc`` and ``gemma/model_store.cc``);
:data:`GENERATION_RULES` says which one the last build of each generation of ``sbs verify``'s
compatibility table runs, and :func:`for_generation` applies it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from .config import MODEL_NAMES
from .types import TYPE_BITS, Type

# DeducedLayerTypes (gemma/configs.h); GRIFFIN until 2b4c16e, the last three from 2026 on.
GRIFFIN, VIT, IMG448, KQNORM, T5GEMMA, MOE = 1, 2, 4, 8, 16, 32
#: ``img_pos_emb`` blobs larger than this mean a 448 px ViT ("about 5.88 elements per pixel", bf16).
IMG448_BYTES = 448 * 448 * 5 * 2
_SIZE_T = 1 << 64
_EXPERT_SUFFIX = re.compile(r"_\d+_\d+$")

#: ``c_embedding`` value counts (vocab x model_dim) of the models old tables deduce that sbs has no canonical
#: config for: Gemma 1 2B/7B, Griffin 2B, the test model GemmaTiny (vocab 16 at 8d0882b, 32 from 252a4e9 on;
#: ``configs.cc`` at those commits). Enough to tell that a file is not one of them.
EMBEDDING_VALUES = {1: (256000 * 2048,), 2: (256000 * 3072,), 5: (256000 * 2560,), 6: (16 * 32, 32 * 32)}

Table = dict[int, Callable[[int, str], int]]  # layers -> (flags, path) -> Model enum value


def _fixed(model: int) -> Callable[[int, str], int]:
    return lambda flags, path: model


def _if(flag: int, yes: int, no: int) -> Callable[[int, str], int]:
    return lambda flags, path: yes if flags & flag else no


def _path_has(path: str, *parts: str) -> bool:
    return any(p in path for p in parts)


def _paligemma_10b(flags: int) -> int:
    return 13 if flags & IMG448 else 12


def _42_2025(flags: int, path: str) -> int:
    return _paligemma_10b(flags) if flags & VIT else 3


def _42_e4b(flags: int, path: str) -> int:
    e4b = _path_has(path, "gemma4", "e4b")
    if flags & VIT:
        return 31 if e4b else _paligemma_10b(flags)
    return 32 if e4b else 3


def _26_griffin(flags: int, path: str) -> int:
    return 5 if flags & GRIFFIN else (15 if flags & VIT else 7)


_T_8D0882B: Table = {3: _fixed(6), 18: _fixed(1), 26: _26_griffin, 28: _fixed(2), 34: _fixed(14), 42: _fixed(3),
                     46: _fixed(4), 48: _fixed(16), 62: _fixed(17)}
_T_252A4E9: Table = {2: _fixed(6), 26: _26_griffin, 34: _fixed(14), 42: _fixed(3), 46: _fixed(4), 48: _fixed(16),
                     62: _fixed(17)}
_T_839A642: Table = {**_T_252A4E9, 27: _if(IMG448, 11, 10), 42: _42_2025}
_T_78573B6: Table = {**_T_839A642, 18: _fixed(18)}
_T_2B4C16E: Table = {18: _fixed(18), 26: _if(VIT, 15, 7), 27: _if(IMG448, 11, 10), 34: _fixed(14), 42: _42_2025,
                     46: _fixed(4), 48: _fixed(16), 62: _fixed(17)}
_T_2026: Table = {
    **_T_2B4C16E,
    8: _if(T5GEMMA, 26, 0),
    26: _if(VIT | KQNORM, 15, 7),
    28: lambda flags, path: 28 if _path_has(path, "qwen3-2b", "qwen3-1_7b") else 27,
    30: _fixed(23), 34: _if(VIT, 14, 20), 35: _if(VIT, 24, 30), 36: _fixed(29), 48: _if(VIT, 16, 21),
    62: _if(VIT, 17, 22),
}
_T_0224DCBD: Table = {**_T_2026, 42: _42_e4b}


@dataclass(frozen=True)
class Rules:
    """One version of ``DeduceLayerTypes`` + ``DeduceModel``."""

    commit: str
    since: str  # date of the commit, or what bounds it
    table: Table
    vit_keys: tuple[str, ...] = ("qkv_ein_w",)
    griffin: bool = False  # "gr_conv_w" in a key: only kDeducedGriffin (returned early)
    img448: bool = True
    flags_2026: bool = False  # KqNorm, T5Gemma, MoE


RULES: dict[str, Rules] = {r.commit: r for r in (
    # 8d0882b searched "qkv_einsum_w", which no key contains: the ViT flag never set (base §7)
    Rules("8d0882b", "2025-05-06", _T_8D0882B, vit_keys=("qkv_einsum_w",), griffin=True, img448=False),
    Rules("252a4e9", "2025-05-09", _T_252A4E9, vit_keys=("qkv_einsum_w",), griffin=True, img448=False),
    Rules("839a642", "2025-06-03", _T_839A642, griffin=True),
    Rules("78573b6", "2025-08-14", _T_78573B6, griffin=True),
    Rules("2b4c16e", "2025-09-05", _T_2B4C16E),
    # The 2026 cases (addendum §1.4) cannot be dated one by one (addendum §8): T5Gemma came with PR #947
    # (2026-07-10), GEMMA3_*_LM after 2026-04-03, Gemma 4 2B/MoE by 2026-07-30. GEMMA4_E4B (enum 31/32)
    # exists only after PR #994, so the 42-layer path rule is 0224dcbd's alone.
    Rules("2026", "2026 (3dd2961a era, undated)", _T_2026, vit_keys=("qkv_ein_w", "vit_qkv"), flags_2026=True),
    Rules("0224dcbd", "after 2026-08-27 (PR #994)", _T_0224DCBD, vit_keys=("qkv_ein_w", "vit_qkv"),
          flags_2026=True),
)}

#: Generation key (``sbs_tools.verify.compat.GENERATIONS``) -> the rule versions its builds ran, oldest
#: first; the last is the generation's last build. Pre-2025 builds deduce nothing (the model is a flag).
GENERATION_RULES: dict[str, tuple[str, ...]] = {
    "pre-2025": (),
    "2025-05-06": ("8d0882b",),
    "2025-05-07": ("8d0882b", "252a4e9", "839a642"),  # e9ecb77 still had 8d0882b's table
    "2025-07-31": ("839a642", "78573b6"),
    "2025-09-05": ("2b4c16e",),
    "2025-10-15": ("2b4c16e",),
    # 1bdde1a did not touch DeduceModel; builds late in this range may already have some 2026 cases.
    "2025-10-24": ("2b4c16e",),
    "2026-07-10": ("2026",),
    "2026-08-27": ("0224dcbd",),
}


def layer_index(key: str) -> int:
    """``LayerIdxFromKey``: the number after the last ``_`` as ``std::from_chars`` parses it (optional
    ``-``, leading digits), 0 when there is none or it overflows int32; negatives wrap like size_t.
    gemma.cpp asserts the result is below 999 (verify reports such keys as ``bad-key``)."""
    pos = key.rfind("_")
    m = re.match(r"-?[0-9]+", key[pos + 1:]) if pos >= 0 else None
    if m is None:
        return 0
    v = int(m.group())
    if not -(1 << 31) <= v < (1 << 31) or v == -1:
        return 0
    return v % _SIZE_T


def layer_count(keys: Iterable[str]) -> int:
    """``DeduceNumLayers``: 1 + the largest :func:`layer_index` of any key (size_t arithmetic)."""
    return (max((layer_index(k) for k in keys), default=0) + 1) % _SIZE_T


def key_flags(blobs: list[tuple[str, int]], rules: Rules) -> int:
    """``DeduceLayerTypes`` of one version, from (key, blob size) pairs."""
    keys = [k for k, _ in blobs]
    if rules.griffin and any("gr_conv_w" in k for k in keys):
        return GRIFFIN
    flags = VIT if any(s in k for k in keys for s in rules.vit_keys) else 0
    if rules.img448 and any("img_pos_emb" in k and size > IMG448_BYTES for k, size in blobs):
        flags |= IMG448
    if rules.flags_2026:
        if any("key_norm" in k for k in keys) and any("query_norm" in k for k in keys):
            flags |= KQNORM
        if (any("enc_embedding" in k or "e_qkv_" in k for k in keys)
                and any("dec_embedding" in k or "d_qkv_" in k for k in keys)):
            flags |= T5GEMMA
        if any("moe_router" in k for k in keys):
            flags |= MOE  # set by gemma.cpp, unused by DeduceModel
    return flags


@dataclass(frozen=True)
class Deduction:
    """What one version of gemma.cpp deduces for a file."""

    rules: Rules
    layers: int
    flags: int
    model: int  # Model enum value; 0 = UNKNOWN
    by_path: bool  # the file name decided between two models (Qwen3 2B, Gemma 4 E4B)
    expert_keys: bool  # per-expert names ``base_L_E``: the count is an expert number, not a layer count

    @property
    def name(self) -> str:
        return MODEL_NAMES.get(self.model, str(self.model))

    @property
    def basis(self) -> str:
        """How gemma.cpp got there, for messages: "34 layers, no ViT tensors"."""
        out = [f"{self.layers} layers"]
        if self.flags & GRIFFIN:
            out.append("Griffin tensors")
        else:
            out.append("ViT tensors" if self.flags & VIT else "no ViT tensors")
        if self.flags & KQNORM:
            out.append("query/key norms")
        if self.flags & T5GEMMA:
            out.append("T5Gemma encoder and decoder tensors")
        if self.by_path:
            out.append("the file name")
        text = ", ".join(out)
        if self.expert_keys:
            text += (" (the number after the last '_' of per-expert names such as gating1_w_L_E is the expert, "
                     "so gemma.cpp counts experts, not layers)")
        return text


def model_for(layers: int, flags: int, rules: Rules | str, path: str = "") -> int:
    """``DeduceModel(path, layers, flags)`` of one version: a Model enum value, 0 for UNKNOWN."""
    rule = _rules(rules).table.get(layers)
    return rule(flags, path) if rule else 0


def _rules(rules: Rules | str) -> Rules:
    return RULES[rules] if isinstance(rules, str) else rules


@dataclass(frozen=True)
class KeyFacts:
    """What every rule version reads from the keys alike, computed once per file (a directory of
    65,535 keys is scanned once, not once per generation)."""

    layers: int
    expert_keys: bool

    @classmethod
    def of(cls, blobs: list[tuple[str, int]]) -> "KeyFacts":
        return cls(layer_count(k for k, _ in blobs), any(_EXPERT_SUFFIX.search(k) for k, _ in blobs))


def deduce(blobs: list[tuple[str, int]], rules: Rules | str, path: str = "", facts: KeyFacts | None = None) -> Deduction:
    """``DeduceModel(path, DeduceNumLayers(keys), DeduceLayerTypes(keys))`` of one version."""
    r = _rules(rules)
    facts = facts or KeyFacts.of(blobs)
    flags = key_flags(blobs, r)
    model = model_for(facts.layers, flags, r, path)
    by_path = model != model_for(facts.layers, flags, r)
    return Deduction(r, facts.layers, flags, model, by_path, facts.expert_keys)


def for_generation(generation: str, blobs: list[tuple[str, int]], path: str = "",
                   facts: KeyFacts | None = None) -> list[Deduction]:
    """The deduction of each rule version a generation's builds ran, oldest first (empty for pre-2025
    builds, which take the model from the command line)."""
    rules = GENERATION_RULES[generation]
    facts = facts or (KeyFacts.of(blobs) if rules else None)
    return [deduce(blobs, r, path, facts) for r in rules]


def deduce_weight_type(types: Iterable[int]) -> Type | None:
    """``DeduceWeightType`` of a pre-2025 file from its blobs' prefix types: the type of fewest bits held by
    at least 4 blobs; ties go to the lower enum value (NUQ before Q4_0). None: gemma.cpp's kUnknown."""
    counts: dict[int, int] = {}
    for t in types:
        counts[int(t)] = counts.get(int(t), 0) + 1
    cands = sorted((TYPE_BITS[Type(t)], t) for t, n in counts.items() if n >= 4 and t in Type._value2member_map_
                   and t != Type.UNKNOWN)
    return Type(cands[0][1]) if cands else None
