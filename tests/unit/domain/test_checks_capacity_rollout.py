"""CAPC-R001 over a whole cluster: the surge of the control plane and of each MachineDeployment, with the
machine shapes validation looked up and the tenants' limits, judged only when `--to` is given."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubectl_capc.domain.checks.capacity import Level, Resource, ResourceCount, ScopeLimits
from kubectl_capc.domain.checks.facts import Facts, Row, Tenant
from kubectl_capc.domain.model import ClusterInventory
from kubectl_capc.domain.versions import parse_target
from kubectl_capc.ops.validate import build_report
from tests.support.checks_support import (
    IMAGE_128,
    ZONE1,
    ZONE2,
    Cloud,
    find,
    ids,
    inventory_of,
    render,
    template_row,
)

TO = parse_target("v1.29")


def cloud() -> Cloud:
    gib = 10
    return Cloud(
        service_offerings=[
            Row("so-large", "Large Instance", cpus=4, memory_mib=8192),
            Row("so-medium", "Medium Instance", cpus=2, memory_mib=4096),
        ],
        templates=[template_row(IMAGE_128, zone, size_gib=gib) for zone in (ZONE1, ZONE2)],
    )


def account(**free: int | None) -> ScopeLimits:
    """The account `dev`, with the given free amounts (None: unlimited) and plenty of everything else."""
    counts = {
        resource: ResourceCount(None if free.get(resource.value, 0) is None else 10**6, 0,
                                free.get(resource.value, 10**6))
        for resource in Resource
    }  # fmt: skip
    return ScopeLimits(Level.ACCOUNT, "dev", counts)


def facts_with(inventory: ClusterInventory, *scopes: ScopeLimits) -> Facts:
    facts = cloud().facts([inventory], TO)
    tenants = {Tenant.of(fd) for fd in inventory.failure_domains}
    return replace(facts, limits=dict.fromkeys(tenants, scopes))


def messages(inventory: ClusterInventory, facts: Facts, target: object = TO) -> list[str]:
    report = build_report([inventory], facts, target)  # type: ignore[arg-type]
    return [f.message for f in report.clusters[0].findings if f.check_id == "CAPC-R001"]


def test_no_vm_free_fails_naming_the_account_the_need_and_what_is_free() -> None:
    inventory = inventory_of(render())
    [message] = messages(inventory, facts_with(inventory, account(vm=0)))
    assert message.startswith("account dev has 0 VM(s) free; the rollout needs 1 at its peak")


def test_the_peak_is_the_step_that_needs_most() -> None:
    inventory = inventory_of(render())
    [message] = messages(inventory, facts_with(inventory, account(cpu=3)))
    assert "has 3 vCPU free; the rollout needs 4" in message  # the control plane's Large Instance
    assert "KubeadmControlPlane/c1" in message
    assert messages(inventory, facts_with(inventory, account(cpu=4))) == []


def test_primary_storage_counts_the_root_disk() -> None:
    inventory = inventory_of(render())
    [message] = messages(inventory, facts_with(inventory, account(primarystorage=9)))
    assert "has 9 GiB primary storage free; the rollout needs 10" in message


def test_unlimited_passes_and_nothing_is_judged_without_a_target() -> None:
    inventory = inventory_of(render())
    unlimited = {resource.value: None for resource in Resource}
    assert messages(inventory, facts_with(inventory, account(**unlimited))) == []
    full = facts_with(inventory, account(vm=0))
    assert messages(inventory, full, target=None) == []


def test_each_level_is_named() -> None:
    inventory = inventory_of(render())
    domain = replace(account(memory=100), level=Level.DOMAIN, name="ROOT/capc")
    [message] = messages(inventory, facts_with(inventory, account(), domain))
    assert message.startswith("domain ROOT/capc has 100 MiB memory free; the rollout needs 8192")


def test_the_check_is_listed_in_the_report_as_an_error() -> None:
    inventory = inventory_of(render())
    findings = build_report([inventory], facts_with(inventory, account(vm=0)), TO).clusters[0].findings
    assert "CAPC-R001" in ids(findings)
    assert next(f for f in findings if f.check_id == "CAPC-R001").severity.value == "error"


def test_a_deployment_surges_its_offering_and_scaled_to_zero_needs_no_room() -> None:
    shapes = {"control_plane_offering": "Medium Instance", "worker_offering": "Large Instance"}
    inventory = inventory_of(render(**shapes))
    [message] = messages(inventory, facts_with(inventory, account(cpu=3)))
    assert "has 3 vCPU free; the rollout needs 4" in message and "MachineDeployment/c1-md-0" in message
    inventory = inventory_of(render(**shapes, worker_replicas=0))
    assert messages(inventory, facts_with(inventory, account(cpu=3))) == []


def _with_strategy(
    capi: str, strategy: dict[str, object], replicas: int, worker: str = "Medium Instance"
) -> ClusterInventory:
    """Medium control-plane machines (2 vCPU), `worker` ones; the deployment's strategy as written."""
    objects = render(
        capi=capi, control_plane_offering="Medium Instance", worker_offering=worker, worker_replicas=replicas
    )
    spec = find(objects, "MachineDeployment")["spec"]
    if capi == "v1beta2":
        spec.setdefault("rollout", {})["strategy"] = strategy
    else:
        spec["strategy"] = strategy
    return inventory_of(objects, capi)


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_a_percentage_max_surge_is_rounded_up_as_cluster_api_does(capi: str) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}}
    inventory = _with_strategy(capi, strategy, replicas=5)  # 50% of 5 = 2.5 -> 3 machines at once
    [message] = messages(inventory, facts_with(inventory, account(cpu=5)))
    assert "has 5 vCPU free; the rollout needs 6" in message
    assert "MachineDeployment/c1-md-0: 3 surge machine(s)" in message
    assert messages(inventory, facts_with(inventory, account(cpu=6))) == []


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_a_max_surge_count_never_exceeds_the_replicas_replaced(capi: str) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3}}
    inventory = _with_strategy(capi, strategy, replicas=2)
    [message] = messages(inventory, facts_with(inventory, account(vm=1)))
    assert "has 1 VM(s) free; the rollout needs 2" in message and "2 surge machine(s)" in message


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_on_delete_and_a_zero_max_surge_need_no_room_for_workers(capi: str) -> None:
    """Large workers (4 vCPU) would need more than the 3 free; the control plane's 2 fit."""
    rolling = _with_strategy(capi, {"type": "RollingUpdate"}, replicas=5, worker="Large Instance")
    [message] = messages(rolling, facts_with(rolling, account(cpu=3)))
    assert "MachineDeployment/c1-md-0: 1 surge machine(s)" in message
    on_delete = _with_strategy(capi, {"type": "OnDelete"}, replicas=5, worker="Large Instance")
    assert messages(on_delete, facts_with(on_delete, account(cpu=3))) == []
    no_surge = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    scaled_down_first = _with_strategy(capi, no_surge, replicas=5, worker="Large Instance")
    assert messages(scaled_down_first, facts_with(scaled_down_first, account(cpu=3))) == []


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_a_control_plane_with_max_surge_zero_needs_no_room(capi: str) -> None:
    """Large control-plane machines (4 vCPU) with 3 free; the Medium workers' 2 fit."""
    objects = render(capi=capi)
    spec = find(objects, "KubeadmControlPlane")["spec"]
    [message] = messages(inventory_of(objects, capi), facts_with(inventory_of(objects, capi), account(cpu=3)))
    assert "KubeadmControlPlane/c1-control-plane: 1 surge machine(s)" in message
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}}
    if capi == "v1beta2":
        spec.setdefault("rollout", {})["strategy"] = rolling
    else:
        spec["rolloutStrategy"] = rolling
    inventory = inventory_of(objects, capi)
    assert inventory.control_plane is not None and inventory.control_plane.max_surge == 0
    assert messages(inventory, facts_with(inventory, account(cpu=3))) == []
