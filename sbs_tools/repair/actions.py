"""The output model a repair builds, the actions that shape it, and small inference rules.

A :class:`State` is the file to be written: tensor/other blobs (each either a
byte range of the input or, rarely, new bytes), then ``config``, ``tokenizer``
and ``toc``. Every change the planner makes is recorded as an :class:`Action`
naming the finding codes it fixes, so ``--dry-run`` can print "finding ->
action" and the executor can check afterwards that those findings are gone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..errors import SbsError
from ..tensors import TensorSpec
from ..toc import TocRecord
from ..types import TYPE_BITS, Type, element_bytes, num_elements, packed_bytes
from .relayout import Resolved

#: SFP bytes of magnitude 1.875, the value ``ScaleWeights`` maps max|x| to when it scales a tensor (§6.5).
SFP_MAX_BYTES = (0x7F, 0xFF)
CANDIDATE_TYPES = (Type.F32, Type.BF16, Type.SFP, Type.NUQ, Type.I8)


@dataclass
class Action:
    """One change. ``fixes``: (finding code, blob/tensor name or None for any) pairs it resolves."""

    kind: str
    summary: str
    fixes: tuple[tuple[str, str | None], ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)

    def covers(self, code: str, names: set[str]) -> bool:
        return any(c == code and (n is None or n in names) for c, n in self.fixes)

    def to_dict(self) -> dict[str, Any]:
        d = {"action": self.kind, "summary": self.summary, "fixes": [c for c, _ in self.fixes]}
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass
class Refusal:
    """Something repair will not do; blocks the output unless ``forceable`` and ``--partial``."""

    code: str  # the finding code it concerns (or a repair-specific one)
    name: str | None
    reason: str
    forceable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "reason": self.reason, "forceable": self.forceable}


@dataclass
class OutBlob:
    """A blob of the output. Bytes come from ``src`` (an input range) unless ``data`` is set."""

    key: str
    kind: str  # "tensor" | "other" | "scales"
    src: Resolved | None = None
    data: bytes | None = None
    origin: str | None = None  # input key whose bytes these are (for the proof)
    transform: str | None = None  # set when the bytes are derived, not copied

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else int(self.src.size)


@dataclass
class State:
    """What will be written."""

    layout: str  # "v1" | "v2"
    pad_end: bool  # V1: pad to 64 KiB (single-file era) or end after the last blob (pre-2025)
    single_file: bool
    blobs: list[OutBlob]
    config: ModelConfig | None = None
    config_raw: bytes | None = None  # original bytes, written while the config is unchanged
    config_dirty: bool = False
    toc: list[TocRecord] | None = None
    toc_raw: bytes | None = None
    toc_dirty: bool = False
    tokenizer: bytes | None = None  # None: "unavailable"

    def find(self, key: str) -> OutBlob | None:
        """The blob named ``key`` (indexed: the planner looks blobs up once per toc record). The index is
        rebuilt when the list is replaced or changes length; call :meth:`invalidate` after renaming blobs."""
        idx = self.__dict__.get("_idx")
        if idx is None or self.__dict__.get("_idx_list") is not self.blobs or self._idx_len != len(self.blobs):
            idx = self.invalidate()
        b = idx.get(key)
        if b is not None and b.key != key:
            b = self.invalidate().get(key)
        return b

    def invalidate(self) -> dict[str, OutBlob]:
        idx: dict[str, OutBlob] = {}
        for b in self.blobs:
            idx.setdefault(b.key, b)
        self.__dict__.update(_idx=idx, _idx_list=self.blobs, _idx_len=len(self.blobs))
        return idx

    def keys(self) -> list[str]:
        return [b.key for b in self.blobs]

    def drop(self, key: str) -> OutBlob | None:
        b = self.find(key)
        if b is not None:
            self.blobs.remove(b)
        if self.toc is not None and any(r.name == key for r in self.toc):
            self.toc = [r for r in self.toc if r.name != key]
            self.toc_dirty = True
        return b

    def record(self, name: str) -> TocRecord | None:
        if self.toc is None:
            return None
        return next((r for r in self.toc if r.name == name), None)

    def output_blobs(self) -> list[tuple[str, "OutBlob | bytes"]]:
        """What is written, in order: every blob, then (single-file) config, tokenizer and toc."""
        from ..sbsfile import MOCK_TOKENIZER

        out: list[tuple[str, OutBlob | bytes]] = [(b.key, b) for b in self.blobs]
        if self.single_file:
            cfg = self.config_bytes()
            if cfg is not None:
                out.append(("config", cfg))
            out.append(("tokenizer", self.tokenizer if self.tokenizer else MOCK_TOKENIZER))
            toc = self.toc_bytes()
            if toc:
                out.append(("toc", toc))
        return out

    def config_bytes(self) -> bytes | None:
        if self.config is None:
            return self.config_raw
        if self.config_dirty or self.config_raw is None:
            return self.config.to_bytes()
        return self.config_raw

    def toc_bytes(self) -> bytes | None:
        from ..toc import encode_toc

        if self.toc is None:
            return self.toc_raw
        if self.toc_dirty or self.toc_raw is None:
            return encode_toc(self.toc)
        return self.toc_raw


# -- inference rules -----------------------------------------------------------------------------------------
def types_for_size(size: int, n: int, allowed=CANDIDATE_TYPES) -> list[Type]:
    """Element types whose packed size of ``n`` values is exactly ``size`` bytes."""
    out = []
    for t in allowed:
        if t not in CANDIDATE_TYPES:
            continue
        try:
            if packed_bytes(t, n) == size:
                out.append(t)
        except SbsError:
            pass
    return out


def inferred_scale(t: Type, data: np.ndarray, spec: TensorSpec | None) -> tuple[float | None, str]:
    """The toc scale a gemma.cpp writer stored for these bytes, when the bytes determine it.

    BF16/F32/I8 tensors and norms/biases are always written with scale 1.0.
    An SFP tensor whose bytes never reach +-1.875 (0x7F/0xFF) was not scaled:
    ``ScaleWeights`` maps max|x| to exactly 1.875 whenever it scales. NUQ
    cluster centres are means, so nothing can be concluded for NUQ.
    """
    if spec is not None and spec.kind in ("norm", "bias", "layernorm"):
        return 1.0, f"{spec.kind} tensors are always stored with scale 1"
    if t in (Type.F32, Type.BF16, Type.I8):
        return 1.0, f"writers store {t.name} tensors with scale 1"
    if t == Type.SFP:
        if not np.isin(data, SFP_MAX_BYTES).any():
            return 1.0, "no SFP byte reaches 1.875, so the writer did not scale it"
        return None, "its bytes reach 1.875, so the writer may have scaled it and the scale is lost"
    return None, f"the scale of a {Type(t).name} tensor cannot be recovered from its bytes"


def make_record(name: str, t: Type, rows: int, cols: int, scale: float) -> TocRecord:
    return TocRecord.make(name, t, rows, cols, scale)


def fix_record_fields(rec: TocRecord) -> bool:
    """Recompute element_bytes / num_elements / stride; True if anything changed."""
    try:
        t = Type(rec.type)
    except ValueError:
        return False
    want = (element_bytes(t), num_elements(t, rec.rows * rec.cols), rec.cols)
    if (rec.element_bytes, rec.num_elements, rec.stride) == want:
        return False
    rec.element_bytes, rec.num_elements, rec.stride = want
    return True


def weight_type(records: list[TocRecord]) -> int | None:
    """HEAD ``ReadMatPtrs``: the smallest-TypeBits type over the toc; the first wins ties."""
    best = None
    for r in records:
        if r.type not in Type._value2member_map_:
            continue
        if best is None or TYPE_BITS[Type(r.type)] < TYPE_BITS[Type(best)]:
            best = r.type
    return best


def plain_itemsize(t: int) -> int | None:
    """Bytes per value for types stored one value per fixed-width element (byte-splittable)."""
    return {Type.F32: 4, Type.BF16: 2, Type.SFP: 1}.get(Type(t)) if t in Type._value2member_map_ else None


def size_ok(rec: TocRecord, size: int) -> bool:
    """Whether the record's type and shape give exactly ``size`` packed bytes."""
    try:
        return packed_bytes(rec.type, rec.rows * rec.cols) == size
    except SbsError:
        return False
