"""Gemma 3 1B/4B/12B/27B configs without ``use_global_timescale`` (addendum §6.3).

gemma.cpp since 1bdde1a (2025-10-24) applies the 1e6 RoPE base to global layers only when
the config says so; configs written before that stop after ``scale_base_names`` and so run
with 1e4, silently. The fix is the 3ed403e-compatible recipe: append one word (1) right
after ``scale_base_names`` -- the first trailing field -- or set it when the word is there.
3ed403e reads the result (an "extra fields" warning); tensors are untouched.
"""
from __future__ import annotations

from ...config import MODEL_FIELDS_3ED403E
from ..context import Ctx


#: Targets whose readers decide the global RoPE base by the model number (``IsVLM``), not by the flag.
MODEL_NUMBER_TARGETS = frozenset({"2025-05-06", "2025-05-07", "2025-07-31", "2025-09-05", "2025-10-15"})


def global_timescale(p: Ctx) -> None:
    cfg = p.s.config
    if cfg is None or not cfg.needs_global_timescale:
        return
    if p.target is not None and p.target.key in MODEL_NUMBER_TARGETS:
        p.plan.notes.append(f"use_global_timescale left out: {p.target.label} runs {cfg.model_name}'s global "
                            "layers with RoPE base 1e6 by the model number (gemma.cpp since 2025-10-24 needs "
                            "the flag; `--target current` adds it)")
        return
    stored = cfg.stored_fields
    appended = stored is not None and stored <= MODEL_FIELDS_3ED403E
    cfg.use_global_timescale = True
    if appended:
        cfg.stored_fields = MODEL_FIELDS_3ED403E + 1
    p.s.config_dirty = True
    how = ("append use_global_timescale = 1 after scale_base_names (one word; gemma.cpp 3ed403e reads it as an "
           "extra field)" if appended else "set use_global_timescale 0 -> 1")
    p.act("set-global-timescale", f"{how}: gemma.cpp since 2025-10-24 then runs the global layers of "
          f"{cfg.model_name} with RoPE base 1e6 again", ("global-timescale-missing", None))
