"""The upgrade planner on concrete scenes: steps, order, templates, names, blockers, resume. No servers."""

from __future__ import annotations

import json

import pytest

from kubectl_capc.domain.errors import PlanError, UsageError
from kubectl_capc.domain.model import CloudStackTemplateRow, thaw
from kubectl_capc.domain.plan import (
    CreateMachineTemplate,
    EnsureImage,
    ImageSource,
    PatchObject,
    WaitRollout,
    ZoneState,
)
from kubectl_capc.domain.planner import clone_machine_template, comparable_spec
from kubectl_capc.domain.records import CLONED_FROM, KUBERNETES_VERSION
from kubectl_capc.domain.versions import parse_version
from tests.support.planner_scenes import (
    TWO_ZONES,
    all_steps,
    cluster,
    converge,
    copy_objects,
    execute,
    first_segment,
    images,
    listing,
    named,
    of_kind,
    plan,
    set_version_and_template,
)

CAPIS = ["v1beta1", "v1beta2"]


def summary(steps: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(step.action, step.subject) for step in steps]


@pytest.mark.parametrize("capi", CAPIS)
def test_one_minor_with_three_control_plane_replicas_and_two_machine_deployments(capi: str) -> None:
    objects = cluster(capi)
    result = plan(objects, "v1.29.3", listing(images("v1.28.5", "v1.29.3")))
    assert result.target == parse_version("v1.29.3")
    assert (result.blockers, result.changes_pending, len(result.hops)) == ((), True, 1)
    assert summary(all_steps(result)) == [
        ("EnsureImage", "CloudStack template ubuntu-2204-kube-v1.29.3"),
        ("CreateMachineTemplate", "CloudStackMachineTemplate/c1-control-plane-v1-29-3"),
        ("CreateMachineTemplate", "CloudStackMachineTemplate/c1-md-0-v1-29-3"),
        ("CreateMachineTemplate", "CloudStackMachineTemplate/c1-md-1-v1-29-3"),
        ("Patch", "KubeadmControlPlane/c1-control-plane"),
        ("WaitRollout", "KubeadmControlPlane/c1-control-plane"),
        ("Patch", "MachineDeployment/c1-md-0"),
        ("WaitRollout", "MachineDeployment/c1-md-0"),
        ("Patch", "MachineDeployment/c1-md-1"),
        ("WaitRollout", "MachineDeployment/c1-md-1"),
    ]
    patch = next(s for s in all_steps(result) if isinstance(s, PatchObject))
    kcp = named(objects, "KubeadmControlPlane", "c1-control-plane")
    assert (patch.version_from, patch.version_to) == ("v1.28.5", "v1.29.3")
    assert (patch.template_from, patch.template_to) == ("c1-control-plane", "c1-control-plane-v1-29-3")
    assert patch.resource_version == kcp["metadata"]["resourceVersion"]
    ensure = all_steps(result)[0]
    assert isinstance(ensure, EnsureImage) and ensure.ready
    assert [z.failure_domain for z in ensure.zones] == ["fd-zone-a", "fd-zone-b"]


