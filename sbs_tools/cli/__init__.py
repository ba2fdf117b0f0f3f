"""The ``sbs`` command line: a thin layer over the Python API.

Each command lives in its own ``cmd_*.py`` module that registers itself on
:data:`app`; modules are discovered at start-up so commands stay independent.
Heavy imports happen inside the commands, keeping ``sbs inspect`` fast.

Exit codes: 0 success; 1 the file has errors (``verify``/``repair`` findings);
2 unreadable input or usage error; 130 interrupted.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from ..errors import SbsError
from .common import app, err_console

EXIT_OK, EXIT_FINDINGS, EXIT_UNREADABLE = 0, 1, 2

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("cmd_")):
    importlib.import_module(f"{__name__}.{_mod}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sbs`` script; turns every :class:`SbsError` into one line and exit 2."""
    try:
        app(args=argv, prog_name="sbs")
    except SystemExit as e:  # click's standalone mode: usage errors exit 2, --help 0
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_UNREADABLE)
    except SbsError as e:
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return EXIT_UNREADABLE
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return EXIT_OK


def run() -> None:
    sys.exit(main())
