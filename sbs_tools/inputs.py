"""What counts as a readable input path: one check that every command and ``sbs_tools.open`` call.

A path must name an existing, readable, non-empty regular file. Everything else
is refused up front with an :class:`InputError` carrying a stable code, so a
directory gives ``is-directory`` instead of an mmap ``OSError``, and a FIFO or a
terminal is never opened (opening one would block until a writer appears).

``-`` is refused (``stdin-unsupported``): ``.sbs`` files are read by memory
mapping and random access, which a pipe cannot offer; save the stream to a file.
"""
from __future__ import annotations

import errno
import os
import stat

from .errors import SbsError

#: Codes of :class:`InputError`; the CLI maps every one of them to exit 2.
INPUT_CODES = ("not-found", "is-directory", "not-regular-file", "permission-denied", "stdin-unsupported",
               "empty-file", "io-error")


class InputError(SbsError):
    """An input path that is not a readable, non-empty regular file."""

    code = "io-error"


def check_input_file(path: str | os.PathLike, *, allow_empty: bool = False) -> os.stat_result:
    """Stat ``path`` and refuse anything but a readable regular file; returns the stat result.

    ``allow_empty``: let a 0-byte file through (``sbs verify`` diagnoses it itself).
    """
    p = os.fspath(path)
    if p == "-":
        raise InputError("'-' (standard input) is not supported: .sbs files are read by random access; "
                         "save the stream to a file and pass its path", code="stdin-unsupported")
    try:
        st = os.stat(p)
    except OSError as e:
        raise _from_oserror(p, e) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p} is a directory, not a .sbs file", code="is-directory")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p} is a {_kind(st.st_mode)}, not a regular file", code="not-regular-file")
    if not os.access(p, os.R_OK):
        raise InputError(f"cannot read {p}: permission denied", code="permission-denied")
    if st.st_size == 0 and not allow_empty:
        raise InputError(f"{p} is empty (0 bytes): the download or copy did not complete", code="empty-file",
                         offset=0)
    return st


def check_input_dir_or_file(path: str | os.PathLike) -> os.stat_result:
    """Like :func:`check_input_file` but a directory is also fine (``sbs convert`` reads HF model folders)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as e:
        raise _from_oserror(p, e) from None
    if stat.S_ISDIR(st.st_mode):
        if not os.access(p, os.R_OK | os.X_OK):
            raise InputError(f"cannot read directory {p}: permission denied", code="permission-denied")
        return st
    return check_input_file(p)


def _from_oserror(p: str, e: OSError) -> InputError:
    if e.errno == errno.ENOENT:
        return InputError(f"{p}: no such file", code="not-found")
    if e.errno in (errno.EACCES, errno.EPERM):
        return InputError(f"cannot read {p}: permission denied", code="permission-denied")
    if e.errno == errno.ENOTDIR:
        return InputError(f"{p}: a parent of this path is not a directory", code="not-found")
    return InputError(f"cannot read {p}: {e.strerror or e}", code="io-error")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"
