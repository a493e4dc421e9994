"""Both CAPI shapes normalise into the same inventory; every field comes from where upstream puts it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubectl_capc.domain.inventory import RawObjects, build_inventories, parse_machine_template, parse_ref
from kubectl_capc.domain.model import ClusterInventory, MachineRole, Ref
from kubectl_capc.ops.describe import describe_cluster
from tests.support.fixtures_capc import Zone, raw_objects, render_cluster, with_settled_status

TWO_ZONES = (Zone("zone-a", "net-a"), Zone("zone-b", "net-b", secret_name="creds-b", secret_namespace="capc"))


def inventory(objects: list[dict[str, Any]], capi: str = "v1beta1") -> ClusterInventory:
    (only,) = build_inventories(raw_objects(objects), capi)  # type: ignore[arg-type]
    return only


def of_kind(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_upstream_template_reads_as_the_cluster_it_describes(capi: str) -> None:
    objects = with_settled_status(
        render_cluster("c1", "ns1", capi=capi, md_count=2, zones=TWO_ZONES, with_machines=True)
    )
    inv = inventory(objects, capi)

    assert inv.problems == ()
    assert (inv.namespace, inv.name, inv.capi_version) == ("ns1", "c1", capi)
    assert not inv.cluster.topology_managed
    cp = inv.control_plane
    assert cp is not None
    assert (cp.kind, cp.name, cp.version, cp.status_version) == (
        "KubeadmControlPlane",
        "c1-control-plane",
        "v1.28.5",
        "v1.28.5",
    )
    assert cp.infrastructure_ref == Ref(
        "infrastructure.cluster.x-k8s.io", "CloudStackMachineTemplate", "c1-control-plane", "ns1"
    )
    assert cp.machine_template is not None
    assert cp.machine_template.cloudstack_template.name == "ubuntu-2204-kube-v1.28.5"
    assert cp.machine_template.offering.name == "Large"
    assert (cp.replicas.desired, cp.replicas.up_to_date, cp.replicas.ready, cp.replicas.available) == (
        3,
        3,
        3,
        3,
    )
    assert [md.name for md in inv.machine_deployments] == ["c1-md-0", "c1-md-1"]
    md0 = inv.machine_deployments[0]
    assert md0.machine_template is not None and md0.machine_template.name == "c1-md-0"
    assert md0.machine_template.offering.name == "Medium"
    assert md0.bootstrap_template is not None and md0.bootstrap_template.name == "c1-md-0"
    assert md0.bootstrap_ref == Ref("bootstrap.cluster.x-k8s.io", "KubeadmConfigTemplate", "c1-md-0", "ns1")
    assert [fd.name for fd in inv.failure_domains] == ["fd-zone-a", "fd-zone-b"]
    assert inv.failure_domains[1].credentials.namespace == "capc"
    assert inv.failure_domains[1].credentials.name == "creds-b"
    assert inv.failure_domains[1].network.name == "net-b"
    assert len(inv.control_plane_machines()) == 3
    assert [m.name for m in inv.machines_of(md0)] == ["c1-md-0-0", "c1-md-0-1"]
    assert not inv.rollout_in_progress()
    assert {t.name for t in inv.machine_templates_in_use()} == {"c1-control-plane", "c1-md-0", "c1-md-1"}


def test_v1beta1_and_v1beta2_objects_give_the_same_description() -> None:
    """The model is version-free: only the recorded CAPI version differs."""
    descriptions = []
    for capi in ("v1beta1", "v1beta2"):
        objects = with_settled_status(render_cluster("c1", capi=capi, zones=TWO_ZONES, with_machines=True))
        description = describe_cluster(inventory(objects, capi))
        assert description.pop("capiVersion") == capi
        descriptions.append(description)
    assert descriptions[0] == descriptions[1]


def test_refs_in_both_shapes() -> None:
    v1 = {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
        "kind": "CloudStackMachineTemplate",
        "name": "t",
    }
    v2 = {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "CloudStackMachineTemplate", "name": "t"}
    assert (
        parse_ref(v1, "ns")
        == parse_ref(v2, "ns")
        == Ref("infrastructure.cluster.x-k8s.io", "CloudStackMachineTemplate", "t", "ns")
    )
    assert parse_ref({**v1, "namespace": "other"}, "ns") == Ref(
        "infrastructure.cluster.x-k8s.io", "CloudStackMachineTemplate", "t", "other"
    )
    assert parse_ref({"apiVersion": "v1", "kind": "Secret", "name": "s"}, "ns") == Ref(
        "", "Secret", "s", "ns"
    )
    assert parse_ref({"kind": "X"}, "ns") is None
    assert parse_ref(None, "ns") is None


def test_v1beta1_status_fields_map_to_the_common_counts() -> None:
    objects = render_cluster("c1", capi="v1beta1", control_plane_replicas=3, worker_replicas=4)
    kcp = of_kind(objects, "KubeadmControlPlane")
    kcp["metadata"]["generation"] = 2
    kcp["status"] = {
        "observedGeneration": 2,
        "replicas": 4,
        "updatedReplicas": 1,
        "readyReplicas": 3,
        "unavailableReplicas": 1,
        "version": "v1.28.5",
        "conditions": [
            {"type": "MachinesSpecUpToDate", "status": "False", "reason": "RollingUpdateInProgress"}
        ],
    }
    md = of_kind(objects, "MachineDeployment")
    md["status"] = {
        "replicas": 4,
        "updatedReplicas": 2,
        "readyReplicas": 4,
        "availableReplicas": 3,
        "phase": "ScalingUp",
    }
    inv = inventory(objects)
    assert inv.control_plane is not None
    replicas = inv.control_plane.replicas
    assert (replicas.desired, replicas.current, replicas.up_to_date, replicas.ready, replicas.available) == (
        3,
        4,
        1,
        3,
        3,
    )
    assert inv.control_plane.rolling_out
    md_replicas = inv.machine_deployments[0].replicas
    assert (md_replicas.desired, md_replicas.up_to_date, md_replicas.available) == (4, 2, 3)
    assert inv.machine_deployments[0].phase == "ScalingUp"


def test_v1beta2_status_fields_map_to_the_common_counts() -> None:
    objects = render_cluster("c1", capi="v1beta2")
    kcp = of_kind(objects, "KubeadmControlPlane")
    kcp["status"] = {
        "replicas": 4,
        "upToDateReplicas": 2,
        "readyReplicas": 4,
        "availableReplicas": 3,
        "version": "v1.28.5",
        "versions": [{"version": "v1.28.5", "replicas": 2}, {"version": "v1.29.3", "replicas": 2}],
        "conditions": [{"type": "RollingOut", "status": "True", "reason": "RollingOut"}],
        # the legacy counters v1beta2 keeps under `deprecated` must not be read as the real ones
        "deprecated": {"v1beta1": {"updatedReplicas": 0, "readyReplicas": 0, "unavailableReplicas": 4}},
    }
    inv = inventory(objects, "v1beta2")
    cp = inv.control_plane
    assert cp is not None
    assert (cp.replicas.current, cp.replicas.up_to_date, cp.replicas.ready, cp.replicas.available) == (
        4,
        2,
        4,
        3,
    )
    assert [(v.version, v.replicas) for v in cp.status_versions] == [("v1.28.5", 2), ("v1.29.3", 2)]
    assert cp.versions_reported == ("v1.28.5", "v1.29.3")
    assert cp.rolling_out


def test_v1beta1_machine_deployment_reads_the_v1beta2_preview_conditions() -> None:
    """CAPI 1.9/1.10 publish `RollingOut` only under status.v1beta2; it still counts."""
    objects = with_settled_status(render_cluster("c1", capi="v1beta1"))
    md = of_kind(objects, "MachineDeployment")
    md["status"]["v1beta2"] = {
        "conditions": [{"type": "RollingOut", "status": "True", "reason": "RollingOut"}]
    }
    inv = inventory(objects)
    assert inv.machine_deployments[0].rolling_out
    assert inv.machine_deployments[0].rollout_in_progress()
    assert inv.rollout_in_progress()


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_topology_clusters_are_recognised(capi: str) -> None:
    objects = render_cluster("c1", capi=capi, topology_class="capc-class")
    cluster = of_kind(objects, "Cluster")
    if capi == "v1beta1":
        cluster["spec"]["topology"]["classNamespace"] = "classes"
    else:
        cluster["spec"]["topology"]["classRef"]["namespace"] = "classes"
    inv = inventory(objects, capi)
    assert inv.cluster.topology_managed
    topology = inv.cluster.topology
    assert topology is not None
    assert (topology.class_name, topology.class_namespace, topology.version) == (
        "capc-class",
        "classes",
        "v1.28.5",
    )


def test_topology_cluster_without_refs_yet_is_not_a_problem() -> None:
    objects = render_cluster("c1", topology_class="capc-class")
    del of_kind(objects, "Cluster")["spec"]["controlPlaneRef"]
    del of_kind(objects, "Cluster")["spec"]["infrastructureRef"]
    inv = inventory(objects)
    assert inv.problems == ()
    assert inv.control_plane is None and inv.infrastructure is None


def test_topology_owned_objects_are_marked() -> None:
    objects = render_cluster("c1", capi="v1beta2")
    of_kind(objects, "KubeadmControlPlane")["metadata"]["labels"] = {"topology.cluster.x-k8s.io/owned": ""}
    inv = inventory(objects, "v1beta2")
    assert inv.control_plane is not None and inv.control_plane.topology_owned
    assert not inv.machine_deployments[0].topology_owned


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_paused_in_every_form(capi: str) -> None:
    objects = render_cluster("c1", capi=capi)
    assert not inventory(objects, capi).paused
    cases: list[tuple[str, Any]] = [
        ("Cluster", lambda o: o["spec"].update(paused=True)),
        (
            "KubeadmControlPlane",
            lambda o: o["metadata"].setdefault("annotations", {}).update({"cluster.x-k8s.io/paused": ""}),
        ),
        ("MachineDeployment", lambda o: o["spec"].update(paused=True)),
    ]
    for kind, pause in cases:
        changed = copy.deepcopy(objects)
        pause(of_kind(changed, kind))
        inv = inventory(changed, capi)
        assert inv.paused, kind
        assert inv.cluster.paused == (kind == "Cluster")
        assert inv.control_plane is not None and inv.control_plane.paused == (kind == "KubeadmControlPlane")
        assert inv.machine_deployments[0].paused == (kind == "MachineDeployment")


def test_dangling_and_foreign_references_are_problems_not_crashes() -> None:
    objects = render_cluster("c1", md_count=3)
    objects.remove(of_kind(objects, "CloudStackMachineTemplate", "c1-md-0"))
    objects.remove(of_kind(objects, "KubeadmConfigTemplate", "c1-md-1"))
    of_kind(objects, "MachineDeployment", "c1-md-2")["spec"]["template"]["spec"]["infrastructureRef"] = {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1",
        "kind": "DockerMachineTemplate",
        "name": "d",
    }
    objects.remove(of_kind(objects, "CloudStackCluster"))
    inv = inventory(objects)
    messages = sorted(str(p) for p in inv.problems)
    assert messages == [
        "Cluster/default/c1: infrastructure CloudStackCluster/c1 not found",
        "MachineDeployment/default/c1-md-0: machine template CloudStackMachineTemplate/c1-md-0 not found",
        "MachineDeployment/default/c1-md-1: bootstrap template KubeadmConfigTemplate/c1-md-1 not found",
        "MachineDeployment/default/c1-md-2: machine template DockerMachineTemplate/d is not a CAPC template",
    ]
    assert [md.name for md in inv.machine_deployments] == ["c1-md-0", "c1-md-1", "c1-md-2"]
    assert inv.machine_deployments[0].machine_template is None
    assert inv.infrastructure is None and inv.failure_domains == ()


def test_missing_and_foreign_control_planes() -> None:
    objects = render_cluster("c1")
    objects.remove(of_kind(objects, "KubeadmControlPlane"))
    assert [str(p) for p in inventory(objects).problems] == [
        "Cluster/default/c1: control plane KubeadmControlPlane/c1-control-plane not found"
    ]
    of_kind(objects, "Cluster")["spec"]["controlPlaneRef"]["kind"] = "K3sControlPlane"
    assert [str(p) for p in inventory(objects).problems] == [
        "Cluster/default/c1: control plane K3sControlPlane/c1-control-plane is not a KubeadmControlPlane"
    ]


def test_clusters_are_joined_by_namespace_and_name() -> None:
    """Two clusters named alike in two namespaces, and two clusters in one namespace, never mix."""
    objects = [
        *render_cluster("c1", "ns1", md_count=2, with_machines=True),
        *render_cluster("c1", "ns2", md_count=1, version="v1.29.3", with_machines=True),
        *render_cluster("c2", "ns1", md_count=1, version="v1.27.9", with_machines=True),
    ]
    inventories = build_inventories(raw_objects(objects), "v1beta1")
    assert [(i.namespace, i.name) for i in inventories] == [("ns1", "c1"), ("ns1", "c2"), ("ns2", "c1")]
    ns1_c1, ns1_c2, ns2_c1 = inventories
    assert [md.name for md in ns1_c1.machine_deployments] == ["c1-md-0", "c1-md-1"]
    assert [md.name for md in ns1_c2.machine_deployments] == ["c2-md-0"]
    assert ns2_c1.control_plane is not None and ns2_c1.control_plane.version == "v1.29.3"
    assert {m.version for m in ns2_c1.machines} == {"v1.29.3"}
    assert {m.version for m in ns1_c2.machines} == {"v1.27.9"}
    assert len(ns1_c1.machines) == 3 + 2 + 2
    # each cluster knows every template of its namespace (for name collisions), none from elsewhere
    assert {t.name for t in ns1_c1.namespace_templates} == {
        "c1-control-plane",
        "c1-md-0",
        "c1-md-1",
        "c2-control-plane",
        "c2-md-0",
    }
    assert {t.namespace for t in ns2_c1.namespace_templates} == {"ns2"}


def test_machines_get_role_and_owner_from_labels() -> None:
    inv = inventory(render_cluster("c1", md_count=2, zones=TWO_ZONES, with_machines=True))
    roles = {(m.name, m.role, m.owner) for m in inv.machines}
    assert ("c1-control-plane-0", MachineRole.CONTROL_PLANE, "c1-control-plane") in roles
    assert ("c1-md-1-1", MachineRole.WORKER, "c1-md-1") in roles
    assert [m.failure_domain for m in inv.control_plane_machines()] == ["fd-zone-a", "fd-zone-b", "fd-zone-a"]


def test_v1beta2_machine_status_fields() -> None:
    objects = render_cluster(
        "c1", capi="v1beta2", with_machines=True, control_plane_replicas=1, worker_replicas=0
    )
    machine = of_kind(objects, "Machine")
    machine["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    machine["status"] = {
        "phase": "Running",
        "nodeRef": {"name": "node-1"},
        "nodeInfo": {"kubeletVersion": "v1.28.5"},
        "failureDomain": "fd-zone-a",
    }
    del machine["spec"]["failureDomain"]
    (m,) = inventory(objects, "v1beta2").machines
    assert (m.phase, m.node_name, m.node_version, m.failure_domain, m.deleting) == (
        "Running",
        "node-1",
        "v1.28.5",
        "fd-zone-a",
        True,
    )
    assert m.infrastructure_ref == Ref(
        "infrastructure.cluster.x-k8s.io", "CloudStackMachine", "c1-control-plane-0", "default"
    )


def test_failure_domain_tenancy_fields() -> None:
    objects = render_cluster("c1")
    fd = of_kind(objects, "CloudStackCluster")["spec"]["failureDomains"][0]
    fd.update(account="acct", domain="ROOT/sub", project="proj")
    fd["zone"] = {"id": "zone-uuid", "network": {"id": "net-uuid", "name": "net-a", "type": "Isolated"}}
    fd["acsEndpoint"] = {"name": "creds"}  # namespace left out: the cluster's own applies
    (parsed,) = inventory(objects).failure_domains
    assert (parsed.account, parsed.domain, parsed.project) == ("acct", "ROOT/sub", "proj")
    assert (parsed.zone.id, parsed.zone.name) == ("zone-uuid", "")
    assert (parsed.network.id, parsed.network.type) == ("net-uuid", "Isolated")
    assert str(parsed.credentials) == "default/creds"


def test_disk_offering_from_the_upstream_flavor() -> None:
    objects = render_cluster("c1", flavor="cluster-template-with-disk-offering.yaml")
    inv = inventory(objects)
    assert inv.control_plane is not None and inv.control_plane.machine_template is not None
    disk = inv.control_plane.machine_template.disk_offering
    assert disk is not None
    assert (disk.offering.name, disk.mount_path, disk.device, disk.filesystem, disk.label) == (
        "Custom",
        "/data",
        "/dev/vdb",
        "ext4",
        "data_disk",
    )


def test_empty_disk_offering_as_go_clients_write_it_means_none() -> None:
    csmt = of_kind(render_cluster("c1"), "CloudStackMachineTemplate")
    csmt["spec"]["template"]["spec"]["diskOffering"] = {
        "id": "",
        "name": "",
        "mountPath": "",
        "device": "",
        "filesystem": "",
        "label": "",
    }
    csmt["spec"]["template"]["spec"]["sshKey"] = ""
    template = parse_machine_template(csmt)
    assert template.disk_offering is None
    assert template.ssh_key == ""


def test_machine_template_v1beta3_fields() -> None:
    csmt = of_kind(render_cluster("c1"), "CloudStackMachineTemplate")
    csmt["spec"]["template"]["spec"].update(
        template={"id": "tpl-uuid", "name": "ubuntu-2204-kube-v1.28.5"},
        affinity="anti",
        affinityGroupIDs=["ag1", "ag2"],
        details={"nicAdapter": "e1000"},
        networks=[{"name": "net-a", "ip": "10.1.1.5"}],
        failureDomainName="fd-zone-a",
        uncompressedUserData=True,
    )
    template = parse_machine_template(csmt)
    assert str(template.cloudstack_template) == "ubuntu-2204-kube-v1.28.5 (tpl-uuid)"
    assert template.affinity == "anti" and template.affinity_group_ids == ("ag1", "ag2")
    assert dict(template.details) == {"nicAdapter": "e1000"}
    assert [(n.name, n.ip) for n in template.networks] == [("net-a", "10.1.1.5")]
    assert template.failure_domain_name == "fd-zone-a"
    assert template.spec["uncompressedUserData"] is True


def _upgraded_as_capc_e2e_does(
    objects: list[dict[str, Any]], version: str, image: str
) -> list[dict[str, Any]]:
    """What CAPC's own e2e upgrade applies: new CSMTs `<name>-control-plane-upgraded` and `<name>-md-1`
    with the new image, and the control plane and deployment pointing at them with the new version."""
    after = copy.deepcopy(objects)
    kcp = next(o for o in after if o["kind"] == "KubeadmControlPlane")
    md = next(o for o in after if o["kind"] == "MachineDeployment")
    renames = {
        kcp["spec"]["machineTemplate"]["infrastructureRef"]["name"]: f"{kcp['metadata']['name']}-upgraded",
        md["spec"]["template"]["spec"]["infrastructureRef"]["name"]: md["metadata"]["name"][:-1] + "1",
    }
    for csmt in [o for o in after if o["kind"] == "CloudStackMachineTemplate"]:
        clone = copy.deepcopy(csmt)
        clone["metadata"]["name"] = renames[csmt["metadata"]["name"]]
        clone["spec"]["template"]["spec"]["template"] = {"name": image}
        after.append(clone)
    kcp["spec"]["version"] = version
    kcp["spec"]["machineTemplate"]["infrastructureRef"]["name"] = renames[
        kcp["spec"]["machineTemplate"]["infrastructureRef"]["name"]
    ]
    md["spec"]["template"]["spec"]["version"] = version
    md["spec"]["template"]["spec"]["infrastructureRef"]["name"] = renames[
        md["spec"]["template"]["spec"]["infrastructureRef"]["name"]
    ]
    return after


def test_capc_e2e_style_upgrade_points_at_the_new_templates() -> None:
    """CAPC's e2e upgrade: after the apply both generations of CSMTs exist; only the new ones are in use."""
    before = render_cluster("e2e", version="v1.28.5")
    inv = inventory(_upgraded_as_capc_e2e_does(before, "v1.29.3", "ubuntu-2204-kube-v1.29.3"))
    assert inv.problems == ()
    assert inv.control_plane is not None and inv.control_plane.version == "v1.29.3"
    assert {t.name for t in inv.machine_templates_in_use()} == {"e2e-control-plane-upgraded", "e2e-md-1"}
    assert {t.name for t in inv.namespace_templates} == {
        "e2e-control-plane",
        "e2e-control-plane-upgraded",
        "e2e-md-0",
        "e2e-md-1",
    }
    assert inv.machine_deployments[0].machine_template is not None
    assert inv.machine_deployments[0].machine_template.cloudstack_template.name == "ubuntu-2204-kube-v1.29.3"
    before_inv = inventory(before)
    assert before_inv.control_plane is not None and before_inv.control_plane.version == "v1.28.5"
    assert before_inv.machine_deployments[0].version == "v1.28.5"


