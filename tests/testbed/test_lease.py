"""One upgrade at a time, on the real test bed: the cluster's Lease `kubectl-capc-upgrade-c1`.

A run that waits (its control plane never finishes rolling out) holds the Lease; a second
`image-upgrade`, `rollback` or `cleanup` is refused with exit 7 naming the holder and since when, and
the holder's Ctrl-C deletes it. An expired Lease, and one of a process of this host that no longer
runs, are taken over; `--break-lock` takes a live one; the Lease is deleted after success and failure;
`--dry-run` never writes it; a run whose Lease another holder takes stops at once with exit 7.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from kubectl_capc.domain.errors import ExitCode
from kubectl_capc.kube.lease import my_identity
from tests.support.lease_support import lease_writes, put_lease, read_lease
from tests.support.rbac_support import capc
from tests.support.upgrade_support import REPO, create_cluster, ensure_cloudstack_template, wait_for
from tests.testenv.bed import TestBed
from tests.testenv.rollout_model import FAIL_ANNOTATION

pytestmark = pytest.mark.timeout(300)

Capsys = pytest.CaptureFixture[str]
CP = "c1-control-plane"
SMALL = {"md_count": 1, "control_plane_replicas": 1, "worker_replicas": 1}
WAITING = f"v1.28.9 waiting WaitRollout KubeadmControlPlane/{CP}"


def identity_of(pid: int) -> str:
    """The holder identity the process `pid` of this host writes."""
    return my_identity().rpartition("/")[0] + f"/{pid}"


def stalled_cluster(bed: TestBed, namespace: str, **kwargs: Any) -> None:
    """v1.28.5, one machine each; the control plane's next rollout never finishes."""
    ensure_cloudstack_template(bed, "ubuntu-2204-kube-v1.28.9")
    create_cluster(bed, namespace, annotate={CP: {FAIL_ANNOTATION: "ImagePullFailed"}}, **SMALL, **kwargs)


