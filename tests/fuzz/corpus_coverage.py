"""Line coverage of the loaders reached by a fuzz corpus (replays it through ``harness.exercise``).

    python -m tests.fuzz.corpus_coverage tests/fuzz/corpus tests/fuzz/seeds

libFuzzer's ``cov:`` counts instrumented edges, which says little to a reader; this replays every
input of the given directories (atheris' working corpus, the seeds) once, under coverage.py, with
the same entry points as the fuzzer, and prints the line coverage of each module of ``sbs_tools``
and ``inference`` the replay touched, and the total. Needs ``pip install coverage``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="corpus directories to replay")
    ap.add_argument("--cli", action="store_true", help="also run the CLI and repair --dry-run (slower)")
    args = ap.parse_args(argv)
    try:
        import coverage
    except ImportError:
        print("corpus_coverage needs coverage.py: pip install coverage", file=sys.stderr)
        return 2
    cov = coverage.Coverage(source=[str(ROOT / "sbs_tools"), str(ROOT / "inference")], data_file=None)
    cov.start()
    from tests.fuzz import harness

    harness.warm_up()
    n = 0
    for d in args.dirs:
        for f in sorted(p for p in d.iterdir() if p.is_file()):
            path = harness.scratch_file(f.read_bytes(), "coverage.sbs")
            harness.exercise(path, cli_too=args.cli, repair=args.cli, measure_memory=False)
            n += 1
    cov.stop()
    print(f"{n} inputs replayed")
    total = cov.report(show_missing=False, skip_covered=False, skip_empty=True, file=sys.stdout)
    print(f"total line coverage: {total:.1f}%")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
