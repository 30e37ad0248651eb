"""Shared pytest configuration: hypothesis profiles and the oracle on sys.path.

Profiles (select with HYPOTHESIS_PROFILE=dev|ci|thorough; default "ci" when the CI variable is
set, as in .ci/run, else "dev"):
- dev:      150 examples per property, random seeds (fast local runs);
- ci:       100 examples per property, derandomized (reproducible, fast on 2 cores);
- thorough: 2000 examples per property (run occasionally).
"""

import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_common = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", max_examples=150, **_common)
settings.register_profile("ci", max_examples=100, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=2000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