def test_new_template_changes_only_the_image_and_keeps_everything_else() -> None:
    objects = cluster()
    source = named(objects, "CloudStackMachineTemplate", "c1-md-0")
    spec = source["spec"]["template"]["spec"]
    spec.update(
        template={"id": "old-id", "name": "ubuntu-2204-kube-v1.28.5"},
        diskOffering={"name": "Custom", "customSizeInGB": 50, "mountPath": "/data", "device": "/dev/vdb",
                      "filesystem": "ext4", "label": "data"},
        details={"rootDiskController": "scsi"},
        networks=[{"name": "net-extra"}],
        affinity="anti",
        sshKey="capc-key",
        uncompressedUserData=True,
    )  # fmt: skip
    source["spec"]["template"]["metadata"] = {"labels": {"pool": "a"}}
    source["metadata"].update(
        labels={"team": "blue"},
        annotations={
            "cluster.x-k8s.io/conversion-data": "{}",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "note": "kept",
        },
        ownerReferences=[
            {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster", "name": "c1", "uid": "u1"},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "u2"},
        ],
        generation=4,
        creationTimestamp="2026-01-01T00:00:00Z",
        managedFields=[{"manager": "x"}],
        finalizers=["x"],
    )
    result = plan(objects, "v1.29.3", listing(images("v1.29.3")))
    create = next(
        s for s in all_steps(result) if isinstance(s, CreateMachineTemplate) and s.cloned_from == "c1-md-0"
    )
    manifest = thaw(create.manifest)
    expected_spec = {**spec, "template": {"name": "ubuntu-2204-kube-v1.29.3"}}
    assert manifest["spec"] == {"template": {"metadata": {"labels": {"pool": "a"}}, "spec": expected_spec}}
    assert manifest["metadata"] == {
        "name": "c1-md-0-v1-29-3",
        "namespace": "ns",
        "labels": {"team": "blue", "cluster.x-k8s.io/cluster-name": "c1"},
        "annotations": {"note": "kept", CLONED_FROM: "c1-md-0", KUBERNETES_VERSION: "v1.29.3"},
        "ownerReferences": [
            {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster", "name": "c1", "uid": "u1"}
        ],
    }
    assert manifest["apiVersion"] == "infrastructure.cluster.x-k8s.io/v1beta3"
    assert "status" not in manifest


def test_clone_does_not_change_its_source() -> None:
    source = {
        "metadata": {"name": "a", "annotations": {"x": "1"}},
        "spec": {"template": {"spec": {"template": {"name": "i"}}}},
    }
    before = json.dumps(source, sort_keys=True)
    clone_machine_template(source, name="b", image="j", version=parse_version("v1.29.3"), cluster="c1")
    assert json.dumps(source, sort_keys=True) == before


def test_minor_target_takes_the_newest_patch_present_in_every_zone() -> None:
    templates = listing(images("v1.29.3", "v1.29.1"))
    templates["fd-zone-a"] += tuple(listing(images("v1.29.7"))["fd-zone-a"])  # only in zone-a
    result = plan(cluster(), "v1.29", templates)
    assert result.target == parse_version("v1.29.3")
    assert "newest available" in result.hops[0].reason


def test_minor_target_with_no_template_anywhere_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match=r"no v1\.29 patch release is available"):
        plan(cluster(), "v1.29", listing(images("v1.28.5")))


@pytest.mark.parametrize("capi", CAPIS)
def test_two_hops_move_the_control_plane_one_minor_at_a_time(capi: str) -> None:
    templates = listing(images("v1.28.5", "v1.29.1", "v1.29.3", "v1.30.2"))
    result = plan(cluster(capi), "v1.30.2", templates)
    assert [str(h.version) for h in result.hops] == ["v1.29.3", "v1.30.2"]
    assert "one minor at a time" in result.hops[0].reason
    hop2 = result.hops[1].steps
    creates = [s for s in hop2 if isinstance(s, CreateMachineTemplate)]
    assert [(c.name, c.cloned_from, c.image) for c in creates] == [
        ("c1-control-plane-v1-30-2", "c1-control-plane-v1-29-3", "ubuntu-2204-kube-v1.30.2"),
        ("c1-md-0-v1-30-2", "c1-md-0-v1-29-3", "ubuntu-2204-kube-v1.30.2"),
        ("c1-md-1-v1-30-2", "c1-md-1-v1-29-3", "ubuntu-2204-kube-v1.30.2"),
    ]
    cp_patches = [s for _, s in result.steps() if isinstance(s, PatchObject) and s.is_control_plane]
    assert [(p.version_from, p.version_to) for p in cp_patches] == [
        ("v1.28.5", "v1.29.3"),
        ("v1.29.3", "v1.30.2"),
    ]


def test_missing_template_blocks_with_the_command_that_provides_it() -> None:
    templates = listing(images("v1.29.3"))
    templates["fd-zone-b"] = ()
    result = plan(cluster(), "v1.29.3", templates)
    (blocker,) = result.blockers
    assert blocker.subject == "CloudStack template ubuntu-2204-kube-v1.29.3"
    assert blocker.message == "missing in zone zone-b"
    assert "kubectl capc image register --cluster c1 --version v1.29.3 --prebuilt" in blocker.hint
    assert "--image-source" in blocker.hint
    ensure = all_steps(result)[0]
    assert isinstance(ensure, EnsureImage)
    assert [z.state for z in ensure.zones] == [ZoneState.READY, ZoneState.MISSING]


def test_missing_template_is_not_a_blocker_when_the_image_source_can_provide_it() -> None:
    result = plan(
        cluster(),
        "v1.29.3",
        listing(images("v1.28.5")),
        image_source=ImageSource.PREBUILT,
        obtainable=frozenset({parse_version("v1.29.3")}),
    )
    assert result.blockers == ()
    ensure = all_steps(result)[0]
    assert isinstance(ensure, EnsureImage) and not ensure.ready
    assert "source: prebuilt" in ensure.summary()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (2, "2 copies"),
        ("Download failed: 404", "failed in zone zone-a: Download failed: 404"),
    ],
)
def test_duplicate_or_failed_template_blocks(rows: object, message: str) -> None:
    templates = listing(images("v1.29.3"))
    row = templates["fd-zone-a"][0]
    if rows == 2:
        templates["fd-zone-a"] = (
            row,
            CloudStackTemplateRow("other", row.name, row.zone_id, row.zone_name, True),
        )
    else:
        templates["fd-zone-a"] = (
            CloudStackTemplateRow(row.id, row.name, row.zone_id, row.zone_name, False, str(rows)),
        )
    (blocker,) = plan(cluster(), "v1.29.3", templates, image_source=ImageSource.PREBUILT).blockers
    assert message in blocker.message


