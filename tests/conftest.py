"""Shared pytest wiring: test-bed fixtures, the fixture plugins of each test-bed component, and tiers.

A test is marked `testbed` when it needs a program built from Go modules (the kube-apiserver test bed,
kubectl, cloudstack-go, krew) or a packaging step (a virtual environment, a PyInstaller archive, the
docs site). `pytest -m "not testbed"` is the fast tier that needs nothing beyond Python. A module whose
fixtures pick a bed at run time (`request.getfixturevalue(...)`) marks itself with `pytestmark`.
"""

from __future__ import annotations

import functools
import os
import signal
import types

import hypothesis
import pytest

# The plugin renders plain help (kubectl_capc sets this before typer is imported); a test module that
# imports typer before kubectl_capc would otherwise get rich help, whatever order the tests run in.
os.environ.setdefault("TYPER_USE_RICH", "0")

# A run started in the background by a non-interactive shell inherits SIGINT ignored, and so would every
# command a test starts and then interrupts (Python installs no Ctrl-C handler then): Ctrl-C is restored.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

pytest_plugins = ["tests.testenv.fixtures", "tests.csdouble.fixtures"]

# Property tests assert behaviour, not speed: on a busy machine one example may take longer than
# hypothesis' default 200 ms deadline (speed is measured by bench/).
hypothesis.settings.register_profile("suite", deadline=None)
hypothesis.settings.load_profile("suite")

# Fixtures that start or build something outside the Python process.
TESTBED_FIXTURES = frozenset(
    {"testenv", "testenv_v1beta1", "testenv_v1beta2", "namespace", "kubectl_binary", "csgo", "krew", "wbed"}
)
# Modules that drive Go-built or packaged programs from their own helpers rather than through fixtures.
TESTBED_IMPORTS = ("tests.csgo", "tests.support.csgo_support", "tests.krewtools")


@functools.cache
def _module_needs_programs(module: types.ModuleType) -> bool:
    return any(
        getattr(value, "__name__", "").startswith(TESTBED_IMPORTS)
        or getattr(value, "__module__", "").startswith(TESTBED_IMPORTS)
        for value in vars(module).values()
    )


# Files in the order workers start them, longest first (measured: the fault matrices take 1.5-3 minutes
# each), so that with `--dist loadfile --no-loadscope-reorder` (scripts/test.sh) no long file starts last
# and leaves one worker running alone.
LONGEST_FIRST = ("tests/testbed/test_fault_matrix_", "tests/testbed/", "tests/docs/", "tests/e2e/")


def _start_rank(item: pytest.Item) -> int:
    path = item.nodeid.partition("::")[0]
    return next(
        (rank for rank, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST)
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        module = getattr(item, "module", None)
        if fixtures & TESTBED_FIXTURES or (module is not None and _module_needs_programs(module)):
            item.add_marker(pytest.mark.testbed)
    items.sort(key=_start_rank)  # stable: a file's tests keep their order
