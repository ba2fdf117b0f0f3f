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

__all__ = ["render_report", "render_models", "write_report", "build_file_model", "FileModel"]


def render_report(paths: Sequence[str | os.PathLike], deep: bool = False,
                  progress: Callable[[str], None] | None = None) -> str:
    """The HTML page for one file, or the comparison page for two (``paths[0]`` is A, ``paths[1]`` is B)."""
    if len(paths) not in (1, 2):
        raise ValueError("sbs report takes one file, or two to compare")
    models = [build_file_model(p, deep=deep, progress=progress) for p in paths]
    return render_models(models, deep=deep, progress=progress)


def render_models(models: Sequence[FileModel], deep: bool = False,
                  progress: Callable[[str], None] | None = None) -> str:
    """The page for models already built with :func:`build_file_model` (one, or A and B)."""
    from . import html

    if len(models) == 1:
        return html.single_report(models[0])
    from .diffview import diff_report

    return diff_report(models[0], models[1], deep=deep, progress=progress)


def write_report(paths: Sequence[str | os.PathLike], out: str | os.PathLike, deep: bool = False,
                 progress: Callable[[str], None] | None = None, overwrite: bool = False) -> str:
    """Render and write the page to ``out`` (UTF-8) through the output policy (never an input, never
    over an existing file unless ``overwrite``; temp file + rename); returns the HTML."""
    from ..output import check_output_file, write_file

    check_output_file(out, paths, force=overwrite)
    text = render_report(paths, deep=deep, progress=progress)
    write_file(out, text)
    return text
