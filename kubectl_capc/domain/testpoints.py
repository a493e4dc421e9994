"""Named points of a run where a fault test can stop the process from inside. TEST-ONLY.

The fault matrix (tests/support/fault_matrix.py) must stop `image-upgrade` at exact places -- a step
boundary, the middle of a rollout wait, a template download or an upload -- which a signal sent from
outside cannot hit. Two environment variables, both unset in production, make that possible:

- `KUBECTL_CAPC_TEST_POINTS=FILE`: append the name of every point reached to FILE, one per line.
- `KUBECTL_CAPC_TEST_SIGNAL=SIGNAME@POINT`: the first time POINT is reached, record
  `SIGNAME@POINT` in the points file and send this process SIGNAME (e.g. SIGKILL, SIGINT, SIGSTOP).
  A POINT ending in `*` matches every point that starts with the text before it (points may name
  objects by ids that a test cannot know in advance).

With neither set, `reached` reads the environment and returns: no behaviour changes.
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS_ENV", "SIGNAL_ENV", "reached"]

POINTS_ENV = "KUBECTL_CAPC_TEST_POINTS"
SIGNAL_ENV = "KUBECTL_CAPC_TEST_SIGNAL"
_fired: set[str] = set()


def reached(point: str) -> None:
    """The run is at `point`; inert unless a fault test set the variables above."""
    trace = os.environ.get(POINTS_ENV)
    wanted = os.environ.get(SIGNAL_ENV)
    if not trace and not wanted:
        return
    name, _, target = (wanted or "").partition("@")
    matches = point.startswith(target[:-1]) if target.endswith("*") else point == target
    fire = bool(wanted) and matches and wanted not in _fired
    if trace:
        with open(trace, "a", encoding="utf-8") as handle:
            handle.write(f"{name}@{point}\n" if fire else f"{point}\n")
    if fire:
        _fired.add(str(wanted))
        os.kill(os.getpid(), signal.Signals[name])
