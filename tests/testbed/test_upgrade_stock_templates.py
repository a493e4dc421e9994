"""`image-upgrade` of a cluster applied as CAPC's stock templates ship it: MachineDeployments without the
`cluster.x-k8s.io/cluster-name` label and with `matchLabels: null`. CAPI finds them by `spec.clusterName`;
with its defaulting webhook (the bed's mutating policies) they gain the label, without it (an opted-out
namespace) they do not, and both are rolled."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fixtures_capc import CLUSTER_NAME_LABEL, create_objects, render_cluster
from tests.support.upgrade_support import TWO_ZONES, cli, get, version_and_template, wait_settled
from tests.testenv.bed import NO_DEFAULTING_LABEL, TestBed


def stock_shape(obj: dict[str, Any]) -> dict[str, Any]:
    """A MachineDeployment as the clusterctl template writes it, before any webhook has seen it."""
    if obj["kind"] == "MachineDeployment":
        obj["metadata"].pop("labels", None)
        obj["spec"]["selector"] = {"matchLabels": None}
        obj["spec"]["template"].pop("metadata", None)
    return obj


@pytest.fixture(params=["defaulted", "undefaulted"])
def stock_namespace(request: pytest.FixtureRequest, testenv: TestBed) -> Iterator[tuple[str, bool]]:
    from kubernetes import client

    core = client.CoreV1Api(testenv.api_client())
    name = f"t-{uuid.uuid4().hex[:10]}"
    labels = {NO_DEFAULTING_LABEL: "true"} if request.param == "undefaulted" else {}
    core.create_namespace({"metadata": {"name": name, "labels": labels}})
    yield name, request.param == "defaulted"
    core.delete_namespace(name)


def machines(bed: TestBed, namespace: str) -> list[dict[str, Any]]:
    from kubernetes import client

    api = client.CustomObjectsApi(bed.api_client())
    listed = api.list_namespaced_custom_object("cluster.x-k8s.io", bed.capi, namespace, "machines")
    return list(listed["items"])


def test_machine_deployments_without_the_cluster_name_label_are_rolled_too(
    testenv: TestBed, stock_namespace: tuple[str, bool]
) -> None:
    namespace, defaulted = stock_namespace
    objects = [
        stock_shape(o)
        for o in render_cluster(
            "c1", namespace, capi=testenv.capi, md_count=2, zones=TWO_ZONES, with_machines=True
        )
    ]
    create_objects(testenv.api_client(), objects)
    md = get(testenv, namespace, "MachineDeployment", "c1-md-0")
    assert (CLUSTER_NAME_LABEL in (md["metadata"].get("labels") or {})) is defaulted
    assert len(wait_settled(testenv, namespace).machine_deployments) == 2

    done = cli(testenv, "image-upgrade", "c1", "-n", namespace, "--to", "v1.29.3", "--yes")
    assert done.returncode == 0, done.stderr
    assert f"cluster {namespace}/c1 is at v1.29.3" in done.stderr
    for name in ("c1-md-0", "c1-md-1"):
        assert version_and_template(get(testenv, namespace, "MachineDeployment", name)) == (
            "v1.29.3",
            f"{name}-v1-29-3",
        )
    running = [m for m in machines(testenv, namespace) if not m["metadata"].get("deletionTimestamp")]
    assert {m["spec"]["version"] for m in running} == {"v1.29.3"}