def test_downloading_template_is_waited_for_not_blocked() -> None:
    result = plan(cluster(), "v1.29.3", listing(images("v1.29.3"), ready=False, status="45% Downloaded"))
    assert result.blockers == ()
    ensure = all_steps(result)[0]
    assert isinstance(ensure, EnsureImage) and not ensure.ready
    assert {z.state for z in ensure.zones} == {ZoneState.IN_PROGRESS}


def test_offline_plan_assumes_templates_and_says_so() -> None:
    result = plan(cluster(), "v1.29.3", None)
    assert result.blockers == ()
    assert any("not asked" in note for note in result.notes)
    ensure = all_steps(result)[0]
    assert isinstance(ensure, EnsureImage) and {z.state for z in ensure.zones} == {ZoneState.NOT_CHECKED}


def test_nothing_to_do_at_the_target() -> None:
    result = plan(cluster(version="v1.29.3"), "v1.29.3", listing(images("v1.29.3")))
    assert result.done and not result.changes_pending and result.hops == ()


def test_downgrade_is_refused() -> None:
    with pytest.raises(PlanError, match="refusing to downgrade"):
        plan(cluster(version="v1.29.3"), "v1.28.5", listing(images("v1.28.5")))


def test_topology_managed_cluster_is_refused() -> None:
    objects = cluster()
    named(objects, "Cluster", "c1")["spec"]["topology"] = {"classRef": {"name": "cc"}, "version": "v1.28.5"}
    with pytest.raises(PlanError, match="topology-managed"):
        plan(objects, "v1.29.3", listing(images("v1.29.3")))


def test_dangling_template_reference_is_refused() -> None:
    objects = [
        o for o in cluster() if o["metadata"]["name"] != "c1-md-1" or o["kind"] != "CloudStackMachineTemplate"
    ]
    with pytest.raises(PlanError, match="c1-md-1 not found"):
        plan(objects, "v1.29.3", listing(images("v1.29.3")))


def test_paused_objects_block() -> None:
    objects = cluster()
    named(objects, "MachineDeployment", "c1-md-1")["metadata"]["annotations"] = {
        "cluster.x-k8s.io/paused": ""
    }
    (blocker,) = plan(objects, "v1.29.3", listing(images("v1.29.3"))).blockers
    assert (blocker.subject, blocker.message) == ("MachineDeployment/c1-md-1", "is paused")


