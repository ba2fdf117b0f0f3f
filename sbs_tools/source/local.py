"""A local regular file: memory-mapped for metadata, ``pread`` for bulk reads, with ``file-changed`` checks."""
from __future__ import annotations

import mmap
import os
import threading
import weakref
from typing import Iterable

import numpy as np

from ..errors import ContainerError, FileChangedError, SbsError
from ..inputs import check_input_file



# -- local ------------------------------------------------------------------------------------------
class LocalSource:
    """A local regular file: memory-mapped for metadata, ``pread`` for bulk reads."""

    remote = False

    def __init__(self, path: str) -> None:
        self.path = path
        self._mm: mmap.mmap | None = None
        check_input_file(path, allow_empty=True)  # never mmap a directory, never block on a FIFO
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise SbsError(f"cannot open {path}: {e.strerror}", code="io-error") from None
        # The descriptor stays open for bulk reads (read_into); closed by close() or, for a file
        # never closed, when this object is collected.
        self._fd: int | None = fd
        self._fd_closer = weakref.finalize(self, os.close, fd)
        self._seek_lock = None if hasattr(os, "preadv") else threading.Lock()
        try:
            st = os.fstat(fd)
            self.size = st.st_size
            self._identity = (st.st_size, st.st_ino, st.st_mtime_ns)
            if self.size:
                self._mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                self.buf = np.frombuffer(self._mm, dtype=np.uint8)
            else:
                self.buf = np.zeros(0, dtype=np.uint8)
        except BaseException:
            self._fd_closer()
            raise

    def transfer(self) -> dict | None:
        return None

    def prefetch(self, ranges: Iterable[tuple[int, int]]) -> None:
        """Nothing to do: the mapping is there."""

    def check_unchanged(self) -> None:
        fd = self._fd
        if fd is None:
            raise SbsError(f"{self.path}: read after close", code="io-error")
        try:
            st = os.fstat(fd)
        except OSError as e:
            raise SbsError(f"{self.path}: {e.strerror}", code="io-error") from None
        try:
            ino = os.stat(self.path).st_ino
        except OSError:
            ino = None  # deleted or renamed away: the open descriptor still reads the old file
        size0, ino0, mtime0 = self._identity
        what = []
        if st.st_size != size0:
            what.append(f"its size went from {size0} to {st.st_size} bytes")
        if ino is not None and ino != ino0:
            what.append("another file was put in its place")
        if st.st_mtime_ns != mtime0 and not what:
            what.append("it was modified")
        if what:
            raise FileChangedError(f"{self.path} changed while it was being read ({', '.join(what)}); read it "
                                   "again once the writer has finished")

    def check_stat(self) -> None:
        try:
            st = os.fstat(self._fd)  # type: ignore[arg-type]
        except (OSError, TypeError):
            st = None
        if st is None or (st.st_size, st.st_mtime_ns) != (self._identity[0], self._identity[2]):
            self.check_unchanged()

    def read_into(self, offset: int, buf) -> None:
        mv = memoryview(buf).cast("B")
        n = mv.nbytes
        fd = self._fd
        if fd is None:
            raise SbsError(f"{self.path}: read after close", code="io-error")
        done = 0
        while done < n:
            try:
                if self._seek_lock is None:
                    got = os.preadv(fd, [mv[done:]], offset + done)
                else:  # no preadv (Windows): seek + readinto under a lock
                    with self._seek_lock:
                        os.lseek(fd, offset + done, os.SEEK_SET)
                        got = os.readv(fd, [mv[done:]])
            except OSError as e:
                raise SbsError(f"{self.path}: read of {n - done} bytes at offset {offset + done} failed: "
                               f"{e.strerror}", code="io-error", offset=offset + done) from None
            if got <= 0:
                at = offset + done
                try:
                    self.check_unchanged()
                except FileChangedError as e:
                    e.offset = at
                    raise
                if at < self.size:
                    raise FileChangedError(f"{self.path} changed while it was being read (a read at offset {at} "
                                           f"ended early in a {self.size}-byte file)", offset=at)
                raise _beyond_end(self.path, n - done, at, self.size)
            done += got

    def view(self, offset: int, buf: np.ndarray) -> np.ndarray:
        """``buf`` filled with the bytes at ``offset`` (:meth:`read_into`): a local file has no block to lend."""
        self.read_into(offset, buf)
        return buf

    def release(self, offset: int, length: int) -> None:
        mm = self._mm
        if mm is None or length <= 0 or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = max(offset, 0) // mmap.PAGESIZE * mmap.PAGESIZE
        if start >= self.size:
            return
        try:
            mm.madvise(mmap.MADV_DONTNEED, start, offset + length - start)
        except (OSError, ValueError):
            pass  # advisory only

    def close(self) -> None:
        mm, self._mm = self._mm, None
        self.buf = np.zeros(0, dtype=np.uint8)
        self._fd = None
        self._fd_closer()
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # views handed out still reference it; GC closes it with them


def _beyond_end(path: str, n: int, at: int, size: int) -> ContainerError:
    return ContainerError(f"{path}: {n} bytes at offset {at} lie beyond the end of the {size}-byte file",
                          code="blob-out-of-bounds", offset=at)
