"""sbs_tools: read, verify, repair and run gemma.cpp ``.sbs`` weight files.

>>> import sbs_tools
>>> with sbs_tools.open("fixtures/corpus/v2/gemma2-2b-tiny-sfp.sbs") as f:
...     f.config.specifier
'gemma2-2b-sfp-it'
"""
from .errors import (CodecError, ConfigError, ContainerError, FieldsError, SbsError, TensorError,
                     TocError, WriteError)
from .sbsfile import SbsFile, TensorInfo, open
from .types import Type
from . import verify  # callable: sbs_tools.verify(path, deep=False) -> Report
from . import repair  # callable: sbs_tools.repair(path, out, **options) -> RepairResult

__version__ = "0.1.0"

__all__ = ["open", "SbsFile", "TensorInfo", "Type", "SbsError", "ContainerError", "FieldsError",
           "ConfigError", "TocError", "TensorError", "CodecError", "WriteError", "verify", "repair", "__version__"]
