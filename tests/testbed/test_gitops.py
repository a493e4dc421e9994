"""GitOps mode next to a real management cluster: the same plan as online, and `--server-dry-run`.

The bundled example (CAPI v1beta1 objects, as the CAPC templates write them) is applied with the real
kubectl to the v1beta1 test bed, in a namespace of its own; the rollout simulator settles it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from kubectl_capc.kube.read import read_inventories
from tests.support.fixtures_capc import create_objects
from tests.support.upgrade_support import cli, wait_settled
from tests.testenv.bed import TestBed

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mycluster"


def example_in(namespace: str, tmp_path: Path) -> Path:
    """A copy of the example whose objects are in `namespace` (the credentials Secret stays in default)."""
    directory = Path(shutil.copytree(EXAMPLE, tmp_path / "mycluster"))
    for path in directory.glob("*.yaml"):
        path.write_text(re.sub(r"(?m)^  namespace: default$", f"  namespace: {namespace}", path.read_text()))
    return directory


def apply_settled(bed: TestBed, directory: Path, namespace: str) -> None:
    subprocess.run(
        [str(bed.kubectl), "--kubeconfig", str(bed.kubeconfig), "apply", "-f", str(directory)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    wait_settled(bed, namespace, "mycluster")


def server_dry_run(bed: TestBed, directory: Path) -> subprocess.CompletedProcess[str]:
    """`image-upgrade mycluster --to v1.29.3 -f DIRECTORY --server-dry-run`: each changed object sent to
    the API server as a dry run, and the next hop written to the files if the server accepts them all."""
    return cli(bed, "image-upgrade", "mycluster", "--to", "v1.29.3", "-f", str(directory), "--server-dry-run")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.yaml"))}


def comparable(hops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hops without what only a live cluster knows: resourceVersions and zone states of images."""
    for hop in hops:
        for step in hop["steps"]:
            step.pop("resourceVersion", None)
            for zone in step.get("zones", ()):
                zone.pop("state")
                zone.pop("templateID", None)
                zone.pop("status", None)
    return hops


def test_gitops_mode_plans_what_online_mode_plans(
    testenv_v1beta1: TestBed, namespace: str, tmp_path: Path
) -> None:
    directory = example_in(namespace, tmp_path)
    apply_settled(testenv_v1beta1, directory, namespace)
    args = ("image-upgrade", "mycluster", "--to", "v1.29.3", "--dry-run", "-o", "json", "-n", namespace)
    online = cli(testenv_v1beta1, *args)
    offline = cli(testenv_v1beta1, *args, "-f", str(directory))
    assert (online.returncode, offline.returncode) == (1, 1), online.stderr + offline.stderr
    online_plan, offline_plan = json.loads(online.stdout), json.loads(offline.stdout)
    zones = online_plan["status"]["hops"][0]["steps"][0]["zones"]
    assert [z["state"] for z in zones] == ["ready", "ready"]
    assert [z["state"] for z in offline_plan["status"]["hops"][0]["steps"][0]["zones"]] == ["not-checked"] * 2
    assert comparable(offline_plan["status"]["hops"]) == comparable(online_plan["status"]["hops"])
    assert offline_plan["spec"] == online_plan["spec"]


def test_server_dry_run_accepts_the_next_hop_which_once_applied_completes_the_upgrade(
    testenv_v1beta1: TestBed, namespace: str, tmp_path: Path
) -> None:
    directory = example_in(namespace, tmp_path)
    apply_settled(testenv_v1beta1, directory, namespace)
    before = snapshot(directory)
    result = server_dry_run(testenv_v1beta1, directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("accepted by the API server (dryRun=All)") == 6
    after = snapshot(directory)
    assert after["cluster.yaml"] == before["cluster.yaml"]
    assert after["workers.yaml"] != before["workers.yaml"]
    (inventory,) = read_inventories(testenv_v1beta1.api_client(), namespace=namespace, cluster="mycluster")
    assert inventory.control_plane is not None
    assert inventory.control_plane.version == "v1.28.5"  # dry runs changed nothing in the cluster
    assert sorted(t.name for t in inventory.namespace_templates) == [
        "mycluster-control-plane",
        "mycluster-md-0",
        "mycluster-md-1",
    ]
    # What a GitOps controller does with the commit: apply it. Then the cluster is at the target.
    apply_settled(testenv_v1beta1, directory, namespace)
    online = cli(
        testenv_v1beta1, "image-upgrade", "mycluster", "--to", "v1.29.3", "--dry-run", "-n", namespace
    )
    assert online.returncode == 0, online.stderr
    assert "is at v1.29.3: nothing to do" in online.stderr


def test_a_rejection_by_the_server_writes_nothing(
    testenv_v1beta1: TestBed, namespace: str, tmp_path: Path
) -> None:
    directory = example_in(namespace, tmp_path)
    apply_settled(testenv_v1beta1, directory, namespace)
    # Someone created the name the plan derives, for another image, in the cluster but not in git.
    conflicting = {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
        "kind": "CloudStackMachineTemplate",
        "metadata": {"name": "mycluster-md-0-v1-29-3", "namespace": namespace},
        "spec": {
            "template": {"spec": {"offering": {"name": "Medium Instance"}, "template": {"name": "other"}}}
        },
    }
    create_objects(testenv_v1beta1.api_client(), [conflicting])
    before = snapshot(directory)
    result = server_dry_run(testenv_v1beta1, directory)
    assert result.returncode == 5, result.stderr
    assert "CloudStackMachineTemplate/mycluster-md-0-v1-29-3: REJECTED by the API server" in result.stdout
    assert "field is immutable" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: the API server rejected the result")
    assert snapshot(directory) == before
