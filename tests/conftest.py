"""Settings for the whole suite."""

from __future__ import annotations

import os

from hypothesis import settings

# In CI every property test searches the same examples on every run: a submission lands
# or not on its own merits, not on the draw. Locally the search stays random, so that
# running the suite keeps looking for new counterexamples.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
