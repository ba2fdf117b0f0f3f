"""sbs_tools: read, verify, repair and run gemma.cpp ``.sbs`` weight files.

>>> import sbs_tools
>>> with sbs_tools.open("fixtures/corpus/v2/gemma2-2b-tiny-sfp.sbs") as f:
...     f.config.specifier
'gemma2-2b-sfp-it'

``sbs_tools.verify_file(path)`` and ``sbs_tools.repair_file(path, out)`` are the two commands as
functions; they import their subpackages (``sbs_tools.verify``, ``sbs_tools.repair``) on first use,
so ``import sbs_tools`` stays light.
"""
import os
from typing import TYPE_CHECKING, Any, Callable

from .errors import (CodecError, ConfigError, ContainerError, FieldsError, FileChangedError, SbsError,
                     TensorError, TocError, WriteError)
from .sbsfile import SbsFile, TensorInfo, open
from .types import Type

__version__ = "0.1.0"

if TYPE_CHECKING:
    from . import repair, verify


def verify_file(path: str | os.PathLike, deep: bool = False,
                progress: Callable[[int], None] | None = None, *, run: bool = False,
                max_memory: int | str | None = None) -> "verify.Report":
    """``sbs verify`` of one file: a :class:`sbs_tools.verify.Report` (never raises for a bad file;
    ``run=True``: also a forward pass within the ``max_memory`` budget, see :func:`sbs_tools.verify.verify`)."""
    from .verify import verify

    return verify(path, deep=deep, progress=progress, run=run, max_memory=max_memory)


def verify_many(inputs: Any, *, deep: bool = False, jobs: int = 1, client: Any = None,
                jsonl: str | os.PathLike | None = None, on_result: Callable | None = None) -> list["verify.Report"]:
    """``sbs verify`` of many inputs (paths, directories, globs, URL prefixes): serially, in a process pool
    (``jobs``) or on a Dask cluster (``client``, one task per file); resumable with ``jsonl``. See
    :mod:`sbs_tools.verify.fleet`."""
    from .verify.fleet import verify_many as run

    return run(inputs, deep=deep, jobs=jobs, client=client, jsonl=jsonl, on_result=on_result)


def repair_file(path: str | os.PathLike, out: str | os.PathLike | None = None,
                **options: Any) -> "repair.RepairResult":
    """``sbs repair`` of one file into ``out``; see :func:`sbs_tools.repair.repair` for the options."""
    from .repair import repair

    return repair(path, out, **options)


__all__ = ["open", "SbsFile", "TensorInfo", "Type", "SbsError", "ContainerError", "FieldsError",
           "ConfigError", "TocError", "FileChangedError", "TensorError", "CodecError", "WriteError", "verify_file",
           "verify_many", "repair_file", "__version__"]
