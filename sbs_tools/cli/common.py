"""Shared CLI objects: the Typer app, consoles and small formatting helpers.

Importing this module builds the app and registers every command: the
``cmd_*.py`` modules next to it are discovered and imported at the end, so
``app.registered_commands`` is complete for anyone holding ``app``.
"""
from __future__ import annotations

import importlib
import pkgutil

import typer
from rich.console import Console

from .. import __version__
from ._json import _default, print_json  # noqa: F401  (re-exported for the commands)

app = typer.Typer(
    name="sbs",
    help="Inspect, verify, repair and run gemma.cpp .sbs weight files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _version(value: bool) -> None:
    if value:
        print(f"sbs {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Inspect, verify, repair and run gemma.cpp .sbs weight files."""


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
