"""Settings for the whole suite."""

from __future__ import annotations

import os

from hypothesis import settings

# In CI every property test searches the same examples on every run: a submission lands
# or not on its own merits, not on the draw. Locally the search stays random, so that
# running the suite keeps looking for new counterexamples.
#
# No deadline, anywhere: a deadline is a timing assertion, and it fails on a loaded
# machine, not on a slow example (what is slow is measured in bench/, not asserted here).
settings.register_profile("local", deadline=None)
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")
