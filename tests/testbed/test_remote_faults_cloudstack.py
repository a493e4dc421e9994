"""CloudStack faults during `image-upgrade`, with the real CLI process on the test bed and the CloudStack
double's fault injection: 530 answers, slow answers past `--request-timeout`, keys rotated during a run
(with and without the cluster's Secret following), and a template download stuck or failed in one zone.

Reads are retried; a write is never sent twice when CloudStack may have acted on it (the next run looks
first); every failure is one line naming the object and what to do, with a documented exit code, and
nothing is written to the cluster before the image is ready.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubectl_capc.domain.errors import ExitCode
from tests.support.fault_support import (
    IMAGE_URL,
    READY_EVERYWHERE,
    Started,
    admin,
    cloudstack_api,
    cloudstack_env,
    failure_line,
    faults,
    fresh_version,
    start_upgrade,
    stopped,
    template_tags,
    templates_per_zone,
    upgrade,
)
from tests.support.upgrade_support import (
    REPO,
    TWO_ZONES,
    create_cluster,
    ensure_cloudstack_template,
    get,
    resource_versions,
    version_and_template,
)
from tests.testenv.bed import TestBed, put_secret

pytestmark = pytest.mark.timeout(300)

SECRET = "cloudstack-keys"
MINOR = "v1.31"  # the releases these tests register on the shared double


def by_url(version: str, *extra: str) -> list[str]:
    return [
        "--to",
        version,
        "--image-source",
        "url",
        "--image-url",
        IMAGE_URL,
        "--poll-interval",
        "0.1s",
        *extra,
    ]


@pytest.fixture
def bed(testenv_v1beta2: TestBed) -> Iterator[TestBed]:
    """The v1beta2 bed; keys rotated on the double are put back afterwards, faults cleared."""
    original = cloudstack_env(testenv_v1beta2)
    yield testenv_v1beta2
    admin(testenv_v1beta2, "faults", {})
    admin(
        testenv_v1beta2,
        "credentials",
        {"api_key": original["CLOUDSTACK_KEY"], "secret_key": original["CLOUDSTACK_SECRET"]},
    )


@pytest.fixture
def cluster(bed: TestBed, namespace: str) -> str:
    """A v1.30.2 cluster whose failure domains use a Secret of their own in the test's namespace."""
    _write_secret(bed, namespace)
    zones = [dataclasses.replace(z, secret_name=SECRET, secret_namespace=namespace) for z in TWO_ZONES]
    ensure_cloudstack_template(bed, "ubuntu-2204-kube-v1.30.2")
    create_cluster(
        bed, namespace, version="v1.30.2", zones=zones, control_plane_replicas=1, worker_replicas=1
    )
    return namespace


def _write_secret(bed: TestBed, namespace: str) -> None:
    """The namespace's own credentials Secret, with the double's current keys."""
    env = cloudstack_env(bed)
    body = {
        "metadata": {"name": SECRET, "namespace": namespace},
        "stringData": {
            "api-url": env["CLOUDSTACK_ENDPOINT"],
            "api-key": env["CLOUDSTACK_KEY"],
            "secret-key": env["CLOUDSTACK_SECRET"],
        },
    }
    put_secret(bed, body)


def calls(bed: TestBed, command: str, name: str) -> list[dict[str, Any]]:
    return [c for c in admin(bed, "calls") if c["command"] == command and name in json.dumps(c["params"])]


def upgraded(bed: TestBed, namespace: str, version: str) -> None:
    for kind, name in (("KubeadmControlPlane", "c1-control-plane"), ("MachineDeployment", "c1-md-0")):
        assert version_and_template(get(bed, namespace, kind, name)) == (
            version,
            f"{name}-{version.replace('.', '-')}",
        )


def rerun_converges(bed: TestBed, namespace: str, version: str) -> None:
    """A plain re-run of the same upgrade succeeds and leaves both owners at `version`."""
    again = upgrade(bed, namespace, by_url(version))
    assert again.returncode == 0, again.stderr[-3000:]
    upgraded(bed, namespace, version)


def secret_free(bed: TestBed, *texts: str) -> None:
    """No CloudStack key of the double, old or new, appears in `texts`."""
    keys = {v for k, v in cloudstack_env(bed).items() if k != "CLOUDSTACK_ENDPOINT"}
    for text in texts:
        assert not any(key in text for key in keys)


# -- 530 ----------------------------------------------------------------------------------------------------