def test_empty_input_gives_no_inventories() -> None:
    assert build_inventories(RawObjects(), "v1beta2") == ()


def test_a_template_in_another_namespace_is_refused_as_such_not_as_missing() -> None:
    objects = render_cluster("c1", md_count=1)
    of_kind(objects, "MachineDeployment", "c1-md-0")["spec"]["template"]["spec"]["infrastructureRef"][
        "namespace"
    ] = "shared"
    of_kind(objects, "KubeadmControlPlane")["spec"]["machineTemplate"]["infrastructureRef"]["namespace"] = (
        "shared"
    )
    shared = copy.deepcopy(of_kind(objects, "CloudStackMachineTemplate", "c1-md-0"))
    shared["metadata"]["namespace"] = "shared"  # even when it exists there
    inv = inventory([*objects, shared])
    messages = sorted(str(p) for p in inv.problems)
    assert messages == [
        "KubeadmControlPlane/default/c1-control-plane: machine template "
        "CloudStackMachineTemplate/c1-control-plane is in namespace shared: Cluster API only follows "
        "references within the object's own namespace (default); copy the template there and point at "
        "the copy",
        "MachineDeployment/default/c1-md-0: machine template CloudStackMachineTemplate/c1-md-0 is in "
        "namespace shared: Cluster API only follows references within the object's own namespace (default); "
        "copy the template there and point at the copy",
    ]
    assert inv.machine_deployments[0].machine_template is None