def test_parallel_batches_machine_deployments_between_waits() -> None:
    objects = cluster(md_count=3)
    result = plan(objects, "v1.29.3", listing(images("v1.29.3")), parallel=2)
    tail = [(s.action, getattr(s, "names", getattr(s, "name", ""))) for s in all_steps(result)[-5:]]
    assert tail == [
        ("Patch", "c1-md-0"),
        ("Patch", "c1-md-1"),
        ("WaitRollout", ("c1-md-0", "c1-md-1")),
        ("Patch", "c1-md-2"),
        ("WaitRollout", ("c1-md-2",)),
    ]


def test_parallel_must_be_positive() -> None:
    with pytest.raises(UsageError):
        plan(cluster(), "v1.29.3", listing(images("v1.29.3")), parallel=0)


def test_machine_deployments_sharing_a_template_share_the_new_one() -> None:
    objects = cluster()
    md1 = named(objects, "MachineDeployment", "c1-md-1")
    md1["spec"]["template"]["spec"]["infrastructureRef"]["name"] = "c1-md-0"
    result = plan(objects, "v1.29.3", listing(images("v1.29.3")))
    creates = [s.name for s in all_steps(result) if isinstance(s, CreateMachineTemplate)]
    assert creates == ["c1-control-plane-v1-29-3", "c1-md-0-v1-29-3"]
    patches = {s.name: s.template_to for s in all_steps(result) if isinstance(s, PatchObject)}
    assert patches["c1-md-1"] == patches["c1-md-0"] == "c1-md-0-v1-29-3"


def test_existing_template_with_the_wanted_spec_is_reused() -> None:
    objects = cluster()
    first = plan(objects, "v1.29.3", listing(images("v1.29.3")))
    create = next(s for s in all_steps(first) if isinstance(s, CreateMachineTemplate))
    execute(objects, create)  # an earlier, interrupted run created it
    second = plan(objects, "v1.29.3", listing(images("v1.29.3")))
    reused = next(
        s for s in all_steps(second) if isinstance(s, CreateMachineTemplate) and s.name == create.name
    )
    assert reused.exists and not reused.writes
    assert "reused" in reused.summary()
    assert second.covered_by(first)


def test_name_taken_by_another_spec_moves_to_the_next_free_name() -> None:
    objects = cluster()
    squatter = copy_objects([named(objects, "CloudStackMachineTemplate", "c1-control-plane")])[0]
    squatter["metadata"]["name"] = "c1-control-plane-v1-29-3"
    squatter["spec"]["template"]["spec"]["offering"] = {"name": "Huge"}
    objects.append(squatter)
    result = plan(objects, "v1.29.3", listing(images("v1.29.3")))
    create = next(s for s in all_steps(result) if isinstance(s, CreateMachineTemplate))
    assert create.name == "c1-control-plane-v1-29-3-2"
    assert "c1-control-plane-v1-29-3 exists with another spec" in create.note
    patch = next(s for s in all_steps(result) if isinstance(s, PatchObject))
    assert patch.template_to == "c1-control-plane-v1-29-3-2"


def test_empty_go_fields_compare_as_unset() -> None:
    a = {
        "template": {
            "spec": {
                "sshKey": "",
                "diskOffering": {"name": "", "customSizeInGB": 0},
                "offering": {"name": "M"},
            }
        }
    }
    b = {"template": {"spec": {"offering": {"name": "M"}}}}
    assert comparable_spec(a) == comparable_spec(b)
    assert comparable_spec(b) != comparable_spec({"template": {"spec": {"offering": {"name": "L"}}}})


def test_pinned_image_at_the_same_version_rotates_templates_only() -> None:
    custom = "ubuntu-2204-kube-v1.28.5-hardened"
    result = plan(
        cluster(),
        "v1.28.5",
        {fd: rows + listing([custom])[fd] for fd, rows in listing(images("v1.28.5")).items()},
        image=custom,
    )
    patches = [s for s in all_steps(result) if isinstance(s, PatchObject)]
    assert [(p.name, p.version_from, p.version_to, p.image_to) for p in patches] == [
        ("c1-control-plane", "v1.28.5", "v1.28.5", custom),
        ("c1-md-0", "v1.28.5", "v1.28.5", custom),
        ("c1-md-1", "v1.28.5", "v1.28.5", custom),
    ]
    creates = [s.name for s in all_steps(result) if isinstance(s, CreateMachineTemplate)]
    assert creates == ["c1-control-plane-v1-28-5", "c1-md-0-v1-28-5", "c1-md-1-v1-28-5"]
    assert "changes image" in result.hops[0].reason


