"""Measurement helpers for ``bench/run.py``: child-process runner and the timed tasks.

Every figure is taken in a fresh child process so that its peak RSS
(``ru_maxrss`` of that child, from ``os.wait4``) belongs to it alone. A task
is run as ``python bench/_util.py TASK ARGS...`` and prints one JSON object
on stdout; :func:`run_measured` returns that object plus ``wall_s`` and
``peak_rss_mb``. Timed tasks repeat their measurement and interleave it with
the baseline they are compared to, so both see the same machine load.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
PIECE = 64 << 20  # bytes per numpy / xxhash call in the baselines


# -- parent side ----------------------------------------------------------------------------------

def _result(proc, out, err, wall, ru, argv, check) -> dict:
    if check and proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{err.decode()[-3000:]}")
    data: dict = {}
    text = out.decode(errors="replace").strip()
    if text.startswith("{") and text.endswith("}"):
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
    data["wall_s"] = wall
    data["returncode"] = proc.returncode
    if ru is not None:
        data["peak_rss_mb"] = ru.ru_maxrss / 1024
        data["cpu_s"] = ru.ru_utime + ru.ru_stime
    return data


#: Environment of every child (``run.py --tree`` puts another sbs_tools checkout first on the path). Children
#: cache bytecode as a user's interpreter does, even where the sandbox sets PYTHONDONTWRITEBYTECODE (which
#: makes every start compile every module: +0.05-0.1 s per command, see bench/startup.py).
CHILD_ENV: dict | None = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_measured(argv: list[str], *, env: dict | None = None, check: bool = True,
                 stdout_json: bool = True, stderr: bool = False) -> dict:
    """Run ``argv``; returns its JSON output (if any) plus ``wall_s``, ``returncode`` and
    ``peak_rss_mb`` (the child's own ``ru_maxrss``: it is reaped with ``wait4``), and with
    ``stderr`` its standard error as text."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE if stdout_json else subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env or CHILD_ENV, cwd=ROOT)
    # Read both pipes to EOF without reaping (communicate() would reap via wait()).
    chunks: dict[str, bytes] = {}

    def drain(name: str, stream) -> None:
        chunks[name] = stream.read() if stream is not None else b""

    threads = [threading.Thread(target=drain, args=("out", proc.stdout)),
               threading.Thread(target=drain, args=("err", proc.stderr))]
    for t in threads:
        t.start()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    data = _result(proc, chunks.get("out", b""), chunks.get("err", b""), wall, ru, argv, check)
    if stderr:
        data["stderr"] = chunks.get("err", b"").decode(errors="replace")
    return data


def task(name: str, *args: object) -> list[str]:
    """argv of a child running one of this module's tasks."""
    return [sys.executable, str(Path(__file__).resolve()), name, *map(str, args)]


def drop_cache(path: str | os.PathLike) -> None:
    """Evict a (clean) file from the page cache: ``POSIX_FADV_DONTNEED`` on the whole file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def stats(times: list[float]) -> dict:
    return {"best_s": min(times), "median_s": statistics.median(times), "runs": len(times), "all_s": times}


def paired_ratio(base: dict, meas: dict, key: str | None = None) -> float:
    """Median over the interleaved repeats of baseline time / measured time (each pair ran back to
    back, so a change of machine load between repeats cancels out)."""
    b, m = (base[key], meas[key]) if key else (base, meas)
    return statistics.median(x / y for x, y in zip(b["all_s"], m["all_s"]))


# -- child side: the baselines ------------------------------------------------------------------

def memmap_sum(path: str, ranges: list[tuple[int, int]] | None = None) -> int:
    """The raw-read baseline: sum the bytes (as uint64 words) of ``ranges`` through a numpy memmap."""
    import numpy as np

    mm = np.memmap(path, dtype=np.uint8, mode="r")
    total = 0
    for off, size in ranges or [(0, mm.size)]:
        for i in range(off, off + size, PIECE):
            piece = mm[i:min(i + PIECE, off + size)]
            k = piece.size // 8 * 8
            total += int(piece[:k].view(np.uint64).sum(dtype=np.uint64)) + int(piece[k:].sum())
    return total & 0xFFFFFFFFFFFFFFFF


def memmap_xxh64(path: str) -> str:
    """The hashing baseline: xxh64 over the memmap of the whole file, in 64 MiB pieces, one thread."""
    import numpy as np
    import xxhash

    mm = np.memmap(path, dtype=np.uint8, mode="r")
    h = xxhash.xxh64()
    for i in range(0, mm.size, PIECE):
        h.update(mm[i:i + PIECE])
    return h.hexdigest()


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn()``; CPU is this process's user + system time, all threads."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _both(runs: list[tuple[float, float]]) -> dict:
    return {**stats([w for w, _ in runs]), "cpu": stats([c for _, c in runs])}


# -- child tasks ----------------------------------------------------------------------------------

def t_import() -> dict:
    """Nothing: used as ``python -c 'import sbs_tools'``-style baseline by the parent."""
    return {}


def t_open(path: str, repeat: str = "30") -> dict:
    """Python-API open (header, directory, config and toc decoded, tensor table built), repeated.
    Wall and CPU time (``thread_time``: unaffected by waiting for a CPU on a loaded machine)."""
    t0 = time.perf_counter()
    import sbs_tools

    imp = time.perf_counter() - t0
    wall, cpu = [], []
    tensors = 0
    for _ in range(int(repeat)):
        c0, t0 = time.thread_time(), time.perf_counter()
        f = sbs_tools.open(path)
        tensors = len(f.tensors)
        assert f.config is not None
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        f.close()
    return {"import_s": imp, "first_s": wall[0], **stats(wall), "cpu": stats(cpu), "tensors": tensors,
            "file_bytes": os.path.getsize(path)}


def t_open_many(repeat: str, *paths: str) -> dict:
    """:func:`t_open` for several files, round-robin (so all see the same machine load)."""
    import sbs_tools

    wall: dict[str, list] = {p: [] for p in paths}
    cpu: dict[str, list] = {p: [] for p in paths}
    tensors: dict[str, int] = {}
    for _ in range(int(repeat)):
        for p in paths:
            c0, t0 = time.thread_time(), time.perf_counter()
            f = sbs_tools.open(p)
            tensors[p] = len(f.tensors)
            assert f.config is not None
            wall[p].append(time.perf_counter() - t0)
            cpu[p].append(time.thread_time() - c0)
            f.close()
    return {p: {**stats(wall[p]), "cpu": stats(cpu[p]), "tensors": tensors[p], "file_bytes": os.path.getsize(p)}
            for p in paths}


def _repeat_timed(repeat: str, fn: Callable[[], int]) -> dict:
    """Run ``fn`` (returns a tensor count) ``repeat`` times; wall and CPU (thread) time of each."""
    wall, cpu, n = [], [], 0
    for _ in range(int(repeat)):
        c0, t0 = time.thread_time(), time.perf_counter()
        n = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return {**stats(wall), "cpu": stats(cpu), "tensors": n}


def t_gguf(path: str, repeat: str = "1") -> dict:
    """``gguf.GGUFReader(path)`` (the reference GGUF reader), repeated."""
    import gguf

    return {**_repeat_timed(repeat, lambda: len(gguf.GGUFReader(path).tensors)),
            "file_bytes": os.path.getsize(path)}


def t_gguf_fast(path: str, repeat: str = "10") -> dict:
    """``sbs_tools.convert.gguf_file.GgufFile`` (this project's GGUF header reader), repeated."""
    from sbs_tools.convert.gguf_file import GgufFile

    def once() -> int:
        g = GgufFile(path)
        n = len(g.tensors)
        g.close()
        return n

    return {**_repeat_timed(repeat, once), "file_bytes": os.path.getsize(path)}


def t_safetensors(path: str, repeat: str = "30") -> dict:
    """``safetensors.safe_open``: header parsed, every tensor's name, dtype and shape read."""
    from safetensors import safe_open

    def once() -> int:
        with safe_open(path, framework="numpy") as f:
            f.metadata()
            shapes = {k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()}
        return len(shapes)

    return {**_repeat_timed(repeat, once), "file_bytes": os.path.getsize(path)}


def _type_ranges(path: str, type_name: str) -> tuple[list, list[tuple[int, int]]]:
    import sbs_tools

    f = sbs_tools.open(path)
    infos = [t for t in f.tensors.values() if type_name in ("ALL", t.type_name)]
    f.close()
    return infos, [(t.offset, t.bytes) for t in infos]


def t_deep(path: str, type_name: str, repeat: str = "3") -> dict:
    """``verify --deep``'s value scan (``check_deep``) over the tensors of one type, interleaved with
    the raw-read baseline (memmap sum) over exactly the same bytes."""
    import sbs_tools
    from sbs_tools.verify.deep import check_deep

    infos, ranges = _type_ranges(path, type_name)
    nbytes = sum(s for _, s in ranges)
    raw_t, deep_t, findings = [], [], 0
    for _ in range(int(repeat)):
        raw_t.append(_timed(lambda: memmap_sum(path, ranges)))
        f = sbs_tools.open(path, strict=False)  # (opening is measured on its own)
        f.tensors = {t.name: t for t in infos}

        def scan() -> None:
            nonlocal findings
            findings = len(check_deep(f))

        deep_t.append(_timed(scan))
        f.close()
    return {"bytes": nbytes, "tensors": len(infos), "findings": findings, "raw": _both(raw_t),
            "deep": _both(deep_t)}


def t_hash(path: str, per: str = "file", repeat: str = "3") -> dict:
    """``sbs_tools.hashing.hash_file`` (xxh64) interleaved with bare xxh64 over the memmap."""
    from sbs_tools import hashing

    base_t, hash_t = [], []
    for _ in range(int(repeat)):
        base_t.append(_timed(lambda: memmap_xxh64(path)))
        hash_t.append(_timed(lambda: hashing.hash_file(path, per=per, algo="xxh64")))
    return {"bytes": os.path.getsize(path), "per": per, "xxh64": _both(base_t), "hash": _both(hash_t)}


def t_rawsum(path: str) -> dict:
    """One raw-read pass over the whole file (process-level baseline for ``sbs verify --deep``)."""
    wall, cpu = _timed(lambda: memmap_sum(path))
    return {"bytes": os.path.getsize(path), "seconds": wall, "cpu_seconds": cpu}


def t_xxh(path: str) -> dict:
    """One bare xxh64 pass over the whole file (process-level baseline for ``sbs hash``)."""
    wall, cpu = _timed(lambda: memmap_xxh64(path))
    return {"bytes": os.path.getsize(path), "seconds": wall, "cpu_seconds": cpu}


TASKS = {"import": t_import, "open": t_open, "open_many": t_open_many, "gguf": t_gguf, "gguf_fast": t_gguf_fast,
         "safetensors": t_safetensors, "deep": t_deep, "hash": t_hash, "rawsum": t_rawsum, "xxh": t_xxh}


def main(argv: list[str]) -> int:
    # SBS_TREE: measure another checkout of sbs_tools (run.py --tree), e.g. an older commit.
    sys.path.insert(0, os.environ.get("SBS_TREE") or str(ROOT))
    name, *args = argv
    print(json.dumps(TASKS[name](*args)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
