"""How a run that plans from the live cluster reacts when an object changes under it.

Every write is guarded by the resourceVersion the plan was made from, so a controller that updates an
object's status between the read and the write (a rollout in progress does, every few seconds) makes
the write fail with 409 (`Conflict`). The run then reads the cluster again and plans again, a few
times in a row at most: `ConflictBudget` counts, `replan_on_conflict` runs the read-plan-preview loop.
Before each new attempt it waits a little longer, with jitter, so a burst of status updates (a rollout
under way) has passed before the next guarded write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from kubectl_capc.domain.backoff import Backoff
from kubectl_capc.domain.errors import KubeApiError
from kubectl_capc.kube.write import Conflict

__all__ = ["MAX_CONFLICTS", "ConflictBudget", "replan_on_conflict"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_CONFLICTS = 5
"""Consecutive conflicts (409s, objects changed under us) after which a run gives up."""
PAUSES = Backoff(attempts=MAX_CONFLICTS + 1, base=0.2, cap=2.0)
"""The wait before planning again: about 2.5 to 5 seconds over a whole budget."""


class ConflictBudget:
    """Counts consecutive conflicts; the one past `MAX_CONFLICTS` ends the run."""

    def __init__(self) -> None:
        self.count = 0

    def spend(self, err: Conflict) -> None:
        """Count `err` and pause before the next attempt; raise a `KubeApiError` that says to re-run when
        too many came in a row."""
        self.count += 1
        if self.count > MAX_CONFLICTS:
            raise KubeApiError(
                err.message,
                hint=f"gave up after {MAX_CONFLICTS} tries: the cluster keeps changing, or the API server "
                "keeps failing; re-run the same command once it has settled",
            ) from None
        time.sleep(PAUSES.delay(self.count))

    def reset(self) -> None:
        """A step went through: the next conflict starts a new count."""
        self.count = 0


def replan_on_conflict(attempt: Callable[[], T]) -> T:
    """Run `attempt` (read the cluster, plan, send the plan's writes with dryRun=All) until it does not
    fail with a conflict; each failure means an object changed after it was read, so all is read again."""
    budget = ConflictBudget()
    while True:
        try:
            return attempt()
        except Conflict as err:
            budget.spend(err)
            _log.info("%s: planning again", err.message)
