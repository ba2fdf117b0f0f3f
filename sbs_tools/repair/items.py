"""Findings -> plan items: for every ``sbs verify`` finding of the input, what the repair does about it.

A finding is ``fix`` when an action claims it, or when it is gone from the
simulated output (:mod:`.simulate`); ``cannot-fix`` when a rule refused it, or
when it survives the simulation; warnings and infos no action touches are
``keep`` / ``info`` with the reason. Errors the simulated output would still
report that the input did not (a repair cannot introduce them silently)
become refusals too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..sbsfile import METADATA_KEYS
from ..verify.findings import Finding, family_of
from .actions import Action, Refusal
from .context import Ctx
from .plan import PlanItem
from .rules.container import PLACEMENT

#: Why a finding that no action addresses stays (warnings/infos) or blocks (errors).
KEEP_REASONS = {
    "v1-end-padded": "informational: current gemma.cpp reads 64 KiB-padded V1 files (use --target pre-2025 to "
                     "end the file after the last blob)",
    "config-extra-fields": "written by a newer gemma.cpp; the fields are kept as they are",
    "config-missing-fields": "older writer; gemma.cpp uses the defaults, which is what it always did",
    "pre-2025-format": "current gemma.cpp still reads pre-2025 files; migrate with --target current "
                       "(plus --config-from/--model when the model cannot be deduced, and --tokenizer)",
    "tokenizer-missing": "no tokenizer to embed: pass --tokenizer FILE.spm",
    "unexpected-tensor": "gemma.cpp ignores it; repair keeps every tensor (drop it with --drop-unused)",
    "blob-not-in-toc": "gemma.cpp ignores it; repair keeps it (drop it with --drop-unused)",
    "scale-ignored": "gemma.cpp ignores the scale of norms/biases; changing it would alter what other tools "
                     "decode, and the right value cannot be known",
    "runtime-unsupported": "running it needs the tensors re-encoded to another type; repair never re-encodes",
    "legacy-only": "the file is kept for the gemma.cpp generation that reads it; pass --target current to "
                   "convert it",
    "all-zero": "tensor values are never changed by repair",
    "sfp-noncanonical": "tensor values are never changed by repair",
    "norm-suspicious": "tensor values are never changed by repair",
    "deep-skipped": "informational",
    "vit-pool-grid": "the patch grid is the model's own (image size and ViT weights); repair cannot change it, "
                     "and gemma.cpp's text runs are unaffected",
    "scales-extra": "the extra scales are kept as they are",
}
CANNOT_REASONS = {
    "unloadable": "no repair rule makes any gemma.cpp generation accept it (see the compatibility reasons)",
    "not-sbs": "not a gemma.cpp weight file: there is nothing to repair",
    "io-error": "the file cannot be read",
    "missing-tensor": "the tensor's bytes are not in the file and cannot be recreated from the other tensors; "
                      "re-export the layer (--partial writes a partial file that verify still flags)",
    "shape-mismatch": "the blob's size does not tell which of the toc and the config is right",
    "type-unsupported": "fixing it would mean re-encoding the tensor, which repair never does",
    "vocab-mismatch": "the tokenizer does not match the model; embed the right one with --tokenizer",
    "non-finite": "tensor values are corrupt; repair never changes tensor values",
    "nuq-table-invalid": "tensor values are corrupt; repair never changes tensor values",
    "scale-invalid": "the tensor's scale is lost and its bytes do not determine it",
    "too-many-blobs": "the header is corrupt: the directory cannot be located",
    "directory-out-of-bounds": "the header is corrupt: the directory cannot be located",
    "empty-store": "the header is corrupt: the store claims to hold no blobs",
    "bad-magic": "the directory cannot be located",
    "config-undecodable": "the config cannot be decoded: pass --config-from OTHER.sbs or --model NAME",
    "config-invalid": "the config holds values repair cannot determine: pass --config-from OTHER.sbs or "
                      "--model NAME",
    "tokenizer-invalid": "the embedded tokenizer is damaged: pass --tokenizer FILE.spm",
}
#: Errors ``--partial`` may leave in a partial file (the rest would make it unreadable or wrong).
FORCEABLE = frozenset({"missing-tensor", "tensor-size-mismatch", "non-finite", "nuq-table-invalid", "scale-invalid",
                       "toc-blob-missing"})
#: Codes whose cannot-fix reason may come from a refusal of the same blob under another code.
CASCADE = frozenset(PLACEMENT + ("tensor-size-mismatch", "missing-tensor"))
#: Findings that depend on tensor values: the simulation cannot see them, and repair never changes them.
VALUE_FAMILIES = ("deep",)


def ident(f: Finding) -> str | None:
    """The name a finding is about (tensor before blob: toc findings name the toc blob and the tensor)."""
    return f.tensor or f.blob


@dataclass
class Index:
    """Lookups over the plan's actions, refusals and the simulated output (linear, not quadratic, in size)."""

    inv_renamed: dict[str, list[str]] = field(default_factory=dict)
    ref_any: dict[str, Refusal] = field(default_factory=dict)  # code -> first refusal without a name
    ref_named: dict[tuple[str, str], Refusal] = field(default_factory=dict)
    ref_by_name: dict[str, Refusal] = field(default_factory=dict)
    acts: dict[tuple[str, str | None], tuple[int, Action]] = field(default_factory=dict)
    residual: set[tuple[str, str | None]] | None = None  # (code, name) the simulated output reports

    def add_refusal(self, r: Refusal) -> None:
        if r.name is None:
            self.ref_any.setdefault(r.code, r)
        else:
            self.ref_named.setdefault((r.code, r.name), r)
            self.ref_by_name.setdefault(r.name, r)

    def survives(self, f: Finding, names: set[str]) -> bool:
        """Whether the simulated output still reports ``f`` (True when there was no simulation)."""
        if self.residual is None or family_of(f.code) in VALUE_FAMILIES:
            return True
        if not names:
            return any(c == f.code for c, _ in self.residual)
        return any((f.code, n) in self.residual for n in names)


