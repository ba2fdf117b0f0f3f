"""Run an entry point under the fuzz contract: returns or raises ``SbsError``, in bounded time and memory.

:func:`bounded` wraps one call: a watchdog (``SIGALRM``) turns a hang into a failure, wall time
is compared with a size-proportional limit scaled by a one-off machine calibration, and
``tracemalloc`` (which also sees numpy's buffers) measures the peak of Python allocations
during the call (memory-mapped file pages are not allocations and are not counted).

:func:`exercise` opens a file and drives every public entry point on it: ``open`` (strict
and lenient), every accessor, ``tensor()`` of every tensor, ``metadata``, ``summarize``,
``dump`` (and its JSON rendering), ``tensor_report``, the CLI (``inspect --json``,
``dump --json``), and -- as they exist -- ``verify(deep=True)``, ``repair --dry-run`` and
``inference.load``.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import os
import shutil
import signal
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import sbs_tools
import sbs_tools.cli  # noqa: F401  (imported up front: its import time is not the callee's)
from sbs_tools.errors import SbsError

MiB = 1 << 20
#: tracemalloc makes allocation-heavy Python code this many times slower (measured: 3-6x).
TRACING_SLOWDOWN = 6.0
#: Hard watchdog per call: a call still running after this is a hang.
HANG_SECONDS = 60.0


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so that ``except Exception`` cannot swallow it."""


class ContractViolation(AssertionError):
    pass


def _calibrate() -> float:
    """How much slower than the reference machine (2 cores, ~2020 x86) this one is, >= 1.

    Measured in CPU time, like the bounds themselves: other processes loading the machine
    (parallel test runs) do not count against a call; the wall-clock watchdog still catches
    a call that blocks."""
    t0 = time.process_time()
    a = np.arange(1 << 20, dtype=np.float32)
    for _ in range(20):
        a = np.sqrt(a * a + 1.0)
    acc = 0
    for i in range(200_000):
        acc += i & 7
    dt = time.process_time() - t0
    return max(1.0, dt / 0.08)


SLOWDOWN = _calibrate()


def time_limit(size: int, factor: float = 1.0) -> float:
    """Generous CPU-time bound for one call on a file of ``size`` bytes: 5 s at 2 MiB."""
    return SLOWDOWN * factor * (2.0 + 1.5 * size / MiB)


#: Peak allocation allowed per call: MEM_FACTOR x file size + MEM_CONST. Python spends ~1-1.5 KiB
#: of objects per 32-byte directory entry (entry, key, Problem/Finding and message), so a file
#: that is nothing but directory entries legitimately costs up to ~50x its size in verify; the
#: bound still fails anything that allocates from a *claimed* count rather than bytes present
#: (a 4-byte vector count, a 2**32-row tensor) and anything superlinear.
MEM_FACTOR = 64.0
MEM_CONST = 16 * MiB


def mem_limit(size: int, factor: float = MEM_FACTOR, const: int = MEM_CONST) -> int:
    return int(factor * size + const)


@dataclass
class Outcome:
    what: str
    value: Any = None
    error: SbsError | None = None
    seconds: float = 0.0  # CPU time of the process during the call
    wall: float = 0.0
    peak: int = 0


@contextlib.contextmanager
def _watchdog(seconds: float):
    def fire(signum, frame):
        raise Hang(f"still running after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def bounded(what: str, fn: Callable[[], Any], *, size: int, time_factor: float = 1.0,
            mem_factor: float = MEM_FACTOR, mem_const: int = MEM_CONST, measure_memory: bool = True) -> Outcome:
    """Call ``fn``; fail unless it returns or raises SbsError within the time and memory bounds."""
    out = Outcome(what)
    tracing = measure_memory and not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with _watchdog(HANG_SECONDS * SLOWDOWN):
            out.value = fn()
    except SbsError as e:
        out.error = e
    except Hang as e:
        raise ContractViolation(f"{what}: hang ({e})") from None
    except Exception as e:
        raise ContractViolation(f"{what}: raised {type(e).__name__} (not SbsError): {e}") from e
    finally:
        out.seconds, out.wall = time.process_time() - c0, time.perf_counter() - t0
        if tracing:
            out.peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    if out.error is not None:
        _check_error(what, out.error)
    limit = time_limit(size, time_factor) * (TRACING_SLOWDOWN if tracing else 1.0)
    if out.seconds > limit:
        raise ContractViolation(f"{what}: took {out.seconds:.2f} s of CPU on a {size}-byte file "
                                f"(limit {limit:.2f} s)")
    mlimit = mem_limit(size, mem_factor, mem_const)
    if tracing and out.peak > mlimit:
        raise ContractViolation(f"{what}: peak allocation {out.peak / MiB:.1f} MiB on a {size}-byte file "
                                f"(limit {mlimit / MiB:.1f} MiB)")
    return out


