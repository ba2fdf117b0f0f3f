"""The long run's documented command works from the repository root, as the README gives it."""
from __future__ import annotations

import os
import subprocess
import sys

from .error_codes import ROOT


def test_bare_long_profile_command_collects_the_fuzz_suite():
    env = {**os.environ, "SBS_FUZZ_LONG_EXAMPLES": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "fuzz", "--hypothesis-profile=long", "--co", "-q",
                        "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "tests/fuzz/test_mutations.py::test_verify_flags_damage[long]" in r.stdout
    assert "[fast]" not in r.stdout
