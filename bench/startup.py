"""Start-up of whole commands against ``python -c "import sbs_tools"``, measured in the same run.

Each round runs the baseline and every command once, in fresh interpreters, interleaved (so machine
load hits them alike); the table shows the best and the median wall time over the rounds and each
command's ratio to the baseline. By default the interpreters cache bytecode as a user's do
(``PYTHONDONTWRITEBYTECODE`` removed, caches warmed first); ``--no-bytecode`` compiles every module
at every start, as a sandbox that sets that variable does.

    python bench/startup.py [--rounds 15] [--no-bytecode] [--markdown OUT.md]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILE = ROOT / "fixtures" / "corpus" / "v2" / "gemma2-2b-tiny-sfp.sbs"
SBS = [sys.executable, "-m", "sbs_tools"]
COMMANDS = {
    'python -c "import sbs_tools"': [sys.executable, "-c", "import sbs_tools"],
    "sbs inspect --json": SBS + ["inspect", "--json", str(FILE)],
    "sbs verify": SBS + ["verify", str(FILE)],
    "sbs verify --deep": SBS + ["verify", "--deep", str(FILE)],
    "sbs hash": SBS + ["hash", str(FILE)],
    "sbs dump -t": SBS + ["dump", "-t", str(FILE)],
}
TARGETS = {"sbs inspect --json": 1.5, "sbs verify --deep": 2.0}


def child_env(bytecode: bool) -> dict[str, str]:
    """The environment of the measured interpreters: this tree first on the path, bytecode as asked."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--no-bytecode", action="store_true", help="compile every module at every start")
    ap.add_argument("--markdown", help="also write the table to this file")
    a = ap.parse_args()
    if a.markdown:
        from sbs_tools.output import check_output_file

        check_output_file(a.markdown)  # refused before minutes of measuring, not after
    env = child_env(not a.no_bytecode)
    for argv in COMMANDS.values():  # warm the page cache and (by default) the bytecode caches
        wall(argv, env)
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(a.rounds):
        for name, argv in COMMANDS.items():
            times[name].append(wall(argv, env))
    base = min(times['python -c "import sbs_tools"'])
    base_med = statistics.median(times['python -c "import sbs_tools"'])
    lines = [f"bytecode cache: {'off' if a.no_bytecode else 'on'}; {a.rounds} rounds; load {os.getloadavg()[0]:.1f}",
             "", "| command | best | median | best / import | median / import | target |", "|---|---|---|---|---|---|"]
    for name, ts in times.items():
        best, med = min(ts), statistics.median(ts)
        target = TARGETS.get(name)
        lines.append(f"| `{name}` | {best * 1e3:.0f} ms | {med * 1e3:.0f} ms | {best / base:.2f}x | "
                     f"{med / base_med:.2f}x | {f'<= {target}x' if target else ''} |")
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        from sbs_tools.output import write_file

        write_file(a.markdown, text + "\n")


if __name__ == "__main__":
    main()
