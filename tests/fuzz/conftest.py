"""Fuzz-suite plumbing: hypothesis profiles, the fast/long split, and marker registration.

Every hypothesis property in ``tests/fuzz`` is collected twice:

* ``test_x[fast]`` -- unmarked, so it is part of the default test run (fast budget);
* ``test_x[long]`` -- marked ``fuzz``, selected by ``pytest -m fuzz``; with
  ``--hypothesis-profile=long`` it runs the long budget (see ``profiles.py``).

Both items run the same property; the split only exists so that one marker expression picks
the fast run and another the long one.
"""
from __future__ import annotations

import pytest

from . import profiles  # noqa: F401  (registers the hypothesis profiles)


@pytest.fixture(autouse=True)
def fuzz_run(request):
    """``"fast"`` or ``"long"``: which of the two collected copies of a property this is."""
    return getattr(request, "param", "fast")


def pytest_generate_tests(metafunc):
    func = metafunc.function
    if getattr(func, "is_hypothesis_test", False):
        metafunc.parametrize("fuzz_run", [pytest.param("fast", id="fast"),
                                          pytest.param("long", id="long", marks=pytest.mark.fuzz)])
