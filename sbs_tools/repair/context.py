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
    _seen: dict[str, dict[tuple, Any]] = field(default_factory=dict)  # "actions"/"refusals" -> identity -> item

    def _once(self, kind: str, key, item_key, make) -> Any:
        """The recorded item of ``plan.<kind>`` whose identity is ``key``, or ``make()`` appended. A dict
        keeps this linear (a file of 65,535 damaged entries records as many refusals)."""
        items = getattr(self.plan, kind)
        seen = self._seen.setdefault(kind, {})
        if len(seen) != len(items):  # appended elsewhere (or a new plan): index the list again
            seen.clear()
            for old in items:
                seen.setdefault(item_key(old), old)
        old = seen.get(key)
        if old is not None:
            return old
        x = make()
        items.append(x)
        seen[key] = x
        return x

    def act(self, kind: str, summary: str, *fixes: tuple[str, str | None], **detail: Any) -> Action:
        """Record an action (once: a rule that runs again finds its earlier action)."""
        return self._once("actions", (kind, summary, tuple(fixes)), lambda a: (a.kind, a.summary, a.fixes),
                          lambda: Action(kind, summary, tuple(fixes), detail))

    def refuse(self, code: str, name: str | None, reason: str, forceable: bool = True) -> Refusal:
        """Record a refusal (once)."""
        return self._once("refusals", (code, name, reason), lambda r: (r.code, r.name, r.reason),
                          lambda: Refusal(code, name, reason, forceable))

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
