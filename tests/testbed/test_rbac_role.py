"""The Role of docs/rbac.yaml is enough for every command, and every permission in it is used.

A ServiceAccount is bound to exactly that Role, applied from the file as the docs say, on the RBAC-
enforcing test bed. As that account, `validate`, `image-upgrade` (online, and GitOps mode with
`--server-dry-run`), `status` (also `--watch`), `rollback`, `history`, `cleanup`, `describe` and
`image list` all succeed on a cluster in both CAPI profiles (one upgrade takes over an expired upgrade
lock); the API server's audit log then shows that none of the account's requests was refused and that
the permissions it used are exactly those the Role grants.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_capc.domain.errors import ExitCode
from tests.support.lease_support import put_lease, read_lease
from tests.support.rbac_support import (
    RBAC_YAML,
    Permission,
    apply_documented_role,
    capc,
    create_role,
    credentials_secret,
    denied_requests,
    login,
    permissions,
    role_rules,
    small_cluster,
    used_permissions,
    write_manifests,
)
from tests.support.upgrade_support import (
    cli,
    ensure_cloudstack_template,
    get,
    patch,
    resource_versions,
    version_and_template,
    wait_for,
)
from tests.testenv.bed import TestBed
from tests.testenv.rollout_model import FAIL_ANNOTATION

Capsys = pytest.CaptureFixture[str]


def test_the_documented_role_runs_every_command_and_all_of_it_is_used(
    testenv: TestBed, namespace: str, tmp_path: Path, capsys: Capsys
) -> None:
    bed = testenv
    ensure_cloudstack_template(bed, "ubuntu-2204-kube-v1.28.9")
    credentials_secret(bed, namespace)
    manifests = write_manifests(small_cluster(bed, namespace), tmp_path / "git")
    account = login(bed, namespace, "upgrader", apply_documented_role(bed, namespace), tmp_path)

    def ok(*args: str, code: int = 0) -> str:
        run = capc(capsys, account.kubeconfig, *args, "-n", namespace)
        assert run.code == code, f"{args}: {run.err}"
        return run.out

    report = json.loads(ok("validate", "c1", "--to", "v1.28.9", "-o", "json"))
    # This bed runs no workload cluster, so c1's kubeconfig Secret is missing (CAPC-W001, with the
    # drain-timeout warnings that need no workload cluster); nothing else is found.
    findings = report["clusters"][0]["findings"]
    assert [f["id"] for f in findings if f["id"] != "CAPC-W007"] == ["CAPC-W001"]
    assert f"Secret {namespace}/c1-kubeconfig not found" in findings[0]["message"]
    gitops = ok("image-upgrade", "c1", "--to", "v1.29.3", "-f", str(manifests), "--server-dry-run",
                "--output-dir", str(tmp_path / "out"))  # fmt: skip
    assert gitops.count("accepted by the API server (dryRun=All)") == 4
    ok("image-upgrade", "c1", "--to", "v1.28.9", "--dry-run", code=1)
    assert "KubeadmControlPlane/c1-control-plane" in ok("status", "c1")
    follow_a_rollout(bed, namespace, account.kubeconfig)
    # A run killed elsewhere left its lock behind: this one takes it over (update) once it has expired.
    put_lease(bed, namespace, "bob@build-7/4121", datetime.now(timezone.utc) - timedelta(minutes=5))
    ok("image-upgrade", "c1", "--to", "v1.28.9", "--yes")
    assert read_lease(bed, namespace) is None
    assert "v1.28.9" in ok("history", "c1")
    ok("rollback", "c1", "--dry-run", code=1)
    ok("rollback", "c1", "--yes")
    kcp = get(bed, namespace, "KubeadmControlPlane", "c1-control-plane")
    assert version_and_template(kcp) == ("v1.28.5", "c1-control-plane")
    ok("image-upgrade", "c1", "--to", "v1.29.3", "--yes")
    ok("cleanup", "c1", "--dry-run", code=1)
    ok("cleanup", "c1", "--yes")
    assert "v1.29.3" in ok("describe", "c1")
    assert "ubuntu-2204-kube-v1.29.3" in ok("image", "list", "--cluster", "c1")

    assert denied_requests(bed, account.username) == []
    assert sorted(used_permissions(bed, account.username)) == list(permissions(role_rules()))


def follow_a_rollout(bed: TestBed, namespace: str, kubeconfig: Path) -> None:
    """`status --watch` as the account, while the control plane rolls out: held (FAIL) until the first
    status is printed, so that the rest of the rollout is followed through the watch."""
    kcp = "c1-control-plane"
    patch(bed, namespace, "KubeadmControlPlane", kcp, {"metadata": {"annotations": {FAIL_ANNOTATION: "x"}}})
    done = cli(bed, "image-upgrade", "c1", "-n", namespace, "--to", "v1.28.9", "--yes", "--no-wait")
    assert done.returncode == 0, done.stderr
    command = [sys.executable, "-m", "kubectl_capc", "status", "c1", "-n", namespace, "--watch"]
    with subprocess.Popen(
        [*command, "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as watching:
        assert watching.stdout is not None
        first = watching.stdout.readline()
        assert first.startswith("OWNER"), first + watching.stderr.read() if watching.stderr else first
        patch(
            bed, namespace, "KubeadmControlPlane", kcp, {"metadata": {"annotations": {FAIL_ANNOTATION: None}}}
        )
        out, err = watching.communicate(timeout=120)
    assert watching.returncode == 0, err
    assert "1 new, 0 old" in out  # printed again once the control plane had rolled out


READ_VERBS = {"get", "list", "watch"}
UPGRADE_WRITES = {
    Permission("infrastructure.cluster.x-k8s.io", "cloudstackmachinetemplates", "create"),
    Permission("controlplane.cluster.x-k8s.io", "kubeadmcontrolplanes", "patch"),
    Permission("cluster.x-k8s.io", "machinedeployments", "patch"),
    *(Permission("coordination.k8s.io", "leases", verb) for verb in ("create", "update", "delete")),
}


def test_read_verbs_and_the_secret_are_enough_for_the_commands_that_only_read(
    testenv_v1beta2: TestBed, namespace: str, tmp_path: Path, capsys: Capsys
) -> None:
    bed = testenv_v1beta2
    credentials_secret(bed, namespace)
    small_cluster(bed, namespace)
    rules = [
        {**rule, "verbs": sorted(set(rule["verbs"]) & READ_VERBS)}
        for rule in role_rules()
        if set(rule["verbs"]) & READ_VERBS
    ]
    account = login(bed, namespace, "reader", create_role(bed, namespace, "reader", rules), tmp_path)

    for args in (("describe", "c1"), ("history", "c1"), ("image", "list", "--cluster", "c1")):
        run = capc(capsys, account.kubeconfig, *args, "-n", namespace)
        assert run.code == 0, f"{args}: {run.err}"
    run = capc(capsys, account.kubeconfig, "validate", "c1", "-n", namespace, "-o", "json")
    findings = json.loads(run.out)["clusters"][0]["findings"]
    # validate runs, and reports what an upgrade would still need.
    assert run.code == 1
    assert sorted(f["message"] for f in findings if f["id"] == "CAPC-P001") == sorted(
        f"you cannot {p} in namespace {namespace}" for p in UPGRADE_WRITES
    )
    assert denied_requests(bed, account.username) == []


def _replace_rules() -> list[dict[str, Any]]:
    """The rule docs/rbac.md gives for `--on-delete=replace`: the YAML block after its mention."""
    text = (RBAC_YAML.parent / "rbac.md").read_text()
    block = (
        text[text.index("`image-upgrade --on-delete=replace`") :].split("```yaml\n", 1)[1].split("```", 1)[0]
    )
    rules: list[dict[str, Any]] = yaml.safe_load(block)
    return rules


def test_on_delete_replace_is_refused_before_any_write_until_the_documented_rule_is_granted(
    testenv: TestBed, namespace: str, tmp_path: Path, capsys: Capsys
) -> None:
    from kubernetes import client

    bed = testenv
    credentials_secret(bed, namespace)
    small_cluster(bed, namespace)
    strategy = {"strategy": {"type": "OnDelete"}}
    patch(bed, namespace, "MachineDeployment", "c1-md-0",
          {"spec": {"rollout": strategy} if bed.capi == "v1beta2" else strategy})  # fmt: skip
    account = login(bed, namespace, "upgrader", apply_documented_role(bed, namespace), tmp_path)
    upgrade = ("image-upgrade", "c1", "-n", namespace, "--to", "v1.29.3", "--yes", "--on-delete=replace")
    before = resource_versions(bed, namespace)

    refused = capc(capsys, account.kubeconfig, *upgrade)

    assert refused.code == ExitCode.PLAN, refused.err
    assert "CAPC-P001: you cannot delete machines" in refused.err and "--on-delete=replace" in refused.err
    assert "you cannot watch machines" not in refused.err  # the Role has that one
    assert resource_versions(bed, namespace) == before

    extra = create_role(bed, namespace, "replacer", _replace_rules())
    client.RbacAuthorizationV1Api(bed.api_client()).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "replacer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": extra.kind, "name": extra.name},
            "subjects": [{"kind": "ServiceAccount", "name": "upgrader", "namespace": namespace}],
        },
    )
    wait_for("the extra rule to be bound", lambda: capc(capsys, account.kubeconfig, *upgrade).code == 0)
    md = get(bed, namespace, "MachineDeployment", "c1-md-0")
    assert version_and_template(md) == ("v1.29.3", "c1-md-0-v1-29-3")
    assert denied_requests(bed, account.username) == []