def test_pinned_image_for_another_version_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"is for v1\.29\.2"):
        plan(cluster(), "v1.29.3", listing(images("v1.29.2")), image="ubuntu-2204-kube-v1.29.2")


def test_pinned_custom_image_needs_an_exact_version() -> None:
    with pytest.raises(UsageError, match="ambiguous"):
        plan(cluster(), "v1.29", listing(["golden"]), image="golden")
    result = plan(cluster(), "v1.29.3", listing(["golden"]), image="golden")
    assert {s.image_to for s in all_steps(result) if isinstance(s, PatchObject)} == {"golden"}


def test_custom_current_image_without_pin_is_a_plan_error_pointing_at_image() -> None:
    objects = cluster()
    for csmt in of_kind(objects, "CloudStackMachineTemplate"):
        csmt["spec"]["template"]["spec"]["template"]["name"] = "golden-image"
    with pytest.raises(PlanError, match="--image"):
        plan(objects, "v1.29.3", listing(images("v1.29.3")))


def test_template_referenced_by_id_is_named_from_the_listing() -> None:
    objects = cluster()
    templates = listing(images("v1.28.5", "v1.29.3"))
    old_id = templates["fd-zone-a"][0].id
    for csmt in of_kind(objects, "CloudStackMachineTemplate"):
        csmt["spec"]["template"]["spec"]["template"] = {"id": old_id}
    result = plan(objects, "v1.29.3", templates)
    create = next(s for s in all_steps(result) if isinstance(s, CreateMachineTemplate))
    assert create.image_from == "ubuntu-2204-kube-v1.28.5"
    assert thaw(create.manifest)["spec"]["template"]["spec"]["template"] == {
        "name": "ubuntu-2204-kube-v1.29.3"
    }


@pytest.mark.parametrize("capi", CAPIS)
def test_resume_after_the_control_plane_patch_waits_then_moves_workers(capi: str) -> None:
    objects = cluster(capi)
    templates = listing(images("v1.29.3"))
    first = plan(objects, "v1.29.3", templates)
    steps = all_steps(first)
    for step in steps[:5]:  # ensure, three creates, the control-plane patch: killed before the wait
        execute(objects, step)
    resumed = plan(objects, "v1.29.3", templates)
    assert resumed.covered_by(first)
    assert summary(all_steps(resumed)) == [
        ("WaitRollout", "KubeadmControlPlane/c1-control-plane"),
        ("EnsureImage", "CloudStack template ubuntu-2204-kube-v1.29.3"),
        ("CreateMachineTemplate", "CloudStackMachineTemplate/c1-md-0-v1-29-3"),
        ("CreateMachineTemplate", "CloudStackMachineTemplate/c1-md-1-v1-29-3"),
        ("Patch", "MachineDeployment/c1-md-0"),
        ("WaitRollout", "MachineDeployment/c1-md-0"),
        ("Patch", "MachineDeployment/c1-md-1"),
        ("WaitRollout", "MachineDeployment/c1-md-1"),
    ]
    wait = all_steps(resumed)[0]
    assert isinstance(wait, WaitRollout) and wait.reason == "a rollout is already in progress"
    assert all(not s.writes for s in all_steps(resumed) if isinstance(s, CreateMachineTemplate))


def test_resume_waits_for_a_rollout_in_progress_before_starting_the_next() -> None:
    objects = cluster()
    templates = listing(images("v1.29.3"))
    steps = all_steps(plan(objects, "v1.29.3", templates))
    for step in steps[:7]:  # ... the control plane is done, c1-md-0 patched, killed during its wait
        execute(objects, step)
    resumed = plan(objects, "v1.29.3", templates)
    assert summary(all_steps(resumed))[:1] == [("WaitRollout", "MachineDeployment/c1-md-0")]
    assert summary(all_steps(resumed))[-2:] == [
        ("Patch", "MachineDeployment/c1-md-1"),
        ("WaitRollout", "MachineDeployment/c1-md-1"),
    ]


