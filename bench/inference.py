"""Prompt and decode speed of the numpy decoder vs. the memory-bound floor, in the same run.

Default file: the largest corpus file gemma.cpp can run (``fixtures/corpus/v*/*.sbs``), or any
``.sbs`` given on the command line.

* prompt: ``Model.logits`` of a ``--prompt-tokens`` prompt (one batched pass), tokens/s.
* decode: ``--new-tokens`` greedy steps after a short prefill, each one cached single-token
  forward, tokens/s.
* floors, measured in the same process: a bare float32 numpy matmul whose weight matrix has the
  same number of values as every matrix one token touches (all layer matrices plus the tied
  unembedding; the embedding lookup reads one row): ``(1, N) @ (N, M)`` for decode (a matrix-vector
  product streams all weights once: the memory-bound floor) and ``(T, N) @ (N, M)`` for the prompt.
  The ratio says how far from the floor the decoder runs (on tiny models, Python overhead per
  numpy call dominates).

BLAS threads: ``--threads N`` sets ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``MKL_NUM_THREADS``
before numpy loads. On a loaded 2-core machine, multi-threaded OpenBLAS spin-waits and small
matrix-vector products get 10-20x slower; ``--threads 1`` gives steadier figures.

Usage: ``python bench/inference.py [FILE] [--prompt-tokens T] [--new-tokens N] [--repeat R]
[--threads N] [--json]``
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _threads_from_argv() -> str | None:
    """Apply --threads before numpy is imported (BLAS reads the variables once, at load)."""
    for i, arg in enumerate(sys.argv):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else (
            sys.argv[i + 1] if arg == "--threads" and i + 1 < len(sys.argv) else None)
        if value:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = value
            return value
    return None


_threads_from_argv()

import numpy as np  # noqa: E402

import inference  # noqa: E402


def best_time(fn, repeat: int) -> float:
    fn()  # warm up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def default_file() -> Path:
    files = []
    for p in ROOT.glob("fixtures/corpus/v*/*.sbs"):
        meta = p.with_suffix(".json")
        if meta.exists() and json.loads(meta.read_text()).get("inference"):
            files.append(p)
    if not files:
        sys.exit("no runnable corpus file found; pass a .sbs path")
    return max(files, key=lambda p: p.stat().st_size)


def per_token_weight_values(m: inference.Model) -> int:
    n = m.weights.unembedding.size
    for L in m.weights.layers:
        n += sum(w.size for w in (L.w_q, L.w_kv, L.w_o, L.w_gate, L.w_up, L.w_down))
    return n


def floor_matrix(values: int, cols: int) -> np.ndarray:
    rows = max(1, math.ceil(values / cols))
    return np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", type=Path)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, help="BLAS threads (default: the library's choice)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    path = a.file or default_file()

    t0 = time.perf_counter()
    m = inference.load(path, progress=False)
    load_s = time.perf_counter() - t0
    max_len = m.config.max_seq_len
    T = max(1, min(a.prompt_tokens, max_len // 2))
    N = max(1, min(a.new_tokens, max_len - T - 1))
    rng = np.random.default_rng(0)
    prompt = [2] + rng.integers(3, m.vocab_size, T - 1).tolist()

    values = per_token_weight_values(m)
    D = m.config.model_dim
    W = floor_matrix(values, D)  # (M, D): same layout as the model's (out, in) matrices
    x1 = rng.standard_normal((1, D), dtype=np.float32)
    xT = rng.standard_normal((T, D), dtype=np.float32)

    def decode_step_seconds() -> float:
        m.generate(prompt[:8], N, stop_at_eos=False)
        return m.stats["decode_seconds"] / max(1, m.stats["decode_tokens"])

    # Interleave the four measurements so that load from other processes hits them alike; keep
    # the best of each.
    prompt_s = decode_s = matvec_s = matmul_s = float("inf")
    m.logits(prompt), decode_step_seconds()  # warm up
    for _ in range(a.repeat):
        prompt_s = min(prompt_s, best_time(lambda: m.logits(prompt), 1))
        matmul_s = min(matmul_s, best_time(lambda: xT @ W.T, 1))
        decode_s = min(decode_s, decode_step_seconds())
        matvec_s = min(matvec_s, best_time(lambda: x1 @ W.T, 5))
    per_token_s = decode_s

    r = {
        "file": str(path), "specifier": m.config.specifier, "layers": len(m.weights.layers),
        "model_dim": D, "vocab": m.vocab_size, "load_seconds": round(load_s, 4),
        "weights_float32_bytes": m.weights.nbytes, "per_token_weight_values": values,
        "prompt_tokens": T, "prompt_tokens_per_s": T / prompt_s,
        "decode_tokens": N, "decode_tokens_per_s": 1.0 / per_token_s,
        "floor_matvec_seconds": matvec_s, "floor_matvec_tokens_per_s": 1.0 / matvec_s,
        "floor_prompt_matmul_tokens_per_s": T / matmul_s,
        "decode_vs_floor": per_token_s / matvec_s, "prompt_vs_floor": prompt_s / matmul_s,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"), "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if a.json:
        print(json.dumps(r, indent=2))
        return
    print(f"{path}  ({r['specifier']}, {r['layers']} layers, D={D}, vocab={r['vocab']}; "
          f"weights {m.weights.nbytes / 2**20:.1f} MiB float32, loaded in {load_s:.2f} s)")
    print(f"BLAS threads {r['blas_threads']}, {r['cpus']} CPUs, load average {r['load_average_1min']:.2f}")
    print(f"prompt  {T:4d} tokens: {r['prompt_tokens_per_s']:10.1f} tokens/s   floor (({T}x{D}) @ ({D}x{W.shape[0]})) "
          f"{r['floor_prompt_matmul_tokens_per_s']:10.1f} tokens/s   ratio {r['prompt_vs_floor']:.1f}x")
    print(f"decode  {N:4d} tokens: {r['decode_tokens_per_s']:10.1f} tokens/s   floor ((1x{D}) @ ({D}x{W.shape[0]})) "
          f"{r['floor_matvec_tokens_per_s']:10.1f} tokens/s   ratio {r['decode_vs_floor']:.1f}x")


if __name__ == "__main__":
    main()
