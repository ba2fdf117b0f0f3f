"""sbs_tools: read, verify, repair and run gemma.cpp ``.sbs`` weight files.

>>> import sbs_tools
>>> with sbs_tools.open("fixtures/corpus/v2/gemma2-2b-tiny-sfp.sbs") as f:
...     f.config.specifier
'gemma2-2b-sfp-it'
"""
from .errors import (CodecError, ConfigError, ContainerError, FieldsError, FileChangedError, SbsError,
                     TensorError, TocError, WriteError)
from .sbsfile import SbsFile, TensorInfo, open
from .types import Type

__version__ = "0.1.0"

#: Callable subpackages, imported on first use so that ``import sbs_tools`` (and ``sbs inspect``)
#: stay light: ``sbs_tools.verify(path, deep=False) -> Report``,
#: ``sbs_tools.repair(path, out, **options) -> RepairResult``.
_LAZY_SUBPACKAGES = ("verify", "repair")


def __getattr__(name: str):
    if name in _LAZY_SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")  # also binds it on this package
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES))

__all__ = ["open", "SbsFile", "TensorInfo", "Type", "SbsError", "ContainerError", "FieldsError",
           "ConfigError", "TocError", "FileChangedError", "TensorError", "CodecError", "WriteError", "verify", "repair", "__version__"]
