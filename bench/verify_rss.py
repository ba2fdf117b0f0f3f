"""Peak memory of ``sbs verify --deep`` on a ~1 GiB file (not part of the test run).

Builds a synthetic Gemma-2-style model of about 1 GiB with the project's
streaming writer (BF16 embedding and norms, big matrices in the chosen weight
type; each ``gating_ein`` is far larger than one decode chunk), then runs
``sbs verify`` and ``sbs verify --deep`` in child processes and reports each
child's peak RSS (``ru_maxrss`` from ``wait4``), next to the baseline of a
Python process that only imports ``sbs_tools``.

    python bench/verify_rss.py                 # ~1 GiB BF16 file in a temp dir
    python bench/verify_rss.py --weight sfp --layers 16 --keep /tmp/big.sbs
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sbs_tools.config import LayerConfig, ModelConfig
from sbs_tools.tensors import canonical_tensors
from sbs_tools.toc import TocRecord, encode_toc
from sbs_tools.types import Type, packed_bytes
from sbs_tools.writer import BlobWriter

CHUNK_VALUES = 8 << 20


def make_config(layers: int, weight: Type, D: int = 2048, F: int = 8192, H: int = 8, K: int = 4, Dh: int = 256,
                vocab: int = 16384) -> ModelConfig:
    lc = [LayerConfig(model_dim=D, ff_hidden_dim=F, heads=H, kv_heads=K, qkv_dim=Dh, post_norm=1,
                      optimized_gating=False) for _ in range(layers)]
    return ModelConfig(display_name="rss_bench", model=7, wrapping=0, weight=int(weight), num_layers=layers,
                       model_dim=D, vocab_size=vocab, max_seq_len=4096, att_cap=50.0, final_cap=30.0,
                       layer_configs=lc, attention_window_sizes=[4096] * layers, eos_id=1, secondary_eos_id=107)


def _chunks(t: Type, n: int, seed: int, norm: bool):
    rng = np.random.default_rng(seed)
    done = 0
    while done < n:
        k = min(CHUNK_VALUES, n - done)
        if t in (Type.BF16, Type.F32):
            x = rng.standard_normal(k, dtype=np.float32) * np.float32(0.1 if norm else 0.02)
            yield (x.view(np.uint32) >> 16).astype("<u2") if t == Type.BF16 else x.astype("<f4")
        elif t == Type.SFP:
            b = rng.integers(0, 256, k, dtype=np.uint8)
            b[b == 0x80] = 0x00
            yield b
        else:
            raise SystemExit(f"synthetic {t.name} not supported here")
        done += k


def build(path: Path, layers: int, weight: Type) -> int:
    cfg = make_config(layers, weight)
    records = []
    w = BlobWriter(path, "v2")
    for i, spec in enumerate(canonical_tensors(cfg)):
        t = weight if spec.kind == "matrix" else (Type.F32 if spec.types == frozenset({Type.F32}) else Type.BF16)
        n = spec.rows * spec.cols
        w.add_stream(spec.name, packed_bytes(t, n),
                     lambda t=t, n=n, i=i, norm=spec.kind == "norm": _chunks(t, n, i, norm))
        records.append(TocRecord.make(spec.name, t, spec.rows, spec.cols))
    w.add("config", cfg.to_bytes())
    w.add("tokenizer", b"unavailable")
    w.add("toc", encode_toc(records))
    return w.finish()


_PROBE = """
import sys
rc = 0
if sys.argv[1:]:
    from sbs_tools.cli import main
    rc = main(sys.argv[1:])
else:
    import sbs_tools
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
sys.stderr.write(f"VmHWM {hwm}\\n")
sys.exit(rc)
"""


def run_measured(args: list[str]) -> tuple[int, float, float]:
    """(exit code, seconds, peak RSS in MiB) of a fresh interpreter running ``sbs ARGS``.

    The peak is the child's own VmHWM (read by itself at exit), so memory the
    parent had when it forked does not count.
    """
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    hwm = next(int(l.split()[1]) for l in proc.stderr.splitlines() if l.startswith("VmHWM"))
    return proc.returncode, time.perf_counter() - t0, hwm / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=8, help="8 layers of D=2048/F=8192 BF16 ~ 1 GiB")
    ap.add_argument("--weight", default="bf16", choices=["bf16", "sfp", "f32"])
    ap.add_argument("--keep", type=Path, help="write the file here and keep it")
    args = ap.parse_args()
    weight = Type[args.weight.upper()]
    tmp = None
    if args.keep:
        path = args.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="sbs-rss-")
        path = Path(tmp.name) / "big.sbs"
    try:
        t0 = time.perf_counter()
        size = build(path, args.layers, weight)
        print(f"built {path}: {size / 2**30:.2f} GiB in {time.perf_counter() - t0:.1f} s")
        base = run_measured([])
        shallow = run_measured(["verify", "--json", str(path)])
        deep = run_measured(["verify", "--deep", "--json", str(path)])
        print(f"python + import sbs_tools      peak RSS {base[2]:7.1f} MiB")
        print(f"sbs verify          exit {shallow[0]}  {shallow[1]:6.1f} s  peak RSS {shallow[2]:7.1f} MiB")
        print(f"sbs verify --deep   exit {deep[0]}  {deep[1]:6.1f} s  peak RSS {deep[2]:7.1f} MiB "
              f"({size / 2**20 / max(deep[1], 1e-9):.0f} MiB/s)")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
