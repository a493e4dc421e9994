"""`kubectl capc image-upgrade` on the real test bed, in both CAPI profiles.

The rollout simulator plays CAPI: it rolls machines after a version or template change and reports the
progress in status. The CloudStack double (seeded with v1.28.5 and v1.29.3 templates in two zones)
answers the template listings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kubectl_capc.domain.records import (
    CHANGED_AT,
    CLONED_FROM,
    KUBERNETES_VERSION,
    PREVIOUS_TEMPLATE,
    PREVIOUS_VERSION,
)
from tests.support.upgrade_support import (
    cli,
    create_cluster,
    ensure_cloudstack_template,
    get,
    history,
    names,
    patch,
    resource_versions,
    templates_need_a_cost_center,
    version_and_template,
)
from tests.testenv.bed import TestBed

ORIGINAL_TEMPLATES = ["c1-control-plane", "c1-md-0", "c1-md-1"]


def upgrade(bed: TestBed, namespace: str, *args: str) -> tuple[int, str, str]:
    done = cli(bed, "image-upgrade", "c1", "-n", namespace, *args)
    return done.returncode, done.stdout, done.stderr


def test_one_minor_with_three_control_plane_replicas_and_two_machine_deployments(
    testenv: TestBed, namespace: str
) -> None:
    create_cluster(testenv, namespace, control_plane_replicas=3)
    code, out, err = upgrade(testenv, namespace, "--to", "v1.29.3", "--yes")
    assert code == 0, err
    assert "KubeadmControlPlane/c1-control-plane" in out and "accepted by the API server (dryRun=All)" in out
    assert f"cluster {namespace}/c1 is at v1.29.3" in err

    kcp = get(testenv, namespace, "KubeadmControlPlane", "c1-control-plane")
    assert version_and_template(kcp) == ("v1.29.3", "c1-control-plane-v1-29-3")
    annotations = kcp["metadata"]["annotations"]
    assert annotations[PREVIOUS_VERSION] == "v1.28.5"
    assert annotations[PREVIOUS_TEMPLATE] == "c1-control-plane"
    assert annotations[CHANGED_AT].endswith("Z")
    (entry,) = history(kcp)
    assert (entry["fromImage"], entry["toImage"]) == ("ubuntu-2204-kube-v1.28.5", "ubuntu-2204-kube-v1.29.3")
    for md in ("c1-md-0", "c1-md-1"):
        obj = get(testenv, namespace, "MachineDeployment", md)
        assert version_and_template(obj) == ("v1.29.3", f"{md}-v1-29-3")
        assert obj["metadata"]["annotations"][PREVIOUS_TEMPLATE] == md
        assert obj["status"]["readyReplicas"] == 2

    assert names(testenv, namespace, "CloudStackMachineTemplate") == sorted(
        [*ORIGINAL_TEMPLATES, *(f"{n}-v1-29-3" for n in ORIGINAL_TEMPLATES)]
    )
    created = get(testenv, namespace, "CloudStackMachineTemplate", "c1-md-0-v1-29-3")
    source = get(testenv, namespace, "CloudStackMachineTemplate", "c1-md-0")
    assert created["spec"]["template"]["spec"] == {
        **source["spec"]["template"]["spec"],
        "template": {"name": "ubuntu-2204-kube-v1.29.3"},
    }
    assert created["metadata"]["annotations"][CLONED_FROM] == "c1-md-0"
    assert created["metadata"]["annotations"][KUBERNETES_VERSION] == "v1.29.3"

    again = upgrade(testenv, namespace, "--to", "v1.29.3", "--yes")
    assert again[0] == 0 and "nothing to do" in again[2]
    assert upgrade(testenv, namespace, "--to", "v1.29.3", "--dry-run")[0] == 0


def test_dry_run_changes_nothing_and_exits_1(testenv: TestBed, namespace: str) -> None:
    create_cluster(testenv, namespace)
    before = resource_versions(testenv, namespace)
    marker = sum(1 for _ in testenv.audit_log.open())
    code, out, err = upgrade(testenv, namespace, "--to", "v1.29.3", "--dry-run")
    assert code == 1, err
    assert out.count("accepted by the API server (dryRun=All)") == 6  # 3 templates, 1 control plane, 2 MDs
    assert "+  version: v1.29.3" in out or "+      version: v1.29.3" in out
    assert resource_versions(testenv, namespace) == before
    writes = []
    for index, line in enumerate(testenv.audit_log.open()):
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if index < marker or ref.get("namespace") != namespace or event.get("stage") != "ResponseComplete":
            continue
        if event["verb"] in ("create", "patch", "update") and not ref.get("subresource"):
            writes.append(event["requestURI"])
    assert len(writes) == 6 and all("dryRun=All" in uri for uri in writes), writes


def test_json_plan_is_a_typed_document(testenv: TestBed, namespace: str) -> None:
    create_cluster(testenv, namespace, md_count=1)
    code, out, err = upgrade(testenv, namespace, "--to", "v1.29", "--dry-run", "-o", "json")
    assert code == 1, err
    document = json.loads(out)
    assert (document["apiVersion"], document["kind"]) == ("capc.kubectl.io/v1alpha1", "UpgradePlan")
    assert document["spec"]["target"] == "v1.29.3"
    assert {entry["result"] for entry in document["status"]["serverDryRun"]} == {"accepted"}
    assert len(document["status"]["serverDryRun"]) == 4


def test_two_hops(testenv: TestBed, namespace: str) -> None:
    ensure_cloudstack_template(testenv, "ubuntu-2204-kube-v1.30.2")
    create_cluster(testenv, namespace)
    code, out, err = upgrade(testenv, namespace, "--to", "v1.30.2", "--yes")
    assert code == 0, err
    assert "hop 1 to v1.29.3" in out and "hop 2 to v1.30.2" in out
    assert "not checked by the API server: depends on hop 1" in out
    kcp = get(testenv, namespace, "KubeadmControlPlane", "c1-control-plane")
    assert version_and_template(kcp) == ("v1.30.2", "c1-control-plane-v1-30-2")
    assert [(e["fromVersion"], e["toVersion"]) for e in history(kcp)] == [
        ("v1.29.3", "v1.30.2"),
        ("v1.28.5", "v1.29.3"),
    ]
    md = get(testenv, namespace, "MachineDeployment", "c1-md-1")
    assert version_and_template(md) == ("v1.30.2", "c1-md-1-v1-30-2")
    expected = [*ORIGINAL_TEMPLATES, *(f"{n}-v1-29-3" for n in ORIGINAL_TEMPLATES)]
    expected += [f"{n}-v1-30-2" for n in ORIGINAL_TEMPLATES]
    assert names(testenv, namespace, "CloudStackMachineTemplate") == sorted(expected)
    assert (
        get(testenv, namespace, "CloudStackMachineTemplate", "c1-md-1-v1-30-2")["metadata"]["annotations"][
            CLONED_FROM
        ]
        == "c1-md-1-v1-29-3"
    )


@pytest.fixture
def cost_center_policy(testenv: TestBed, namespace: str) -> Iterator[None]:
    """A site policy added after the cluster was made: new templates need a cost-center label."""
    with templates_need_a_cost_center(testenv, namespace):
        yield


def test_admission_rejection_surfaces_in_preview(
    testenv: TestBed, namespace: str, request: pytest.FixtureRequest
) -> None:
    create_cluster(testenv, namespace)
    request.getfixturevalue("cost_center_policy")
    before = resource_versions(testenv, namespace)
    code, out, err = upgrade(testenv, namespace, "--to", "v1.29.3", "--yes")
    assert code == 5, err
    assert out.count("REJECTED by the API server") == 3
    assert "need the label example.com/cost-center" in out
    assert "the plan cannot be applied" in err and "nothing was changed" in err
    assert out.count("accepted by the API server (dryRun=All)") == 3  # the three patches
    assert resource_versions(testenv, namespace) == before


def test_missing_template_blocks_and_names_the_command_that_provides_it(
    testenv: TestBed, namespace: str
) -> None:
    create_cluster(testenv, namespace, md_count=1)
    before = resource_versions(testenv, namespace)
    code, out, err = upgrade(testenv, namespace, "--to", "v1.29.9", "--yes")
    assert code == 5, err
    assert "BLOCKED CloudStack template ubuntu-2204-kube-v1.29.9: missing in zone zone1, zone2" in out
    assert "kubectl capc image register --cluster c1 --version v1.29.9 --prebuilt" in out
    assert resource_versions(testenv, namespace) == before


def test_without_a_terminal_and_without_yes_it_refuses(testenv: TestBed, namespace: str) -> None:
    create_cluster(testenv, namespace, md_count=1)
    before = resource_versions(testenv, namespace)
    code, _, err = upgrade(testenv, namespace, "--to", "v1.29.3")
    assert code == 2
    assert "not a terminal" in err and "--yes" in err
    assert resource_versions(testenv, namespace) == before


def test_stalled_rollout_times_out_with_what_is_stuck_then_resumes(testenv: TestBed, namespace: str) -> None:
    create_cluster(
        testenv,
        namespace,
        md_count=1,
        annotate={"c1-control-plane": {"testenv.kubectl-capc.io/fail": "ImagePullFailed"}},
    )
    code, _, err = upgrade(testenv, namespace, "--to", "v1.29.3", "--yes", "--timeout", "control-plane=3s")
    assert code == 6, err
    assert "KubeadmControlPlane/c1-control-plane did not finish rolling out to v1.29.3 within 3s" in err
    assert "MachinesReady=False" in err and "ImagePullFailed" in err
    assert "re-run the same command to continue waiting" in err
    assert f"kubectl capc rollback c1 -n {namespace}" in err
    md = get(testenv, namespace, "MachineDeployment", "c1-md-0")
    assert version_and_template(md)[0] == "v1.28.5"  # workers wait for the control plane

    patch(testenv, namespace, "KubeadmControlPlane", "c1-control-plane",
          {"metadata": {"annotations": {"testenv.kubectl-capc.io/fail": None}}})  # fmt: skip
    code, _, err = upgrade(testenv, namespace, "--to", "v1.29.3", "--yes")
    assert code == 0, err
    assert version_and_template(get(testenv, namespace, "MachineDeployment", "c1-md-0"))[0] == "v1.29.3"
    assert len(history(get(testenv, namespace, "KubeadmControlPlane", "c1-control-plane"))) == 1


def test_no_wait_stops_at_the_first_rollout_and_a_rerun_finishes(testenv: TestBed, namespace: str) -> None:
    create_cluster(testenv, namespace)
    code, _, err = upgrade(testenv, namespace, "--to", "v1.29.3", "--yes", "--no-wait")
    assert code == 0, err
    assert "not waiting for the rollout" in err
    assert (
        version_and_template(get(testenv, namespace, "KubeadmControlPlane", "c1-control-plane"))[0]
        == "v1.29.3"
    )
    assert version_and_template(get(testenv, namespace, "MachineDeployment", "c1-md-0"))[0] == "v1.28.5"
    code, _, err = upgrade(testenv, namespace, "--to", "v1.29.3", "--yes", "--parallel", "2")
    assert code == 0, err
    assert "WaitRollout MachineDeployment/c1-md-0,c1-md-1: done" in err