def test_530_on_reads_is_retried_with_backoff(bed: TestBed, cluster: str) -> None:
    version = fresh_version(MINOR)
    with faults(bed, {"errors": [{"command": "listTemplates", "times": 2, "errorcode": 530}]}):
        run = upgrade(bed, cluster, by_url(version, "-v", "1"))
        left = admin(bed, "faults")["errors"][0]["times"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert left == 0
    assert run.stderr.count("failed (HTTP 530 response from CloudStack); trying again") == 2
    upgraded(bed, cluster, version)


def test_530_that_persists_is_one_line_and_nothing_is_written(bed: TestBed, cluster: str) -> None:
    version = fresh_version(MINOR)
    before = resource_versions(bed, cluster)
    with faults(bed, {"errors": [{"command": "listTemplates", "times": 50, "errorcode": 530}]}):
        run = upgrade(bed, cluster, by_url(version))
    line = failure_line(run, ExitCode.KUBE_API, "list templates", "CloudStack error 530")
    assert "check the management server log" in line
    assert resource_versions(bed, cluster) == before
    assert not calls(bed, "registerTemplate", f"ubuntu-2204-kube-{version}")


def test_530_on_a_write_is_not_sent_again_and_the_rerun_looks_first(bed: TestBed, cluster: str) -> None:
    version = fresh_version(MINOR)
    name = f"ubuntu-2204-kube-{version}"
    before = resource_versions(bed, cluster)
    with faults(bed, {"errors": [{"command": "registerTemplate", "times": 1, "errorcode": 530}]}):
        run = upgrade(bed, cluster, by_url(version))
    failure_line(run, ExitCode.KUBE_API, f"register template {name!r}", "CloudStack error 530")
    assert len(calls(bed, "registerTemplate", name)) == 1
    assert resource_versions(bed, cluster) == before  # the image comes first: nothing else was written
    rerun_converges(bed, cluster, version)
    assert len(calls(bed, "registerTemplate", name)) == 2
    assert templates_per_zone(bed, name) == READY_EVERYWHERE


def test_tags_lost_to_a_failed_write_are_added_when_the_rerun_finds_the_template_ready(
    bed: TestBed, cluster: str
) -> None:
    version = fresh_version(MINOR)
    name = f"ubuntu-2204-kube-{version}"
    before = resource_versions(bed, cluster)
    with faults(bed, {"errors": [{"command": "createTags", "times": 1, "errorcode": 530}]}):
        run = upgrade(bed, cluster, by_url(version))
    failure_line(run, ExitCode.KUBE_API, "tag template", "CloudStack error 530")
    assert resource_versions(bed, cluster) == before
    assert template_tags(bed, name) == {}
    api = cloudstack_api(bed)
    for _ in range(20):  # each listing moves the double's downloads on: let this one finish
        rows = api.listTemplates(templatefilter="self", name=name, fetch_list=True)
        if all(row["isready"] for row in rows):
            break
    assert templates_per_zone(bed, name) == READY_EVERYWHERE

    rerun_converges(bed, cluster, version)
    assert len(calls(bed, "registerTemplate", name)) == 1
    assert template_tags(bed, name) == {
        "kubernetes-version": version,
        "os": "ubuntu-2204",
        "created-by": "kubectl-capc",
    }


# -- timeouts ------------------------------------------------------------------------------------------------


def test_a_read_past_the_request_timeout_is_retried(bed: TestBed, cluster: str) -> None:
    version = fresh_version(MINOR)
    slow = {"latency": [{"seconds": 3, "commands": ["listTemplates"], "times": 1}]}
    with faults(bed, slow):
        run = upgrade(bed, cluster, by_url(version, "--request-timeout", "1s", "-v", "1"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "timed out" in run.stderr and "trying again" in run.stderr
    upgraded(bed, cluster, version)


def test_a_write_past_the_request_timeout_is_not_sent_again_and_the_rerun_finds_it(
    bed: TestBed, cluster: str
) -> None:
    version = fresh_version(MINOR)
    name = f"ubuntu-2204-kube-{version}"
    with faults(bed, {"latency": [{"seconds": 3, "commands": ["registerTemplate"], "times": 1}]}):
        run = upgrade(bed, cluster, by_url(version, "--request-timeout", "1s"))
        line = failure_line(
            run, ExitCode.KUBE_API, f"register template {name!r}", "it may or may not have been done"
        )
        assert "re-run the same command" in line
        deadline = time.monotonic() + 10
        while not calls(bed, "registerTemplate", name):  # CloudStack did it after all, late
            assert time.monotonic() < deadline
            time.sleep(0.1)
    rerun_converges(bed, cluster, version)
    assert len(calls(bed, "registerTemplate", name)) == 1  # found, waited for, not registered twice
    assert templates_per_zone(bed, name) == READY_EVERYWHERE
    assert template_tags(bed, name)["created-by"] == "kubectl-capc"


# -- keys rotated during a run ------------------------------------------------------------------------------


def stopped_before_the_template(bed: TestBed, cluster: str, version: str, *extra: str) -> Started:
    """An upgrade to `version` by URL, stopped (SIGSTOP) right before it looks for its CloudStack template,
    so that the test can change CloudStack's keys meanwhile."""
    run = start_upgrade(
        bed, cluster, by_url(version, *extra),
        signal_at=f"SIGSTOP@{version} start EnsureImage CloudStack template ubuntu-2204-kube-{version}",
    )  # fmt: skip
    stopped(run.process.pid)
    return run


def test_keys_rotated_with_the_secret_following_are_picked_up_after_the_401(
    bed: TestBed, cluster: str
) -> None:
    version = fresh_version(MINOR)
    run = stopped_before_the_template(bed, cluster, version, "-v", "1")
    admin(bed, "credentials", {})  # the operator rotates the keys ...
    _write_secret(bed, cluster)  # ... and updates the cluster's Secret, as CAPC needs
    run.process.send_signal(signal.SIGCONT)
    done = run.finish()
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"CloudStack rejected the keys; using the new ones from Secret {cluster}/{SECRET}" in done.stderr
    secret_free(bed, done.stdout, done.stderr)
    upgraded(bed, cluster, version)


def test_keys_rotated_without_the_secret_stop_in_one_line_and_a_rerun_converges(
    bed: TestBed, cluster: str
) -> None:
    version = fresh_version(MINOR)
    run = stopped_before_the_template(bed, cluster, version)
    old = cloudstack_env(bed)
    admin(bed, "credentials", {})
    before = resource_versions(bed, cluster)
    run.process.send_signal(signal.SIGCONT)
    failed = run.finish()
    line = failure_line(failed, ExitCode.KUBE_API, "rejected the credentials", f"Secret {cluster}/{SECRET}")
    assert f"check api-key and secret-key in Secret {cluster}/{SECRET}" in line
    assert old["CLOUDSTACK_KEY"] not in failed.stderr and old["CLOUDSTACK_SECRET"] not in failed.stderr
    secret_free(bed, failed.stdout, failed.stderr)
    assert resource_versions(bed, cluster) == before
    _write_secret(bed, cluster)
    rerun_converges(bed, cluster, version)


# -- downloads -----------------------------------------------------------------------------------------------


def test_a_download_stuck_in_one_zone_times_out_in_one_line_then_a_rerun_waits_for_it(
    bed: TestBed, cluster: str
) -> None:
    version = fresh_version(MINOR)
    name = f"ubuntu-2204-kube-{version}"
    before = resource_versions(bed, cluster)
    with faults(bed, {"downloads": [{"zone": "zone2", "mode": "stall", "at_percent": 40, "template": name}]}):
        run = upgrade(bed, cluster, by_url(version, "--timeout", "images=3s"))
    line = failure_line(
        run, ExitCode.KUBE_API, f"template {name!r}", "zone2: 40% Downloaded", "not ready after 3s"
    )
    assert "re-run the same command to keep waiting, or raise --timeout" in line
    assert resource_versions(bed, cluster) == before
    rerun_converges(bed, cluster, version)
    assert len(calls(bed, "registerTemplate", name)) == 1
    assert templates_per_zone(bed, name) == READY_EVERYWHERE


def test_a_download_failed_in_one_zone_is_named_and_replacing_it_recovers(bed: TestBed, cluster: str) -> None:
    version = fresh_version(MINOR)
    name = f"ubuntu-2204-kube-{version}"
    before = resource_versions(bed, cluster)
    with faults(bed, {"downloads": [{"zone": "zone2", "mode": "error", "at_percent": 60, "template": name}]}):
        run = upgrade(bed, cluster, by_url(version))
        line = failure_line(run, ExitCode.KUBE_API, f"template {name!r}", "failed in zone zone2", "404")
        assert "kubectl capc image register ... --replace" in line
        blocked = upgrade(bed, cluster, by_url(version))
    line = failure_line(blocked, ExitCode.PLAN, name, "failed in zone zone2", "--replace")
    assert resource_versions(bed, cluster) == before
    replaced = subprocess.run(
        [sys.executable, "-m", "kubectl_capc", "image", "register", "--cluster", "c1", "-n", cluster,
         "--version", version, "--url", IMAGE_URL.format(version=version), "--replace",
         "--poll-interval", "0.1s", "--kubeconfig", str(bed.kubeconfig)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
    )  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    rerun_converges(bed, cluster, version)
    assert templates_per_zone(bed, name) == READY_EVERYWHERE
