"""Run the plugin as a ServiceAccount bound to the ClusterRole of docs/rbac.yaml, or to a Role of that
role's rules less one permission, on the RBAC-enforcing test bed.

`login()` creates the ServiceAccount and its RoleBinding, asks for a token with a TokenRequest and
writes a kubeconfig that uses it; it returns once the authorizer has seen the binding. Its parts,
`service_account_token()`, `bind_cluster_role()` and `token_kubeconfig()`, serve other tests and bench/.
`permissions()` splits rules into single permissions (one verb on one resource), `rules_without()`
takes one of them away, and `denied_requests()` / `used_permissions()` read the bed's audit log.
`small_cluster()` and `credentials_secret()` make a cluster to run the commands on; `capc()` runs one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_capc.__main__ import main
from tests.support.fixtures_capc import Zone, audit_events, render_cluster
from tests.support.upgrade_support import TWO_ZONES, create_cluster
from tests.testenv.bed import TestBed

RBAC_YAML = Path(__file__).resolve().parents[2] / "docs" / "rbac.yaml"

Rule = dict[str, Any]


@dataclass(frozen=True, order=True)
class Permission:
    """One verb on one resource of one API group ("" is the core group)."""

    group: str
    resource: str
    verb: str

    @property
    def plural(self) -> str:
        """`resource.group` as kubectl spells it, or just `resource` in the core group."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def __str__(self) -> str:
        return f"{self.verb} {self.plural}"


@dataclass(frozen=True)
class Login:
    """A ServiceAccount's token and a kubeconfig (current context: its namespace) that uses it."""

    name: str
    namespace: str
    token: str
    kubeconfig: Path

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


@dataclass(frozen=True)
class RoleRef:
    """A RoleBinding's `roleRef`: a Role of the binding's namespace, or a ClusterRole."""

    kind: str
    name: str


def _documented_role() -> dict[str, Any]:
    documents = [doc for doc in yaml.safe_load_all(RBAC_YAML.read_text()) if doc]
    role: dict[str, Any] = next(doc for doc in documents if doc["kind"] == "ClusterRole")
    return role


def role_rules() -> list[Rule]:
    """The rules of the ClusterRole that docs/rbac.yaml ships."""
    rules: list[Rule] = _documented_role()["rules"]
    return rules


def permissions(rules: Iterable[Rule]) -> tuple[Permission, ...]:
    """Every single permission the rules grant, sorted, each once."""
    return tuple(
        sorted(
            {
                Permission(group, resource, verb)
                for rule in rules
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            }
        )
    )


def rules_without(rules: Sequence[Rule], removed: Permission) -> list[Rule]:
    """The rules less `removed`: a rule that grants it is split so that everything else stays granted."""
    kept: list[Rule] = []
    for rule in rules:
        if Permission(removed.group, removed.resource, removed.verb) not in permissions([rule]):
            kept.append(rule)
            continue
        for permission in permissions([rule]):
            if permission != removed:
                kept.append(_rule(permission))
    return kept


def _rule(permission: Permission) -> Rule:
    return {"apiGroups": [permission.group], "resources": [permission.resource], "verbs": [permission.verb]}


