"""The working state every repair rule reads and changes: the analysis, the output model, and the plan so far.

A :class:`Ctx` is created once per plan. Rules (``rules/``) are functions
``rule(p: Ctx)``; they change ``p.s`` (the :class:`~.actions.State` that will
be written) and record why with :meth:`Ctx.act` / :meth:`Ctx.refuse`. Rules
may run more than once (the simulation loop of :mod:`.driver`), so recording
the same action or refusal twice is a no-op.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..tensors import TensorSpec
from .actions import Action, OutBlob, Refusal, State
from .analyze import Analysis, strip_prefix
from .targets import Target

if TYPE_CHECKING:
    from .plan import Options, Plan


@dataclass
class Ctx:
    """One repair being planned (see module doc)."""

    a: Analysis
    opts: "Options"
    target: Target | None
    plan: "Plan"
    codes: set[str]  # finding codes of the input
    s: State | None = None
    specs: dict[str, TensorSpec] = field(default_factory=dict)  # tensors the config implies, by name
    lost: set[str] = field(default_factory=set)  # keys whose bytes cannot be located
    bad_keys: set[int] = field(default_factory=set)  # directory entries whose key cannot be written
    bad_blobs: list = field(default_factory=list)  # (Resolved, why) of those entries, until placed
    renamed: dict[str, str] = field(default_factory=dict)  # output name -> input key
    dropped: dict[str, str] = field(default_factory=dict)  # output name -> why it is not written
    migrated: bool = False  # a pre-2025 file was migrated (config, toc and tokenizer are settled)

    def act(self, kind: str, summary: str, *fixes: tuple[str, str | None], **detail: Any) -> Action:
        """Record an action (once: a rule that runs again finds its earlier action)."""
        x = Action(kind, summary, tuple(fixes), detail)
        for old in self.plan.actions:
            if (old.kind, old.summary, old.fixes) == (x.kind, x.summary, x.fixes):
                return old
        self.plan.actions.append(x)
        return x

    def refuse(self, code: str, name: str | None, reason: str, forceable: bool = True) -> Refusal:
        """Record a refusal (once)."""
        for old in self.plan.refusals:
            if (old.code, old.name, old.reason) == (code, name, reason):
                return old
        r = Refusal(code, name, reason, forceable)
        self.plan.refusals.append(r)
        return r

    def has(self, code: str) -> bool:
        """Whether verify reported ``code`` for the input."""
        return code in self.codes

    def tensor_name(self, key: str) -> str:
        """The tensor name of a key (pre-2025 files kept as they are still carry their type prefix)."""
        st = strip_prefix(key) if self.a.prefixed and self.s.single_file is False else None
        return st[1] if st else key

    def bytes_of(self, b: OutBlob) -> np.ndarray:
        """The bytes blob ``b`` will be written with (a view of the input, or its new bytes)."""
        if b.data is not None:
            return np.frombuffer(b.data, dtype=np.uint8)
        return self.a.data(b.src)
