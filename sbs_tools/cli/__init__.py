"""The ``sbs`` command line: a thin layer over the Python API.

Each command lives in its own ``cmd_*.py`` module that registers itself on
the Typer app in :mod:`.common`. Nothing heavy is imported until a command needs
it: ``sbs inspect FILE --json`` (the CI pre-flight) even skips Typer, Rich and
their dependencies altogether (:func:`_inspect_json_fast`).

Every failure leaves through :func:`main` as one line on stderr,
``error: [code] message``, never a traceback. Exit codes, one rule for every
command (``docs/errors.md``):

* 0 — done, and the answer is good;
* 1 — done, and the answer is bad: a file has errors (``verify``; ``repair``
  could not produce a clean file), files differ (``diff``), digests do not match
  (``hash --check``);
* 2 — could not be done: a usage error, an input that is not a readable
  ``.sbs`` file, an output the output policy refuses, a file that changed
  while it was read;
* 130 — interrupted (Ctrl-C or SIGTERM); nothing is left half-written.
"""
from __future__ import annotations

import sys

EXIT_OK, EXIT_FINDINGS, EXIT_UNUSABLE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
    from sbs_tools.source import is_url, transfer_totals
    from sbs_tools.summary import summarize

    from ._json import print_json

    try:
        with sbs_tools.open(file if is_url(file) else Path(file)) as f:
            data = f.metadata()
            data["summary"] = summarize(f)
    except sbs_tools.SbsError:
        return None
    if is_url(file):
        data["transfer"] = transfer_totals()
    print_json(data)
    return EXIT_OK


def print_error(code: str, message: str) -> None:
    """The one error format of the CLI: ``error: [code] message`` on one line of stderr."""
    text = " ".join(message.split())  # newlines from click or the OS would break the one-line promise
    sys.stderr.write(f"error: [{code}] {text}\n")
    sys.stderr.flush()


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: temporary outputs are removed on the way out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sbs`` script; returns the exit code (see the module docstring)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if "sbs_tools.source" in sys.modules:  # --json's transfer object counts this command only
        sys.modules["sbs_tools.source"].TOTAL.reset()
    try:
        fast = _inspect_json_fast(args)
    except KeyboardInterrupt:
        fast = None
    if fast is not None:
        return fast
    import typer

    from ..errors import SbsError
    from .common import ClickException, app

    previous = _install_sigterm()
    try:
        rv = app(args=args, prog_name="sbs", standalone_mode=False)
    except ClickException as e:  # usage errors, bad values, missing arguments
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":  # plain `sbs` or `sbs CMD`: the help, as click prints it
            print(ctx.get_help() if ctx is not None else str(e))
            return EXIT_UNUSABLE
        print_error("usage", e.format_message() + _help_hint(ctx, args))
        return EXIT_UNUSABLE
    except typer.Abort:
        print_error("interrupted", "interrupted")
        return EXIT_INTERRUPTED
    except SbsError as e:
        print_error(e.code, str(e)[len(f"[{e.code}] "):])
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print_error("interrupted", "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK  # `sbs dump F | head`: the reader has what it wanted
    finally:
        _restore_sigterm(previous)
    if rv == EXIT_INTERRUPTED:  # click turns Ctrl-C inside a command into Exit(130)
        print_error("interrupted", "interrupted")
    return rv if isinstance(rv, int) else EXIT_OK


def _help_hint(ctx, args: list[str]) -> str:
    """`` (see 'sbs CMD -h')`` for the command the arguments name, else ``sbs -h``."""
    from .common import app

    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    cmd = ctx.info_name if ctx is not None and ctx.info_name in names else next((a for a in args if a in names), None)
    return f" (see 'sbs {cmd} -h')" if cmd else " (see 'sbs -h')"


def _install_sigterm():
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run() -> None:
    sys.exit(main())
