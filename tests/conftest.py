"""CI runs the property tests derandomized, so a submission's result does not depend on luck;
locally every run explores new examples (and `--hypothesis-seed=N` replays one)."""
import os

import pytest
from hypothesis import settings

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one process per core already: torch's own threads would only fight over the cores (and
    # skew the tests that time CPU); set before any test imports torch, inherited by the CLIs
    os.environ.setdefault("OMP_NUM_THREADS", "1")

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (-n), tests are spread one by one, except the README examples: they
    share a scratch folder and build on each other, so one worker runs them all, in order.
    (--dist loadgroup would do it with a mark, but pytest 9 drops the group it adds to ids.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ReadmeExamplesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return module if module.endswith("test_readme.py") else nodeid

    return ReadmeExamplesTogether(config, log)


# the modules with the longest tests, started first so the run does not end on one of them with
# the other worker idle; the README examples run as one block on one worker (about 1.5 minutes)
LONG_FIRST = ("test_readme.py", "test_export.py", "test_zoo_vit.py", "test_scale.py",
              "test_memory_zoo.py", "test_sizes.py", "test_distributed_training.py")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts the same way, as xdist needs
        def rank(item):
            module = item.nodeid.split("::")[0].rsplit("/", 1)[-1]
            return LONG_FIRST.index(module) if module in LONG_FIRST else len(LONG_FIRST)
        items.sort(key=rank)
