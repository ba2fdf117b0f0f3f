"""Decode throughput of sbs_tools.codecs vs a plain float32 copy.

For each type, a tensor of 16 Mi elements (64 MiB of float32 *output*) is
decoded into a preallocated float32 array (``decode(..., out=)``) and, for
comparison, without ``out`` (fresh allocation). The baseline is
``np.copyto`` of a 16 Mi-element float32 array into another, measured in the
same run. Throughput = output bytes / best time of ``--repeat`` runs.

Packed inputs are synthetic but valid: BF16/SFP/NUQ accept any bytes; I8
groups get finite bf16 scale/zeropoint headers. (Decode time does not depend
on the values, and encoding 64 Ki NUQ groups would take minutes.)

Usage: ``python bench/codecs.py [--elements N] [--repeat R]``
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sbs_tools.codecs as codecs  # noqa: E402

TARGETS = {"F32": None, "BF16": 0.5, "SFP": 0.25, "NUQ": 0.15, "I8": 0.15}


def best_time(fn, repeat: int) -> float:
    fn()  # warm up (tables, page faults)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def make_blob(type_name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    size = codecs.packed_size(type_name, n)
    if type_name == "F32":
        return rng.standard_normal(n, dtype=np.float32).view(np.uint8)
    raw = rng.integers(0, 256, size, dtype=np.uint8)
    if type_name == "I8":
        groups = raw[: (n // 128) * 132].reshape(-1, 132)
        inv = np.full(groups.shape[0], 0.001, dtype=np.float32)
        zp = rng.integers(-128, 128, groups.shape[0]).astype(np.float32)
        groups[:, 0:2] = (inv.view(np.uint32) >> 16).astype("<u2").view(np.uint8).reshape(-1, 2)
        groups[:, 2:4] = (zp.view(np.uint32) >> 16).astype("<u2").view(np.uint8).reshape(-1, 2)
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, default=16 * 1024 * 1024)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    n = args.elements
    rng = np.random.default_rng(0)
    out_mb = n * 4 / 1e6

    src = rng.standard_normal(n, dtype=np.float32)
    dst = np.empty(n, dtype=np.float32)
    t_copy = best_time(lambda: np.copyto(dst, src), args.repeat)
    print(f"{n} elements = {n * 4 / 2**20:.0f} MiB float32 output; best of {args.repeat}")
    print(f"baseline np.copyto float32: {t_copy * 1e3:7.2f} ms  {out_mb / t_copy:8.0f} MB/s\n")
    header = (f"{'type':5} {'packed MiB':>10} {'out= ms':>8} {'MB/s':>7} {'x copy':>7} "
              f"{'alloc ms':>8} {'x copy':>7} {'target':>7}  ok")
    print(header)
    print("-" * len(header))
    ok_all = True
    for t, target in TARGETS.items():
        raw = make_blob(t, n, rng)
        out = np.empty(n, dtype=np.float32)
        t_out = best_time(lambda: codecs.decode(t, raw, n, out=out), args.repeat)
        t_alloc = best_time(lambda: codecs.decode(t, raw, n), args.repeat)
        # re-measure the copy between types: the machine is shared, keep ratios honest
        t_copy = min(t_copy, best_time(lambda: np.copyto(dst, src), 3))
        ratio = t_copy / t_out
        ok = target is None or ratio >= target
        ok_all &= ok
        print(f"{t:5} {raw.size / 2**20:10.1f} {t_out * 1e3:8.2f} {out_mb / t_out:7.0f} "
              f"{ratio:7.2f} {t_alloc * 1e3:8.2f} {t_copy / t_alloc:7.2f} "
              f"{'' if target is None else f'{target:.2f}':>7}  {'yes' if ok else 'NO'}")
    print(f"\nfinal copy baseline {t_copy * 1e3:.2f} ms ({out_mb / t_copy:.0f} MB/s); "
          f"all targets met: {ok_all}")


if __name__ == "__main__":
    main()
