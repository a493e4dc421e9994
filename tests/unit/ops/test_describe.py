"""`describe` rendering: the tree people read and the typed object tools read, from inventories."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from kubectl_capc.cloudstack.errors import CloudStackError
from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.errors import ConfigError
from kubectl_capc.domain.inventory import build_inventories
from kubectl_capc.domain.model import CloudStackResource, CloudStackTemplateRow, ClusterInventory
from kubectl_capc.ops.describe import (
    Availability,
    describe_cluster,
    lookup_zone_templates,
    render,
    render_tree,
    template_availability,
)
from tests.support.fixtures_capc import Zone, raw_objects, render_cluster, with_settled_status
from tests.support.ondelete_scene import scene

TWO_ZONES = (Zone("zone-a", "net-a"), Zone("zone-b", "net-b"))
IMAGE = "ubuntu-2204-kube-v1.28.5"


def row(
    name: str = IMAGE, id_: str = "tpl-1", zone: str = "zone-a", ready: bool = True
) -> CloudStackTemplateRow:
    return CloudStackTemplateRow(id=id_, name=name, zone_id=f"{zone}-id", zone_name=zone, ready=ready)


def read(objects: list[dict[str, Any]], capi: str = "v1beta2") -> ClusterInventory:
    (inv,) = build_inventories(raw_objects(objects), capi)  # type: ignore[arg-type]
    return inv


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def two_zone_cluster(capi: str = "v1beta2", **kwargs: Any) -> list[dict[str, Any]]:
    return with_settled_status(
        render_cluster("c1", "ns1", capi=capi, md_count=2, zones=TWO_ZONES, with_machines=True, **kwargs)
    )


@pytest.mark.parametrize(
    ("template", "rows", "expected"),
    [
        (CloudStackResource(name=IMAGE), [row()], Availability.AVAILABLE),
        (CloudStackResource(name=IMAGE), [row(name="other")], Availability.MISSING),
        (CloudStackResource(name=IMAGE), [row(id_="a"), row(id_="b")], Availability.DUPLICATE),
        (CloudStackResource(name=IMAGE), [row(ready=False)], Availability.NOT_READY),
        (CloudStackResource(id="tpl-1"), [row(name="anything")], Availability.AVAILABLE),
        (CloudStackResource(id="tpl-1", name=IMAGE), [row(name="renamed")], Availability.NAME_MISMATCH),
        (CloudStackResource(id="tpl-2", name=IMAGE), [row()], Availability.MISSING),  # the id decides
        (CloudStackResource(name=IMAGE), [], Availability.MISSING),
        (CloudStackResource(name=IMAGE), None, Availability.NOT_CHECKED),
    ],
)
def test_template_availability(
    template: CloudStackResource, rows: list[CloudStackTemplateRow] | None, expected: Availability
) -> None:
    assert template_availability(template, rows) is expected


def test_tree_shows_what_an_upgrade_is_about() -> None:
    objects = two_zone_cluster()
    of_kind(objects, "CloudStackMachineTemplate")["spec"]["template"]["spec"]["template"]["id"] = "tpl-1"
    text = render_tree(read(objects))
    lines = text.splitlines()
    assert lines[0] == "Cluster/ns1/c1  CAPI v1beta2"
    assert "│ management  classic" in lines
    assert "├─Infrastructure  CloudStackCluster/c1  endpoint 10.0.0.10:6443" in lines
    assert (
        "│ ├─FailureDomain fd-zone-a  zone zone-a  network net-a  credentials default/cloudstack-credentials"
        in lines
    )
    assert "├─ControlPlane  KubeadmControlPlane/c1-control-plane" in lines
    assert "│     version   v1.28.5 (status v1.28.5)" in lines
    assert "│     replicas  3 desired, 3 current, 3 ready, 3 up-to-date, 3 available" in lines
    assert "│     machines  3 at v1.28.5" in lines
    assert f"│     image     {IMAGE} (tpl-1)" in lines
    assert "│     offering  Large" in lines
    assert "└─Workers" in lines
    assert "  ├─MachineDeployment/c1-md-0" in lines
    assert "  └─MachineDeployment/c1-md-1" in lines
    assert "        template   CloudStackMachineTemplate/c1-md-1" in lines
    assert "        bootstrap  KubeadmConfigTemplate/c1-md-1" in lines
    assert "zones" not in text  # no CloudStack lookup given: nothing claimed about zones
    assert "ROLLING OUT" not in text and "PAUSED" not in text


def test_tree_reports_template_availability_per_failure_domain() -> None:
    zone_templates = {"fd-zone-a": (row(),), "fd-zone-b": (row(zone="zone-b", ready=False),)}
    text = render_tree(read(two_zone_cluster()), zone_templates)
    assert text.count("zones     fd-zone-a (zone-a): available, fd-zone-b (zone-b): not-ready") == 1  # CP
    assert text.count("zones      fd-zone-a (zone-a): available, fd-zone-b (zone-b): not-ready") == 2  # MDs


def test_failure_domain_missing_from_the_lookup_is_not_checked() -> None:
    text = render_tree(read(two_zone_cluster()), {"fd-zone-a": (row(),)})
    assert "fd-zone-b (zone-b): not-checked" in text


def test_tree_flags_a_rollout_and_mixed_machine_versions() -> None:
    objects = two_zone_cluster()
    kcp = of_kind(objects, "KubeadmControlPlane")
    kcp["spec"]["version"] = "v1.29.3"
    kcp["metadata"]["generation"] = 2
    kcp["status"].update(
        observedGeneration=2,
        upToDateReplicas=1,
        versions=[{"version": "v1.28.5", "replicas": 2}, {"version": "v1.29.3", "replicas": 1}],
    )
    next(o for o in objects if o["metadata"]["name"] == "c1-control-plane-2")["spec"]["version"] = "v1.29.3"
    inv = read(objects)
    text = render_tree(inv)
    assert "├─ControlPlane  KubeadmControlPlane/c1-control-plane  [ROLLING OUT]" in text
    assert "│     version   v1.29.3 (status v1.28.5)" in text
    assert "│     machines  2 at v1.28.5, 1 at v1.29.3" in text
    assert "  ├─MachineDeployment/c1-md-0\n" in text  # the workers are not rolling
    description = describe_cluster(inv)
    assert description["rolloutInProgress"] is True
    assert description["controlPlane"]["rolloutInProgress"] is True
    assert description["controlPlane"]["version"]["running"] == [
        {"version": "v1.28.5", "replicas": 2},
        {"version": "v1.29.3", "replicas": 1},
    ]


def test_machine_counts_fall_back_to_status_versions_without_machines() -> None:
    objects = with_settled_status(render_cluster("c1", capi="v1beta2"))
    of_kind(objects, "MachineDeployment")["status"]["versions"] = [{"version": "v1.28.5", "replicas": 2}]
    text = render_tree(read(objects))
    assert "        machines   2 at v1.28.5" in text
    assert "│     machines  -" in text  # no machines, no status.versions


def test_tree_marks_paused_objects() -> None:
    objects = two_zone_cluster()
    of_kind(objects, "Cluster")["spec"]["paused"] = True
    of_kind(objects, "MachineDeployment")["metadata"]["annotations"] = {"cluster.x-k8s.io/paused": ""}
    text = render_tree(read(objects))
    assert text.startswith("Cluster/ns1/c1  CAPI v1beta2  [PAUSED]\n")
    assert "  ├─MachineDeployment/c1-md-0  [PAUSED]\n" in text
    assert "  └─MachineDeployment/c1-md-1\n" in text


def test_topology_cluster_is_reported_not_treated_as_classic() -> None:
    objects = with_settled_status(render_cluster("c1", capi="v1beta2", topology_class="capc-class"))
    of_kind(objects, "KubeadmControlPlane")["metadata"]["labels"] = {"topology.cluster.x-k8s.io/owned": ""}
    inv = read(objects)
    text = render_tree(inv)
    assert (
        "│ management  topology-managed (ClusterClass default/capc-class, version v1.28.5): "
        "upgrade through the ClusterClass, not as a classic cluster"
    ) in text
    assert "[TOPOLOGY-OWNED]" in text
    cluster = describe_cluster(inv)["cluster"]
    assert cluster["management"] == "topology"
    assert cluster["topology"] == {"class": "capc-class", "classNamespace": "default", "version": "v1.28.5"}


def test_problems_are_listed_under_the_tree() -> None:
    objects = render_cluster("c1")
    objects.remove(
        next(
            o
            for o in objects
            if o["metadata"]["name"] == "c1-md-0" and o["kind"] == "CloudStackMachineTemplate"
        )
    )
    inv = read(objects, "v1beta1")
    text = render_tree(inv)
    assert "        template   CloudStackMachineTemplate/c1-md-0 (not found)" in text
    assert text.endswith(
        "! MachineDeployment/default/c1-md-0: machine template CloudStackMachineTemplate/c1-md-0 not found\n"
    )
    assert describe_cluster(inv)["machineDeployments"][0]["machineTemplate"] is None


def test_typed_object_shape() -> None:
    objects = render_cluster("c1", "ns1", capi="v1beta1", flavor="cluster-template-with-disk-offering.yaml")
    objects = with_settled_status(objects)
    fd = of_kind(objects, "CloudStackCluster")["spec"]["failureDomains"][0]
    fd.update(account="acct", domain="ROOT")
    description = describe_cluster(read(objects, "v1beta1"), {"fd-zone-a": ()})
    assert (description["apiVersion"], description["kind"]) == (API_VERSION, "ClusterDescription")
    assert API_VERSION.split("/")[0].endswith(".io") and API_VERSION.endswith("/v1alpha1")
    assert description["metadata"] == {"name": "c1", "namespace": "ns1"}
    assert description["capiVersion"] == "v1beta1"
    assert description["infrastructure"]["failureDomains"] == [
        {
            "name": "fd-zone-a",
            "zone": {"name": "zone-a"},
            "network": {"name": "net-a"},
            "credentialsSecret": {"namespace": "default", "name": "cloudstack-credentials"},
            "account": "acct",
            "domain": "ROOT",
        }
    ]
    template = description["controlPlane"]["machineTemplate"]
    assert template == {
        "name": "c1-control-plane",
        "cloudstackTemplate": {"name": IMAGE},
        "offering": {"name": "Large"},
        "diskOffering": {"name": "Custom", "mountPath": "/data", "device": "/dev/vdb"},
        "availability": [{"failureDomain": "fd-zone-a", "zone": "zone-a", "state": "missing"}],
    }
    assert description["controlPlane"]["replicas"] == {
        "desired": 3,
        "current": 3,
        "ready": 3,
        "upToDate": 3,
        "available": 3,
    }
    assert [md["name"] for md in description["machineDeployments"]] == ["c1-md-0"]
    assert description["problems"] == []


def test_json_and_yaml_carry_the_same_object() -> None:
    inventories = [read(two_zone_cluster())]
    as_json = json.loads(render(inventories, "json"))
    as_yaml = yaml.safe_load(render(inventories, "yaml"))
    assert as_json == as_yaml == describe_cluster(inventories[0])


def test_several_clusters_render_as_a_list() -> None:
    objects = [*two_zone_cluster(), *with_settled_status(render_cluster("c2", "ns2", capi="v1beta2"))]
    inventories = build_inventories(raw_objects(objects), "v1beta2")
    document = json.loads(render(inventories, "json"))
    assert (document["apiVersion"], document["kind"]) == (API_VERSION, "ClusterDescriptionList")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in document["items"]] == [
        ("ns1", "c1"),
        ("ns2", "c2"),
    ]
    single = json.loads(render(inventories[:1], "json", as_list=True))
    assert single["kind"] == "ClusterDescriptionList" and len(single["items"]) == 1
    trees = render(inventories, "tree")
    assert "Cluster/ns1/c1  CAPI v1beta2" in trees and "Cluster/ns2/c2  CAPI v1beta2" in trees


def test_zone_templates_are_matched_to_their_cluster() -> None:
    objects = [*two_zone_cluster(), *with_settled_status(render_cluster("c2", "ns2", capi="v1beta2"))]
    inventories = build_inventories(raw_objects(objects), "v1beta2")
    document = json.loads(render(inventories, "json", {("ns2", "c2"): {"fd-zone-a": (row(),)}}))
    c1, c2 = document["items"]
    assert "availability" not in c1["controlPlane"]["machineTemplate"]
    assert c2["controlPlane"]["machineTemplate"]["availability"] == [
        {"failureDomain": "fd-zone-a", "zone": "zone-a", "state": "available"}
    ]


def test_unknown_output_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        render([read(two_zone_cluster())], "wide")


class FakeCloudStack:
    """Stands in for CloudStackClient: zones by id or name, templates per zone, calls recorded."""

    def __init__(
        self, credentials: Any, rows: dict[str, list[CloudStackTemplateRow]], calls: list[str]
    ) -> None:
        self.credentials, self.rows, self.calls = credentials, rows, calls

    def zone(self, id_or_name: str) -> Any:
        self.calls.append(f"zone {id_or_name}")
        if id_or_name not in self.rows:
            raise CloudStackError(f"zone {id_or_name!r} does not exist")
        return type("Zone", (), {"id": f"{id_or_name}-id", "name": id_or_name})()

    def owner_scope(self, *, project: str = "", account: str = "", domain: str = "") -> str:
        return project or account or "self"

    def templates(self, *, zone_id: str, owner: str) -> list[Any]:
        self.calls.append(f"templates {zone_id} as {owner}")
        zone = zone_id.removesuffix("-id")
        return [type("Template", (), {"as_row": lambda self, r=r: r})() for r in self.rows[zone]]


def test_zone_lookup_shares_secrets_clients_and_listings(monkeypatch: pytest.MonkeyPatch) -> None:
    read_secrets: list[str] = []

    def read_secret(api_client: Any, ref: Any, failure_domain: str) -> str:
        read_secrets.append(str(ref))
        if ref.name == "broken":
            raise ConfigError(f"Secret {ref} lacks api-key")
        return f"credentials of {ref}"

    monkeypatch.setattr("kubectl_capc.ops.image_targets.read_secret_credentials", read_secret)
    calls: list[str] = []
    clients: list[FakeCloudStack] = []
    rows = {"zone-a": [row()], "zone-b": [row(zone="zone-b", ready=False)]}

    def factory(credentials: Any) -> FakeCloudStack:
        clients.append(FakeCloudStack(credentials, rows, calls))
        return clients[-1]

    zones = (
        *TWO_ZONES,
        Zone("zone-x", "net-x"),
        Zone("zone-a", "net-a", failure_domain="fd-broken", secret_name="broken"),
    )
    objects = [
        *two_zone_cluster(),
        *with_settled_status(render_cluster("c2", "ns2", capi="v1beta2", zones=zones)),
    ]
    of_kind([o for o in objects if o["metadata"]["namespace"] == "ns2"], "CloudStackCluster")["spec"][
        "failureDomains"
    ][1]["project"] = "capc-clusters"
    inventories = build_inventories(raw_objects(objects), "v1beta2")

    found, notes = lookup_zone_templates(object(), inventories, factory)

    assert read_secrets == ["default/cloudstack-credentials", "default/broken"]  # each Secret read once
    assert len(clients) == 1
    assert calls == [
        "zone zone-a", "templates zone-a-id as self",
        "zone zone-b", "templates zone-b-id as self",
        "zone zone-b", "templates zone-b-id as capc-clusters",  # another tenant: listed again
        "zone zone-x",
    ]  # fmt: skip
    assert found[("ns1", "c1")] == {"fd-zone-a": (row(),), "fd-zone-b": (row(zone="zone-b", ready=False),)}
    assert set(found[("ns2", "c2")]) == {"fd-zone-a", "fd-zone-b"}
    assert notes == [
        "ns2/c2 failure domain fd-zone-x: not checked: zone 'zone-x' does not exist",
        "ns2/c2 failure domain fd-broken: not checked: Secret default/broken lacks api-key",
    ]
    text = render(inventories, "tree", found)
    assert "fd-zone-a (zone-a): available, fd-zone-b (zone-b): not-ready" in text
    assert "fd-zone-x (zone-x): not-checked, fd-broken (zone-a): not-checked" in text


def test_a_name_with_all_namespaces_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from kubectl_capc.__main__ import main

    assert main(["describe", "c1", "-A"]) == 2
    assert "error: a cluster name cannot be combined with -A" in capsys.readouterr().err


def test_tree_and_object_name_the_old_machines_of_an_on_delete_deployment() -> None:
    objects = scene("v1beta2")
    machines = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Machine"}
    machines["c1-md-0-0"]["spec"]["version"] = "v1.28.4"  # old by its version, on the deployment's template
    for name, template in (("c1-md-0-0", "c1-md-0"), ("c1-md-0-1", "c1-md-0-old")):
        objects.append(
            {
                "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
                "kind": "CloudStackMachine",
                "metadata": {
                    "name": name,
                    "namespace": "ns",
                    "annotations": {"cluster.x-k8s.io/cloned-from-name": template},
                },
            }
        )
    inv = read(objects)

    text = render_tree(inv)

    assert (
        "old machines  c1-md-0-0 (v1.28.4), c1-md-0-1 (v1.28.5, c1-md-0-old): "
        "replaced only once deleted (OnDelete)"
    ) in text
    assert text.count("old machines") == 1, "only the OnDelete deployment has them"
    (md0, md1) = describe_cluster(inv)["machineDeployments"]
    assert md0["oldMachines"] == ["c1-md-0-0", "c1-md-0-1"] and "oldMachines" not in md1
