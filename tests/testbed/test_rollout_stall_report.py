"""A rollout that does not finish ends `image-upgrade` with exit code 6 and names the Machines holding it up.

On the real test bed, in both CAPI profiles. The rollout simulator keeps each rolled-out owner's Machines
as CAPI would: with `testenv.kubectl-capc.io/fail` the replacement Machine stays Provisioning at the new
version; with `testenv.kubectl-capc.io/stall-at` the Machines not yet replaced stay Running at the old
version. The report must list exactly the Machines that are not Running at the target version, each as
`NAME (PHASE, VERSION)` (docs/troubleshooting.md).
"""

from __future__ import annotations

import re

from kubectl_capc.domain.errors import ExitCode
from tests.support.upgrade_support import cli, create_cluster, custom
from tests.testenv.bed import TestBed
from tests.testenv.rollout_model import FAIL_ANNOTATION, STALL_ANNOTATION

TARGET = "v1.29.3"


def machines(bed: TestBed, namespace: str, selector: str) -> list[tuple[str, str, str]]:
    """(name, phase, version) of the Machines the label selector picks."""
    items = custom(bed).list_namespaced_custom_object(
        "cluster.x-k8s.io", bed.capi, namespace, "machines", label_selector=selector
    )["items"]
    return [(m["metadata"]["name"], m["status"]["phase"], m["spec"]["version"]) for m in items]


def named_in_report(stderr: str, owner: str) -> set[str]:
    """The `machines: ...` entries of the report part about `owner` (parts are joined with ` | `)."""
    (part,) = [p for p in stderr.split(" | ") if p.lstrip().startswith(owner) or f"error: {owner}" in p]
    found = re.search(r"; machines: (.*?)(?:; |$)", part)
    assert found, f"no machines listed for {owner}: {stderr}"
    return set(re.findall(r"\S+ \([^)]*\)", found.group(1)))


def upgrade(bed: TestBed, namespace: str, timeout: str) -> tuple[int, str]:
    done = cli(bed, "image-upgrade", "c1", "-n", namespace, "--to", TARGET, "--yes", "--timeout", timeout)
    return done.returncode, done.stderr


def test_a_failing_control_plane_replacement_is_named_with_the_old_machines(
    testenv: TestBed, namespace: str
) -> None:
    create_cluster(
        testenv, namespace, md_count=1, annotate={"c1-control-plane": {FAIL_ANNOTATION: "ImagePullFailed"}}
    )

    code, err = upgrade(testenv, namespace, "control-plane=2s")

    assert code == ExitCode.ROLLOUT, err
    assert f"KubeadmControlPlane/c1-control-plane did not finish rolling out to {TARGET} within 2s" in err
    found = machines(testenv, namespace, "cluster.x-k8s.io/control-plane-name=c1-control-plane")
    assert sorted((phase, version) for _, phase, version in found) == [
        ("Provisioning", TARGET), ("Running", "v1.28.5"), ("Running", "v1.28.5"), ("Running", "v1.28.5"),
    ]  # fmt: skip
    expected = {f"{name} ({phase}, {version})" for name, phase, version in found}
    assert named_in_report(err, "KubeadmControlPlane/c1-control-plane") == expected


def test_a_stalled_machine_deployment_names_only_the_machines_not_yet_replaced(
    testenv: TestBed, namespace: str
) -> None:
    create_cluster(testenv, namespace, md_count=1, annotate={"c1-md-0": {STALL_ANNOTATION: "1"}})

    code, err = upgrade(testenv, namespace, "machine-deployment=2s")

    assert code == ExitCode.ROLLOUT, err
    assert f"MachineDeployment/c1-md-0 did not finish rolling out to {TARGET} within 2s" in err
    found = machines(testenv, namespace, "cluster.x-k8s.io/deployment-name=c1-md-0")
    (replaced,) = [name for name, phase, version in found if (phase, version) == ("Running", TARGET)]
    (left,) = [f"{name} ({phase}, {version})" for name, phase, version in found if name != replaced]
    assert left.endswith("(Running, v1.28.5)")
    assert named_in_report(err, "MachineDeployment/c1-md-0") == {left}
    (report,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert replaced not in report  # progress lines before it may name it while it was being replaced
