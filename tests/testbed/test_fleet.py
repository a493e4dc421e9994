"""`kubectl capc image-upgrade` for a fleet (several names, `-A`, `-l`) on the real test bed.

Each cluster is the test bed's two-zone cluster with one MachineDeployment; the rollout simulator plays
CAPI. Clusters are upgraded by the same plan-run as one cluster, so these tests check what only the
fleet adds: the selection, the order (canaries first), stopping or going on after a failure, the exit
code, the typed documents, a re-run that finds everything done, and one registration of a shared
image for all clusters.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest

from kubectl_capc.domain.errors import ExitCode
from tests.support.fault_support import IMAGE_URL, READY_EVERYWHERE, admin, templates_per_zone
from tests.support.fixtures_capc import create_objects, render_cluster
from tests.support.upgrade_support import (
    TWO_ZONES,
    cli,
    get,
    resource_versions,
    templates_need_a_cost_center,
    version_and_template,
    wait_settled,
)
from tests.testenv.bed import TestBed
from tests.testenv.rollout_model import FAIL_ANNOTATION

pytestmark = pytest.mark.timeout(600)

TARGET = "v1.29.3"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def make_cluster(
    bed: TestBed,
    namespace: str,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    fail: bool = False,
    **kwargs: object,
) -> None:
    objects = render_cluster(
        name, namespace, capi=bed.capi, md_count=1, worker_replicas=1, zones=TWO_ZONES,
        control_plane_offering="Large Instance", worker_offering="Medium Instance", **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    for obj in objects:
        if obj["kind"] == "Cluster" and labels:
            obj["metadata"].setdefault("labels", {}).update(labels)
        if fail and obj["kind"] == "KubeadmControlPlane":
            obj["metadata"].setdefault("annotations", {})[FAIL_ANNOTATION] = "ImagePullFailed"
    create_objects(bed.api_client(), objects)
    wait_settled(bed, namespace, name)


def control_plane_version(bed: TestBed, namespace: str, name: str) -> str:
    return version_and_template(get(bed, namespace, "KubeadmControlPlane", f"{name}-control-plane"))[0]


def at_versions(bed: TestBed, namespace: str, *names: str) -> list[str]:
    return [control_plane_version(bed, namespace, name) for name in names]


def outcomes(document: dict[str, object]) -> dict[str, str]:
    status = document["status"]
    assert isinstance(status, dict)
    return {f"{c['namespace']}/{c['name']}": c["outcome"] for c in status["clusters"]}


def line_index(text: str, line: str) -> int:
    """Where the plain progress line `TIMESTAMP line` is in `text` (stderr, not a terminal)."""
    lines = [STAMP.sub("", entry, count=1) for entry in text.splitlines()]
    assert line in lines, f"{line!r} not in:\n{text}"
    index = lines.index(line)
    assert STAMP.match(text.splitlines()[index]), text.splitlines()[index]
    return index


@pytest.fixture
def other_namespace(testenv: TestBed) -> Iterator[str]:
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(testenv.api_client())
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def test_named_clusters_with_a_canary_then_a_rerun_is_a_no_op(testenv: TestBed, namespace: str) -> None:
    for name in ("a", "b", "c", "left-out"):
        make_cluster(testenv, namespace, name)

    done = cli(
        testenv, "image-upgrade", "a", "b", "c", "-n", namespace, "--to", TARGET,
        "--canary", "1", "--max-concurrent", "2", "--yes",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert (
        "Fleet upgrade to v1.29.3: 3 cluster(s), 3 to upgrade (canary 1, at most 2 at a time)" in done.stdout
    )
    assert "Fleet upgrade to v1.29.3: 3 succeeded." in done.stdout
    canary_done = line_index(done.stderr, f"{namespace}/a: succeeded")
    assert line_index(done.stderr, f"{namespace}/b: running") > canary_done
    assert line_index(done.stderr, f"{namespace}/c: running") > canary_done
    assert at_versions(testenv, namespace, "a", "b", "c", "left-out") == [TARGET, TARGET, TARGET, "v1.28.5"]
    md = get(testenv, namespace, "MachineDeployment", "b-md-0")
    assert version_and_template(md) == (TARGET, "b-md-0-v1-29-3")

    before = resource_versions(testenv, namespace)
    again = cli(
        testenv, "image-upgrade", "a", "b", "c", "-n", namespace, "--to", TARGET, "--yes", "-o", "json"
    )
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["kind"], report["status"]["complete"]) == ("FleetUpgradeReport", True)
    assert set(outcomes(report).values()) == {"unchanged"}
    assert resource_versions(testenv, namespace) == before

    whole = cli(testenv, "image-upgrade", "-A", "-l", "no-such-label", "--to", TARGET, "--dry-run")
    assert whole.returncode == ExitCode.USAGE and "no clusters found in all namespaces" in whole.stderr
    planned = cli(testenv, "image-upgrade", "-n", namespace, "-l", "", "--to", TARGET, "--dry-run")
    assert planned.returncode == ExitCode.USAGE and "-l is empty" in planned.stderr
    done_ = cli(testenv, "image-upgrade", "-n", namespace, "a", "b", "--to", TARGET, "--dry-run", "-o=json")
    assert done_.returncode == 0, done_.stderr  # nothing pending
    assert [c["verdict"] for c in json.loads(done_.stdout)["status"]["clusters"]] == ["done", "done"]


def test_a_dry_run_sends_each_clusters_writes_to_the_server(testenv: TestBed, namespace: str) -> None:
    for name in ("a", "b"):
        make_cluster(testenv, namespace, name)
    before = resource_versions(testenv, namespace)

    with templates_need_a_cost_center(testenv, namespace, prefix="b-"):
        checked = cli(testenv, "image-upgrade", "a", "b", "-n", namespace, "--to", TARGET, "--dry-run")

    assert checked.returncode == ExitCode.PLAN, checked.stderr
    assert f"{namespace}/a: the API server accepts every write (dryRun=All)" in checked.stderr
    (refusal,) = [line for line in checked.stderr.splitlines() if line.startswith("error: ")]
    assert refusal.startswith(f"error: 1 cluster(s) cannot be upgraded: {namespace}/b: ")
    assert "need the label example.com/cost-center" in refusal and f"{namespace}/a" not in refusal
    assert resource_versions(testenv, namespace) == before


def test_a_label_selector_across_namespaces(testenv: TestBed, namespace: str, other_namespace: str) -> None:
    fleet = uuid.uuid4().hex[:8]
    make_cluster(testenv, namespace, "p1", labels={"fleet": fleet, "env": "prod"})
    make_cluster(testenv, other_namespace, "p2", labels={"fleet": fleet, "env": "prod"})
    make_cluster(testenv, other_namespace, "s1", labels={"fleet": fleet, "env": "staging"})
    selector = f"fleet={fleet},env=prod"

    planned = cli(testenv, "image-upgrade", "-A", "-l", selector, "--to", TARGET, "--dry-run", "-o", "json")

    assert planned.returncode == ExitCode.FINDINGS, planned.stderr
    plan = json.loads(planned.stdout)
    assert (plan["apiVersion"], plan["kind"]) == ("capc.kubectl.io/v1alpha1", "FleetUpgradePlan")
    assert plan["status"]["order"] == sorted([f"{namespace}/p1", f"{other_namespace}/p2"])
    assert [c["verdict"] for c in plan["status"]["clusters"]] == ["upgrade", "upgrade"]
    (image,) = plan["status"]["images"]
    assert (image["image"], image["ready"]) == ("ubuntu-2204-kube-v1.29.3", True)
    assert at_versions(testenv, namespace, "p1") == ["v1.28.5"]
    for key in plan["status"]["order"]:  # each cluster's writes were sent with dryRun=All
        assert f"{key}: the API server accepts every write (dryRun=All)" in planned.stderr

    done = cli(
        testenv, "image-upgrade", "-A", "-l", selector, "--to", TARGET, "--max-concurrent", "2", "--yes"
    )

    assert done.returncode == 0, done.stderr
    assert at_versions(testenv, namespace, "p1") == [TARGET]
    assert at_versions(testenv, other_namespace, "p2", "s1") == [TARGET, "v1.28.5"]

    shown = cli(testenv, "history", "-A", "-l", selector, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    histories = json.loads(shown.stdout)
    assert histories["kind"] == "UpgradeHistoryList"
    recorded = {
        f"{item['metadata']['namespace']}/{item['metadata']['name']}": {r["kind"] for r in item["rotations"]}
        for item in histories["items"]
    }
    both = {"KubeadmControlPlane", "MachineDeployment"}
    assert recorded == {f"{namespace}/p1": both, f"{other_namespace}/p2": both}
    table = cli(testenv, "history", "-n", other_namespace)
    assert table.stdout.splitlines()[0].split()[:3] == ["NAMESPACE", "CLUSTER", "TIME"]
    assert {line.split()[1] for line in table.stdout.splitlines()[1:]} == {"p2"}


def test_a_failure_stops_new_starts_unless_asked_to_continue(
    testenv_v1beta2: TestBed, namespace: str
) -> None:
    bed = testenv_v1beta2
    make_cluster(bed, namespace, "a", fail=True)
    make_cluster(bed, namespace, "b")
    make_cluster(bed, namespace, "c")
    args = ("image-upgrade", "a", "b", "c", "-n", namespace, "--to", TARGET, "--yes", "-o", "json",
            "--timeout", "control-plane=3s")  # fmt: skip

    stopped = cli(bed, *args)

    assert stopped.returncode == ExitCode.FLEET_INCOMPLETE, stopped.stderr
    report = json.loads(stopped.stdout)
    assert outcomes(report) == {
        f"{namespace}/a": "failed", f"{namespace}/b": "not-started", f"{namespace}/c": "not-started",
    }  # fmt: skip
    (failed,) = [c for c in report["status"]["clusters"] if c["outcome"] == "failed"]
    assert "KubeadmControlPlane/a-control-plane did not finish rolling out" in failed["reason"]
    assert at_versions(bed, namespace, "b", "c") == ["v1.28.5", "v1.28.5"]

    went_on = cli(bed, *args, "--continue-on-error")

    assert went_on.returncode == ExitCode.FLEET_INCOMPLETE, went_on.stderr
    assert outcomes(json.loads(went_on.stdout)) == {
        f"{namespace}/a": "failed", f"{namespace}/b": "succeeded", f"{namespace}/c": "succeeded",
    }  # fmt: skip
    assert at_versions(bed, namespace, "b", "c") == [TARGET, TARGET]


def test_a_refused_cluster_refuses_the_run_or_is_skipped(testenv_v1beta2: TestBed, namespace: str) -> None:
    bed = testenv_v1beta2
    make_cluster(bed, namespace, "a")
    make_cluster(bed, namespace, "managed", topology_class="quick-start")
    before = resource_versions(bed, namespace)

    refused = cli(bed, "image-upgrade", "-n", namespace, "a", "managed", "--to", TARGET, "--yes")

    assert refused.returncode == ExitCode.PLAN, refused.stderr
    assert f"{namespace}/managed" in refused.stderr and "--skip-failing" in refused.stderr
    assert resource_versions(bed, namespace) == before

    skipped = cli(bed, "image-upgrade", "-n", namespace, "a", "managed", "--to", TARGET, "--yes",
                  "--skip-failing", "-o", "json")  # fmt: skip

    assert skipped.returncode == ExitCode.FLEET_INCOMPLETE, skipped.stderr
    assert outcomes(json.loads(skipped.stdout)) == {
        f"{namespace}/a": "succeeded",
        f"{namespace}/managed": "skipped",
    }
    assert at_versions(bed, namespace, "a") == [TARGET]


def test_a_shared_image_is_registered_once_for_the_whole_fleet(
    testenv_v1beta2: TestBed, namespace: str
) -> None:
    bed = testenv_v1beta2
    # Below the seed's v1.29.3, so that the other tests' `--to v1.29` on this bed still resolves to v1.29.3
    # (a fresh patch of 100 and above outranked it); no other test registers it.
    version = "v1.29.1"
    template = f"ubuntu-2204-kube-{version}"
    for name in ("a", "b", "c"):
        make_cluster(bed, namespace, name)

    done = cli(
        bed, "image-upgrade", "a", "b", "c", "-n", namespace, "--to", version, "--image-url", IMAGE_URL,
        "--max-concurrent", "3", "--poll-interval", "0.05s", "--yes",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    registered = [
        c
        for c in admin(bed, "calls")
        if c["command"] == "registerTemplate" and c["params"].get("name") == template
    ]
    assert len(registered) == 1
    assert templates_per_zone(bed, template) == READY_EVERYWHERE
    assert at_versions(bed, namespace, "a", "b", "c") == [version, version, version]
