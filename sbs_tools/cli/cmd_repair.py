"""``sbs repair IN -o OUT``: fix what ``sbs verify`` finds, and prove every tensor came through unchanged.

Exit codes: 0 repaired, or nothing to repair; 1 the file cannot be repaired
(nothing is written), the written file failed verification (nothing is
written), or ``--partial`` wrote a partial file that still has errors; 2 the
input is not a gemma.cpp file / cannot be read, the output policy refuses the
output (it is the input, or exists without ``--force``), or a usage error.
"""
from __future__ import annotations

from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import app, console, exclusive, print_json, refuse_unreadable_findings, requires, show_progress, usage_error
from .progress import status_line

_STATUS_STYLE = {"fix": ("green", "fix"), "cannot-fix": ("bold red", "cannot fix"), "keep": ("yellow", "keep"),
                 "info": ("blue", "info")}


#: --target choices: "auto", "current", the generation keys of sbs_tools.repair.targets.TARGETS and the
#: "2025-05" alias. Spelled out so that building the CLI does not import the repair package
#: (tests/test_cli_usage.py checks they agree).
TARGET_CHOICES = ("auto", "current", "2026-08-27", "2026-07-10", "2025-10-24", "2025-10-15", "3ed403e",
                  "2025-09-05", "2025-07-31", "2025-05", "2025-05-07", "2025-05-06", "pre-2025")
Target = Enum("Target", {k: k for k in TARGET_CHOICES}, type=str)
Layout = Enum("Layout", {"v1": "v1", "v2": "v2"}, type=str)
Keep = Enum("Keep", {"first": "first", "last": "last"}, type=str)


@app.command()
def repair(
    file: Path = typer.Argument(..., metavar="IN.sbs", help="The .sbs file to repair (never modified, except "
                                                            "with --in-place --backup)."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", metavar="OUT.sbs",
                                       help="Where to write the repaired file (must not exist unless --force)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (each finding, the action that fixes "
                                                          "it or why none can) and write nothing."),
    target: Target = typer.Option("auto", "--target", help="gemma.cpp generation to make the file loadable by: "
                                  "auto (fix errors, keep the file's generation), current, a generation date, "
                                  "2025-05 (= 2025-05-07), pre-2025."),
    layout: Optional[Layout] = typer.Option(None, "--layout", help="Container layout of the output: v1 (readable "
                                            "by every gemma.cpp) or v2 (what gemma.cpp writes since 2025-07-31)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", metavar="FILE.spm",
                                             help="Embed this SentencePiece model (missing or damaged tokenizer; "
                                                  "pre-2025 migration)."),
    config_from: Optional[Path] = typer.Option(None, "--config-from", metavar="OTHER.sbs",
                                               help="Use the config of another .sbs file (missing or broken "
                                                    "config; pre-2025 migration)."),
    model: Optional[str] = typer.Option(None, "--model", metavar="SPECIFIER",
                                        help="Use gemma.cpp's canonical config: a specifier (gemma3-1b-sfp, "
                                             "gemma2-2b-bf16-it) or a model name (GEMMA3_270M)."),
    drop_duplicates: Optional[Keep] = typer.Option(None, "--drop-duplicates",
                                                   help="For duplicate keys with different bytes: keep this one "
                                                        "(gemma.cpp uses the last, pre-2025 readers the first)."),
    drop_unused: bool = typer.Option(False, "--drop-unused", help="Also drop blobs nothing uses (no toc record, "
                                                                  "no layer, unusable key)."),
    in_place: bool = typer.Option(False, "--in-place", help="Replace the input (requires --backup)."),
    backup: Optional[str] = typer.Option(None, "--backup", metavar="SUFFIX",
                                         help="With --in-place: keep the original as IN.sbs+SUFFIX."),
    partial: bool = typer.Option(False, "--partial", help="Write a partial file even when some errors cannot be "
                                                          "fixed (verify still flags them; exit 1)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT.sbs (never the input)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress spinner."),
) -> None:
    """Repair a broken .sbs file: re-lay blobs, rebuild metadata, migrate old formats, convert between
    gemma.cpp generations, and prove every tensor is byte-identical."""
    from sbs_tools.repair import repair as run_repair

    exclusive(output=out is not None, in_place=in_place)
    exclusive(config_from=config_from is not None, model=model is not None)
    exclusive(dry_run=dry_run, force=force)
    requires("backup", backup is not None, "in_place", in_place)
    requires("in_place", in_place, "backup", backup is not None)
    requires("force", force, "output", out is not None)
    if out is None and not in_place and not dry_run:
        usage_error("give -o OUT.sbs (or --in-place --backup SUFFIX, or --dry-run)")
    with status_line("repairing", show_progress(quiet=quiet, json_out=json_out)) as say:
        result = run_repair(file, out, dry_run=dry_run, in_place=in_place, backup=backup, overwrite=force,
                            target=target.value, layout=layout.value if layout else None, tokenizer=tokenizer,
                            config_from=config_from, model=model,
                            drop_duplicates=drop_duplicates.value if drop_duplicates else None,
                            drop_unused=drop_unused, partial=partial, progress=say)
    refuse_unreadable_findings(file, result.plan.findings)  # no .sbs at all: one error line, exit 2
    if json_out:
        print_json(result.to_dict())
    else:
        _render(result)
    code = result.exit_code
    if code:
        raise typer.Exit(code)