def index(p: Ctx, residual: list[Finding] | None) -> Index:
    ix = Index()
    for out_name, inp in p.renamed.items():
        ix.inv_renamed.setdefault(inp, []).append(out_name)
    for r in p.plan.refusals:
        ix.add_refusal(r)
    for i, x in enumerate(p.plan.actions):
        for code, name in x.fixes:
            ix.acts.setdefault((code, name), (i, x))
    if residual is not None:
        ix.residual = {(f.code, ident(f)) for f in residual if f.severity == "error"}
    return ix


def names_of(p: Ctx, ix: Index, f: Finding) -> set[str]:
    """The finding's blob/tensor names, under their input and output names."""
    names = {x for x in (f.blob, f.tensor) if x}
    return names | {p.renamed.get(n, n) for n in names} | {o for n in list(names) for o in ix.inv_renamed.get(n, ())}


def refusal_for(p: Ctx, ix: Index, f: Finding, names: set[str]) -> Refusal | None:
    ref = ix.ref_any.get(f.code)
    if ref is None:
        if not names:
            ref = next((r for r in p.plan.refusals if r.code == f.code), None)
        else:
            ref = next((ix.ref_named[(f.code, n)] for n in names if (f.code, n) in ix.ref_named), None)
    if ref is None and f.code in CASCADE:
        ref = next((ix.ref_by_name[n] for n in names if n in ix.ref_by_name), None)
    return ref


def action_for(ix: Index, f: Finding, names: set[str]) -> Action | None:
    hits = [ix.acts[k] for k in [(f.code, None)] + [(f.code, n) for n in names] if k in ix.acts]
    if hits:
        return min(hits, key=lambda h: h[0])[1]
    if f.code == "unloadable":  # what makes a generation accept the file also answers "no generation does"
        return ix.acts.get(("legacy-only", None), (0, None))[1]
    return None


