"""`kubectl capc cleanup` after a real `image-upgrade` on the test bed, both CAPI profiles.

After v1.28.5 → v1.29.3 the original templates c1-control-plane, c1-md-0 and c1-md-1 are no longer
referenced by the control plane or the MachineDeployments. Objects CAPI would still have (an old
MachineSet, a Machine, a CloudStackMachine) are created by hand, since no CAPI controller runs here.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from kubectl_capc.domain.cleanup import CLONED_FROM_NAME, CleanupPlan
from kubectl_capc.domain.records import PREFIX
from kubectl_capc.ops.cleanup import CleanupOptions, KubeCleanupIO, run_cleanup
from tests.support.fixtures_capc import to_v1beta2
from tests.support.upgrade_support import (
    CAPC,
    cli,
    create_cluster,
    custom,
    get,
    names,
    patch,
    resource_versions,
)
from tests.testenv.bed import TestBed

ORIGINALS = ["c1-control-plane", "c1-md-0", "c1-md-1"]
GROUP_KIND = "cluster.x-k8s.io/cloned-from-groupkind"
PLURALS = {"MachineSet": "machinesets", "Machine": "machines", "CloudStackMachine": "cloudstackmachines"}
UPGRADED = [f"{name}-v1-29-3" for name in ORIGINALS]


def run(bed: TestBed, namespace: str, *args: str) -> tuple[int, str, str]:
    done = cli(bed, "cleanup", "c1", "-n", namespace, *args)
    return done.returncode, done.stdout, done.stderr


def upgraded_cluster(bed: TestBed, namespace: str) -> None:
    create_cluster(bed, namespace)
    done = cli(bed, "image-upgrade", "c1", "-n", namespace, "--to", "v1.29.3", "--yes")
    assert done.returncode == 0, done.stderr
    assert names(bed, namespace, "CloudStackMachineTemplate") == sorted(ORIGINALS + UPGRADED)


def old_machine_set(bed: TestBed, namespace: str, template: str) -> dict[str, Any]:
    """A MachineSet of c1-md-0's previous revision, still creating machines from `template`."""
    md = get(bed, namespace, "MachineDeployment", "c1-md-0")
    machine_template = copy.deepcopy(md["spec"]["template"])
    machine_template["spec"]["infrastructureRef"]["name"] = template
    return {
        "apiVersion": md["apiVersion"],
        "kind": "MachineSet",
        "metadata": {"name": "c1-md-0-old", "namespace": namespace},
        "spec": {"clusterName": "c1", "selector": md["spec"]["selector"], "template": machine_template},
    }


def machine(bed: TestBed, namespace: str, cloned_from: str) -> dict[str, Any]:
    """A control-plane Machine as KCP makes it, made from `cloned_from`."""
    obj = {
        "apiVersion": "cluster.x-k8s.io/v1beta1",
        "kind": "Machine",
        "metadata": {
            "name": "c1-control-plane-old",
            "namespace": namespace,
            "labels": {"cluster.x-k8s.io/cluster-name": "c1", "cluster.x-k8s.io/control-plane": ""},
            "annotations": {
                CLONED_FROM_NAME: cloned_from,
                GROUP_KIND: "CloudStackMachineTemplate.infrastructure.cluster.x-k8s.io",
            },
        },
        "spec": {
            "clusterName": "c1",
            "version": "v1.28.5",
            "bootstrap": {
                "configRef": {
                    "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta1",
                    "kind": "KubeadmConfig",
                    "name": "c1-control-plane-old",
                }
            },
            "infrastructureRef": {
                "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
                "kind": "CloudStackMachine",
                "name": "c1-control-plane-old",
            },
        },
    }
    return to_v1beta2(obj) if bed.capi == "v1beta2" else obj


def cloudstack_machine(namespace: str, cloned_from: str) -> dict[str, Any]:
    return {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
        "kind": "CloudStackMachine",
        "metadata": {
            "name": "c1-md-1-old",
            "namespace": namespace,
            "labels": {"cluster.x-k8s.io/cluster-name": "c1"},
            "annotations": {CLONED_FROM_NAME: cloned_from},
        },
        "spec": {"offering": {"name": "Medium"}, "template": {"name": "ubuntu-2204-kube-v1.28.5"}},
    }


def create(bed: TestBed, namespace: str, *objects: dict[str, Any]) -> None:
    for obj in objects:
        group, version = obj["apiVersion"].rsplit("/", 1)
        custom(bed).create_namespaced_custom_object(group, version, namespace, PLURALS[obj["kind"]], obj)


def delete(bed: TestBed, namespace: str, obj: dict[str, Any]) -> None:
    group, version = obj["apiVersion"].rsplit("/", 1)
    name = obj["metadata"]["name"]
    custom(bed).delete_namespaced_custom_object(group, version, namespace, PLURALS[obj["kind"]], name)


