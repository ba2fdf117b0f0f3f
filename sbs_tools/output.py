"""Where commands write: one policy for every output, so no command can lose a user's byte.

The rules, checked before anything is written:

* never the input: an output that is one of the inputs (same path, another
  spelling, a symlink or a hard link: compared by device and inode) is refused,
  even with ``--force``;
* never over an existing file unless ``force``;
* never into a non-empty directory unless ``force``, and then only the files
  the command writes are replaced: nothing is ever deleted or emptied;
* the parent directory must exist and be writable.

Then every file is written to a hidden temporary file in its target directory,
fsynced and renamed into place (:class:`PendingFile`); on any error or Ctrl-C
the temporary file is removed, so nothing is left behind.
"""
from __future__ import annotations

import os
import stat
import tempfile
from typing import BinaryIO, Iterable, Sequence

from .errors import SbsError

PathLike = str | os.PathLike


class OutputError(SbsError):
    """An output refused by the policy (exit 2); ``code`` says which rule."""

    code = "output-refused"


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _input_stats(inputs: Iterable[PathLike]) -> list[tuple[str, os.stat_result]]:
    out = []
    for p in inputs:
        try:
            out.append((os.fspath(p), os.stat(p)))
        except OSError:
            pass  # an input that does not exist cannot be overwritten
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OutputError(f"cannot write {path}: the directory {parent} does not exist", code="output-dir-missing")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: the directory {parent} is not writable",
                          code="output-not-writable")


def _existing(p: str, inputs: Sequence[PathLike]) -> os.stat_result | None:
    """The stat of an existing output ``p`` (None if there is none), refusing one that is an input, a
    directory or not a regular file: the rules every kind of output shares."""
    if p == "":
        raise OutputError("the output path is empty", code="output-refused")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OutputError(f"cannot write {p}: {e.strerror}", code="output-not-writable") from None
    for name, ist in _input_stats(inputs):
        if _same_file(st, ist):
            raise OutputError(f"the output {p} is the input {name}; write to another path", code="output-is-input")
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"the output {p} is a directory; give a file name", code="output-is-directory")
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"the output {p} exists and is not a regular file", code="output-exists")
    return st


def check_output_file(path: PathLike, inputs: Sequence[PathLike] = (), *, force: bool = False) -> str:
    """Refuse ``path`` as an output file unless the policy allows it; returns it as a string."""
    p = os.fspath(path)
    if _existing(p, inputs) is not None:
        if not force:
            raise OutputError(f"{p} already exists; pass --force to replace it", code="output-exists")
    elif os.path.islink(p):
        raise OutputError(f"the output {p} is a dangling symlink; remove it or choose another name",
                          code="output-exists")
    _check_parent(p)
    return p


def check_append_file(path: PathLike, inputs: Sequence[PathLike] = ()) -> str:
    """The one output that is appended to on purpose: ``sbs verify --jsonl OUT``, a log of finished
    files that a rerun resumes from. Refused like any output when it is one of the inputs
    (``output-is-input``), a directory or not a regular file, or its directory is missing; an
    existing file is kept and appended to (no ``--force``: appending loses nothing). It is never
    read as a ``.sbs`` input, only for the records it holds."""
    p = os.fspath(path)
    if _existing(p, inputs) is not None:
        if not os.access(p, os.W_OK):
            raise OutputError(f"cannot write {p}: permission denied", code="output-not-writable")
        return p
    if os.path.islink(p):
        raise OutputError(f"the output {p} is a dangling symlink; remove it or choose another name",
                          code="output-exists")
    _check_parent(p)
    return p


def check_output_dir(path: PathLike, names: Sequence[str], inputs: Sequence[PathLike] = (), *,
                     force: bool = False) -> str:
    """Refuse ``path`` as an output directory that will receive ``names`` unless the policy allows it.

    A missing directory is fine (it is created). An existing non-empty one needs ``force``, and
    even then each file in ``names`` must pass :func:`check_output_file` (never an input).
    """
    p = os.fspath(path)
    if os.path.lexists(p) and not os.path.isdir(p):
        raise OutputError(f"the output {p} exists and is not a directory", code="output-exists")
    if os.path.isdir(p):
        if os.listdir(p) and not force:
            raise OutputError(f"the directory {p} is not empty; pass --force to write into it "
                              f"(only {', '.join(names)} would be replaced)", code="output-not-empty")
        for n in names:
            check_output_file(os.path.join(p, n), inputs, force=True)
    else:
        _check_parent(p)
    return p


def make_output_dir(path: PathLike) -> None:
    """Create the output directory of :func:`check_output_dir` if it is missing (parents must exist)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except OSError as e:
        raise OutputError(f"cannot create {os.fspath(path)}: {e.strerror}", code="output-not-writable") from None


class PendingFile:
    """A hidden temporary file beside ``dest``: write to ``.file``, then :meth:`commit` (fsync + rename)
    or :meth:`discard`. As a context manager it commits on success and discards on any exception,
    Ctrl-C included."""

    def __init__(self, dest: PathLike) -> None:
        self.dest = os.path.abspath(os.fspath(dest))
        d = os.path.dirname(self.dest)
        try:
            fd, self.path = tempfile.mkstemp(prefix=f".{os.path.basename(self.dest)[:40]}.", suffix=".partial",
                                             dir=d)
        except OSError as e:
            raise OutputError(f"cannot write into {d}: {e.strerror}", code="output-not-writable") from None
        os.chmod(self.path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def close(self) -> None:
        """Flush and fsync the temporary file (it can then be read back, e.g. verified, before commit)."""
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()

    def commit(self) -> str:
        """Close, rename over the destination, fsync the directory. Returns the destination."""
        self.close()
        os.replace(self.path, self.dest)
        fsync_dir(os.path.dirname(self.dest))
        self.path = ""
        return self.dest

    def discard(self) -> None:
        """Remove the temporary file (idempotent)."""
        if not self.file.closed:
            self.file.close()
        if self.path and os.path.lexists(self.path):
            os.unlink(self.path)
        self.path = ""

    def __enter__(self) -> "PendingFile":
        return self

    def __exit__(self, exc_type, *_: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def write_pending(pending: PendingFile, data: bytes | str) -> int:
    """Write ``data`` (str as UTF-8) into ``pending`` and fsync it; the caller commits. Returns bytes."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    pending.file.write(raw)
    pending.close()
    return len(raw)


def write_file(dest: PathLike, data: bytes | str) -> int:
    """Write ``data`` to ``dest`` through a :class:`PendingFile` (call the check first). Returns bytes."""
    with PendingFile(dest) as pf:
        return write_pending(pf, data)


def fsync_dir(d: str) -> None:
    """Persist a rename: fsync the directory that holds it (best effort where unsupported)."""
    try:
        fd = os.open(d or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
