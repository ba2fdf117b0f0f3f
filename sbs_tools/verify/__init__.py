"""``sbs verify``: find what would make gemma.cpp abort, before gemma.cpp does.

>>> import sbs_tools
>>> report = sbs_tools.verify_file("fixtures/corpus/v2/gemma2-2b-tiny-sfp.sbs")
>>> report.ok, report.codes("error")
(True, [])

:func:`verify` never raises for a bad file: an unreadable file is a report
with a ``not-sbs`` / ``bad-magic`` / ... finding. Checks run in families
(see :data:`~sbs_tools.verify.findings.FAMILIES`): format, container,
metadata, tokenizer, layers, compat, (``deep=True``) the decoded values and
(``run=True``) a forward pass with the numpy decoder (:mod:`.run`).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

from .compat import GENERATIONS, compat_findings, evaluate
from .container import open_checked
from .deep import check_deep
from .findings import CODES, FAMILIES, UNREADABLE_CODES, Finding, Generation, Report, finding
from .layers import check_layers, check_pre2025_names
from .metadata import check_metadata

if TYPE_CHECKING:
    from ..sbsfile import SbsFile

__all__ = ["verify", "verify_open", "add_run", "unusable", "Report", "Finding", "Generation", "CODES", "FAMILIES", "GENERATIONS"]

#: Problems ``SbsFile`` records itself that verify passes through (pre-2025 ``Fscales``).
_PASSTHROUGH = ("scales-invalid", "scales-extra")


def verify(path: str | os.PathLike, deep: bool = False,
           progress: Callable[[int], None] | None = None, *, run: bool = False,
           max_memory: int | str | None = None) -> Report:
    """Check one file; returns a :class:`Report` (``report.ok`` is False when any error was found).

    ``deep=True`` also decodes every tensor (streaming); ``progress`` is then
    called with the number of tensor bytes processed after each chunk.
    ``run=True``, once the other checks found no error, loads the model (resident or streaming
    weights, as ``max_memory`` allows: bytes or a size such as ``"4G"``) and runs a short prompt,
    a few decode steps and, with a vision encoder, a synthetic image (``run-*`` findings; the
    run's mode and time in ``report.facts["run"]``). An invalid ``max_memory`` raises ValueError.
    """
    path = os.fspath(path)
    if max_memory is not None:
        from inference import parse_size

        max_memory = parse_size(max_memory)
    report, f = verify_open(path, deep=deep, progress=progress, run=run)
    if f is not None:
        f.close()
    if run:
        add_run(report, max_memory)
    return report


def verify_open(path: str | os.PathLike, deep: bool = False, progress: Callable[[int], None] | None = None, *,
                run: bool = False) -> tuple[Report, SbsFile | None]:
    """:func:`verify` without the run and without closing the file: the report and the open file (None
    when it could not be opened), which the caller closes -- so a caller that goes on reading it
    (``sbs report``) opens it once."""
    path = os.fspath(path)
    report = Report(path, deep=deep, run=run)
    f, found = open_checked(path)
    report.findings += found
    if f is None:
        report.compat = evaluate(None, None, report.findings)
        return report, None
    try:
        _check_open_file(f, report, deep=deep, progress=progress)
    except BaseException:
        f.close()
        raise
    return report, f


def _check_open_file(f: SbsFile, report: Report, deep: bool = False,
                     progress: Callable[[int], None] | None = None) -> None:
    """Every check but the container's (:func:`.container.open_checked` made those while opening ``f``)."""
    report.facts = {"layout": f.layout, "format": f.format, "era": f.era, "file_bytes": f.file_bytes,
                    "num_blobs": len(f.directory.entries), "num_tensors": len(f.tensors)}
    for p in f.problems:
        if p.code in _PASSTHROUGH:
            report.findings.append(Finding(p.code, p.severity, p.message, offset=p.offset, blob=p.blob))
    md_found, md = check_metadata(f)
    report.findings += md_found
    cfg = md.config
    if cfg is not None:
        report.facts.update({"model": cfg.model_name, "specifier": cfg.specifier, "weight": cfg.weight_name,
                             "schema_revision": cfg.schema_revision, "num_layers": len(cfg.layer_configs),
                             "vit_layers": len(cfg.vit_config.layer_configs)})
        if md.config_ok and md.toc is not None:  # without a toc every tensor would look missing
            report.findings += check_layers(f, cfg)
    elif f.era == "pre-2025":
        report.findings += check_pre2025_names(f)
    report.compat = evaluate(f, md, report.findings)
    report.findings += compat_findings(report.compat, report.findings)
    if cfg is not None and md.config_ok:
        from ..canonical import rope_discrepancy, vision_discrepancy, vit_pool_grid_problem

        for code, note in (("rope-quirk", rope_discrepancy(cfg)), ("vit-pool-grid", vit_pool_grid_problem(cfg)),
                           ("vision-quirk", vision_discrepancy(cfg))):
            if note:
                report.findings.append(finding(code, note, blob="config"))
    if deep:
        report.findings += check_deep(f, progress)


def add_run(report: Report, max_memory: int | str | None = None) -> None:
    """Add the ``run`` family to a report of the other checks: ``run-skipped`` (info) after
    errors, else the findings of :func:`.run.check_run`."""
    report.run = True
    if report.unreadable is not None:
        return
    errors = sorted({f.code for f in report.errors})
    if errors:
        report.findings.append(finding("run-skipped", "not run: the structural checks found errors ("
                                       + ", ".join(errors) + "); fix them first"))
        return
    from .run import check_run

    found, facts = check_run(report.path, max_memory=max_memory)
    report.findings += found
    report.facts["run"] = facts


def unusable(path: str | os.PathLike) -> Finding | None:
    """Why ``path`` cannot be used as a ``.sbs`` input at all (a bad path, or not a BlobStore), else None.
    Cheap: only the header and directory are read. A damaged BlobStore is usable: verify diagnoses it."""
    f, found = open_checked(path)
    if f is not None:
        f.close()
    return next((x for x in found if x.code in UNREADABLE_CODES), None)
