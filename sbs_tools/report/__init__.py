"""``sbs report``: one self-contained HTML page about a ``.sbs`` file (or the differences of two).

>>> from sbs_tools.report import render_report
>>> html = render_report(["fixtures/corpus/v2/gemma2-2b-tiny-sfp.sbs"])
>>> html.startswith("<!DOCTYPE html>")
True

The page needs nothing but itself: CSS, JavaScript and SVG are inline, a strict
Content-Security-Policy forbids every fetch, and it opens from disk.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

from .model import FileModel, build_file_model

__all__ = ["render_report", "write_report", "build_file_model", "FileModel"]


def render_report(paths: Sequence[str | os.PathLike], deep: bool = False,
                  progress: Callable[[str], None] | None = None) -> str:
    """The HTML page for one file, or the comparison page for two (``paths[0]`` is A, ``paths[1]`` is B)."""
    from . import html

    if len(paths) not in (1, 2):
        raise ValueError("sbs report takes one file, or two to compare")
    models = [build_file_model(p, deep=deep, progress=progress) for p in paths]
    if len(models) == 1:
        return html.single_report(models[0])
    from .diffview import diff_report

    return diff_report(models[0], models[1], deep=deep, progress=progress)


def write_report(paths: Sequence[str | os.PathLike], out: str | os.PathLike, deep: bool = False,
                 progress: Callable[[str], None] | None = None) -> str:
    """Render and write the page to ``out`` (UTF-8); returns the HTML."""
    text = render_report(paths, deep=deep, progress=progress)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)
    return text
