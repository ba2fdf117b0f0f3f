"""Progress on long work, for every command the same way: a bar on stderr when it is a terminal.

The library reports progress through plain callbacks; these helpers turn them
into Rich bars. Disabled (not a terminal, ``--json``, ``--quiet``) they yield
``None``, which every library function takes as "no progress".
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

ItemProgress = Callable[[int, int, str], None]  # (done, total, current item name)


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[ItemProgress | None]:
    """A bar counting items: yields ``update(done, total, name)``, or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .common import err_console

    with Progress(TextColumn(f"[bold]{escape(label)}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[item]}"), console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=None, item="")

        def update(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, item=escape(name))

        yield update


@contextmanager
def byte_bar(label: str, total: int, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A bar counting bytes: yields ``advance(nbytes)``, or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, \
        TransferSpeedColumn

    from .common import err_console

    with Progress(TextColumn(f"[bold]{escape(label)}[/]"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def status_line(label: str, enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """A spinner with a changing message (for work in stages): yields ``say(message)`` or None."""
    if not enabled:
        yield None
        return
    from rich.markup import escape

    from .common import err_console

    with err_console.status(escape(label), spinner="dots") as status:
        yield lambda msg: status.update(escape(msg))