def _check_error(what: str, e: SbsError) -> None:
    """An SbsError must be well-formed: a kebab-case code and a printable message."""
    if not isinstance(e.code, str) or not e.code or e.code != e.code.lower() or " " in e.code:
        raise ContractViolation(f"{what}: SbsError with malformed code {e.code!r}")
    str(e)
    json.dumps(e.location())


# -- optional entry points (others are writing them) ---------------------------------------------

def _module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            return None
        raise


def verify_fn() -> Callable | None:
    """``sbs_tools.verify_file(path, deep=...)`` -> report with ``.ok`` and ``.findings``, if it exists."""
    f = getattr(sbs_tools, "verify_file", None)
    if callable(f):
        return f
    mod = _module("sbs_tools.verify")
    f = getattr(mod, "verify", None) if mod is not None else None
    return f if callable(f) else None


def repair_available() -> bool:
    from sbs_tools.cli.common import app

    return any((c.name or (c.callback.__name__ if c.callback else "")) == "repair"
               for c in app.registered_commands)


def inference_load() -> Callable | None:
    mod = _module("inference")
    f = getattr(mod, "load", None) if mod is not None else None
    return f if callable(f) else None


# -- the whole surface --------------------------------------------------------------------------

def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``sbs ARGV`` in-process; exit code, stdout, stderr. Exit codes must be 0, 1 or 2."""
    from sbs_tools.cli import main
    from sbs_tools.cli import common

    out, err = io.StringIO(), io.StringIO()
    # Save the consoles' own setting (None = follow sys.stdout/stderr), not the stream they
    # resolve to now: restoring a resolved stream would pin them to a stale capture.
    old_c, old_e = common.console._file, common.err_console._file
    common.console.file, common.err_console.file = out, err
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        common.console._file, common.err_console._file = old_c, old_e
    if code not in (0, 1, 2):
        raise ContractViolation(f"sbs {' '.join(argv)}: exit code {code}\n{err.getvalue()[-2000:]}")
    if "Traceback" in err.getvalue():
        raise ContractViolation(f"sbs {' '.join(argv)}: traceback on stderr\n{err.getvalue()[-2000:]}")
    return code, out.getvalue(), err.getvalue()


@dataclass
class Exercise:
    size: int
    outcomes: list[Outcome] = field(default_factory=list)
    verify_report: Any = None

    def errors(self) -> dict[str, str]:
        return {o.what: o.error.code for o in self.outcomes if o.error is not None}


def exercise(path: str | os.PathLike, *, tensors: int | None = None, cli_too: bool = True,
             verify: bool = True, repair: bool = True, inference: bool = True,
             inference_max_bytes: int = 2 * MiB, measure_memory: bool = True) -> Exercise:
    """Every public entry point on ``path`` under :func:`bounded`. ``tensors`` caps how many
    tensors are decoded (None: all)."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    ex = Exercise(size)

    def run(what, fn, **kw):
        o = bounded(what, fn, size=size, measure_memory=measure_memory, **kw)
        ex.outcomes.append(o)
        return o

    run("open(strict=False)", lambda: _close(sbs_tools.open(path, strict=False)))
    o = run("open", lambda: sbs_tools.open(path))
    f = o.value
    if f is not None:
        try:
            _accessors(f, run, tensors)
        finally:
            f.close()
    if cli_too:
        run("sbs inspect --json", lambda: _cli_json(["inspect", "--json", path]))
        run("sbs dump --json", lambda: _cli_json(["dump", "--json", path]))
        for argv in (["inspect"], ["dump"], ["dump", "--markdown"], ["verify", "--deep"]):  # text renderers
            run("sbs " + " ".join(argv), lambda argv=argv: cli([*argv, path])[0], time_factor=4.0)
    if verify and (vf := verify_fn()) is not None:
        o = run("verify(deep=True)", lambda: vf(path, deep=True), time_factor=4.0)
        ex.verify_report = o.value
        if o.value is not None:
            _check_report(o.value)
    if repair and repair_available():
        run("sbs repair --dry-run", lambda: cli(["repair", "--dry-run", path]), time_factor=4.0)
    if inference and size <= inference_max_bytes and (load := inference_load()) is not None:
        o = run("inference.load", lambda: load(path, progress=False), time_factor=4.0)
        m = o.value
        if m is not None and m.vocab_size > 0 and m.config.max_seq_len >= 2:
            # One prefill step of two tokens on whatever weights the file holds (NaN is fine).
            tokens = [min(2, m.vocab_size - 1), 0]
            run("inference logits", lambda: _quiet(lambda: m.logits(tokens)), time_factor=4.0)
    return ex


