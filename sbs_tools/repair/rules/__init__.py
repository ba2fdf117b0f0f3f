"""The repair rules, in the order they apply.

A :class:`Rule` names the ``sbs verify`` finding codes it answers and a
function ``apply(p)`` that changes the output model ``p.s`` and records each
change as an action (or why it cannot, as a refusal) -- see
:class:`~..context.Ctx`. :mod:`..driver` applies every rule once, simulates
the output (verify on a skeleton of it), and applies the ``rerun`` rules again
while the simulated output still reports one of their codes.

Rules are read one at a time: each module holds one concern.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..context import Ctx
from . import config, container, era, layers, orphans, output, timescale, toc


@dataclass(frozen=True)
class Rule:
    """One repair rule (see module doc)."""

    name: str
    codes: frozenset[str]  # finding codes it answers
    apply: Callable[[Ctx], None]
    rerun: bool = False  # depends only on the output model: safe to apply again
    single_file: bool = False  # only for single-file models (config + toc)

    def due(self, p: Ctx, residual: set[str] | None) -> bool:
        """Whether to apply now: on the first pass every rule, later only ``rerun`` rules whose codes remain."""
        if self.single_file and not p.s.single_file:
            return False
        return residual is None or (self.rerun and bool(self.codes & residual))


def _rule(name: str, codes: str, apply: Callable[[Ctx], None], **kw: bool) -> Rule:
    return Rule(name, frozenset(codes.split()), apply, **kw)


#: Rules that read the input's container; they run once, before the output model exists.
SETUP: list[Callable[[Ctx], None]] = [container.container, container.duplicates, container.build_state]

RULES: list[Rule] = [
    _rule("era", "prefixed-names pre-2025-format legacy-only", era.era),
    _rule("config-source", "config-missing config-undecodable config-invalid", config.config_source, single_file=True),
    _rule("config-values", "config-invalid shape-mismatch vocab-mismatch", config.fix_config, rerun=True,
          single_file=True),
    _rule("toc", "toc-missing toc-undecodable toc-duplicate toc-blob-missing blob-not-in-toc toc-field-mismatch "
                 "tensor-size-mismatch shape-mismatch scale-invalid type-unsupported missing-tensor", toc.toc,
          rerun=True, single_file=True),
    _rule("layers", "both-forms legacy-only", layers.layers, rerun=True, single_file=True),
    _rule("tokenizer", "tokenizer-missing tokenizer-invalid vocab-mismatch", output.tokenizer, single_file=True),
    _rule("weight-type", "weight-type-mismatch", output.weight, rerun=True, single_file=True),
    _rule("global-timescale", "global-timescale-missing", timescale.global_timescale, single_file=True),
    _rule("target-config", "legacy-only config-invalid type-unsupported", output.target_config, single_file=True),
    _rule("pre-2025-target", "legacy-only", era.to_pre2025_target),
    _rule("orphans", "bad-key", orphans.orphans),
    _rule("drop-unused", "unexpected-tensor blob-not-in-toc", orphans.unused),
    _rule("layout", "legacy-only", output.layout),
]

#: Every code some rule answers (anything else that verify reports is kept, or cannot be fixed).
HANDLED: frozenset[str] = frozenset().union(*(r.codes for r in RULES))
