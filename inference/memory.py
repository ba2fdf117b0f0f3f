"""Choosing between resident and streaming weights from a memory budget."""
from __future__ import annotations

import os
import re

MODES = ("auto", "resident", "streaming")
#: Share of the available memory the resident float32 weights may take when no budget is given.
DEFAULT_FRACTION = 0.5
#: Budget when the available memory cannot be read (neither /proc/meminfo nor sysconf).
FALLBACK_BUDGET = 4 << 30
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as ``"4G"``, ``"1.5GiB"``, ``"512m"``, ``"1000000"``
    (binary units); ValueError otherwise."""
    if isinstance(size, int):
        n = size
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*", str(size), re.IGNORECASE)
        if not m:
            raise ValueError(f"not a size: {size!r} (expected e.g. 4G, 512M, 1.5GiB or a number of bytes)")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ValueError(f"the memory budget must be positive, not {size!r}")
    return n


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes the system can give without swapping: MemAvailable from /proc/meminfo, else free
    physical pages from sysconf, else None."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _size(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps a digit before the point."""
    unit = max((u for u in "kmgt" if n >= _UNITS[u]), key=_UNITS.get, default="")
    return f"{n / _UNITS[unit]:.1f} {unit.upper()}iB" if unit else f"{n} bytes"


def default_budget() -> tuple[int, str]:
    """(bytes, how it was found) of the budget used when none is given."""
    avail = available_memory()
    if avail is None:
        return FALLBACK_BUDGET, "default; the available memory is unknown"
    return int(avail * DEFAULT_FRACTION), f"{DEFAULT_FRACTION:.0%} of the {_size(avail)} available"


def choose_mode(weights_bytes: int, mode: str = "auto", max_memory: int | str | None = None) -> tuple[str, str]:
    """("resident" | "streaming", one-line reason): resident when the float32 weights fit the budget
    (``max_memory``, else :func:`default_budget`), unless ``mode`` forces one."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    need = f"float32 weights {_size(weights_bytes)}"
    if mode != "auto":
        return mode, f"requested ({need})"
    if max_memory is not None:
        budget, source = parse_size(max_memory), "given"
    else:
        budget, source = default_budget()
    where = f"the memory budget {_size(budget)} ({source})"
    if weights_bytes <= budget:
        return "resident", f"{need} fit {where}"
    return "streaming", f"{need} exceed {where}; weights are decoded from the file as each forward pass uses them"
