"""`image-upgrade` following a rollout: a wait and an OnDelete replacing get their limit, show it with
their progress, and when they stall say how to go back besides how to go on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kubectl_capc.domain.errors import RolloutError
from kubectl_capc.domain.plan import OnDeleteMode, RollOnDelete, WaitRollout
from kubectl_capc.domain.planner import PlanRequest
from kubectl_capc.domain.progress import RolloutUpdate
from kubectl_capc.domain.versions import parse_target
from kubectl_capc.ops.options import ApplyOptions, Timeouts
from kubectl_capc.ops.upgrade import Upgrade


class Stalling:
    """A writer whose rollouts report once and then stall; records the limit each was given."""

    def __init__(self) -> None:
        self.limits: list[float | None] = []

    def wait(self, step: WaitRollout, *, timeout: float | None, on_progress: Any) -> None:
        self._stall(timeout, on_progress)

    def replace_on_delete(
        self, step: RollOnDelete, *, timeout: float | None, on_progress: Any, on_delete: Any
    ) -> None:
        self._stall(timeout, on_progress)

    def _stall(self, timeout: float | None, on_progress: Any) -> None:
        self.limits.append(timeout)
        on_progress((), 12.0)
        raise RolloutError("did not finish", hint="fix what holds it up")


class Shown:
    def __init__(self) -> None:
        self.updates: list[RolloutUpdate] = []

    def progress(self, update: RolloutUpdate) -> None:
        self.updates.append(update)

    def note(self, message: str) -> None: ...


TIMEOUTS = Timeouts(control_plane=600, machine_deployment=300)
PLAN: Any = SimpleNamespace(cluster="c1", namespace="ns")


@pytest.mark.parametrize(
    ("follow", "limit"),
    [
        (lambda run: run._wait(PLAN, None, WaitRollout("KubeadmControlPlane", ("c1-cp",), "v1.29.3")), 600),
        (lambda run: run._wait(PLAN, None, WaitRollout("MachineDeployment", ("c1-md-0",), "v1.29.3")), 300),
        (lambda run: run._replace(PLAN, RollOnDelete("c1-md-0", "v1.29.3", OnDeleteMode.REPLACE)), 300),
    ],
    ids=["control plane wait", "deployment wait", "OnDelete replace"],
)
def test_a_stalled_rollout_offers_rollback_and_showed_its_limit(follow: Any, limit: float) -> None:
    writer, shown = Stalling(), Shown()
    io: Any = SimpleNamespace(writer=writer)
    request = PlanRequest(parse_target("v1.29.3"), "v1.29.3")
    run = Upgrade(io, request, ApplyOptions(yes=True, timeouts=TIMEOUTS), shown)  # type: ignore[arg-type]

    with pytest.raises(RolloutError) as raised:
        follow(run)

    assert raised.value.hint == "fix what holds it up; or go back with `kubectl capc rollback c1 -n ns`"
    assert writer.limits == [limit]
    assert [(u.elapsed, u.timeout) for u in shown.updates] == [(12.0, limit)]
