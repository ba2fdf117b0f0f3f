"""Shared CLI objects: the Typer app, consoles, usage checks and small formatting helpers.

Importing this module builds the app and registers every command: the
``cmd_*.py`` modules next to it are discovered and imported at the end, so
``app.registered_commands`` is complete for anyone holding ``app``.

Output never cuts data: on a terminal, long names fold onto the next line; when
stdout is a pipe or a file, lines are as long as their content.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import NoReturn

import typer
from rich.console import Console

from .. import __version__
from ._json import _default, print_json  # noqa: F401  (re-exported for the commands)

app = typer.Typer(
    name="sbs",
    help="Inspect, verify, repair and run gemma.cpp .sbs weight files.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)

#: Width for output that is not a terminal: wide enough that nothing is ever folded or cut.
UNLIMITED_WIDTH = 1 << 16


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(stderr=stderr, highlight=False, width=None if tty else UNLIMITED_WIDTH)


console = _console(stderr=False)
err_console = _console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"sbs {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Inspect, verify, repair and run gemma.cpp .sbs weight files."""


def _click_class(name: str) -> type[Exception]:
    """Click's exception class ``name`` as this Typer uses it: recent Typer releases carry their own copy
    of click, older ones use the click package, so the class is taken from ``typer.BadParameter``'s bases."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


#: Base class of every usage error and bad parameter value (exit 2, one line).
ClickException = _click_class("ClickException")
UsageError = _click_class("UsageError")


def usage_error(message: str) -> NoReturn:
    """Stop with a usage error: one ``error: [usage] …`` line and exit 2 (see :func:`sbs_tools.cli.main`)."""
    raise UsageError(message)


def exclusive(**flags: bool) -> None:
    """Usage error when more than one of ``flags`` (option name -> given?) is set."""
    given = [name for name, on in flags.items() if on]
    if len(given) > 1:
        usage_error(f"{' and '.join(_opt(n) for n in given)} cannot be combined")


def requires(flag: str, given: bool, needs: str, present: bool) -> None:
    """Usage error when ``flag`` is given without ``needs``."""
    if given and not present:
        usage_error(f"{_opt(flag)} only applies together with {_opt(needs)}")


def _opt(name: str) -> str:
    return name if name.startswith("-") or name.isupper() else "--" + name.replace("_", "-")


def refuse_unreadable(report) -> None:
    """Stop (exit 2, one line with the verify code) when a verify report says its input is no ``.sbs`` at all."""
    _refuse(report.path, report.unreadable)


def refuse_unreadable_findings(path, findings) -> None:
    """Like :func:`refuse_unreadable`, for the findings of a check already made (``sbs repair``'s plan)."""
    from sbs_tools.verify import UNREADABLE_CODES

    _refuse(path, next((f for f in findings if f.code in UNREADABLE_CODES), None))


def _refuse(path, bad) -> None:
    from sbs_tools.errors import SbsError

    if bad is not None:
        raise SbsError(f"{path}: {bad.message}" + (f" (fix: {bad.hint})" if bad.hint else ""), code=bad.code)


#: ``--allow-full-download``, on every command that reads .sbs files (meaningful for URLs only).
ALLOW_FULL_DOWNLOAD_HELP = ("URL inputs: when the server ignores HTTP Range requests, download the whole file "
                            "once instead of refusing (range-unsupported).")


def inputs_arg(values, allow_full_download: bool = False):
    """Input arguments as the commands take them: a URL stays a string (read in ranges through
    ``sbs_tools.source``), anything else becomes a ``Path``. Also applies ``--allow-full-download``."""
    from pathlib import Path

    from sbs_tools import source

    source.configure(allow_full_download=allow_full_download)
    one = not isinstance(values, (list, tuple))
    out = [v if source.is_url(v) else Path(v) for v in ([values] if one else values)]
    return out[0] if one else out


def with_transfer(data: dict, inputs) -> dict:
    """``data`` plus a ``transfer`` object (requests made, bytes moved) when any input is a URL."""
    from sbs_tools import source

    if any(source.is_url(p) for p in inputs):
        data["transfer"] = source.transfer_totals()
    return data


def show_progress(*, quiet: bool = False, json_out: bool = False) -> bool:
    """Progress bars only on a terminal, never with --json or --quiet."""
    return not quiet and not json_out and sys.stderr.isatty()


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def _register_commands() -> None:
    """Import every ``cmd_*`` module of this package; each registers itself on :data:`app`."""
    pkg = importlib.import_module(__package__)
    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("cmd_")):
        importlib.import_module(f"{__package__}.{mod}")


_register_commands()