def test_resume_during_the_last_rollout_only_waits() -> None:
    objects = cluster()
    templates = listing(images("v1.29.3"))
    steps = all_steps(plan(objects, "v1.29.3", templates))
    for step in steps[:-1]:
        execute(objects, step)
    resumed = plan(objects, "v1.29.3", templates)
    assert not resumed.changes_pending and not resumed.done
    assert summary(all_steps(resumed)) == [("WaitRollout", "MachineDeployment/c1-md-1")]


@pytest.mark.parametrize("capi", CAPIS)
def test_converges_and_then_has_nothing_to_do(capi: str) -> None:
    objects = cluster(capi)
    templates = listing(images("v1.29.3", "v1.30.2"))
    writes = converge(objects, "v1.30.2", templates)
    assert len([w for w in writes if isinstance(w, CreateMachineTemplate)]) == 6
    assert plan(objects, "v1.30.2", templates).done
    kcp = named(objects, "KubeadmControlPlane", "c1-control-plane")
    assert kcp["spec"]["version"] == "v1.30.2"
    names = sorted(o["metadata"]["name"] for o in of_kind(objects, "CloudStackMachineTemplate"))
    assert len(names) == len(set(names)) == 9


def test_concurrent_version_change_makes_a_different_plan() -> None:
    objects = cluster()
    templates = listing(images("v1.29.3"))
    approved = plan(objects, "v1.29.3", templates)
    moved = named(objects, "MachineDeployment", "c1-md-1")
    set_version_and_template(moved, "v1.28.5", "c1-md-0")  # someone repointed it meanwhile
    replanned = plan(objects, "v1.29.3", templates)
    assert not replanned.covered_by(approved)


def test_status_only_changes_do_not_change_the_plan() -> None:
    objects = cluster()
    templates = listing(images("v1.29.3"))
    approved = plan(objects, "v1.29.3", templates)
    for obj in of_kind(objects, "MachineDeployment"):
        obj["metadata"]["resourceVersion"] += "9"
    replanned = plan(objects, "v1.29.3", templates)
    assert replanned == approved and replanned.covered_by(approved)
    new_rv = next(
        s for s in all_steps(replanned) if isinstance(s, PatchObject) and s.name == "c1-md-0"
    ).resource_version
    assert new_rv.endswith("9")


def test_workers_too_far_behind_catch_up_first() -> None:
    objects = cluster(version="v1.29.3", worker_versions=["v1.26.1", "v1.29.3"])
    templates = listing(images("v1.29.3", "v1.30.2"))
    result = plan(objects, "v1.30.2", templates)
    assert [str(h.version) for h in result.hops] == ["v1.29.3", "v1.30.2"]
    first = all_steps(result)[: len(result.hops[0].steps)]
    assert ("Patch", "MachineDeployment/c1-md-0") in summary(first)
    assert ("Patch", "KubeadmControlPlane/c1-control-plane") not in summary(first)


def test_plan_document_is_typed_and_serialisable() -> None:
    result = plan(cluster(), "v1.29", listing(images("v1.29.3")))
    document = result.to_document()
    assert (document["apiVersion"], document["kind"]) == ("capc.kubectl.io/v1alpha1", "UpgradePlan")
    assert document["spec"] == {"requested": "v1.29", "target": "v1.29.3", "imageSource": "existing"}
    assert document["status"]["current"]["machineDeployments"] == {"c1-md-0": "v1.28.5", "c1-md-1": "v1.28.5"}
    actions = [s["action"] for s in document["status"]["hops"][0]["steps"]]
    assert actions[:2] == ["EnsureImage", "CreateMachineTemplate"]
    json.dumps(document)
    assert len(result.table_rows()) == len(all_steps(result))


def test_first_segment_stops_at_the_first_wait() -> None:
    result = plan(cluster(), "v1.29.3", listing(images("v1.29.3")))
    assert [s.action for s in first_segment(result)][-2:] == ["Patch", "WaitRollout"]
    assert TWO_ZONES[0].fd_name == "fd-zone-a"
