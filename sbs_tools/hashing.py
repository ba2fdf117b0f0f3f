"""``sbs hash``: digests of a ``.sbs`` file per blob, per tensor or whole, and checking them later.

Digests are computed over the file's bytes read with ``pread`` in 1 MiB pieces
into one reusable buffer per thread (``SbsFile.chunks``; small enough to stay
in cache between the copy and the hash, and never through the mapping, so a
file truncated meanwhile is a ``file-changed`` error, not SIGBUS), blobs in
parallel on a small thread pool (both libraries release the GIL); a URL's blobs in
file order on one thread, one sequential stream.

Granularity (``per``):

* ``tensor`` (default): one entry per tensor (by name), plus the ``config``
  and ``tokenizer`` blobs. The digest covers the blob bytes; the entry also
  records type, shape and scale from the toc, and ``--check`` compares those
  too. Independent of layout (V1/V2) and blob order, so it survives
  ``sbs repair --layout`` and re-packing.
* ``blob``: one entry per directory entry (every key, including ``toc``).
* ``file``: one digest of the whole file, like ``sha256sum``.

Manifests: JSON (``--json``; ``format: "sbs-hash"``) or text, one line per
entry in the style of ``sha256sum``::

    # sbs-hash v1 algo=xxh64 per=tensor
    xxh64:1f3a...e2  gemma3-270m.sbs::c_embedding  bf16 262144x640 scale=1

``check`` accepts either form and reports ``OK`` / ``FAILED`` / ``MISSING``
per entry, plus ``EXTRA`` for tensors the file has and the manifest lacks.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import SbsError
from .inputs import check_input_file

ALGOS = ("xxh64", "sha256")
PER = ("tensor", "blob", "file")
FORMAT = "sbs-hash"
SEP = "::"
_DIGEST_LEN = {"xxh64": 16, "sha256": 64}
_HEX_LEN = {v: k for k, v in _DIGEST_LEN.items()}
_CHUNK = 64 << 20
#: Bytes read (pread) and hashed per piece by hash_file: stays in L2 between the copy and the hash.
_PIECE = 1 << 20
#: A manifest line is ~100 bytes: this allows millions of entries and refuses anything absurd unread.
MAX_MANIFEST_BYTES = 256 << 20


class HashError(SbsError):
    code = "hash-error"


def _hasher(algo: str):
    if algo == "xxh64":
        try:
            import xxhash
        except ImportError:
            raise HashError("xxh64 needs the 'xxhash' package (or use --algo sha256)",
                            code="missing-dependency") from None
        return xxhash.xxh64()
    if algo == "sha256":
        return hashlib.sha256()
    raise HashError(f"unknown algorithm {algo!r} (xxh64, sha256)", code="bad-arguments")


def digest(buf: np.ndarray | memoryview | bytes, algo: str = "xxh64",
           release: Callable[[int, int], None] | None = None) -> str:
    """Hex digest of a buffer (a uint8 view of the mapping is hashed in place, in 64 MiB pieces).

    ``release(offset, length)``, if given, is called after each piece with its range
    within ``buf`` (``hash_file`` passes ``SbsFile.release`` so that the mapped pages
    already hashed leave the process: peak RSS stays ~2 pieces per thread, not the file).
    """
    h = _hasher(algo)
    mv = memoryview(buf).cast("B") if not isinstance(buf, bytes) else memoryview(buf)
    for i in range(0, max(mv.nbytes, 1), _CHUNK):
        h.update(mv[i:i + _CHUNK])
        if release is not None:
            release(i, min(_CHUNK, mv.nbytes - i))
    return h.hexdigest()


@dataclass
class Entry:
    name: str
    kind: str  # tensor | blob | file
    bytes: int
    digest: str
    type: str | None = None
    rows: int | None = None
    cols: int | None = None
    scale: float | None = None

    def describe(self) -> str:
        if self.kind != "tensor":
            return f"{self.bytes} bytes"
        return f"{(self.type or '').lower()} {self.rows}x{self.cols} scale={self.scale:g}"

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class FileHashes:
    path: str
    file_bytes: int
    entries: list[Entry] = field(default_factory=list)


@dataclass
class Manifest:
    algo: str
    per: str
    files: list[FileHashes] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": 1, "algo": self.algo, "per": self.per,
                "files": [{"path": f.path, "file_bytes": f.file_bytes, "entries": [e.to_dict() for e in f.entries]}
                          for f in self.files]}

    def to_text(self) -> str:
        lines = [f"# {FORMAT} v1 algo={self.algo} per={self.per}"]
        for f in self.files:
            for e in f.entries:
                where = f.path if e.kind == "file" else f"{f.path}{SEP}{e.name}"
                lines.append(f"{self.algo}:{e.digest}  {_quote(where)}  {e.describe()}")
        return "\n".join(lines) + "\n"


def _quote(s: str) -> str:
    return shlex.quote(s) if any(c.isspace() for c in s) or s.startswith(("'", '"')) else s


def _digest_range(f, offset: int, length: int, algo: str, buf: np.ndarray) -> str:
    """Digest of ``length`` bytes of ``f`` at ``offset``, read piecewise into ``buf`` (``SbsFile.chunks``:
    ``pread``, never the mapping, so a file truncated meanwhile raises ``file-changed``)."""
    h = _hasher(algo)
    for piece in f.chunks(offset, length, buf=buf):
        h.update(piece)
    return h.hexdigest()


def hash_file(path: str | os.PathLike, *, per: str = "tensor", algo: str = "xxh64", threads: int = 2,
              progress: Callable[[int, int, str], None] | None = None) -> FileHashes:
    """Digests of one file (see the module docstring); ``progress(done, total, name)`` after each entry."""
    import threading

    import sbs_tools
    from sbs_tools.sbsfile import read_buffer

    if per not in PER:
        raise HashError(f"--per must be one of {', '.join(PER)}", code="bad-arguments")
    _hasher(algo)
    with sbs_tools.open(path) as f:
        out = FileHashes(os.fspath(path), f.file_bytes)
        if per == "file":
            buf = read_buffer(min(_PIECE, f.file_bytes))
            out.entries.append(Entry(os.path.basename(f.path), "file", f.file_bytes,
                                     _digest_range(f, 0, f.file_bytes, algo, buf)))
            return out
        jobs: list[tuple[Entry, str]] = []
        if per == "blob":
            for e in f.directory.entries:
                jobs.append((Entry(e.key, "blob", e.size, ""), e.key))
        else:
            for name, t in f.tensors.items():
                jobs.append((Entry(name, "tensor", t.bytes, "", t.type_name, t.rows, t.cols, float(t.scale)), t.key))
            for key in ("config", "tokenizer"):
                if key in f.blobs:
                    jobs.append((Entry(key, "blob", f.blobs[key].size, ""), key))
        for _, key in jobs:
            f.entry(key)  # a blob outside the file: blob-out-of-bounds before any hashing
        local = threading.local()
        done = [0]
        lock = threading.Lock()

        def job(j: tuple[Entry, str]) -> str:
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = read_buffer(min(_PIECE, f.file_bytes))
            e = f.blobs[j[1]]
            d = _digest_range(f, e.offset, e.size, algo, buf)
            if progress is not None:
                with lock:
                    done[0] += 1
                    progress(done[0], len(jobs), j[0].name)
            return d

        # A URL is one sequential stream (its read-ahead runs on across blobs): its blobs are hashed
        # one after another in file order; parallel jobs would split the stream and read ahead into
        # each other's blobs. A local file's blobs are hashed in parallel.
        order = list(range(len(jobs)))
        if f.remote:
            order.sort(key=lambda i: f.blobs[jobs[i][1]].offset)
        with ThreadPoolExecutor(max_workers=1 if f.remote else max(1, threads)) as pool:
            digests = dict(zip(order, pool.map(job, [jobs[i] for i in order])))
        for i, (entry, _) in enumerate(jobs):
            entry.digest = digests[i]
            out.entries.append(entry)
        return out


def hash_files(paths: Iterable[str | os.PathLike], *, per: str = "tensor", algo: str = "xxh64",
               progress: Callable[[int, int, str], None] | None = None) -> Manifest:
    return Manifest(algo, per, [hash_file(p, per=per, algo=algo, progress=progress) for p in paths])


# -- reading manifests -----------------------------------------------------------------------------

def load_manifest(path: str | os.PathLike) -> Manifest:
    """Parse a JSON or text manifest written by :func:`Manifest.to_dict` / :func:`Manifest.to_text`."""
    if check_input_file(path).st_size > MAX_MANIFEST_BYTES:
        raise HashError(f"manifest {path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB", code="bad-manifest")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise HashError(f"cannot read manifest {path}: {e}", code="bad-manifest") from None
    if text.lstrip().startswith("{"):
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise ValueError(f"format is {d.get('format')!r}, not {FORMAT!r}")
            m = Manifest(d["algo"], d["per"])
            for fd in d["files"]:
                fh = FileHashes(fd["path"], int(fd.get("file_bytes", 0)))
                fh.entries = [Entry(**e) for e in fd["entries"]]
                m.files.append(fh)
            return m
        except (ValueError, KeyError, TypeError) as e:
            raise HashError(f"{path}: not an sbs-hash JSON manifest ({e})", code="bad-manifest") from None
    algo, per = None, "tensor"
    files: dict[str, FileHashes] = {}
    for ln, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            for tok in s.split():
                if tok.startswith("algo="):
                    algo = tok[5:]
                elif tok.startswith("per="):
                    per = tok[4:]
            continue
        try:
            parts = shlex.split(s)
            algo_digest, where = parts[0], parts[1]
            a, dg = algo_digest.split(":", 1) if ":" in algo_digest else (algo or _HEX_LEN.get(len(algo_digest)),
                                                                           algo_digest)
            if a not in ALGOS or len(dg) != _DIGEST_LEN[a] or not all(c in "0123456789abcdef" for c in dg):
                raise ValueError(a)
        except (ValueError, IndexError):
            raise HashError(f"{path}:{ln}: cannot parse {line!r} (expected 'ALGO:HEXDIGEST  FILE[::NAME]')",
                            code="bad-manifest") from None
        algo = algo or a
        if a != algo:
            raise HashError(f"{path}:{ln}: mixes algorithms {algo} and {a}", code="bad-manifest")
        if per == "file" or SEP not in where:
            fh = files.setdefault(where, FileHashes(where, 0))
            fh.entries.append(Entry(os.path.basename(where), "file", 0, dg))
            continue
        fpath, name = where.rsplit(SEP, 1)
        desc = parts[2:]
        e = Entry(name, "blob", 0, dg)
        if len(desc) >= 3 and "x" in desc[1] and desc[2].startswith("scale="):
            r, c = desc[1].split("x", 1)
            e = Entry(name, "tensor", 0, dg, desc[0].upper(), int(r), int(c), float(desc[2][6:]))
        files.setdefault(fpath, FileHashes(fpath, 0)).entries.append(e)
    if algo is None:
        raise HashError(f"{path}: empty manifest", code="bad-manifest")
    return Manifest(algo, per, list(files.values()))


# -- checking ---------------------------------------------------------------------------------------

@dataclass
class CheckLine:
    path: str
    name: str
    status: str  # OK | FAILED | MISSING | EXTRA | UNREADABLE
    detail: str = ""

    def __str__(self) -> str:
        where = self.path if not self.name else f"{self.path}{SEP}{self.name}"
        return f"{where}: {self.status}" + (f" ({self.detail})" if self.detail else "")


def _resolve(path: str, manifest_path: str | os.PathLike | None) -> str:
    if os.path.exists(path) or manifest_path is None or os.path.isabs(path):
        return path
    alt = os.path.join(os.path.dirname(os.fspath(manifest_path)), path)
    return alt if os.path.exists(alt) else path


def check(manifest: Manifest | str | os.PathLike) -> list[CheckLine]:
    """Re-hash every file of a manifest and compare, entry by entry."""
    mpath = None
    if not isinstance(manifest, Manifest):
        mpath = manifest
        manifest = load_manifest(manifest)
    out: list[CheckLine] = []
    for fh in manifest.files:
        path = _resolve(fh.path, mpath)
        try:
            now = hash_file(path, per=manifest.per, algo=manifest.algo)
        except SbsError as e:
            out.append(CheckLine(fh.path, "", "UNREADABLE", e.message))
            continue
        have = {e.name: e for e in now.entries}
        for e in fh.entries:
            if manifest.per == "file":
                cur = now.entries[0]
                out.append(CheckLine(fh.path, "", "OK" if cur.digest == e.digest else "FAILED"))
                continue
            cur = have.pop(e.name, None)
            if cur is None:
                out.append(CheckLine(fh.path, e.name, "MISSING"))
                continue
            detail = []
            if e.type is not None and (cur.type, cur.rows, cur.cols) != (e.type, e.rows, e.cols):
                detail.append(f"was {(e.type or '').lower()} {e.rows}x{e.cols}, now "
                              f"{(cur.type or '').lower()} {cur.rows}x{cur.cols}")
            if e.scale is not None and cur.scale is not None and np.float32(cur.scale) != np.float32(e.scale):
                detail.append(f"scale was {e.scale:g}, now {cur.scale:g}")
            if cur.digest != e.digest:
                detail.insert(0, "digest differs")
            out.append(CheckLine(fh.path, e.name, "FAILED" if detail else "OK", "; ".join(detail)))
        if manifest.per != "file":
            out += [CheckLine(fh.path, name, "EXTRA", "not in the manifest") for name in have]
    return out
