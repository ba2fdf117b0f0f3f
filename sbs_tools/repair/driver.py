"""Plan a repair by simulation: apply the rules, verify the simulated output, repeat until nothing changes.

1. :data:`.rules.SETUP` reads the input's container and builds the first
   output model.
2. Every rule of :data:`.rules.RULES` is applied once, in order.
3. The output is simulated (:func:`.simulate.simulate`: ``sbs verify`` on a
   skeleton of it). While it still reports a code some ``rerun`` rule
   answers, those rules are applied again and the output simulated again --
   until a pass changes nothing (a fixed point) or :data:`MAX_PASSES`.
4. Every input finding is mapped to an item (:mod:`.items`): it is
   "cannot fix" only if a rule refused it or it survives the simulation.
"""
from __future__ import annotations

from ..verify.findings import Finding
from .analyze import Analysis
from .context import Ctx
from .items import map_findings
from .plan import Options, Plan
from .proof import finish
from .rules import RULES, SETUP
from .simulate import simulate
from .targets import get_target

#: Passes of the rules over the simulated output before giving up on a fixed point.
MAX_PASSES = 4


def settle(p: Ctx) -> list[Finding] | None:
    """Apply the rules until the simulated output stops changing; its findings (None: not simulated)."""
    due: set[str] | None = None  # None: the first pass applies every rule
    found: list[Finding] | None = None
    for _ in range(MAX_PASSES):
        before = len(p.plan.actions)
        for rule in RULES:
            if rule.due(p, due):
                rule.apply(p)
        if due is not None and len(p.plan.actions) == before:
            return found  # a fixed point: this pass changed nothing (every change is an action)
        found = simulate(p)
        if found is None:
            return None
        due = {f.code for f in found if f.severity == "error"}
        if not any(r.rerun and r.codes & due for r in RULES):
            return found
    p.plan.notes.append(f"the simulated output still changed after {MAX_PASSES} passes of the rules; the "
                        "written file is verified again before it is kept")
    return found


def make_plan(a: Analysis, findings: list[Finding], opts: Options) -> Plan:
    """Decide the repair of the analysed file. Writes nothing but the sparse skeleton it verifies."""
    target = get_target(opts.target)
    p = Ctx(a, opts, target, Plan(a.path, target, opts, list(findings)), {f.code for f in findings})
    residual = None
    if a.fatal is not None:
        p.refuse(a.fatal.code, None, a.fatal.message + (": " + " ".join(a.salvage) if a.salvage else ""),
                 forceable=False)
    else:
        for step in SETUP:
            step(p)
        if p.s is not None:
            residual = settle(p)
            finish(p)
    map_findings(p, residual)
    return p.plan
