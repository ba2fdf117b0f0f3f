"""The ``sbs`` command line: a thin layer over the Python API.

Each command lives in its own ``cmd_*.py`` module that registers itself on
the Typer app in :mod:`.common`; importing ``common`` discovers them all, so
commands stay independent. Nothing heavy is imported until a command needs
it: ``sbs inspect FILE --json`` (the CI pre-flight) even skips Typer, Rich
and their dependencies altogether (:func:`_inspect_json_fast`), so it costs
little more than ``import sbs_tools`` whatever the file size.

Exit codes: 0 success; 1 the file has errors (``verify``/``repair`` findings);
2 unreadable input or usage error; 130 interrupted.
"""
from __future__ import annotations

import sys

EXIT_OK, EXIT_FINDINGS, EXIT_UNREADABLE = 0, 1, 2


def __getattr__(name: str):
    # ``sbs_tools.cli.app`` / ``.err_console`` / ``.console``: built (with every command) on first use.
    if name in ("app", "console", "err_console"):
        from . import common

        return getattr(common, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _inspect_json_fast(argv: list[str]) -> int | None:
    """``sbs inspect FILE --json`` without Typer: the same JSON on stdout, or None to let the full
    CLI handle the call (any other argument shape, and every error, so messages stay identical)."""
    if len(argv) != 3 or argv[0] != "inspect" or argv.count("--json") != 1:
        return None
    (file,) = [a for a in argv[1:] if a != "--json"]
    if not file or file.startswith("-"):
        return None
    from pathlib import Path

    import sbs_tools
    from sbs_tools.summary import summarize

    from ._json import print_json

    try:
        with sbs_tools.open(Path(file)) as f:
            data = f.metadata()
            data["summary"] = summarize(f)
    except sbs_tools.SbsError:
        return None
    print_json(data)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sbs`` script; turns every :class:`SbsError` into one line and exit 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        fast = _inspect_json_fast(args)
    except KeyboardInterrupt:
        fast = None
    if fast is not None:
        return fast
    from ..errors import SbsError
    from .common import app, err_console

    try:
        app(args=args, prog_name="sbs")
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
