"""One exception family for everything that can go wrong reading a file.

Every loader raises a subclass of :class:`SbsError`. Each carries a stable
``code`` (kebab-case, documented in ``docs/errors.md``) and, where known, the
byte ``offset``, ``blob``, ``tensor`` and ``layer`` involved, so callers (and
the CLI) can report *where* a file is broken without a traceback.
"""
from __future__ import annotations

from typing import Any


class SbsError(Exception):
    """Base class of all errors raised by ``sbs_tools``."""

    code: str = "sbs-error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        offset: int | None = None,
        blob: str | None = None,
        tensor: str | None = None,
        layer: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.offset = offset
        self.blob = blob
        self.tensor = tensor
        self.layer = layer

    def location(self) -> dict[str, Any]:
        """The non-empty location fields, for JSON output."""
        loc = {"offset": self.offset, "blob": self.blob, "tensor": self.tensor, "layer": self.layer}
        return {k: v for k, v in loc.items() if v is not None}

    def in_file(self, path: str) -> "SbsError":
        """This error with ``path`` named at the start of its message (once), for one-line reports."""
        if not self.message.startswith(f"{path}:"):
            self.message = f"{path}: {self.message}"
            self.args = (self.message,)
        return self

    def __str__(self) -> str:
        where = ", ".join(f"{k} {v}" for k, v in self.location().items())
        return f"[{self.code}] {self.message}" + (f" ({where})" if where else "")


class ContainerError(SbsError):
    """The BlobStore container (header, directory, blob ranges) is unusable."""

    code = "container-invalid"


class FieldsError(SbsError):
    """A serialized IFields blob (config, toc) cannot be decoded."""

    code = "fields-invalid"


class ConfigError(FieldsError):
    """The ``config`` blob is missing or cannot be decoded."""

    code = "config-undecodable"


class TocError(FieldsError):
    """The ``toc`` blob is missing or cannot be decoded."""

    code = "toc-undecodable"


class FileChangedError(SbsError):
    """The file was truncated, replaced or modified while it was being read (a short read, or its
    size / inode / modification time differ from what was seen when it was opened)."""

    code = "file-changed"


class TensorError(SbsError):
    """A tensor is missing, or its bytes disagree with its declared type/shape."""

    code = "tensor-invalid"


class CodecError(SbsError):
    """Values cannot be encoded/decoded in the requested element type."""

    code = "codec-error"


class WriteError(SbsError):
    """A writer was asked to produce something the format cannot hold."""

    code = "write-error"
