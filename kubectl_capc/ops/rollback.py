"""`kubectl capc rollback CLUSTER`: point objects back at the version and template of their last upgrade.

The decision is `kubectl_capc.domain.rollback.plan_rollback`. `Rollback` executes it with the loop
`image-upgrade` uses too (`ops.upgrade.PlanRun`): every patch is first sent with dryRun=All, then applied
guarded by resourceVersion, and records the rollback itself in the object's history. A rolled-back
object's newest record is the rollback, so running the command again after an interruption only does
(or waits for) what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.model import ClusterInventory
from kubectl_capc.domain.plan import Step, WaitRollout
from kubectl_capc.domain.preview import ObjectPreview
from kubectl_capc.domain.progress import RolloutUpdate
from kubectl_capc.domain.records import ACTION_ROLLBACK
from kubectl_capc.domain.rollback import GoBack, RollbackPlan, plan_rollback
from kubectl_capc.ops.cluster_io import ClusterAccess
from kubectl_capc.ops.upgrade import PlanConsole, PlanRun, WriterIO, reporting

__all__ = [
    "KubeRollbackIO",
    "Rollback",
    "RollbackConsole",
    "RollbackIO",
]


class RollbackConsole(PlanConsole, Protocol):
    """Where the run shows what it does and asks for confirmation."""

    def step(self, step: Step, state: str) -> None:
        """`state` is "start" or "done"."""

    def progress(self, update: RolloutUpdate) -> None: ...


class RollbackIO(WriterIO, Protocol):
    """What the run reads and writes."""

    def read(self) -> ClusterInventory: ...


class KubeRollbackIO(ClusterAccess):
    """Reads one cluster with the LIST-based reader and writes with `KubeWriter`."""

    def read(self) -> ClusterInventory:
        return self.read_inventory()


class Rollback(PlanRun[RollbackPlan, RollbackIO, RollbackConsole]):
    """One `rollback` run against one cluster: plan, preview, confirm, patch and wait, re-planning after
    every wait and on every conflict."""

    action = ACTION_ROLLBACK
    question = new_question = "Roll back?"
    verb = ("roll back", "rolled back")

    def _read(self) -> tuple[RollbackPlan, Callable[[], bool]]:
        plan = plan_rollback(self.io.read())
        return plan, lambda: self._run_segment(plan)

    def _previews(self, plan: RollbackPlan) -> tuple[ObjectPreview, ...]:
        return tuple(self._preview_patch(1, step) for step in plan.writes)

    def _nothing_to_do(self, plan: RollbackPlan) -> None:
        if plan.refusals and not plan.rolled_back:
            raise PlanError("nothing can be rolled back: " + "; ".join(str(r) for r in plan.refusals))
        self.console.note(f"cluster {plan.namespace}/{plan.cluster}: nothing left to roll back")

    def _finished(self, plan: RollbackPlan) -> str:
        return f"cluster {plan.namespace}/{plan.cluster}: rolled back"

    def _needs_confirmation(self, plan: RollbackPlan) -> bool:
        """Only waits left (an interrupted rollback still rolling out) need no confirmation."""
        return plan.changes_pending

    def _run_segment(self, plan: RollbackPlan) -> bool:
        """Run steps up to and including the first wait; False when --no-wait stopped at that wait."""
        for step in plan.steps:
            if isinstance(step, WaitRollout) and self.options.no_wait:
                return False
            self.console.step(step, "start")
            if isinstance(step, GoBack):
                self._patch(step)
            else:
                timeout = self.options.timeouts.for_wait(step)
                self.io.writer.wait(
                    step, timeout=timeout, on_progress=reporting(self.console.progress, timeout)
                )
            self.console.step(step, "done")
            if isinstance(step, WaitRollout):
                return True
        return True