def test_templates_still_used_by_machine_sets_and_machines_are_kept(testenv: TestBed, namespace: str) -> None:
    upgraded_cluster(testenv, namespace)
    users = [
        old_machine_set(testenv, namespace, "c1-md-0"),
        machine(testenv, namespace, "c1-control-plane"),
        cloudstack_machine(namespace, "c1-md-1"),
    ]
    create(testenv, namespace, *users)

    code, out, err = run(testenv, namespace, "--dry-run")
    assert (code, out) == (0, ""), err
    assert "keeping c1-md-0: used by MachineSet/c1-md-0-old" in err
    assert "keeping c1-control-plane: used by Machine/c1-control-plane-old" in err
    assert "keeping c1-md-1: used by CloudStackMachine/c1-md-1-old" in err
    # ... and by the CloudStackMachines of the Machines CAPI made from it.
    assert re.search(
        r"keeping c1-md-0-v1-29-3: used by (CloudStackMachine/c1-md-0-\w+, ){2}MachineDeployment/c1-md-0\n",
        err,
    ), err

    delete(testenv, namespace, users[0])
    before = resource_versions(testenv, namespace)
    code, out, err = run(testenv, namespace, "--dry-run")
    assert code == 1, err
    (header, row) = out.splitlines()
    assert header.split() == ["NAME", "IMAGE", "VERSION", "NOTE"]
    assert row.split()[:3] == ["c1-md-0", "ubuntu-2204-kube-v1.28.5", "-"]
    assert row.endswith("previous template of MachineDeployment/c1-md-0: no rollback after deleting")
    assert resource_versions(testenv, namespace) == before

    code, out, err = run(testenv, namespace, "--yes")
    assert code == 0, err
    assert "CloudStackMachineTemplate/c1-md-0 deleted" in err
    assert names(testenv, namespace, "CloudStackMachineTemplate") == sorted(
        ["c1-control-plane", "c1-md-1", *UPGRADED]
    )

    for user in users[1:]:
        delete(testenv, namespace, user)
    code, out, err = run(testenv, namespace, "--yes", "-o", "json")
    assert code == 0, err
    assert "CloudStackMachineTemplate/c1-control-plane deleted" in err
    assert names(testenv, namespace, "CloudStackMachineTemplate") == UPGRADED
    assert run(testenv, namespace, "--dry-run")[0] == 0

    rollback = cli(testenv, "rollback", "c1", "-n", namespace, "--yes")
    assert rollback.returncode == 5
    assert "its previous CloudStackMachineTemplate c1-md-0 no longer exists" in rollback.stdout


class RacingConsole:
    """Confirms, but first does what another client might do between listing and deleting."""

    def __init__(self, race: Any) -> None:
        self.race = race
        self.notes: list[str] = []
        self.plans: list[CleanupPlan] = []

    def show_plan(self, plan: CleanupPlan) -> None:
        self.plans.append(plan)

    def confirm(self, question: str) -> bool:
        self.race()
        return True

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_a_template_used_or_changed_after_listing_is_kept(testenv: TestBed, namespace: str) -> None:
    upgraded_cluster(testenv, namespace)

    def race() -> None:
        create(testenv, namespace, old_machine_set(testenv, namespace, "c1-md-0"))
        patch(
            testenv,
            namespace,
            "CloudStackMachineTemplate",
            "c1-md-1",
            {"metadata": {"labels": {"touched": "yes"}}},
        )

    console = RacingConsole(race)
    io = KubeCleanupIO(testenv.api_client(), namespace, "c1")
    code = run_cleanup(io, CleanupOptions(interactive=True), console)
    assert code == 0
    assert [t.name for t in console.plans[0].unused] == ORIGINALS
    assert console.notes[:3] == [
        "CloudStackMachineTemplate/c1-control-plane deleted",
        "CloudStackMachineTemplate/c1-md-0 kept: now used by MachineSet/c1-md-0-old",
        "CloudStackMachineTemplate/c1-md-1 kept: changed since listed",
    ]
    assert "Precondition failed" in console.notes[3] or "ResourceVersion" in console.notes[3]
    assert names(testenv, namespace, "CloudStackMachineTemplate") == sorted(["c1-md-0", "c1-md-1", *UPGRADED])


def test_a_template_of_another_cluster_is_never_touched(testenv: TestBed, namespace: str) -> None:
    upgraded_cluster(testenv, namespace)
    stray = copy.deepcopy(get(testenv, namespace, "CloudStackMachineTemplate", "c1-md-0"))
    for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"):
        stray["metadata"].pop(key, None)
    stray["metadata"].update(name="c2-md-0", labels={"cluster.x-k8s.io/cluster-name": "c2"})
    stray["metadata"]["annotations"] = {f"{PREFIX}note": "belongs to c2"}
    created = custom(testenv).create_namespaced_custom_object(
        *CAPC, namespace, "cloudstackmachinetemplates", stray
    )
    assert created["metadata"]["name"] == "c2-md-0"
    code, _, err = run(testenv, namespace, "--yes")
    assert code == 0, err
    assert names(testenv, namespace, "CloudStackMachineTemplate") == sorted(["c2-md-0", *UPGRADED])
