"""What a repair will do, without writing anything: the plan and its parts.

A :class:`Plan` holds the output model to write (``state``), the actions
that produce it, the refusals that block it, for every ``sbs verify`` finding
what happens to it (:class:`PlanItem`: "fix" with the action, "keep" with
the reason, "cannot-fix" with the reason), and the proof list.
:func:`make_plan` builds it by simulation (:mod:`.driver`): the rules of
:mod:`.rules` are applied to an in-memory model of the output, which is
verified and fixed again until nothing changes.

Guiding rule: repair never changes a tensor's bytes. It moves bytes to where
gemma.cpp expects them, rewrites metadata that is wrong when the bytes or the
rest of the metadata determine the right value, and drops only blobs that are
exact duplicates or redundant by gemma.cpp's own rules. Anything else is a
refusal with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import ModelConfig
from ..verify.findings import Finding
from .actions import Action, Refusal, State
from .targets import Target

if TYPE_CHECKING:
    from .analyze import Analysis


@dataclass
class Options:
    """Repair options (see :func:`sbs_tools.repair.repair`)."""

    target: str | None = None
    layout: str | None = None
    tokenizer: bytes | None = None
    tokenizer_path: str | None = None
    config: ModelConfig | None = None  # from --config-from / --model
    config_source: str | None = None
    drop_duplicates: str | None = None  # "first" | "last"
    drop_unused: bool = False
    partial: bool = False  # --partial: write what can be recovered despite refusals


@dataclass
class PlanItem:
    """What happens to one finding of the input."""

    finding: Finding
    status: str  # "fix" | "keep" | "cannot-fix" | "info"
    action: Action | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        d = {"finding": self.finding.to_dict(), "status": self.status, "reason": self.reason}
        if self.action is not None:
            d["action"] = self.action.kind
        return d


@dataclass
class ProofEntry:
    """One input tensor (or other data blob) and what became of it."""

    input_key: str
    output_key: str | None  # None: dropped
    src: tuple[int, int] | None  # input byte range holding its bytes
    note: str = ""
    transform: str | None = None  # the output bytes are derived (concat/transposed), not copied
    kind: str = "tensor"


@dataclass
class Plan:
    path: str
    target: Target | None
    options: Options
    findings: list[Finding]
    items: list[PlanItem] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    state: State | None = None
    proof: list[ProofEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def blocking(self) -> list[Refusal]:
        return [r for r in self.refusals if not (r.forceable and self.options.partial)]

    @property
    def repairable(self) -> bool:
        return self.state is not None and not self.blocking

    @property
    def nothing_to_do(self) -> bool:
        return not self.actions and not self.refusals

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "target": self.target.key if self.target else "auto",
            "repairable": self.repairable,
            "nothing_to_repair": self.nothing_to_do,
            "items": [i.to_dict() for i in self.items],
            "actions": [a.to_dict() for a in self.actions],
            "refusals": [r.to_dict() for r in self.refusals],
            "notes": list(self.notes),
            "output": None if self.state is None else {
                "layout": self.state.layout, "format": "single-file" if self.state.single_file else "pre-2025",
                "blobs": len(self.state.blobs) + (3 if self.state.single_file else 0)},
        }


def make_plan(a: "Analysis", findings: list[Finding], opts: Options) -> Plan:
    """Decide the repair of the analysed file (see :mod:`.driver`)."""
    from .driver import make_plan as plan_by_simulation

    return plan_by_simulation(a, findings, opts)
