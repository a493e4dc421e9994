"""`status` over fakes: the report, its table and typed documents, the exit code, notes on what could not
be asked, and CloudStack asked twice per zone and tenant however many clusters share it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from kubectl_capc.domain.checks.workload import Pod, PodDisruptionBudget, WorkloadFacts
from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.errors import ConfigError, ExitCode, UsageError
from kubectl_capc.domain.inventory import build_inventories
from kubectl_capc.domain.selectors import LabelSelector
from kubectl_capc.domain.status_facts import ZoneFacts
from kubectl_capc.kube.rollouts import RolloutObjects
from kubectl_capc.ops.status import CloudStackZones, StatusOptions, build_report
from tests.support.fixtures_capc import Zone, raw_objects, render_cluster

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
ZONES = (Zone("zone-a", "net-a"), Zone("zone-b", "net-b"))


def _cluster(name: str = "c1", namespace: str = "prod", capi: str = "v1beta2") -> list[dict[str, Any]]:
    objects = render_cluster(
        name,
        namespace,
        capi=capi,
        control_plane_replicas=1,
        worker_replicas=2,
        zones=ZONES,
        with_machines=True,
    )
    for machine in (o for o in objects if o["kind"] == "Machine"):
        machine["metadata"]["creationTimestamp"] = "2026-12-06T11:00:00Z"
        machine["status"] = {"phase": "Running", "nodeRef": {"name": machine["metadata"]["name"]}}
    return objects


def _objects(*clusters: list[dict[str, Any]]) -> RolloutObjects:
    everything = [o for objects in clusters for o in objects]
    return RolloutObjects(
        "v1beta2",
        build_inventories(raw_objects(everything), "v1beta2"),
        tuple(o for o in everything if o["kind"] == "Machine"),
        (),
        (),
    )


def _drain_blocked(objects: list[dict[str, Any]]) -> str:
    """Make the first worker Machine deleting, its drain held by PodDisruptionBudget shop/web."""
    worker = next(
        o
        for o in objects
        if o["kind"] == "Machine" and "cluster.x-k8s.io/deployment-name" in o["metadata"]["labels"]
    )
    worker["metadata"]["deletionTimestamp"] = "2026-12-06T11:55:00Z"
    worker["status"]["conditions"] = [
        {"type": "Deleting", "status": "True", "reason": "DrainingNode", "message": "Drain not completed yet"}
    ]
    return str(worker["metadata"]["name"])


def _workload(node: str) -> WorkloadFacts:
    return WorkloadFacts(
        pods=(Pod("shop", "web-1", node, {"app": "web"}),),
        pdbs=(PodDisruptionBudget("shop", "web", LabelSelector({"app": "web"}), 0, 2, 2, 2),),
    )


def _no_zones(_: Any) -> tuple[ZoneFacts, list[str]]:
    return ZoneFacts(), []


def test_a_blocked_drain_is_named_in_the_rows_the_document_and_the_exit_code() -> None:
    objects = _cluster()
    victim = _drain_blocked(objects)
    report = build_report(
        _objects(objects), zones=_no_zones, workload=lambda ns, name: _workload(victim), now=NOW
    )

    assert report.blocked and report.exit_code is ExitCode.FINDINGS and not report.settled
    rows = report.rows(with_cluster=False)
    assert rows[0] == ("KubeadmControlPlane/c1-control-plane", "", "v1.28.5", "1 new, 0 old", "")
    assert rows[1] == ("MachineDeployment/c1-md-0", "", "v1.28.5", "2 new, 0 old", "")
    assert rows[2] == (
        "", victim, "v1.28.5", "Running", "drain blocked by PodDisruptionBudget shop/web (2 healthy, needs 2)"
    )  # fmt: skip
    document = report.to_document(as_list=False)
    assert (document["apiVersion"], document["kind"]) == (API_VERSION, "RolloutStatus")
    assert document["cluster"] == {"namespace": "prod", "name": "c1"}
    (stuck,) = [m for o in document["owners"] for m in o["machineStatus"] if m["cause"]]
    assert stuck["name"] == victim


def test_several_clusters_make_a_list_with_the_cluster_in_each_row() -> None:
    report = build_report(
        _objects(_cluster("c1"), _cluster("c2", "other")),
        zones=_no_zones,
        workload=lambda ns, n: None,
        now=NOW,
    )
    assert not report.blocked and report.exit_code is ExitCode.OK and report.settled
    document = report.to_document(as_list=True)
    assert document["kind"] == "RolloutStatusList"
    assert [(i["cluster"]["namespace"], i["cluster"]["name"]) for i in document["items"]] == [
        ("other", "c2"),
        ("prod", "c1"),
    ]
    assert {row[0] for row in report.rows(with_cluster=True)} == {"prod/c1", "other/c2"}


def test_a_workload_cluster_that_does_not_answer_is_a_note_and_the_machine_still_explains() -> None:
    objects = _cluster()
    victim = _drain_blocked(objects)
    report = build_report(
        _objects(objects),
        zones=lambda inventory: (ZoneFacts(), ["prod/c1 failure domain fd-zone-b: CloudStack not asked (x)"]),
        workload=lambda ns, name: WorkloadFacts(unreachable="Secret prod/c1-kubeconfig not found"),
        now=NOW,
    )
    assert report.notes == (
        "prod/c1 failure domain fd-zone-b: CloudStack not asked (x)",
        "prod/c1: workload cluster not read (Secret prod/c1-kubeconfig not found); drain causes come from "
        "the Machines alone",
    )
    (cause,) = [row[4] for row in report.rows(with_cluster=False) if row[1] == victim]
    assert cause.startswith(f"draining node {victim}")


def test_a_machine_on_the_old_version_keeps_the_rollout_unsettled() -> None:
    objects = _cluster()
    kcp = next(o for o in objects if o["kind"] == "KubeadmControlPlane")
    kcp["spec"]["version"] = "v1.29.3"
    report = build_report(_objects(objects), zones=_no_zones, workload=lambda ns, n: None, now=NOW)
    assert not report.blocked and not report.settled
    assert report.rows(with_cluster=False)[0][3] == "0 new, 1 old"


@pytest.mark.parametrize(
    ("namespace", "cluster", "selector", "refused"),
    [(None, "c1", None, "-A"), ("prod", "c1", "env=prod", "-l")],
)
def test_a_cluster_name_goes_with_neither_all_namespaces_nor_a_selector(
    namespace: str | None, cluster: str, selector: str | None, refused: str
) -> None:
    with pytest.raises(UsageError, match=f"cannot be combined with {refused}"):
        StatusOptions(namespace, cluster, selector)


class FakeCloudStack:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def zone(self, id_or_name: str) -> Any:
        self.calls.append(f"zone {id_or_name}")
        return type("Zone", (), {"id": f"{id_or_name}-id", "name": id_or_name})()

    def owner_scope(self, **_: str) -> str:
        return "self"

    def virtual_machines(self, *, zone_id: str, owner: str) -> list[Any]:
        self.calls.append(f"vms {zone_id}")
        state = "Error" if zone_id == "zone-b-id" else "Running"
        return [type("VM", (), {"id": "vm-1", "name": "c1-md-0-1", "state": state})()]

    def templates(self, *, zone_id: str, owner: str) -> list[Any]:
        self.calls.append(f"templates {zone_id}")
        if zone_id == "zone-b-id":
            return [
                type(
                    "T",
                    (),
                    {
                        "id": "t2",
                        "name": "ubuntu-2204-kube-v1.28.5",
                        "ready": False,
                        "status": "5% Downloaded",
                    },
                )()
            ]
        return []


def test_cloudstack_is_asked_twice_per_zone_for_every_cluster_that_shares_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets: list[str] = []

    def read_secret(api_client: Any, ref: Any, failure_domain: str) -> str:
        secrets.append(str(ref))
        if ref.name == "broken":
            raise ConfigError(f"Secret {ref} lacks api-key")
        return "credentials"

    monkeypatch.setattr("kubectl_capc.ops.image_targets.read_secret_credentials", read_secret)
    calls: list[str] = []
    zones = CloudStackZones(object(), make_client=lambda credentials: FakeCloudStack(calls))
    broken = render_cluster(
        "c3",
        "prod",
        capi="v1beta2",
        zones=(Zone("zone-a", "net-a", secret_name="broken"),),
        with_machines=True,
    )
    inventories = build_inventories(raw_objects([*_cluster("c1"), *_cluster("c2"), *broken]), "v1beta2")

    answers = [zones(inventory) for inventory in inventories]

    assert calls == [
        "zone zone-a",
        "vms zone-a-id",
        "templates zone-a-id",
        "zone zone-b",
        "vms zone-b-id",
        "templates zone-b-id",
    ]
    assert secrets == ["default/cloudstack-credentials", "default/broken"]
    facts, notes = answers[0]
    assert notes == [] and facts.checked == {"zone-a", "zone-b"}
    assert {(vm.zone, vm.state) for vm in facts.vms} == {("zone-a", "Running"), ("zone-b", "Error")}
    assert facts.templates[("ubuntu-2204-kube-v1.28.5", "zone-b")].status == "5% Downloaded"
    # Listed in no row of a zone that was asked: not registered there.
    missing = facts.templates[("ubuntu-2204-kube-v1.28.5", "zone-a")]
    assert (missing.ready, missing.status) == (False, "not registered in this zone")
    _, broken_notes = answers[2]
    assert broken_notes == [
        "prod/c3 failure domain fd-zone-a: CloudStack not asked (Secret default/broken lacks api-key)"
    ]
