"""validate's workload round: one Machine LIST for all clusters, one workload read per cluster."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kubectl_capc.domain.checks.workload import WorkloadFacts
from kubectl_capc.domain.machines import Machine
from kubectl_capc.domain.versions import parse_target
from kubectl_capc.kube import workload
from kubectl_capc.ops.validate import read_workloads
from tests.support.checks_support import inventory_of, render


def _machine(namespace: str, name: str) -> Machine:
    return Machine(name, namespace, "MachineDeployment", "md-0")


@pytest.mark.parametrize(
    ("clusters", "listed"),
    [
        ([("ns", "c1")], [("v1beta2", "ns", "c1")]),
        ([("ns", "c1"), ("ns", "c2")], [("v1beta2", "ns", None)]),
        ([("a", "c1"), ("b", "c1")], [("v1beta2", None, None)]),
    ],
)
def test_one_machine_list_and_a_concurrent_read_per_cluster(
    monkeypatch: pytest.MonkeyPatch, clusters: list[tuple[str, str]], listed: list[Any]
) -> None:
    inventories = []
    for namespace, name in clusters:
        objects = render(name)
        for obj in objects:
            obj["metadata"]["namespace"] = namespace
        inventories.append(inventory_of(objects))
    lists: list[Any] = []
    reads: list[tuple[str, str, float | None]] = []
    barrier = threading.Barrier(len(clusters), timeout=5)

    def read_machines(api: Any, capi: str, *, namespace: str | None, cluster: str | None = None) -> Any:
        lists.append((capi, namespace, cluster))
        return {key: (_machine(*key),) for key in clusters}

    def read_workload(api: Any, namespace: str, cluster: str, *, request_timeout: float | None = None,
                      removed: Any = ()) -> Any:  # fmt: skip
        assert removed == ()  # no target: no removed API's objects are read
        reads.append((namespace, cluster, request_timeout))
        barrier.wait()  # every cluster is read at the same time
        return workload.WorkloadRead(WorkloadFacts(unreachable=f"{namespace}/{cluster}"))

    monkeypatch.setattr(workload, "read_machines", read_machines)
    monkeypatch.setattr(workload, "read_workload", read_workload)
    readings = read_workloads(object(), inventories, 7.0)
    assert lists == listed
    assert sorted(reads) == sorted((ns, name, 7.0) for ns, name in clusters)
    assert set(readings) == set(clusters)
    for key, reading in readings.items():
        assert reading.facts.unreachable == f"{key[0]}/{key[1]}"
        assert reading.machines == (_machine(*key),)


def test_no_clusters_no_requests() -> None:
    assert read_workloads(object(), []) == {}


def test_with_a_target_the_versions_removed_after_the_control_planes_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[Any] = []

    def read_workload(api: Any, namespace: str, cluster: str, *, request_timeout: float | None = None,
                      removed: Any = ()) -> Any:  # fmt: skip
        asked.extend(removed)
        return workload.WorkloadRead(WorkloadFacts())

    monkeypatch.setattr(workload, "read_machines", lambda *_, **__: {})
    monkeypatch.setattr(workload, "read_workload", read_workload)
    read_workloads(object(), [inventory_of(render("c1"))], None, parse_target("v1.32"))  # at v1.28.5
    assert sorted({(api.api_version, api.removed) for api in asked}) == [
        ("flowcontrol.apiserver.k8s.io/v1beta2", (1, 29)),
        ("flowcontrol.apiserver.k8s.io/v1beta3", (1, 32)),
    ]
    assert {api.resource for api in asked} == {"flowschemas", "prioritylevelconfigurations"}
