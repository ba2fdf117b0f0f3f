"""Layer dims the tensors determine: what ``fix_config`` may write into a layer config.

A dim is changed only when every tensor of that layer whose toc shape its
blob size confirms says the same value.
"""
from __future__ import annotations

from ...types import Type
from ..actions import size_ok
from ..context import Ctx


def fix_layer_dims(p: Ctx) -> list[str]:
    """LLM layer dims the layer's own tensors determine unanimously (toc shapes whose blob sizes agree)
    but the config contradicts."""
    cfg, s = p.s.config, p.s
    out = []
    D = cfg.model_dim
    recs = {}
    for r in s.toc or []:
        b = s.find(r.name)
        if b is not None and r.type in Type._value2member_map_ and size_ok(r, b.size):
            recs[r.name] = r
    for i, lc in enumerate(cfg.layer_configs):
        got: dict[str, set[int]] = {"qkv_dim": set(), "heads": set(), "kv_heads": set(), "ff_hidden_dim": set()}

        def rec(base: str):
            return recs.get(f"{base}_{i}")

        for base in ("key_norm", "query_norm"):
            if rec(base) is not None and rec(base).rows == 1:
                got["qkv_dim"].add(rec(base).cols)
        r = rec("att_ein")
        if r is not None and D and r.rows % D == 0:
            got["qkv_dim"].add(r.cols)
            got["heads"].add(r.rows // D)
        if len(got["qkv_dim"]) == 1:
            Dh = next(iter(got["qkv_dim"]))
            r = rec("att_w")
            if r is not None and r.rows == D and r.cols % Dh == 0:
                got["heads"].add(r.cols // Dh)
            r = rec("qkv1_w")
            if r is not None and r.cols == D and r.rows % Dh == 0:
                got["heads"].add(r.rows // Dh)
            r = rec("qkv2_w")
            if r is not None and r.cols == D and r.rows % (2 * Dh) == 0:
                got["kv_heads"].add(r.rows // (2 * Dh))
            r = rec("qkv_ein")
            if r is not None and r.cols == D and r.rows % Dh == 0 and len(got["heads"]) == 1:
                k2 = r.rows // Dh - next(iter(got["heads"]))
                if k2 >= 0 and k2 % 2 == 0:
                    got["kv_heads"].add(k2 // 2)
        for base, rows_per_f, col in (("gating_ein", 2, False), ("gating1_w", 1, False),
                                      ("gating2_w", 1, False), ("linear_w", None, True)):
            r = rec(base)
            if r is None:
                continue
            if col and r.rows == D:
                got["ff_hidden_dim"].add(r.cols)
            elif not col and r.cols == D and r.rows % rows_per_f == 0:
                got["ff_hidden_dim"].add(r.rows // rows_per_f)
        for fld, vals in got.items():
            if len(vals) == 1:
                v = next(iter(vals))
                if v and getattr(lc, fld) != v:
                    out.append(f"layer_configs[{i}].{fld} {getattr(lc, fld)} -> {v} (what all of layer {i}'s "
                               "tensors say)")
                    setattr(lc, fld, v)
    return out


def piece_count(tokenizer: bytes | None) -> int | None:
    """The number of pieces of a SentencePiece model (None when it does not load)."""
    if not tokenizer:
        return None
    try:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(tokenizer)
        return int(sp.GetPieceSize())
    except Exception:  # noqa: BLE001
        return None


def uniform(items: list) -> bool:
    """Non-empty and all equal."""
    return bool(items) and all(x == items[0] for x in items)


def period(w: list[int]) -> int | None:
    """Smallest p such that ``w`` is its first p entries repeated, seen at least twice; None if none."""
    n = len(w)
    for p in range(1, n // 2 + 1):
        if all(w[i] == w[i % p] for i in range(n)):
            return p
    return None

