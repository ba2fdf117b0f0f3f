"""``sbs verify FILE...``: find what would make gemma.cpp abort, with location and advice.

Exit codes: 0 no errors (warnings allowed unless ``--strict``); 1 at least one
file has errors (or warnings with ``--strict``); 2 a usage error, or an input
that could not be used at all (a bad path, or not a BlobStore: ``not-sbs``):
each such file is one ``error: [code] …`` line on stderr and the other files
are still checked. A damaged BlobStore (``bad-magic``, ...) is a result, exit 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from . import EXIT_FINDINGS, EXIT_UNUSABLE, print_error
from .common import (ALLOW_FULL_DOWNLOAD_HELP, app, console, exclusive, inputs_arg, print_json, requires,
                     show_progress, with_transfer)
from .progress import byte_bar

#: Text output shows at most this many findings of one code per file (--json has all).
MAX_PER_CODE = 8
_SEV_STYLE = {"error": "bold red", "warning": "yellow", "info": "blue"}


@app.command()
def verify(
    files: list[str] = typer.Argument(..., metavar="FILE", help="One or more .sbs files, directories (every *.sbs "
                                      "below), globs or URLs / URL prefixes (s3://bucket/models/).",
                                      show_default=False),
    deep: bool = typer.Option(False, "--deep", help="Also decode every tensor (streaming): NaN/Inf, all-zero, "
                                                    "invalid scales, SFP/NUQ encoding, suspicious norms."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document instead of the report."),
    junit: Path | None = typer.Option(None, "--junit", metavar="OUT.xml",
                                      help="Also write a JUnit XML report (one test case per check family)."),
    strict: bool = typer.Option(False, "--strict", help="Treat warnings as failures (exit 1)."),
    force: bool = typer.Option(False, "--force", help="With --junit: replace an existing report file."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, metavar="N", help="Check N files at once (process pool)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="tcp://HOST:PORT",
                                            help="Check the files on this Dask cluster, one task per file."),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", metavar="OUT",
                                         help="Append one JSON line per file as it is done; a rerun with the same "
                                              "OUT skips files already there with the same size and mtime."),
    allow_full_download: bool = typer.Option(False, "--allow-full-download", help=ALLOW_FULL_DOWNLOAD_HELP),
    run: bool = typer.Option(False, "--run", help="When no error was found, also load the model and run a fixed "
                                                  "prompt, a few decode steps and (ViT files) a synthetic image "
                                                  "through every layer: run-failed, run-non-finite, "
                                                  "run-degenerate."),
    max_memory: str | None = typer.Option(None, "--max-memory", metavar="SIZE",
                                          help="With --run: memory budget, e.g. 4G: resident float32 weights if "
                                               "they fit, else streaming (default: half the available memory)."),
) -> None:
    """Check .sbs files before gemma.cpp loads them: container, config, toc, tokenizer, the tensors every
    layer type needs, which gemma.cpp versions can load them, and with --deep the values."""
    from sbs_tools.output import check_append_file, check_output_file, write_file
    from sbs_tools.source import expand_inputs

    requires("force", force, "junit", junit is not None)
    requires("max_memory", max_memory is not None, "run", run)
    if max_memory is not None:
        from inference import parse_size

        try:
            parse_size(max_memory)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--max-memory")
    exclusive(jobs=jobs > 1, scheduler=scheduler is not None)
    inputs_arg(files, allow_full_download)
    paths = expand_inputs(files)
    if junit is not None:
        check_output_file(junit, [p for p in paths if not _is_url(p)], force=force)
    fleet = jobs > 1 or scheduler is not None or jsonl is not None
    if jsonl is not None:
        check_append_file(jsonl, [p for p in paths if not _is_url(p)])
    counts = {"resumed": 0}

    def show(report, resumed: bool = False) -> None:
        counts["resumed"] += resumed
        bad = report.unreadable
        if bad is not None:
            msg = bad.message if bad.message.startswith(f"{report.path}:") else f"{report.path}: {bad.message}"
            print_error(bad.code, msg + (f" (fix: {bad.hint})" if bad.hint else ""))
        elif not json_out:
            _render(report, strict)

    if fleet:
        from sbs_tools.verify.fleet import connect, verify_many

        client = connect(scheduler) if scheduler is not None else None
        try:
            reports = verify_many(paths, deep=deep, jobs=jobs, client=client, jsonl=jsonl, on_result=show, run=run,
                                  max_memory=max_memory)
        finally:
            if client is not None:
                client.close()
    else:
        from sbs_tools.verify.fleet import verify_one

        reports = []
        for path in paths:
            report = _with_progress(path, run, max_memory) if show_progress(json_out=json_out) and deep else \
                verify_one(path, deep, run=run, max_memory=max_memory)
            report.stat = None
            reports.append(report)
            show(report)
    unreadable = [r for r in reports if r.unreadable is not None]
    failed = [r for r in reports if not (r.ok_strict() if strict else r.ok)]
    summary = {"files": len(reports), "ok": len(reports) - len(failed), "errors": len(failed) - len(unreadable),
               "unreadable": len(unreadable), "resumed": counts["resumed"]}
    if json_out:
        doc = {"files": [r.to_dict() for r in reports], "ok": not failed, "strict": strict,
               "unreadable": len(unreadable)}
        if fleet:
            doc["summary"] = summary
        print_json(with_transfer(doc, paths))
    elif fleet:
        console.print(f"[bold]{summary['files']} file(s): {summary['ok']} ok, {summary['errors']} with errors, "
                      f"{summary['unreadable']} unreadable[/]"
                      + (f" ({summary['resumed']} already done in {escape(str(jsonl))})" if summary["resumed"] else ""))
    elif len(reports) > 1:
        console.print(f"[bold]{len(reports) - len(failed)} of {len(reports)} file(s) passed[/]"
                      + (f", {len(unreadable)} could not be read" if unreadable else ""))
    if junit is not None:
        from sbs_tools.verify.junit import to_junit

        write_file(junit, to_junit(reports, strict))
    if unreadable:
        raise typer.Exit(EXIT_UNUSABLE)
    if failed:
        raise typer.Exit(EXIT_FINDINGS)


def _is_url(p) -> bool:
    from sbs_tools.source import is_url

    return is_url(p)


def _with_progress(path: str, run: bool, max_memory: str | None):
    from sbs_tools.errors import SbsError
    from sbs_tools.source import stat_input, stem
    from sbs_tools.verify import add_run, verify as run_verify
    from sbs_tools.verify.fleet import unreadable_report, verify_one

    try:
        total = stat_input(path).size
    except SbsError:
        return verify_one(path, deep=True)  # verify reports the bad path itself
    with byte_bar(f"decoding {stem(path)}", total, True) as advance:
        try:
            report = run_verify(path, deep=True, progress=advance)
        except SbsError as e:
            return unreadable_report(path, e, True)
    if run:  # the run after the bar: same report, run family added
        add_run(report, max_memory)
    return report


def _status(r, strict: bool) -> str:
    ne, nw = len(r.errors), len(r.warnings)
    counts = f"{ne} error{'s' * (ne != 1)}, {nw} warning{'s' * (nw != 1)}"
    if ne or (strict and nw):
        return f"[bold red]FAIL[/] ({counts})"
    return f"[bold green]OK[/] ({counts})" if nw else "[bold green]OK[/]"


def _render(r, strict: bool) -> None:
    facts = r.facts
    what = ", ".join(x for x in (facts.get("specifier"), facts.get("layout", "").upper() and
                                 f"{facts['layout'].upper()} layout",
                                 f"{facts['num_blobs']} blobs" if "num_blobs" in facts else None) if x)
    console.print(f"[bold]{escape(r.path)}[/]  {_status(r, strict)}" + (f"  [dim]{escape(what)}[/]" if what else ""),
                  soft_wrap=True)
    order = {"error": 0, "warning": 1, "info": 2}
    shown: dict[str, int] = {}
    for f in sorted(r.findings, key=lambda f: order[f.severity]):
        shown[f.code] = shown.get(f.code, 0) + 1
        if shown[f.code] > MAX_PER_CODE:
            continue
        style = _SEV_STYLE[f.severity]
        where = f.where()
        console.print(f"  [{style}]{f.severity:<7}[/] [bold]{f.code}[/]" + (f"  [dim]{escape(where)}[/]" if where
                                                                          else ""), soft_wrap=True)
        console.print(f"          {escape(f.message)}", soft_wrap=True)
        if f.hint:
            console.print(f"          [green]fix:[/] {escape(f.hint)}", soft_wrap=True)
    for code, n in shown.items():
        if n > MAX_PER_CODE:
            console.print(f"  [dim]... and {n - MAX_PER_CODE} more {code} finding(s) (all of them in --json)[/]")
    if "run" in r.facts and "mode" in r.facts["run"]:
        x = r.facts["run"]
        vit = f" + {x['vit_layers_run']} ViT layers" if x.get("vit_layers_run") else ""
        console.print(f"  [bold]run:[/] {x['mode']} weights, {x['layers_run']} of {x['layers']} layers{vit} "
                      f"reached, {x.get('decode_steps', 0)} decode steps, {x['seconds']:.2f} s", soft_wrap=True)
    if r.compat and r.facts:
        _render_compat(r)


def _render_compat(r) -> None:
    short = {g.key: g.key + ("+" if g is r.compat[-1] else "") for g in r.compat}
    if r.errors:
        console.print("  [bold]gemma.cpp compatibility:[/] no generation can use the file until the errors are "
                      "fixed", soft_wrap=True)
        return
    groups: dict[str, list[str]] = {"[green]yes[/]": [], "[yellow]reads, cannot run[/]": [], "[red]no[/]": []}
    reasons: dict[str, list[str]] = {}
    for g in r.compat:
        if not g.loads:
            groups["[red]no[/]"].append(short[g.key])
        elif g.runs is False:
            groups["[yellow]reads, cannot run[/]"].append(short[g.key])
        else:
            groups["[green]yes[/]"].append(short[g.key])
        for reason in g.reasons:
            reasons.setdefault(reason, []).append(short[g.key])
    console.print("  [bold]gemma.cpp compatibility[/] (generations by build date)")
    for status, gens in groups.items():
        if gens:
            console.print(f"    {status}: {', '.join(gens)}", soft_wrap=True)
    for reason, gens in reasons.items():
        console.print(f"      [dim]- {escape(reason)} {escape('[' + ', '.join(gens) + ']')}[/]", soft_wrap=True)
