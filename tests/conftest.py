"""CI runs the property tests derandomized, so a submission's result does not depend on luck;
locally every run explores new examples (and `--hypothesis-seed=N` replays one)."""
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