@contextmanager
def waiting_upgrade(
    bed: TestBed, namespace: str, points: Path, selection: Sequence[str] = ("c1",)
) -> Iterator[subprocess.Popen[str]]:
    """`image-upgrade c1 --to v1.28.9 --yes` (or of the clusters `selection` names) in a process of its
    own, once it waits for the control plane (so it holds the Lease); killed at the end if it still runs."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kubectl_capc", "image-upgrade", *selection, "--to", "v1.28.9", "--yes",
         "-n", namespace, "--kubeconfig", str(bed.kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=REPO,
        env={**os.environ, "KUBECTL_CAPC_TEST_POINTS": str(points)},
    )  # fmt: skip
    try:
        wait_for(
            "the upgrade to wait for the control plane",
            lambda: (
                (points.exists() and WAITING in points.read_text().splitlines()) or process.poll() is not None
            ),
            timeout=120,
        )
        assert process.poll() is None, process.communicate()
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_second_run_is_refused_naming_the_holder_and_ctrl_c_releases_the_lock(
    testenv: TestBed, namespace: str, tmp_path: Path, capsys: Capsys
) -> None:
    bed = testenv
    stalled_cluster(bed, namespace)
    with waiting_upgrade(bed, namespace, tmp_path / "points") as first:
        lease = read_lease(bed, namespace)
        assert lease is not None
        holder = identity_of(first.pid)
        assert lease["spec"]["holderIdentity"] == holder
        assert lease["spec"]["leaseDurationSeconds"] == 60

        for args in (
            ("image-upgrade", "c1", "--to", "v1.28.9", "--yes"),
            ("rollback", "c1", "--yes"),
            ("cleanup", "c1", "--yes"),
        ):
            run = capc(capsys, bed.kubeconfig, *args, "-n", namespace)
            assert run.code == 7, f"{args}: {run.err}"
            assert run.error_line.startswith(f"error: cluster {namespace}/c1: another upgrade"), run.err
            assert f"locked by {holder} since " in run.error_line and "--break-lock" in run.error_line
            assert len(run.err.strip().splitlines()) == 1, run.err

        dry = capc(capsys, bed.kubeconfig, "image-upgrade", "c1", "--to", "v1.28.9", "--dry-run",
                   "-n", namespace)  # fmt: skip
        assert dry.code in (0, 1), dry.err
        assert f"locked by {holder}" in dry.err and "would be refused" in dry.err
        assert read_lease(bed, namespace)["spec"]["holderIdentity"] == holder  # type: ignore[index]

        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted"), err
    assert read_lease(bed, namespace) is None


def test_expired_and_orphaned_locks_are_taken_over_and_break_lock_takes_a_live_one(
    testenv_v1beta2: TestBed, namespace: str, capsys: Capsys
) -> None:
    bed = testenv_v1beta2
    ensure_cloudstack_template(bed, "ubuntu-2204-kube-v1.28.9")
    create_cluster(bed, namespace, **SMALL)
    now = datetime.now(timezone.utc)

    put_lease(bed, namespace, "bob@build-7/4121", now - timedelta(seconds=90))
    run = capc(capsys, bed.kubeconfig, "image-upgrade", "c1", "--to", "v1.28.9", "--yes", "-n", namespace)
    assert run.code == 0, run.err
    assert "took over the upgrade lock held by bob@build-7/4121" in run.err
    assert read_lease(bed, namespace) is None  # released after success

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    put_lease(bed, namespace, identity_of(dead.pid), datetime.now(timezone.utc))
    run = capc(capsys, bed.kubeconfig, "rollback", "c1", "--dry-run", "-n", namespace)
    assert "would take it over" in run.err, run.err
    run = capc(capsys, bed.kubeconfig, "rollback", "c1", "--yes", "-n", namespace)
    assert run.code == 0, run.err
    assert f"held by {identity_of(dead.pid)}" in run.err and "no longer runs on this host" in run.err
    assert read_lease(bed, namespace) is None

    put_lease(bed, namespace, "bob@build-7/4121", datetime.now(timezone.utc))
    run = capc(capsys, bed.kubeconfig, "cleanup", "c1", "--yes", "-n", namespace)
    assert run.code == 7 and "locked by bob@build-7/4121" in run.error_line, run.err
    run = capc(capsys, bed.kubeconfig, "cleanup", "c1", "--yes", "--break-lock", "-n", namespace)
    assert run.code == 0, run.err
    assert "broke the upgrade lock" in run.err and "bob@build-7/4121" in run.err
    assert read_lease(bed, namespace) is None


def test_dry_runs_never_write_the_lock_and_a_failed_run_releases_it(
    testenv_v1beta2: TestBed, namespace: str, capsys: Capsys
) -> None:
    bed = testenv_v1beta2
    stalled_cluster(bed, namespace)
    for args in (
        ("image-upgrade", "c1", "--to", "v1.28.9", "--dry-run"),
        ("rollback", "c1", "--dry-run"),
        ("cleanup", "c1", "--dry-run"),
    ):
        run = capc(capsys, bed.kubeconfig, *args, "-n", namespace)
        assert run.code in (0, 1, 5), f"{args}: {run.err}"
    assert lease_writes(bed, namespace) == []

    # The control plane never finishes: the wait times out (exit 6), and the Lease goes with the run.
    run = capc(capsys, bed.kubeconfig, "image-upgrade", "c1", "--to", "v1.28.9", "--yes",
               "--timeout", "control-plane=3s", "-n", namespace)  # fmt: skip
    assert run.code == 6, run.err
    assert read_lease(bed, namespace) is None
    assert lease_writes(bed, namespace) == ["create", "delete"]


def test_a_run_whose_lock_is_taken_stops_at_once_naming_the_new_holder(
    testenv_v1beta2: TestBed, namespace: str, tmp_path: Path
) -> None:
    bed = testenv_v1beta2
    stalled_cluster(bed, namespace)
    with waiting_upgrade(bed, namespace, tmp_path / "points") as first:
        put_lease(bed, namespace, "bob@build-7/4121", datetime.now(timezone.utc))  # --break-lock elsewhere
        _, err = first.communicate(timeout=60)  # renewed every 20 s: it notices at the next renewal
    assert first.returncode == 7, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: cluster {namespace}/c1: the upgrade lock"), err
    assert "was taken by bob@build-7/4121" in last and "during this run" in last
    assert "Traceback" not in err
    assert read_lease(bed, namespace)["spec"]["holderIdentity"] == "bob@build-7/4121"  # type: ignore[index]


def test_a_fleet_member_whose_lock_is_taken_stops_at_once_and_the_fleet_reports_it(
    testenv_v1beta2: TestBed, namespace: str, tmp_path: Path
) -> None:
    from tests.support.upgrade_support import patch

    bed = testenv_v1beta2
    # Offerings the CloudStack double has, so that the fleet's preflight passes.
    offerings = {"control_plane_offering": "Large Instance", "worker_offering": "Medium Instance"}
    stalled_cluster(bed, namespace, **offerings)
    patch(bed, namespace, "Cluster", "c1", {"metadata": {"labels": {"fleet": namespace}}})
    selection = ("-l", f"fleet={namespace}")  # a fleet of one: its member runs in a worker thread
    with waiting_upgrade(bed, namespace, tmp_path / "points", selection) as fleet:
        put_lease(bed, namespace, "bob@build-7/4121", datetime.now(timezone.utc))
        _, err = fleet.communicate(timeout=60)  # noticed at the next renewal, not at the rollout's timeout
    assert fleet.returncode == ExitCode.FLEET_INCOMPLETE, err
    # A plain state line: `2026-12-07T02:03:04Z NAMESPACE/c1: failed: ...`
    (failed,) = [
        line for line in err.splitlines() if line.split(" ", 1)[-1].startswith(f"{namespace}/c1: failed: ")
    ]
    assert failed.split(" ", 1)[0].endswith("Z"), failed
    assert "the upgrade lock" in failed and "was taken by bob@build-7/4121" in failed, err
    assert "Traceback" not in err
    assert read_lease(bed, namespace)["spec"]["holderIdentity"] == "bob@build-7/4121"  # type: ignore[index]


def test_a_fleets_locks_last_as_many_times_longer_as_it_runs_clusters_at_once(
    testenv_v1beta2: TestBed, namespace: str, tmp_path: Path
) -> None:
    """Two clusters to upgrade and one already at the target, at most three at a time: the two that run
    hold Leases of 2 x 60 s, renewed every 40 s, so the fleet renews no more often than one cluster."""
    from tests.support.upgrade_support import patch

    bed = testenv_v1beta2
    offerings = {"control_plane_offering": "Large Instance", "worker_offering": "Medium Instance"}
    stalled_cluster(bed, namespace, **offerings)
    create_cluster(bed, namespace, "c2", annotate={"c2-control-plane": {FAIL_ANNOTATION: "ImagePullFailed"}},
                   **SMALL, **offerings)  # fmt: skip
    create_cluster(bed, namespace, "c3", version="v1.28.9", **SMALL, **offerings)
    for name in ("c1", "c2", "c3"):
        patch(bed, namespace, "Cluster", name, {"metadata": {"labels": {"fleet": namespace}}})
    selection = ("-l", f"fleet={namespace}", "--max-concurrent", "3")
    with waiting_upgrade(bed, namespace, tmp_path / "points", selection) as fleet:
        held = wait_for("both running clusters to hold their lock", lambda: (
            [lease for name in ("c1", "c2") if (lease := read_lease(bed, namespace, name))]
            if read_lease(bed, namespace, "c2") else None
        ), timeout=60)  # fmt: skip
        assert [lease["spec"]["leaseDurationSeconds"] for lease in held] == [120, 120]
        assert read_lease(bed, namespace, "c3") is None  # at the target: not run, not locked
        assert fleet.poll() is None