#: Text output shows at most this many findings (or extra actions) of one kind; ``--json`` has all.
PER_CODE = 20


def _capped(entries: list, kind) -> tuple[list, Counter]:
    """The entries to print, at most PER_CODE of each ``kind(entry)``, and how many of each kind were
    left out: thousands of identical findings would bury the verdict and take minutes to render."""
    seen: Counter = Counter()
    hidden: Counter = Counter()
    shown = []
    for e in entries:
        k = kind(e)
        seen[k] += 1
        if seen[k] <= PER_CODE:
            shown.append(e)
        else:
            hidden[k] += 1
    return shown, hidden


def _render(r) -> None:
    p = r.plan
    tgt = p.target.key if p.target else "auto"
    console.print(f"[bold]{escape(r.input)}[/]  target [cyan]{tgt}[/]", soft_wrap=True)
    if not p.items and not p.actions:
        console.print("  no findings")
    items, hidden = _capped(p.items, lambda it: (it.status, it.finding.code))
    for it in items:
        style, label = _STATUS_STYLE[it.status]
        f = it.finding
        where = f.where()
        head = f"  [{style}]{label:10s}[/] [bold]{f.code}[/]" + (f" ({escape(where)})" if where else "")
        console.print(head, highlight=False)
        console.print(f"             [dim]{escape(f.message)}[/]", highlight=False, soft_wrap=True)
        arrow = f"{it.action.kind}: " if it.action is not None else ""
        console.print(f"             -> {escape(arrow + it.reason)}", highlight=False, soft_wrap=True)
    for (status, code), n in hidden.items():
        style, label = _STATUS_STYLE[status]
        console.print(f"  [{style}]{label:10s}[/] [bold]{code}[/]: {n} more like the above (--json lists every one)",
                      highlight=False)
    used = {id(i.action) for i in p.items if i.action is not None}
    extra = [a for a in p.actions if id(a) not in used]
    if extra:
        console.print("[bold]also[/]")
        extra, hidden = _capped(extra, lambda a: a.kind)
        for a in extra:
            console.print(f"  [green]{a.kind}[/]: {escape(a.summary)}", highlight=False, soft_wrap=True)
        for kind, n in hidden.items():
            console.print(f"  [green]{kind}[/]: {n} more (--json lists every one)", highlight=False)
    blocking = p.blocking
    blocking_ids = {id(x) for x in blocking}
    shown = {i.reason for i in p.items}
    refusals = ([("[bold red]cannot fix[/]", x) for x in blocking if x.reason not in shown]
                + [("[yellow]forced[/]", x) for x in p.refusals if id(x) not in blocking_ids and x.reason not in shown])
    refusals, hidden = _capped(refusals, lambda lx: (lx[0], lx[1].code))
    for label, x in refusals:
        console.print(f"  {label} {x.code}" + (f" ({escape(x.name)})" if x.name else "")
                      + f": {escape(x.reason)}", highlight=False, soft_wrap=True)
    for (label, code), n in hidden.items():
        console.print(f"  {label} {code}: {n} more (--json lists every one)", highlight=False)
    for n in p.notes:
        console.print(f"  [blue]note[/] {escape(n)}", highlight=False, soft_wrap=True)
    if r.status == "planned":
        verdict = ("nothing to repair" if p.nothing_to_do else
                   "repairable" if p.repairable else "[bold red]not repairable[/] (nothing would be written)")
        console.print(f"[bold]dry run:[/] {verdict}; {len(p.actions)} action(s)")
        return
    if r.status == "nothing-to-repair":
        console.print("[bold green]nothing to repair[/] (no file written)")
    elif r.status == "unrepairable":
        console.print("[bold red]not repairable[/]: nothing was written" + (
            " (--partial writes a partial file without what cannot be recovered)"
            if blocking and all(x.forceable for x in blocking) else ""), soft_wrap=True)
    elif r.status == "verification-failed":
        console.print("[bold red]the repaired file failed verification[/]; nothing was written:")
        for prob in r.problems:
            console.print(f"  {escape(prob)}", highlight=False, soft_wrap=True)
    else:
        color = "yellow" if r.forced else "green"
        console.print(f"[bold {color}]{'partially repaired' if r.forced else 'repaired'}[/] -> "
                      f"{escape(str(r.output))}" + (f" (original kept as {escape(r.backup)})" if r.backup else ""),
                      soft_wrap=True)
        console.print(f"  proof: {escape(r.proof_summary())}", highlight=False, soft_wrap=True)
        rep = r.report
        if rep is not None:
            ne, nw = len(rep.errors), len(rep.warnings)
            state = "clean" if not ne and not nw else f"{ne} error(s), {nw} warning(s)"
            console.print(f"  verify: {state}" + "".join(f"\n    {f.severity} {f.code}: {escape(f.message)}"
                                                          for f in rep.findings if f.severity != "info"),
                          highlight=False, soft_wrap=True)
