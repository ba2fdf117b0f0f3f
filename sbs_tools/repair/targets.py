"""gemma.cpp generations a repair can aim at (``--target``), keyed like ``sbs verify``'s compat table."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import SbsError


@dataclass(frozen=True)
class Target:
    """What a generation of gemma.cpp needs from a file.

    ``layout``: forced layout (None: V1 and V2 both load, keep the input's).
    ``vit_type``: number of kVit in the config. ``single_file``: config/toc
    format (False: the pre-2025 multi-file format). ``fused``: the reader
    requires ``att_ein``/``qkv_ein``/``gating_ein`` (True) or accepts the
    split/transposed forms. ``max_type``: Type values above this are invalid.
    ``max_model``: Model enum values at or above this are invalid.
    """

    key: str  # generation key of sbs_tools.verify.compat.GENERATIONS
    label: str
    layout: str | None
    vit_type: int
    single_file: bool
    fused: bool
    max_type: int
    max_model: int

    @property
    def schema(self) -> str:
        return "2025-10" if self.vit_type == 1 else "2025-05"


TARGETS: dict[str, Target] = {t.key: t for t in (
    Target("2026-08-27", "current gemma.cpp (2026-08-27 and later)", None, 1, True, False, 13, 33),
    Target("2026-07-10", "gemma.cpp 2026-07-10..2026-08-26", None, 1, True, False, 13, 31),
    Target("2025-10-24", "gemma.cpp 2025-10-24 (1bdde1a) and the builds before the 2026 formats", None, 1, True,
           False, 8, 19),
    Target("2025-10-15", "gemma.cpp 2025-10-15..2025-10-23 (3ed403e)", None, 1, True, False, 8, 19),
    Target("2025-09-05", "gemma.cpp 2025-09-05..2025-10-14", None, 1, True, False, 7, 19),
    Target("2025-07-31", "gemma.cpp 2025-07-31..2025-09-04 (V2 reader, ViT type 2)", None, 2, True, False, 5, 19),
    Target("2025-05-07", "gemma.cpp 2025-05-07..2025-07-30 (V1 only, ViT type 2)", "v1", 2, True, True, 5, 18),
    Target("2025-05-06", "gemma.cpp 2025-05-06 (8d0882b..c8d9294)", "v1", 2, True, True, 5, 18),
    Target("pre-2025", "gemma.cpp before 2025-05-06 (multi-file)", "v1", 2, False, True, 4, 18),
)}
ALIASES = {"current": "2026-08-27", "head": "2026-08-27", "2026-08": "2026-08-27", "2026-07": "2026-07-10",
           "3ed403e": "2025-10-15", "1bdde1a": "2025-10-24", "2025-10": "2025-10-15", "2025-09": "2025-09-05",
           "2025-08": "2025-07-31", "2025-07": "2025-07-31", "2025-05": "2025-05-07", "e2": "2025-05-07",
           "e0": "pre-2025", "pre2025": "pre-2025"}


def get_target(name: str | None) -> Target | None:
    """``None``/``"auto"``: no target (fix errors, keep the file's generation where current gemma.cpp
    loads it). Otherwise a generation key or alias."""
    if name is None or name == "auto":
        return None
    key = ALIASES.get(name.lower(), name)
    if key not in TARGETS:
        names = ", ".join(["auto", "current", *TARGETS, "2025-05"])
        raise SbsError(f"unknown target {name!r} (known: {names})", code="bad-target")
    return TARGETS[key]
