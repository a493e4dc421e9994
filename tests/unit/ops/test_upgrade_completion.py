"""`image-upgrade` says a cluster is at its target only when none of its Machines runs an older version."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.inventory import build_inventories
from kubectl_capc.domain.model import ClusterInventory, ZoneTemplates
from kubectl_capc.domain.planner import PlanRequest
from kubectl_capc.domain.versions import parse_target
from kubectl_capc.ops.options import ApplyOptions
from kubectl_capc.ops.upgrade import Upgrade
from tests.support.fixtures_capc import raw_objects, render_cluster, with_settled_status


class Notes:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def show_plan(self, plan: Any) -> None: ...

    def show_previews(self, previews: Any) -> None: ...

    def confirm(self, question: str) -> bool:
        raise AssertionError("nothing to confirm")

    def note(self, message: str) -> None:
        self.notes.append(message)

    def step(self, hop: Any, step: Any, state: str) -> None: ...

    def progress(self, update: Any) -> None: ...


class FreeLock:
    """An upgrade lock nobody else holds."""

    def holding(self, *, break_lock: bool, note: Any) -> AbstractContextManager[None]:
        return nullcontext()


class ReadOnly:
    """An IO whose cluster is already at the target: the run must not write."""

    def __init__(self, inventory: ClusterInventory) -> None:
        self.inventory = inventory

    def read(self) -> tuple[ClusterInventory, ZoneTemplates | None]:
        return self.inventory, None

    @property
    def writer(self) -> Any:
        raise AssertionError("nothing to write")

    def ensure_image(self, step: Any, inventory: Any, timeout: Any) -> None:
        raise AssertionError("no image to ensure")

    def lease(self) -> FreeLock:
        return FreeLock()


def run(objects: list[dict[str, Any]]) -> tuple[int, list[str]]:
    (inventory,) = build_inventories(raw_objects(with_settled_status(objects)), "v1beta1")
    console = Notes()
    request = PlanRequest(parse_target("v1.29.3"), "v1.29.3")
    code = Upgrade(ReadOnly(inventory), request, ApplyOptions(yes=True), console).run()  # type: ignore[arg-type]
    return code, console.notes


def test_a_cluster_at_the_target_has_nothing_to_do() -> None:
    code, notes = run(render_cluster("c1", version="v1.29.3", with_machines=True))
    assert (code, notes) == (0, ["cluster default/c1 is at v1.29.3: nothing to do"])


def test_a_machine_no_found_owner_accounts_for_is_not_hidden_behind_done() -> None:
    objects = render_cluster("c1", version="v1.29.3", with_machines=True)
    old = render_cluster("c1", version="v1.28.5", with_machines=True)
    stray = next(o for o in old if o["kind"] == "Machine" and o["metadata"]["name"] == "c1-md-0-1")
    stray["metadata"]["name"] = "c1-pool-0"
    stray["metadata"]["labels"]["cluster.x-k8s.io/deployment-name"] = "c1-pool"
    with pytest.raises(PlanError, match=r"is not at v1\.29\.3: Machine c1-pool-0 \(v1\.28\.5"):
        run([*objects, stray])


def test_a_template_in_another_namespace_is_refused_with_that_reason() -> None:
    objects = render_cluster("c1", version="v1.28.5")
    md = next(o for o in objects if o["kind"] == "MachineDeployment")
    md["spec"]["template"]["spec"]["infrastructureRef"]["namespace"] = "shared"
    with pytest.raises(
        PlanError, match=r"CloudStackMachineTemplate/c1-md-0 is in namespace shared: Cluster API"
    ):
        run(objects)
