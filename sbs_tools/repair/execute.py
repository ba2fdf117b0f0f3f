"""Write a planned repair safely and prove what it did.

1. The output is written to a temporary file in the target directory
   (:class:`~sbs_tools.output.PendingFile`, in gemma.cpp's layout via
   :class:`~sbs_tools.writer.BlobWriter`) and fsynced.
2. The temporary file is checked with ``sbs verify``: it must have no errors
   (unless ``--partial``), none of the findings the plan claimed to fix, and,
   with ``--target``, that gemma.cpp generation must load it.
3. Every tensor of the input is hashed where its bytes were found and
   compared with the output blob it became: the proof ("312/312 tensors
   identical"). Only a tensor an action explicitly derives (``fuse-tensor``
   for older targets) differs, and the proof says so.
4. Only then is it renamed over the output path (``--in-place``: the input is
   first hard-linked, or copied, to the backup name). The input file is never
   opened for writing.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import blobstore
from ..errors import SbsError
from ..output import PendingFile, fsync_dir
from ..writer import BlobWriter
from .analyze import Analysis
from .plan import Plan

#: Findings a repaired file may still carry without failing verification: they are not defects.
TOLERATED = frozenset({"v1-end-padded", "config-missing-fields", "config-extra-fields", "pre-2025-format",
                       "tokenizer-missing", "unexpected-tensor", "blob-not-in-toc", "scale-ignored",
                       "runtime-unsupported", "legacy-only", "deep-skipped", "all-zero", "norm-suspicious",
                       "sfp-noncanonical", "scales-extra", "vit-pool-grid", "newer-format", "global-timescale-lm",
                       "block-straddle",  # a property of the model's shapes (Q4_0/MXFP4 rows), not a defect
                       # kept on purpose for targets that decide the RoPE base by the model number
                       "global-timescale-missing"})


@dataclass
class ProofLine:
    input_key: str
    output_key: str | None
    status: str  # "identical" | "derived" | "dropped" | "lost" | "DIFFERENT"
    input_sha256: str | None = None
    output_sha256: str | None = None
    src: tuple[int, int] | None = None
    note: str = ""
    kind: str = "tensor"

    def to_dict(self) -> dict[str, Any]:
        d = {"input": self.input_key, "output": self.output_key, "status": self.status, "kind": self.kind}
        if self.src is not None:
            d["input_range"] = list(self.src)
        for k in ("input_sha256", "output_sha256"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class RepairResult:
    """Outcome of :func:`sbs_tools.repair.repair`."""

    status: str  # repaired | nothing-to-repair | unrepairable | verification-failed | planned
    input: str
    output: str | None
    plan: Plan
    proof: list[ProofLine] = field(default_factory=list)
    report: Any = None  # sbs_tools.verify Report of the written file
    problems: list[str] = field(default_factory=list)
    backup: str | None = None
    forced: bool = False

    @property
    def ok(self) -> bool:
        return self.status in ("repaired", "nothing-to-repair") or (self.status == "planned" and
                                                                   self.plan.repairable)

    @property
    def exit_code(self) -> int:
        if self.status == "unrepairable" and self.plan.refusals and all(
                r.code in ("not-sbs", "io-error", "empty-file") for r in self.plan.refusals):
            return 2
        if self.status == "repaired" and self.forced:
            return 1  # a partial file was written on request; it still has errors
        return 0 if self.ok else 1

    def proof_counts(self) -> tuple[int, int]:
        tensors = [p for p in self.proof if p.kind == "tensor"]
        kept = [p for p in tensors if p.status in ("identical", "DIFFERENT", "derived")]
        return sum(p.status == "identical" for p in kept), len(kept)

    def proof_summary(self) -> str:
        same, total = self.proof_counts()
        parts = [f"{same}/{total} tensors identical"]
        others = [p for p in self.proof if p.kind == "other" and p.output_key is not None]
        if others:
            parts[0] += f", {sum(p.status == 'identical' for p in others)}/{len(others)} other blobs identical"
        derived = [p for p in self.proof if p.status == "derived"]
        dropped = [p for p in self.proof if p.status == "dropped" and p.kind != "scales"]
        folded = [p for p in self.proof if p.status == "dropped" and p.kind == "scales"]
        lost = [p for p in self.proof if p.status == "lost"]
        if derived:
            parts.append(f"{len(derived)} derived")
        if dropped:
            parts.append(f"{len(dropped)} dropped (" + ", ".join(f"{p.input_key}: {p.note}" for p in dropped[:4])
                         + (", ..." if len(dropped) > 4 else "") + ")")
        if folded:
            parts.append(", ".join(p.input_key for p in folded) + " folded into the toc")
        if lost:
            parts.append(f"{len(lost)} not recoverable (" + ", ".join(p.input_key for p in lost[:4])
                         + (", ..." if len(lost) > 4 else "") + ")")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        same, total = self.proof_counts()
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "input": self.input,
            "output": self.output,
            "backup": self.backup,
            "plan": self.plan.to_dict(),
            "proof": {"identical": same, "total": total, "summary": self.proof_summary() if self.proof else None,
                      "tensors": [p.to_dict() for p in self.proof]},
            "verify": None if self.report is None else {
                "ok": self.report.ok, "findings": [f.to_dict() for f in self.report.findings],
                "compat": [g.to_dict() for g in self.report.compat]},
            "problems": list(self.problems),
        }


def _sha(data) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(data)).cast("B")).hexdigest()


def write_state(plan: Plan, a: Analysis, out: PendingFile) -> None:
    """Write ``plan.state`` into the temporary file ``out`` and fsync it (the caller commits it)."""
    s = plan.state
    w = BlobWriter(out, s.layout, pad_end=s.pad_end)
    try:
        for key, x in s.output_blobs():
            w.add(key, x if isinstance(x, bytes) else x.data if x.data is not None else a.data(x.src))
    except BaseException:
        w.abort()
        raise
    w.finish()


def prove(plan: Plan, a: Analysis, path: str) -> list[ProofLine]:
    """Hash every input tensor where its bytes were found and the output blob it became."""
    fd = os.open(path, os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    try:
        buf = np.frombuffer(mm, dtype=np.uint8)
        d = blobstore.read_directory(buf)
        out = d.by_key()
        lines = []
        for e in plan.proof:
            in_sha = _sha(a.buf[e.src[0]:e.src[0] + e.src[1]]) if e.src else None
            if e.output_key is None:
                lines.append(ProofLine(e.input_key, None, "lost" if e.src is None else "dropped", in_sha, None,
                                       e.src, e.note, e.kind))
                continue
            oe = out.get(e.output_key)
            out_sha = _sha(buf[oe.offset:oe.offset + oe.size]) if oe is not None else None
            if e.transform:
                status, note = "derived", e.transform
            else:
                status, note = ("identical" if out_sha == in_sha else "DIFFERENT"), e.note
            lines.append(ProofLine(e.input_key, e.output_key, status, in_sha, out_sha, e.src, note, e.kind))
        del buf, d, out
        return lines
    finally:
        try:
            mm.close()
        except BufferError:
            pass


def check_output(plan: Plan, report) -> list[str]:
    """Why the written file is not acceptable (empty list: it is)."""
    problems = []
    forced = plan.options.partial and plan.refusals
    if not forced:
        for f in report.errors:
            problems.append(f"verify reports {f.code}: {f.message}")
        for f in report.warnings:
            if f.code not in TOLERATED:
                problems.append(f"verify reports {f.code}: {f.message}")
    fixed = {(i.finding.code, i.finding.blob or i.finding.tensor) for i in plan.items if i.status == "fix"}
    for f in report.findings:
        if (f.code, f.blob or f.tensor) in fixed and f.code != "legacy-only" and not forced:
            msg = f"repair claimed to fix {f.code} ({f.blob or f.tensor or 'file'}) but verify still reports it"
            if msg not in problems:
                problems.append(msg)
    if plan.target is not None and not forced:
        gen = next((g for g in report.compat if g.key == plan.target.key), None)
        if gen is not None and not gen.loads:
            problems.append(f"target {plan.target.key}: verify says it does not load: " + "; ".join(gen.reasons))
    return problems


def execute(plan: Plan, a: Analysis, out: str, *, backup: str | None = None,
            progress: Callable[[str], None] = lambda stage: None) -> "RepairResult":
    """Write, verify, prove, then rename into place. ``backup``: in-place mode (``out`` is the input)."""
    from ..verify import verify

    pending = PendingFile(out)
    result = RepairResult("verification-failed", a.path, None, plan, forced=bool(plan.options.partial
                                                                                 and plan.refusals))
    try:
        progress("writing")
        write_state(plan, a, pending)
        progress("verifying the output")
        result.report = verify(pending.path)
        progress("proving every tensor")
        result.proof = prove(plan, a, pending.path)
        result.problems = check_output(plan, result.report)
        for p in result.proof:
            if p.status == "DIFFERENT":
                result.problems.append(f"{p.input_key} -> {p.output_key}: bytes differ (input sha256 "
                                       f"{p.input_sha256}, output {p.output_sha256})")
            elif p.output_key is not None and p.output_sha256 is None:
                result.problems.append(f"{p.output_key} is missing from the written file")
        if result.problems:
            return result
        if backup is not None:
            _backup(a.path, backup)
            result.backup = backup
        result.output = pending.commit()
        result.status = "repaired"
        return result
    finally:
        pending.discard()


def _backup(src: str, dst: str) -> None:
    if os.path.lexists(dst):
        raise SbsError(f"backup {dst} already exists; refusing to overwrite it", code="backup-exists")
    try:
        os.link(src, dst)  # the original inode becomes the backup; its bytes are never touched
    except OSError:
        shutil.copy2(src, dst)
    fsync_dir(os.path.dirname(os.path.abspath(dst)))


