"""``sbs repair``: turn ``sbs verify`` errors into a clean file, and prove nothing was lost.

>>> from sbs_tools.repair import repair
>>> r = repair("fixtures/corpus/broken/broken-misaligned-offset.sbs", "/tmp/fixed.sbs")  # doctest: +SKIP
>>> r.status, r.proof_summary()                                                         # doctest: +SKIP
('repaired', '35/35 tensors identical')

Pipeline: :func:`.analyze.analyze` reads the input read-only and locates every
blob's bytes (:mod:`.relayout`); ``sbs verify`` lists the findings;
:func:`.plan.make_plan` applies the rules of :mod:`.rules` to a model of the
output and re-verifies it until nothing changes (:mod:`.driver`), then says per
finding the action that fixes it or why none can; :func:`.execute.execute` writes it to
a temporary file, verifies it, hashes every tensor against the input, and
renames it into place. See ``docs/repair.md``.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from ..errors import SbsError
from ..inputs import check_input_file
from ..output import check_output_file
from .analyze import Analysis, analyze, tokenizer_problem
from .execute import RepairResult, execute
from .plan import Options, Plan, make_plan
from .targets import TARGETS, get_target

__all__ = ["repair", "plan", "RepairResult", "Plan", "Options", "TARGETS"]


def _options(target: str | None = None, layout: str | None = None, tokenizer: str | os.PathLike | bytes | None = None,
             config_from: str | os.PathLike | None = None, model: str | None = None,
             drop_duplicates: str | None = None, drop_unused: bool = False, partial: bool = False) -> Options:
    t = get_target(target)  # validates
    if layout not in (None, "v1", "v2"):
        raise SbsError(f"unknown layout {layout!r} (v1 or v2)", code="bad-layout")
    if drop_duplicates not in (None, "first", "last"):
        raise SbsError(f"--drop-duplicates must be 'first' or 'last', not {drop_duplicates!r}", code="bad-option")
    o = Options(target=target, layout=layout, drop_duplicates=drop_duplicates, drop_unused=drop_unused, partial=partial)
    if tokenizer is not None:
        if isinstance(tokenizer, (bytes, bytearray)):
            data, o.tokenizer_path = bytes(tokenizer), "the given tokenizer"
        else:
            o.tokenizer_path = os.fspath(tokenizer)
            check_input_file(o.tokenizer_path)
            try:
                with open(o.tokenizer_path, "rb") as fh:
                    data = fh.read()
            except OSError as e:
                raise SbsError(f"cannot read tokenizer {o.tokenizer_path}: {e.strerror}", code="io-error") from None
        why = tokenizer_problem(data)
        if why:
            raise SbsError(f"--tokenizer {o.tokenizer_path}: {why}", code="bad-tokenizer")
        o.tokenizer = data
    if config_from is not None and model is not None:
        raise SbsError("give either --config-from or --model, not both", code="bad-option")
    if config_from is not None:
        from .. import open as sbs_open

        with sbs_open(config_from, strict=False) as other:
            if other.config is None:
                raise SbsError(f"--config-from {os.fspath(config_from)}: that file has no readable config",
                               code="config-missing")
            o.config = other.config
        o.config_source = os.fspath(config_from)
    if model is not None:
        from .. import canonical

        gen = t.key if t is not None else None  # the config as the target generation writes it
        try:
            o.config = canonical.from_specifier(model, generation=gen)
        except SbsError:
            # a model name without type (recomputed from the tensors); an unknown one raises here
            o.config = canonical.canonical_config(model, "bf16", generation=gen)
        o.config_source = f"gemma.cpp's canonical config {model!r}"
    return o


def plan(path: str | os.PathLike, **options: Any) -> Plan:
    """What :func:`repair` would do (``--dry-run``): findings, actions, refusals. Writes nothing."""
    p, _ = _plan(path, **options)
    return p


def _plan(path: str | os.PathLike, findings=None, **options: Any) -> tuple[Plan, Analysis]:
    from ..verify import verify

    opts = _options(**options)
    a = analyze(path, drop_duplicates=opts.drop_duplicates,
                reference=options.get("config_from"))
    if findings is None:
        findings = verify(path).findings
    return make_plan(a, findings, opts), a


def repair(path: str | os.PathLike, out: str | os.PathLike | None = None, *, dry_run: bool = False,
           in_place: bool = False, backup: str | None = None, overwrite: bool = False,
           progress: Callable[[str], None] | None = None, **options: Any) -> RepairResult:
    """Repair ``path`` into ``out``.

    Options: ``target`` (None/"auto", "current", "2025-05", "pre-2025" or a
    generation key of ``sbs verify``), ``layout`` ("v1"/"v2"), ``tokenizer``
    (path or bytes of a SentencePiece model), ``config_from`` (another .sbs
    whose config to use), ``model`` (specifier or model name: gemma.cpp's
    canonical config), ``drop_duplicates`` ("first"/"last"), ``drop_unused``,
    ``partial`` (write a partial file despite unfixable errors).

    ``in_place=True`` requires ``backup`` (a suffix such as ``".bak"``): the
    original is kept under ``path + backup``. ``out`` follows the output policy
    (:mod:`sbs_tools.output`): never the input, an existing file only with
    ``overwrite=True``. ``progress(stage)`` is told each stage as it starts. Returns a :class:`RepairResult`;
    ``status`` is "repaired", "nothing-to-repair", "unrepairable",
    "verification-failed" or (``dry_run``) "planned". Raises
    :class:`~sbs_tools.errors.SbsError` only for bad arguments.
    """
    path = os.fspath(path)
    check_input_file(path, allow_empty=True)  # an empty file is a finding (not-sbs), not a bad path
    if in_place:
        if not backup:
            raise SbsError("--in-place requires --backup SUFFIX", code="bad-option")
        if out is not None and os.path.abspath(os.fspath(out)) != os.path.abspath(path):
            raise SbsError("give either -o OUT or --in-place, not both", code="bad-option")
        out = path
        backup = path + backup
        if os.path.lexists(backup):
            raise SbsError(f"backup {backup} already exists; refusing to overwrite it", code="backup-exists")
    elif out is None and not dry_run:
        raise SbsError("an output path is required (-o OUT, or --in-place --backup SUFFIX)", code="bad-option")
    elif out is not None and not dry_run:
        others = [options[k] for k in ("tokenizer", "config_from") if isinstance(options.get(k), (str, os.PathLike))]
        check_output_file(out, [path, *others], force=overwrite)
    say = progress or (lambda stage: None)
    say("analyzing and planning")
    p, a = _plan(path, **options)
    if dry_run:
        return RepairResult("planned", path, None, p)
    if p.state is None or p.blocking:
        return RepairResult("unrepairable", path, None, p)
    if p.nothing_to_do:
        return RepairResult("nothing-to-repair", path, None, p)
    return execute(p, a, os.fspath(out), backup=backup if in_place else None, progress=say)
