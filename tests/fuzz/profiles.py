"""Hypothesis profiles of the fuzz suite and the settings every fuzz property uses.

Profiles (select with ``--hypothesis-profile=NAME``):

* ``default`` -- hypothesis' own defaults, unchanged, so that registering it here has no
  effect on the project's other property tests. The fuzz properties themselves run a fixed
  *fast* budget under it (a few hundred examples each, derandomized so the default test run
  is deterministic); the whole fast fuzz run takes well under a minute on two cores.
* ``long`` -- the exploration run: ``pytest -m fuzz --hypothesis-profile=long`` runs every
  property ``LONG_EXAMPLES * weight`` times with fresh randomness (>= 100,000 examples in total).

The profile must be registered before pytest's ``pytest_configure`` sees the option, i.e. this
module has to be imported by an *initial* conftest: ``tests/fuzz/conftest.py`` is one when the
run names ``tests/fuzz``; for a bare ``pytest -m fuzz --hypothesis-profile=long`` the root
``tests/conftest.py`` imports it.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: Examples per property (times its weight) under the ``long`` profile; ``SBS_FUZZ_LONG_EXAMPLES``
#: overrides it (e.g. a short exploratory run).
LONG_EXAMPLES = int(os.environ.get("SBS_FUZZ_LONG_EXAMPLES", "6000"))

settings.register_profile("default", settings.get_profile("default"))
settings.register_profile("long", max_examples=LONG_EXAMPLES, deadline=None, derandomize=False,
                          print_blob=True, suppress_health_check=list(HealthCheck))

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
             HealthCheck.large_base_example]


def is_long() -> bool:
    """Is the ``long`` profile (or a variant pytest derived from it, e.g. ``long-with-...``) active?"""
    return settings.get_current_profile_name().startswith("long")


def fuzz_settings(fast: int = 200, weight: float = 1.0) -> settings:
    """Settings of one fuzz property: ``fast`` examples in the default run, ``LONG_EXAMPLES *
    weight`` under the long profile. No hypothesis deadline: the properties assert their own,
    size-proportional time bound (see ``harness``)."""
    if is_long():
        base = settings.default
        return settings(base, max_examples=max(1, int(base.max_examples * weight)), deadline=None,
                        suppress_health_check=_SUPPRESS)
    return settings(max_examples=fast, deadline=None, derandomize=True, database=None,
                    suppress_health_check=_SUPPRESS)
