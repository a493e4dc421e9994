"""Every permission in docs/rbac.yaml is needed: without any one of them, each command that uses it fails
with a message that names the missing verb and resource.

For each permission (one verb on one resource) a ServiceAccount is bound to the documented Role less
that permission, and the commands that need it run on the v1beta2 test bed: each must fail (exit 4 with
one `error:` line, or for `validate` a CAPC-P001 finding, exit 1) naming the verb and the resource, and
the audit log must show that the only requests refused were of that permission. Commands that fail
before writing share one cluster, and must indeed have written nothing (the upgrade lock's `update` and
`delete` are needed only once the lock is taken: an upgrade with nothing to do shows them);
`image-upgrade` and `rollback` notice a missing `watch` only after the first patch (`validate` reports
it ahead), so those runs get a cluster of their own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.support.lease_support import drop_lease, put_lease
from tests.support.rbac_support import (
    Permission,
    Run,
    apply_documented_role,
    capc,
    create_role,
    credentials_secret,
    denied_requests,
    login,
    permissions,
    role_rules,
    rules_without,
    small_cluster,
    write_manifests,
)
from tests.support.upgrade_support import (
    cli,
    ensure_cloudstack_template,
    patch,
    read,
    resource_versions,
    wait_for,
)
from tests.testenv.bed import TestBed

Capsys = pytest.CaptureFixture[str]

CAPI, CONTROL_PLANE = "cluster.x-k8s.io", "controlplane.cluster.x-k8s.io"
CAPC = "infrastructure.cluster.x-k8s.io"
COORDINATION = "coordination.k8s.io"
FAIL = "testenv.kubectl-capc.io/fail"  # the rollout simulator never finishes an object with it

# The commands, as run on the shared cluster (at v1.28.9 after a same-minor upgrade, so that every one
# of them has work to do), by name.
COMMANDS = {
    "validate": ("validate", "c1", "--to", "v1.29.3"),
    "image-upgrade": ("image-upgrade", "c1", "--to", "v1.29.3", "--yes"),
    "rollback": ("rollback", "c1", "--yes"),
    "cleanup": ("cleanup", "c1", "--yes"),
    "gitops": ("image-upgrade", "c1", "--to", "v1.29.3", "--server-dry-run"),  # + -f FILES --output-dir
    "status": ("status", "c1"),
    # Nothing to do, so it only takes and releases the upgrade lock (or takes over an expired one).
    "locking": ("image-upgrade", "c1", "--to", "v1.28.9", "--yes"),
}
READING_A_CLUSTER = ("validate", "image-upgrade", "rollback", "cleanup", "status")
LOCKING = ("validate", "image-upgrade", "rollback", "cleanup")
PATCHING = ("validate", "image-upgrade", "rollback", "gitops")
# Which commands each permission of the Role is needed by.
NEEDED_BY: dict[Permission, tuple[str, ...]] = {
    Permission(CAPI, "clusters", "list"): READING_A_CLUSTER,
    Permission(CAPI, "machines", "list"): READING_A_CLUSTER,
    Permission(CAPI, "machinedeployments", "list"): READING_A_CLUSTER,
    Permission(CONTROL_PLANE, "kubeadmcontrolplanes", "list"): READING_A_CLUSTER,
    Permission("bootstrap.cluster.x-k8s.io", "kubeadmconfigtemplates", "list"): READING_A_CLUSTER,
    Permission(CAPC, "cloudstackclusters", "list"): READING_A_CLUSTER,
    Permission(CAPC, "cloudstackmachinetemplates", "list"): READING_A_CLUSTER,
    Permission(CAPI, "machinesets", "list"): ("cleanup",),
    Permission(CAPC, "cloudstackmachines", "list"): READING_A_CLUSTER,
    Permission(CAPI, "machinehealthchecks", "list"): ("status",),
    Permission(CONTROL_PLANE, "kubeadmcontrolplanes", "get"): ("validate", "image-upgrade", "rollback"),
    Permission(CAPI, "machinedeployments", "get"): ("validate", "image-upgrade", "rollback"),
    Permission(CONTROL_PLANE, "kubeadmcontrolplanes", "patch"): PATCHING,
    Permission(CAPI, "machinedeployments", "patch"): PATCHING,
    Permission(CAPC, "cloudstackmachinetemplates", "create"): ("validate", "image-upgrade", "gitops"),
    Permission(CAPC, "cloudstackmachinetemplates", "patch"): ("gitops",),
    Permission(CAPC, "cloudstackmachinetemplates", "delete"): ("cleanup",),
    Permission("", "secrets", "get"): ("validate", "image-upgrade"),
    Permission(COORDINATION, "leases", "get"): LOCKING,
    Permission(COORDINATION, "leases", "create"): LOCKING,
    # Renewing, or taking over an expired lock (the case below puts one first), and releasing it.
    Permission(COORDINATION, "leases", "update"): ("validate", "locking"),
    Permission(COORDINATION, "leases", "delete"): ("validate", "locking"),
}
# What validate asks ahead of an upgrade (SelfSubjectAccessReviews) and reports as CAPC-P001 findings.
FINDINGS_OF_VALIDATE = {
    *(Permission(CONTROL_PLANE, "kubeadmcontrolplanes", verb) for verb in ("get", "patch", "watch")),
    *(Permission(CAPI, "machinedeployments", verb) for verb in ("get", "patch", "watch")),
    Permission(CAPC, "cloudstackmachinetemplates", "create"),
    Permission("", "secrets", "get"),
    *(Permission(COORDINATION, "leases", verb) for verb in ("get", "create", "update", "delete")),
}
# Noticed only once the rollout is watched, after the first write: image-upgrade, then rollback of it.
WATCHES = {
    Permission(CONTROL_PLANE, "kubeadmcontrolplanes", "watch"): ("KubeadmControlPlane", "c1-control-plane"),
    Permission(CAPI, "machinedeployments", "watch"): ("MachineDeployment", "c1-md-0"),
}


# Noticed by `status --watch` once a rollout is to be followed.
STATUS_WATCH = Permission(CAPI, "machines", "watch")


def account_name(permission: Permission) -> str:
    return f"no-{permission.verb}-{permission.resource}"[:63]


def names(text: str, permission: Permission) -> bool:
    """Whether `text` names the verb, then the resource, and the API group of `permission`."""
    verb = re.search(rf"\b{permission.verb}\b", text)
    if verb is None or permission.group not in text:
        return False
    return re.search(rf"\b{re.escape(permission.resource)}\b", text[verb.end() :]) is not None


def assert_refused(run: Run, permission: Permission, command: str) -> None:
    if command == "validate" and permission in FINDINGS_OF_VALIDATE:
        # validate asks whether an upgrade's requests would be allowed, and reports the answer.
        assert run.code == 1, run.err
        assert "CAPC-P001" in run.out and f"you cannot {permission}" in run.out, run.out
        return
    assert run.code == 4, f"{command} without {permission}: exit {run.code}\n{run.out}\n{run.err}"
    assert run.error_line.startswith("error: "), run.err
    assert names(run.error_line, permission), run.error_line


def assert_only_refused(bed: TestBed, username: str, permission: Permission) -> None:
    """The API server refused `permission`, and nothing but requests on its resource."""
    denied = denied_requests(bed, username)
    assert permission in denied, denied
    assert {(p.group, p.resource) for p in denied} == {(permission.group, permission.resource)}, denied


def test_the_table_covers_every_permission_of_the_role() -> None:
    assert sorted([*NEEDED_BY, *WATCHES, STATUS_WATCH]) == list(permissions(role_rules()))


def test_names_needs_verb_then_resource_and_group() -> None:
    patch_md = Permission(CAPI, "machinedeployments", "patch")
    assert names('patch MachineDeployment/c1: cannot patch resource "machinedeployments" in API group '
                 '"cluster.x-k8s.io"', patch_md)  # fmt: skip
    assert names("forbidden: u cannot patch machinedeployments.cluster.x-k8s.io in namespace n", patch_md)
    assert not names("cannot get machinedeployments.cluster.x-k8s.io", patch_md)
    assert not names("cannot patch machinedeployments", patch_md)
    assert not names("machinedeployments.cluster.x-k8s.io: cannot patch", patch_md)


@dataclass(frozen=True)
class Shared:
    bed: TestBed
    namespace: str
    manifests: Path
    directory: Path


@pytest.fixture(scope="module")
def shared(testenv_v1beta2: TestBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """A cluster upgraded v1.28.5 → v1.28.9 (rollback and cleanup have work), and GitOps files of it."""
    from kubernetes import client

    bed = testenv_v1beta2
    namespace = f"rbac-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(bed.api_client())
    core.create_namespace({"metadata": {"name": namespace}})
    directory = tmp_path_factory.mktemp("rbac-removal")
    try:
        ensure_cloudstack_template(bed, "ubuntu-2204-kube-v1.28.9")
        credentials_secret(bed, namespace)
        manifests = write_manifests(small_cluster(bed, namespace), directory / "git")
        done = cli(bed, "image-upgrade", "c1", "-n", namespace, "--to", "v1.28.9", "--yes")
        assert done.returncode == 0, done.stderr
        yield Shared(bed, namespace, manifests, directory)
    finally:
        core.delete_namespace(namespace)


def command_args(shared: Shared, command: str, output_dir: str) -> list[str]:
    args = [*COMMANDS[command], "-n", shared.namespace]
    if command == "gitops":
        args += ["-f", str(shared.manifests), "--output-dir", str(shared.directory / output_dir)]
    return args


def test_with_the_whole_role_every_command_gets_past_the_requests_the_others_are_refused(
    shared: Shared, capsys: Capsys
) -> None:
    """The baseline of the cases below, with dry runs, so that the shared cluster stays as it is."""
    bed, namespace = shared.bed, shared.namespace
    account = login(bed, namespace, "everything", apply_documented_role(bed, namespace), shared.directory)
    before = resource_versions(bed, namespace)
    for command in COMMANDS:
        dry_run = ["--dry-run"] if command in ("image-upgrade", "rollback", "cleanup") else []
        run = capc(capsys, account.kubeconfig, *command_args(shared, command, "everything"), *dry_run)
        ok = command in ("validate", "gitops", "locking", "status")
        assert run.code == (0 if ok else 1), f"{command}: {run.err}"
    assert resource_versions(bed, namespace) == before
    assert denied_requests(bed, account.username) == []


@pytest.mark.parametrize("permission", sorted(NEEDED_BY), ids=str)
def test_without_it_the_commands_that_need_it_fail_before_writing(
    shared: Shared, capsys: Capsys, permission: Permission
) -> None:
    bed, namespace = shared.bed, shared.namespace
    name = account_name(permission)
    role = create_role(bed, namespace, name, rules_without(role_rules(), permission))
    account = login(bed, namespace, name, role, shared.directory)
    before = resource_versions(bed, namespace)
    try:
        for command in NEEDED_BY[permission]:
            if permission == Permission(COORDINATION, "leases", "update") and command == "locking":
                # A lock left by a run killed elsewhere, expired: taking it over is an update.
                expired = datetime.now(timezone.utc) - timedelta(minutes=5)
                put_lease(bed, namespace, "bob@build-7/4121", expired)
            run = capc(capsys, account.kubeconfig, *command_args(shared, command, name))
            assert_refused(run, permission, command)
            assert resource_versions(bed, namespace) == before, f"{command} wrote before failing"
    finally:
        drop_lease(bed, namespace)
    assert_only_refused(bed, account.username, permission)


@pytest.mark.parametrize("permission", sorted(WATCHES), ids=str)
def test_without_watch_upgrade_and_rollback_stop_at_the_wait(
    testenv_v1beta2: TestBed, namespace: str, tmp_path: Path, capsys: Capsys, permission: Permission
) -> None:
    bed = testenv_v1beta2
    kind, watched = WATCHES[permission]
    ensure_cloudstack_template(bed, "ubuntu-2204-kube-v1.28.9")
    credentials_secret(bed, namespace)
    # While it carries FAIL the watched object does not finish a rollout, so no wait ends at its LIST.
    small_cluster(bed, namespace, annotate={watched: {FAIL: "ImagePullFailed"}})
    name = account_name(permission)
    role = create_role(bed, namespace, name, rules_without(role_rules(), permission))
    account = login(bed, namespace, name, role, tmp_path)

    # validate asks ahead, so the missing permission is known before anything is patched.
    run = capc(capsys, account.kubeconfig, "validate", "c1", "-n", namespace, "--to", "v1.28.9")
    assert_refused(run, permission, "validate")
    run = capc(capsys, account.kubeconfig, "image-upgrade", "c1", "-n", namespace, "--to", "v1.28.9", "--yes")
    assert_refused(run, permission, "image-upgrade")
    # Let that rollout finish, so that going back needs new machines again; then stall it once more.
    patch(bed, namespace, kind, watched, {"metadata": {"annotations": {FAIL: None}}})
    wait_for("the upgrade to finish", lambda: not read(bed, namespace).rollout_in_progress())
    patch(bed, namespace, kind, watched, {"metadata": {"annotations": {FAIL: "ImagePullFailed"}}})
    run = capc(capsys, account.kubeconfig, "rollback", "c1", "-n", namespace, "--yes")
    assert_refused(run, permission, "rollback")
    assert_only_refused(bed, account.username, permission)


def test_without_watching_machines_status_cannot_follow_a_rollout(
    testenv_v1beta2: TestBed, namespace: str, tmp_path: Path, capsys: Capsys
) -> None:
    bed = testenv_v1beta2
    ensure_cloudstack_template(bed, "ubuntu-2204-kube-v1.28.9")
    credentials_secret(bed, namespace)
    small_cluster(bed, namespace, annotate={"c1-control-plane": {FAIL: "ImagePullFailed"}})
    done = cli(bed, "image-upgrade", "c1", "-n", namespace, "--to", "v1.28.9", "--yes", "--no-wait")
    assert done.returncode == 0, done.stderr
    name = account_name(STATUS_WATCH)
    role = create_role(bed, namespace, name, rules_without(role_rules(), STATUS_WATCH))
    account = login(bed, namespace, name, role, tmp_path)

    assert capc(capsys, account.kubeconfig, "status", "c1", "-n", namespace).code == 0
    run = capc(capsys, account.kubeconfig, "status", "c1", "-n", namespace, "--watch")
    assert_refused(run, STATUS_WATCH, "status")
    assert_only_refused(bed, account.username, STATUS_WATCH)