def related_action(p: Ctx, names: set[str]) -> Action:
    """The first action about one of ``names``, else the first action."""
    acts = p.plan.actions
    return next((x for x in acts if any(n in names for _, n in x.fixes) or x.detail.get("key") in names), acts[0])


def decide(p: Ctx, ix: Index, f: Finding) -> tuple[PlanItem, Refusal | None]:
    """The item for one finding, and a refusal to add when it blocks and no rule said so."""
    plan = p.plan
    names = names_of(p, ix, f)
    ref = refusal_for(p, ix, f, names)
    act = action_for(ix, f, names)
    free = act is None and ref is None
    error = f.severity == "error"
    if free and f.code == "unloadable" and plan.actions and (ix.residual is None or not ix.survives(f, names)):
        # A verdict on the whole file, from the other findings; the written file is verified again.
        return PlanItem(f, "fix", plan.actions[0], "decided by the other fixes; the repaired file is verified "
                        "again before it is kept"), None
    if free and error and p.a.header_fix:
        hdr = next(x for x in plan.actions if x.kind == "restore-header")
        return PlanItem(f, "fix", hdr, "read through the damaged header, which repair recovers: " + hdr.summary), None
    moved = next((x for x in plan.actions if x.kind in ("relocate-blob", "resize-blob")
                  and x.detail.get("key") in METADATA_KEYS), None)
    if free and error and moved is not None and family_of(f.code) in ("metadata", "tokenizer", "layers", "compat"):
        return PlanItem(f, "fix", moved, f"a consequence of reading the misplaced "
                        f"{moved.detail.get('key', 'directory')} blob; " + moved.summary), None
    if ref is not None and not (ref.forceable and p.opts.partial and act is not None):
        return PlanItem(f, "cannot-fix", None, ref.reason), None
    if act is not None:
        if error and f.code not in ("legacy-only", "unloadable") and not p.opts.partial and ix.survives(f, names):
            reason = f"the planned {act.kind} does not remove it: the simulated output still reports it"
            return PlanItem(f, "cannot-fix", None, reason), Refusal(f.code, ident(f), reason, forceable=False)
        return PlanItem(f, "fix", act, act.summary), None
    if not error:
        reason = KEEP_REASONS.get(f.code, "not an error; repair leaves it as it is")
        return PlanItem(f, "keep" if f.severity == "warning" else "info", None, reason), None
    if plan.actions and not ix.survives(f, names):
        x = related_action(p, names)
        return PlanItem(f, "fix", x, f"gone once the planned fixes are applied (verified on the simulated "
                        f"output): {x.summary}"), None
    reason = CANNOT_REASONS.get(f.code, "repair has no rule for this finding")
    new = None
    if f.code not in ix.ref_any and not any((f.code, n) in ix.ref_named for n in names):
        new = Refusal(f.code, ident(f), reason, forceable=f.code in FORCEABLE)
    return PlanItem(f, "cannot-fix", None, reason), new


def map_findings(p: Ctx, residual: list[Finding] | None) -> None:
    """Fill ``plan.items``; add refusals for errors that survive the simulation or that it newly shows."""
    ix = index(p, residual)
    for f in p.plan.findings:
        item, new = decide(p, ix, f)
        p.plan.items.append(item)
        if new is not None:
            p.plan.refusals.append(new)
            ix.add_refusal(new)
    if residual is None or p.plan.refusals:
        return  # already blocked (or forced): the residual errors are the refused findings' consequences
    seen = {(f.code, n) for f in p.plan.findings for n in names_of(p, ix, f) | {None}}
    for f in residual:
        if f.severity == "error" and (f.code, ident(f)) not in seen and f.code != "unloadable":
            r = Refusal(f.code, ident(f), f"the repaired file would still report it: {f.message}",
                        forceable=f.code in FORCEABLE)
            p.plan.refusals.append(r)