def apply_documented_role(bed: TestBed, namespace: str) -> RoleRef:
    """`kubectl apply -n NAMESPACE -f docs/rbac.yaml`, as the docs say; returns its ClusterRole."""
    import subprocess

    kubectl = [str(bed.kubectl), "--kubeconfig", str(bed.kubeconfig)]
    subprocess.run(
        [*kubectl, "apply", "-n", namespace, "-f", str(RBAC_YAML)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return RoleRef("ClusterRole", _documented_role()["metadata"]["name"])


def create_role(bed: TestBed, namespace: str, name: str, rules: Sequence[Rule]) -> RoleRef:
    """A Role of `namespace` with `rules`."""
    from kubernetes import client

    client.RbacAuthorizationV1Api(bed.api_client()).create_namespaced_role(
        namespace, {"metadata": {"name": name}, "rules": list(rules)}
    )
    return RoleRef("Role", name)


def login(bed: TestBed, namespace: str, name: str, role: RoleRef, directory: Path) -> Login:
    """ServiceAccount `name` in `namespace`, bound there to `role` by a RoleBinding."""
    from kubernetes import client

    api = bed.api_client()
    rbac = client.RbacAuthorizationV1Api(api)
    token = service_account_token(bed, namespace, name)
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role.kind, "name": role.name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )
    kubeconfig = token_kubeconfig(bed, directory / f"{name}.kubeconfig", name, token, namespace=namespace)
    account = Login(name, namespace, token, kubeconfig)
    if role.kind == "Role":
        stored = rbac.read_namespaced_role(role.name, namespace)
    else:
        stored = rbac.read_cluster_role(role.name)
    granted = permissions(api.sanitize_for_serialization(stored).get("rules") or [])
    _wait_until_bound(account, granted[0] if granted else None)
    return account


def service_account_token(bed: TestBed, namespace: str, name: str, *, seconds: int = 3600) -> str:
    """Create ServiceAccount `name` in `namespace` and return a token for it from a TokenRequest."""
    from kubernetes import client

    core = client.CoreV1Api(bed.api_client())
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    request = {"spec": {"expirationSeconds": seconds}}
    status = core.create_namespaced_service_account_token(name, namespace, request).status
    assert status is not None and status.token, f"no token for ServiceAccount {namespace}/{name}"
    return str(status.token)


def bind_cluster_role(
    bed: TestBed,
    namespace: str,
    name: str,
    cluster_role: str,
    *,
    binding: str,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Bind ServiceAccount `namespace`/`name` to ClusterRole `cluster_role` in every namespace."""
    from kubernetes import client

    client.RbacAuthorizationV1Api(bed.api_client()).create_cluster_role_binding(
        {
            "metadata": {"name": binding, "labels": dict(labels or {})},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }
    )


def token_kubeconfig(
    bed: TestBed, path: Path, user: str, token: str, *, namespace: str | None = None
) -> Path:
    """Write a kubeconfig (mode 0600) for the bed's API server that authenticates as `user` with `token`;
    its context's namespace is `namespace` when given."""
    cluster = yaml.safe_load(bed.kubeconfig.read_text())["clusters"][0]
    context = {"cluster": cluster["name"], "user": user, **({"namespace": namespace} if namespace else {})}
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": context}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


def _wait_until_bound(account: Login, granted: Permission | None, timeout: float = 20) -> None:
    """RBAC sees a new binding through an informer: ask, as the account, until it is allowed."""
    from kubernetes import client, config

    if granted is None:
        return
    api = client.AuthorizationV1Api(config.new_client_from_config(config_file=str(account.kubeconfig)))
    review = {
        "spec": {
            "resourceAttributes": {
                "verb": granted.verb,
                "group": granted.group,
                "resource": granted.resource,
                "namespace": account.namespace,
            }
        }
    }
    deadline = time.monotonic() + timeout
    while not api.create_self_subject_access_review(review).status.allowed:
        if time.monotonic() > deadline:
            raise AssertionError(f"{account.username} still may not {granted} after {timeout:.0f}s")
        time.sleep(0.1)


def denied_requests(bed: TestBed, username: str) -> list[Permission]:
    """What each of `username`'s requests that the bed's API server answered with 403 asked for.

    A server-side apply that would create the object is a `patch` here, refused for want of `create`.
    """
    return [p for p, code in _requests(bed, username) if code == 403]


def used_permissions(bed: TestBed, username: str) -> set[Permission]:
    """The resource permissions `username` exercised with success, from the bed's audit log.

    SelfSubjectAccessReviews and API discovery are left out: every authenticated user may make them.
    """
    requests = _requests(bed, username)
    return {p for p, code in requests if code < 400 and p.resource != "selfsubjectaccessreviews"}


def _requests(bed: TestBed, username: str) -> list[tuple[Permission, int]]:
    found = []
    for event in audit_events(bed.audit_log, username):
        ref = event.get("objectRef")
        if not ref or event["user"].get("username") != username:
            continue
        permission = Permission(ref.get("apiGroup", ""), ref["resource"], event["verb"])
        found.append((permission, int(event.get("responseStatus", {}).get("code", 0))))
    return found


# -- a cluster to run the commands on -------------------------------------------------------------

SHAPE: dict[str, Any] = {
    "md_count": 1,
    "control_plane_replicas": 1,
    "worker_replicas": 1,
    "control_plane_offering": "Large Instance",  # offerings of the double's example seed
    "worker_offering": "Medium Instance",
}


@dataclass(frozen=True)
class Run:
    """One `kubectl capc` run: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The last line of stderr (where a failure's one-line `error: ...` goes)."""
        lines = self.err.strip().splitlines()
        return lines[-1] if lines else ""


def capc(capsys: pytest.CaptureFixture[str], kubeconfig: Path, *args: str) -> Run:
    """`kubectl capc ARGS --kubeconfig KUBECONFIG`, in this process."""
    capsys.readouterr()
    code = main([*args, "--kubeconfig", str(kubeconfig)])
    out, err = capsys.readouterr()
    return Run(code, out, err)


def credentials_secret(
    bed: TestBed, namespace: str, name: str = "cloudstack-credentials", **overrides: str
) -> dict[str, str]:
    """A CAPC credentials Secret for the bed's CloudStack double; `overrides` use `_` for `-` in keys."""
    from kubernetes import client

    data = {
        "api-url": bed.cloudstack["CLOUDSTACK_ENDPOINT"],
        "api-key": bed.cloudstack["CLOUDSTACK_KEY"],
        "secret-key": bed.cloudstack["CLOUDSTACK_SECRET"],
        **{key.replace("_", "-"): value for key, value in overrides.items()},
    }
    body = {"metadata": {"name": name, "namespace": namespace}, "stringData": data}
    client.CoreV1Api(bed.api_client()).create_namespaced_secret(namespace, body)
    return data


def small_cluster(
    bed: TestBed,
    namespace: str,
    name: str = "c1",
    *,
    secret: str = "cloudstack-credentials",
    annotate: Mapping[str, Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """A cluster at v1.28.5 with one control-plane machine and one MachineDeployment of one machine, in
    the double's two zones, whose failure domains read Secret `secret` of `namespace`; fully rolled out.

    Returns its objects as rendered, e.g. for the files of GitOps mode.
    """
    zones = tuple(Zone(z.name, z.network, secret_name=secret, secret_namespace=namespace) for z in TWO_ZONES)
    create_cluster(bed, namespace, name, annotate=annotate, zones=zones, **SHAPE)
    return render_cluster(name, namespace, capi=bed.capi, zones=zones, **SHAPE)


def write_manifests(objects: Iterable[Mapping[str, Any]], directory: Path) -> Path:
    """The objects as one YAML file in `directory` (which is created), as a Git repository would hold them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cluster.yaml").write_text(yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False))
    return directory