def _quiet(fn):
    with np.errstate(all="ignore"):
        return fn()


def _close(f):
    f.close()
    return None


def _cli_json(argv: list[str]) -> int:
    code, out, _ = cli(argv)
    if code == 0:
        json.loads(out)
    return code


def _accessors(f, run, max_tensors: int | None) -> None:
    from sbs_tools.dump import dump, tensor_report
    from sbs_tools.summary import summarize

    run(".config/.toc/.tensors", lambda: (f.config, list(f.toc), dict(f.tensors), f.layout, f.era, repr(f)))
    if f.config is not None:
        run(".config.to_dict()", lambda: json.dumps(f.config.to_dict()))
        run(".config.specifier", lambda: (f.config.specifier, f.config.family))
    run(".tokenizer_bytes", lambda: f.tokenizer_bytes)
    run(".metadata()", lambda: json.dumps(f.metadata(), default=_json_default))
    run("summarize", lambda: json.dumps(summarize(f), default=_json_default))
    run("dump", lambda: json.dumps(dump(f), default=_json_default))
    for key in list(f.blobs)[:64]:
        run(f".raw({key!r})", lambda key=key: int(f.raw(key).size))
    names = list(f.tensors)
    if max_tensors is not None:
        names = names[:max_tensors]
    for name in names:
        run(f".tensor({name!r})", lambda name=name: f.tensor(name))
    if names:
        run("tensor_report", lambda: json.dumps(tensor_report(f, names[0], stats=True), default=_json_default))
    run(".raw(missing)", lambda: f.raw("\0no such blob"))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _check_report(rep: Any) -> None:
    """A verify report must be self-consistent and serializable."""
    ok = rep.ok
    errors = [x for x in rep.findings if x.severity == "error"]
    if ok != (not errors):
        raise ContractViolation(f"verify: ok={ok} but {len(errors)} error findings")
    for x in rep.findings:
        if x.severity not in ("error", "warning", "info"):
            raise ContractViolation(f"verify: finding {x.code} has severity {x.severity!r}")
    if hasattr(rep, "to_dict"):
        json.dumps(rep.to_dict(), default=_json_default)


# -- scratch files --------------------------------------------------------------------------------

_SCRATCH = Path(tempfile.mkdtemp(prefix="sbs-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
atexit.register(shutil.rmtree, _SCRATCH, True)


def scratch_file(data: bytes, name: str = "case.sbs") -> Path:
    """Write ``data`` to a per-process scratch path (overwritten by the next case)."""
    p = _SCRATCH / name
    tmp = p.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, p)
    return p


def warm_up() -> None:
    """Import everything lazily imported by the entry points and run each once, so that one-off
    import costs are not charged to the first fuzz case."""
    here = Path(__file__).resolve().parents[2] / "fixtures" / "corpus" / "v2"
    for p in sorted(here.glob("*.sbs"), key=lambda p: p.stat().st_size)[:1]:
        with contextlib.suppress(Exception, Hang):
            exercise(p, tensors=2)
