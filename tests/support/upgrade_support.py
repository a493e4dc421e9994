"""Helpers for `image-upgrade` tests on the real test bed: clusters, the CLI as a subprocess, the objects
of a namespace, and CloudStack templates seeded through the double's admin endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubectl_capc.domain.model import ClusterInventory
from kubectl_capc.domain.records import HISTORY
from kubectl_capc.kube.read import read_inventories
from tests.support.fixtures_capc import PLURALS, Zone, create_objects, render_cluster
from tests.testenv.bed import TestBed

# The zones and networks of the CloudStack double's example seed (examples/cloudstack-seed.yaml).
TWO_ZONES = (Zone("zone1", "capc-net-zone1"), Zone("zone2", "capc-net-zone2"))
CAPC = ("infrastructure.cluster.x-k8s.io", "v1beta3")
REPO = Path(__file__).resolve().parents[2]


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def read(bed: TestBed, namespace: str, name: str = "c1") -> ClusterInventory:
    (inventory,) = read_inventories(bed.api_client(), namespace=namespace, cluster=name)
    return inventory


def create_cluster(
    bed: TestBed,
    namespace: str,
    name: str = "c1",
    *,
    annotate: Mapping[str, Mapping[str, str]] | None = None,
    **kwargs: Any,
) -> ClusterInventory:
    """A two-zone cluster (3 control-plane replicas, two MachineDeployments by default), fully rolled out.

    `annotate` maps object names to extra annotations (e.g. the rollout simulator's stall controls).
    """
    kwargs.setdefault("md_count", 2)
    kwargs.setdefault("zones", TWO_ZONES)
    objects = render_cluster(name, namespace, capi=bed.capi, **kwargs)
    for obj in objects:
        extra = (annotate or {}).get(obj["metadata"]["name"])
        if extra and obj["kind"] in ("KubeadmControlPlane", "MachineDeployment"):
            obj["metadata"].setdefault("annotations", {}).update(extra)
    create_objects(bed.api_client(), objects)
    return wait_settled(bed, namespace, name)


def wait_settled(bed: TestBed, namespace: str, name: str = "c1") -> ClusterInventory:
    """The cluster's inventory once the rollout simulator reports everything rolled out."""
    return wait_for(f"cluster {namespace}/{name} to settle", lambda: _settled(bed, namespace, name))


def _settled(bed: TestBed, namespace: str, name: str) -> ClusterInventory | None:
    inventory = read(bed, namespace, name)
    return None if inventory.rollout_in_progress() else inventory


def cli(
    bed: TestBed, *args: str, timeout: float = 180, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl capc ARGS` against the bed, without a terminal on stdin; `env` adds to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "kubectl_capc", *args, "--kubeconfig", str(bed.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def custom(bed: TestBed) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(bed.api_client())


def capi_group_version(bed: TestBed, kind: str) -> tuple[str, str, str]:
    group = "controlplane.cluster.x-k8s.io" if kind == "KubeadmControlPlane" else "cluster.x-k8s.io"
    if kind == "CloudStackMachineTemplate":
        return (*CAPC, PLURALS[kind])
    return group, bed.capi, PLURALS[kind]


def get(bed: TestBed, namespace: str, kind: str, name: str) -> dict[str, Any]:
    group, version, plural = capi_group_version(bed, kind)
    result: dict[str, Any] = custom(bed).get_namespaced_custom_object(group, version, namespace, plural, name)
    return result


def patch(bed: TestBed, namespace: str, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    group, version, plural = capi_group_version(bed, kind)
    result: dict[str, Any] = custom(bed).patch_namespaced_custom_object(
        group, version, namespace, plural, name, body
    )
    return result


def names(bed: TestBed, namespace: str, kind: str) -> list[str]:
    group, version, plural = capi_group_version(bed, kind)
    items = custom(bed).list_namespaced_custom_object(group, version, namespace, plural)["items"]
    return sorted(item["metadata"]["name"] for item in items)


def resource_versions(bed: TestBed, namespace: str) -> dict[tuple[str, str], str]:
    """resourceVersion of every CAPI and CAPC object in the namespace."""
    found = {}
    kinds = ("Cluster", "KubeadmControlPlane", "MachineDeployment", "CloudStackMachineTemplate")
    for kind in (*kinds, "CloudStackCluster", "KubeadmConfigTemplate"):
        group, version, plural = capi_group_version(bed, kind)
        if kind == "CloudStackCluster":
            group, version = CAPC
        if kind == "KubeadmConfigTemplate":
            group = "bootstrap.cluster.x-k8s.io"
        for item in custom(bed).list_namespaced_custom_object(group, version, namespace, plural)["items"]:
            found[(kind, item["metadata"]["name"])] = item["metadata"]["resourceVersion"]
    return found


def version_and_template(obj: Mapping[str, Any]) -> tuple[str, str]:
    spec = obj["spec"]
    if obj["kind"] == "KubeadmControlPlane":
        machine_template = spec["machineTemplate"]
        ref = (machine_template.get("spec") or machine_template)["infrastructureRef"]
        return spec["version"], ref["name"]
    machine_spec = spec["template"]["spec"]
    return machine_spec["version"], machine_spec["infrastructureRef"]["name"]


def history(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    value = (obj["metadata"].get("annotations") or {}).get(HISTORY, "[]")
    entries: list[dict[str, str]] = json.loads(value)
    return entries


def ensure_cloudstack_template(bed: TestBed, name: str, zones: Mapping[str, str] | None = None) -> None:
    """Add a KVM Ubuntu template to the double once (the double outlives a single test)."""
    with urllib.request.urlopen(bed.admin_url("templates"), timeout=10) as response:
        existing = {t["name"] for t in json.load(response) if not t.get("removed")}
    if name in existing:
        return
    body = {
        "name": name,
        "hypervisor": "KVM",
        "format": "QCOW2",
        "ostype": "Ubuntu 22.04 LTS",
        "owner": {"account": "admin", "domain": "ROOT"},
        "ispublic": True,
        "zones": dict(zones or {"zone1": "ready", "zone2": "ready"}),
    }
    request = urllib.request.Request(
        bed.admin_url("templates"),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@contextmanager
def admission_policy(
    bed: TestBed,
    namespace: str,
    *,
    group: str,
    resource: str,
    operations: Sequence[str],
    expression: str,
    message: str,
) -> Iterator[None]:
    """A ValidatingAdmissionPolicy (and its binding to `namespace`) while the block runs: requests on
    `resource` of `group` for which the CEL `expression` is false are denied with `message`."""
    from kubernetes import client

    admission = client.AdmissionregistrationV1Api(bed.api_client())
    name = f"t-policy-{uuid.uuid4().hex[:8]}"
    rule = {"apiGroups": [group], "apiVersions": ["*"], "operations": list(operations),
            "resources": [resource]}  # fmt: skip
    admission.create_validating_admission_policy(
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [rule]},
                "validations": [{"expression": expression, "message": message}],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )
    try:
        yield
    finally:
        admission.delete_validating_admission_policy_binding(name)
        admission.delete_validating_admission_policy(name)


@contextmanager
def templates_need_a_cost_center(bed: TestBed, namespace: str, *, prefix: str = "") -> Iterator[None]:
    """A site policy, enforced while the block runs: new CloudStackMachineTemplates in `namespace` whose
    names start with `prefix` need the label example.com/cost-center."""
    from kubernetes.client.exceptions import ApiException

    policy = admission_policy(
        bed, namespace, group="infrastructure.cluster.x-k8s.io", resource="cloudstackmachinetemplates",
        operations=["CREATE"],
        expression=f"!object.metadata.name.startsWith('{prefix}') || "
        "'example.com/cost-center' in object.metadata.?labels.orValue({})",
        message="CloudStackMachineTemplates need the label example.com/cost-center",
    )  # fmt: skip
    probe = {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
        "kind": "CloudStackMachineTemplate",
        "metadata": {"name": f"{prefix}probe", "namespace": namespace},
        "spec": {"template": {"spec": {"offering": {"name": "o"}, "template": {"name": "t"}}}},
    }

    def enforced() -> bool:
        try:
            custom(bed).create_namespaced_custom_object(
                "infrastructure.cluster.x-k8s.io", "v1beta3", namespace, "cloudstackmachinetemplates", probe,
                dry_run="All",
            )  # fmt: skip
        except ApiException as err:
            return "cost-center" in str(err.body)
        return False

    with policy:
        wait_for("the policy to be enforced", enforced)
        yield
