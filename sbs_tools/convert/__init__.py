"""Bring checkpoints into ``.sbs`` (GGUF, Hugging Face safetensors) — see :func:`convert`."""
from __future__ import annotations

from ..errors import SbsError


class ConvertError(SbsError):
    """A checkpoint cannot be converted (unreadable, unsupported architecture, missing tensors)."""

    code = "convert-error"
