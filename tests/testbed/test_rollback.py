"""`kubectl capc rollback` and `history` after real `image-upgrade` runs on the test bed, both CAPI profiles.

The rollout simulator plays CAPI; the CloudStack double lists the node images (v1.28.5 and v1.29.3 from
its seed, v1.28.9 added here for a same-minor upgrade).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml

from kubectl_capc.domain.model import ClusterInventory
from kubectl_capc.domain.records import ACTION_ROLLBACK, ACTION_UPGRADE, PREVIOUS_TEMPLATE, PREVIOUS_VERSION
from kubectl_capc.ops.options import ApplyOptions
from kubectl_capc.ops.rollback import KubeRollbackIO, Rollback
from tests.support.upgrade_support import (
    cli,
    create_cluster,
    ensure_cloudstack_template,
    get,
    history,
    patch,
    read,
    resource_versions,
    version_and_template,
    wait_for,
)
from tests.testenv.bed import TestBed
from tests.testenv.rollout_model import STALL_ANNOTATION

CP, MD0, MD1 = "c1-control-plane", "c1-md-0", "c1-md-1"
FAIL = "testenv.kubectl-capc.io/fail"


def run(bed: TestBed, namespace: str, *args: str) -> tuple[int, str, str]:
    done = cli(bed, *args, "c1", "-n", namespace)
    return done.returncode, done.stdout, done.stderr


def upgraded(bed: TestBed, namespace: str, to: str, *extra: str) -> int:
    code, _, err = run(bed, namespace, "image-upgrade", "--to", to, "--yes", *extra)
    assert code in (0, 6), err
    return code


def owners(bed: TestBed, namespace: str) -> dict[str, tuple[str, str]]:
    return {
        name: version_and_template(get(bed, namespace, kind, name))
        for kind, name in (
            ("KubeadmControlPlane", CP),
            ("MachineDeployment", MD0),
            ("MachineDeployment", MD1),
        )
    }


def test_same_minor_upgrade_rolls_back_workers_first_and_converges(testenv: TestBed, namespace: str) -> None:
    ensure_cloudstack_template(testenv, "ubuntu-2204-kube-v1.28.9")
    create_cluster(testenv, namespace)
    upgraded(testenv, namespace, "v1.28.9")
    assert owners(testenv, namespace)[CP] == ("v1.28.9", "c1-control-plane-v1-28-9")

    before = resource_versions(testenv, namespace)
    code, out, err = run(testenv, namespace, "rollback", "--dry-run")
    assert code == 1, err
    assert out.count("accepted by the API server (dryRun=All)") == 3
    assert "same-minor change v1.28.5 → v1.28.9" in out
    assert "+    version: v1.28.5" in out or "+      version: v1.28.5" in out
    assert resource_versions(testenv, namespace) == before

    code, _, err = run(testenv, namespace, "rollback", "--yes")
    assert code == 0, err
    starts = [
        line
        for line in err.splitlines()
        if line.startswith("[rollback] RollBack") and not line.endswith("done")
    ]
    assert [line.split(":")[0] for line in starts] == [
        "[rollback] RollBack MachineDeployment/c1-md-0",
        "[rollback] RollBack MachineDeployment/c1-md-1",
        "[rollback] RollBack KubeadmControlPlane/c1-control-plane",
    ]
    assert owners(testenv, namespace) == {
        CP: ("v1.28.5", "c1-control-plane"),
        MD0: ("v1.28.5", "c1-md-0"),
        MD1: ("v1.28.5", "c1-md-1"),
    }
    kcp = get(testenv, namespace, "KubeadmControlPlane", CP)
    assert kcp["metadata"]["annotations"][PREVIOUS_VERSION] == "v1.28.9"
    assert kcp["metadata"]["annotations"][PREVIOUS_TEMPLATE] == "c1-control-plane-v1-28-9"
    assert [(e["action"], e["toVersion"]) for e in history(kcp)] == [
        (ACTION_ROLLBACK, "v1.28.5"),
        (ACTION_UPGRADE, "v1.28.9"),
    ]
    assert not read(testenv, namespace).rollout_in_progress()

    code, _, err = run(testenv, namespace, "rollback", "--yes")
    assert (code, "nothing left to roll back" in err) == (0, True), err

    code, out, err = run(testenv, namespace, "history", "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    assert (document["apiVersion"], document["kind"]) == ("capc.kubectl.io/v1alpha1", "UpgradeHistory")
    rotations = [(r["action"], r["kind"], r["name"]) for r in document["rotations"]]
    assert [action for action, _, _ in rotations] == [ACTION_ROLLBACK] * 3 + [ACTION_UPGRADE] * 3
    assert rotations[0] == (ACTION_ROLLBACK, "KubeadmControlPlane", CP)  # the control plane went back last
    assert rotations[-1] == (ACTION_UPGRADE, "KubeadmControlPlane", CP)  # and was upgraded first
    assert document["rotations"][0]["image"] == {
        "from": "ubuntu-2204-kube-v1.28.9",
        "to": "ubuntu-2204-kube-v1.28.5",
    }


def test_unfinished_control_plane_minor_upgrade_goes_back(testenv: TestBed, namespace: str) -> None:
    create_cluster(testenv, namespace, annotate={CP: {FAIL: "ImagePullFailed"}})
    assert upgraded(testenv, namespace, "v1.29.3", "--timeout", "control-plane=3s") == 6
    assert owners(testenv, namespace)[CP] == ("v1.29.3", "c1-control-plane-v1-29-3")

    code, out, err = run(testenv, namespace, "rollback", "--yes", "-o", "yaml")
    assert code == 0, err
    document = yaml.safe_load(out)
    assert document["kind"] == "RollbackPlan"
    (go_back, wait) = document["status"]["steps"]
    assert (go_back["action"], go_back["name"], wait["action"]) == ("RollBack", CP, "WaitRollout")
    assert go_back["reason"].endswith("; rollout not completed (machines still run v1.28.5)")
    assert "MachineDeployment/c1-md-0: no upgrade recorded; it stays as it is" in document["status"]["notes"]
    assert document["status"]["serverDryRun"] == [
        {"object": f"KubeadmControlPlane/{CP}", "result": "accepted"}
    ]
    assert owners(testenv, namespace) == {
        CP: ("v1.28.5", "c1-control-plane"),
        MD0: ("v1.28.5", "c1-md-0"),
        MD1: ("v1.28.5", "c1-md-1"),
    }
    assert not read(testenv, namespace).rollout_in_progress()
    (entry, _) = history(get(testenv, namespace, "KubeadmControlPlane", CP))
    assert (entry["action"], entry["fromVersion"], entry["toVersion"]) == (
        ACTION_ROLLBACK,
        "v1.29.3",
        "v1.28.5",
    )


def test_completed_minor_upgrade_is_refused_with_the_reason(testenv: TestBed, namespace: str) -> None:
    create_cluster(testenv, namespace, md_count=1)
    upgraded(testenv, namespace, "v1.29.3")
    before = resource_versions(testenv, namespace)
    code, out, err = run(testenv, namespace, "rollback", "--yes")
    assert code == 5, err
    assert "error: nothing can be rolled back" in err
    assert "completed its minor upgrade v1.28.5 → v1.29.3" in err
    assert "Kubernetes does not support downgrading a control plane by a minor version" in err
    assert "outside the kubeadm skew of the control plane at v1.29.3" in out
    assert resource_versions(testenv, namespace) == before


def test_without_a_terminal_and_without_yes_it_refuses(testenv: TestBed, namespace: str) -> None:
    ensure_cloudstack_template(testenv, "ubuntu-2204-kube-v1.28.9")
    create_cluster(testenv, namespace, md_count=1)
    upgraded(testenv, namespace, "v1.28.9")
    before = resource_versions(testenv, namespace)
    code, _, err = run(testenv, namespace, "rollback")
    assert code == 2
    assert "not a terminal" in err and "pass --yes to roll back" in err
    assert resource_versions(testenv, namespace) == before


class QuietConsole:
    """A console for in-process runs: keeps the notes, and says yes if ever asked."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def show_plan(self, plan: Any) -> None:
        pass

    def show_previews(self, previews: Sequence[Any]) -> None:
        pass

    def confirm(self, question: str) -> bool:
        return True

    def step(self, step: Any, state: str) -> None:
        pass

    def progress(self, update: Any) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_a_status_update_between_read_and_dry_run_is_read_again_and_planned_again(
    testenv: TestBed, namespace: str
) -> None:
    ensure_cloudstack_template(testenv, "ubuntu-2204-kube-v1.28.9")
    # The control plane's rollout stops after one machine until the test lets it go on.
    create_cluster(testenv, namespace, md_count=1, annotate={CP: {STALL_ANNOTATION: "1"}})
    upgraded(testenv, namespace, "v1.28.9", "--no-wait")

    class ControllerReportsAfterTheRead(KubeRollbackIO):
        """The rollback's first read sees the control plane while its rollout goes on: the rollout
        simulator then reports progress (a status write: a new resourceVersion) before the dry run."""

        reads = 0
        status_changed_after_read = False

        def read(self) -> ClusterInventory:
            first = self.reads == 0
            if first:
                go_on = {"metadata": {"annotations": {STALL_ANNOTATION: None}}}
                patch(testenv, namespace, "KubeadmControlPlane", CP, go_on)
            inventory = super().read()
            self.reads += 1
            if first:
                assert inventory.control_plane is not None
                seen = inventory.control_plane.resource_version
                wait_for(
                    "the rollout simulator to write the control plane's status",
                    lambda: (
                        get(testenv, namespace, "KubeadmControlPlane", CP)["metadata"]["resourceVersion"]
                        != seen
                    ),
                    timeout=30,
                )
                self.status_changed_after_read = True
            return inventory

    io = ControllerReportsAfterTheRead(testenv.api_client(), namespace, "c1")
    code = Rollback(io, ApplyOptions(yes=True), QuietConsole()).run()

    assert io.status_changed_after_read  # the first dry run was sent with a stale resourceVersion
    assert code == 0
    kcp = get(testenv, namespace, "KubeadmControlPlane", CP)
    assert version_and_template(kcp) == ("v1.28.5", CP)
    assert [(e["action"], e["toVersion"]) for e in history(kcp)] == [
        (ACTION_ROLLBACK, "v1.28.5"),
        (ACTION_UPGRADE, "v1.28.9"),
    ]
    assert not read(testenv, namespace).rollout_in_progress()
