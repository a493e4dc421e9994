"""The workload reader's parts that need no server: object parsing, the in-memory client, the refusals."""

from __future__ import annotations

import base64
import os
import socket
from typing import Any

import pytest
import yaml

from kubectl_capc.domain.checks.workload import removed_between
from kubectl_capc.domain.selectors import Operator
from kubectl_capc.domain.versions import parse_version
from kubectl_capc.kube import rest, workload
from kubectl_capc.kube.read import SecretAnswer
from kubectl_capc.kube.workload import (
    machine_from_object,
    node_from_object,
    pdb_from_object,
    pod_from_object,
    read_workload,
    written_from_object,
)

META = {"name": "c1-md-0-abc", "namespace": "prod", "creationTimestamp": "2026-01-02T03:04:05Z"}


def test_v1beta1_machine_with_a_duration_drain_timeout() -> None:
    machine = machine_from_object(
        {
            "apiVersion": "cluster.x-k8s.io/v1beta1",
            "metadata": {**META, "labels": {"cluster.x-k8s.io/deployment-name": "md-0"}},
            "spec": {"version": "v1.28.5", "providerID": "cloudstack:///vm-1", "nodeDrainTimeout": "5m"},
            "status": {"nodeRef": {"kind": "Node", "name": "n1"}, "phase": "Running"},
        }
    )
    assert (machine.owner_kind, machine.owner_name) == ("MachineDeployment", "md-0")
    assert (machine.provider_id, machine.node_ref, machine.version) == ("cloudstack:///vm-1", "n1", "v1.28.5")
    assert machine.drain_timeout_seconds == 300
    assert machine.created is not None and machine.created.year == 2026
    assert machine.deleting_since is None


def test_v1beta2_control_plane_machine_with_seconds_and_a_drain_under_way() -> None:
    machine = machine_from_object(
        {
            "apiVersion": "cluster.x-k8s.io/v1beta2",
            "metadata": {
                **META,
                "deletionTimestamp": "2026-01-02T04:00:00Z",
                "labels": {
                    "cluster.x-k8s.io/control-plane": "",
                    "cluster.x-k8s.io/control-plane-name": "c1-cp",
                },
            },
            "spec": {"deletion": {"nodeDrainTimeoutSeconds": 90}},
            "status": {
                "deletion": {"nodeDrainStartTime": "2026-01-02T04:00:01Z"},
                "conditions": [{"type": "Deleting", "status": "True", "reason": "DrainingNode"}],
            },
        }
    )
    assert (machine.owner_kind, machine.owner_name) == ("KubeadmControlPlane", "c1-cp")
    assert machine.drain_timeout_seconds == 90
    assert machine.deleting_since is not None and machine.drain_started is not None
    assert machine.condition("Deleting") is not None


def test_machine_without_drain_timeout_waits_forever() -> None:
    machine = machine_from_object({"metadata": META, "spec": {}})
    assert machine.node_drain_timeout is None and machine.drain_timeout_seconds == 0


def test_node_readiness_taints_and_kubelet() -> None:
    node = node_from_object(
        {
            "metadata": {"name": "n1", "labels": {"a": "b"}},
            "spec": {
                "providerID": "cloudstack:///vm-1",
                "unschedulable": True,
                "taints": [
                    {"key": "k", "value": "v", "effect": "NoSchedule"},
                    {"key": "x", "effect": "NoExecute"},
                ],
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "False"}],
                "nodeInfo": {"kubeletVersion": "v1.27.1"},
            },
        }
    )
    assert (node.name, node.ready, node.kubelet_version, node.unschedulable) == ("n1", False, "v1.27.1", True)
    assert node.taints == ("k=v:NoSchedule", "x:NoExecute")
    assert node_from_object({"metadata": {"name": "n2"}, "status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}).ready  # fmt: skip


def test_mirror_pods_are_owned_by_their_node_and_daemonset_pods_keep_their_owner() -> None:
    mirror = pod_from_object(
        {
            "metadata": {"name": "etcd-n1", "namespace": "kube-system",
                         "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"},
        }
    )  # fmt: skip
    assert (mirror.owner_kind, mirror.evicted_by_drain) == ("Node", False)
    daemon = pod_from_object(
        {
            "metadata": {"name": "d", "namespace": "ns", "ownerReferences": [
                {"kind": "DaemonSet", "name": "d", "controller": True}]},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"},
        }
    )  # fmt: skip
    assert not daemon.evicted_by_drain
    web = pod_from_object(
        {
            "metadata": {"name": "w", "namespace": "ns", "labels": {"app": "web"}, "ownerReferences": [
                {"kind": "ReplicaSet", "name": "w", "controller": True}]},
            "spec": {"nodeName": "n2"}, "status": {"phase": "Running"},
        }
    )  # fmt: skip
    assert (web.node, web.labels, web.evicted_by_drain) == ("n2", {"app": "web"}, True)


def test_pdb_selectors_null_empty_and_expressions() -> None:
    status = {"disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2}
    pdb = pdb_from_object(
        {
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"app": "web"},
                                  "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}},
            "status": status,
        }
    )  # fmt: skip
    assert pdb.selector is not None and pdb.selector.match_labels == {"app": "web"}
    assert pdb.selector.match_expressions[0].operator is Operator.IN
    assert (pdb.disruptions_allowed, pdb.current_healthy, pdb.desired_healthy) == (0, 2, 2)
    assert pdb_from_object({"metadata": {"name": "n", "namespace": "ns"}, "spec": {}}).selector is None
    everything = pdb_from_object({"metadata": {"name": "e", "namespace": "ns"}, "spec": {"selector": {}}})
    assert everything.selector is not None and everything.selector.matches({"any": "thing"})
    bad = {"selector": {"matchExpressions": [{"key": "k", "operator": "Near"}]}}
    assert pdb_from_object({"metadata": {"name": "b", "namespace": "ns"}, "spec": bad}).selector is None


CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nCAcafe\n-----END CERTIFICATE-----\n").decode()
CERT = base64.b64encode(b"client-certificate-bytes").decode()
KEY = base64.b64encode(b"client-key-bytes-very-secret").decode()


def kubeconfig(server: str, **user: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c1", "cluster": {"server": server, "certificate-authority-data": CA}}],
            "users": [{"name": "c1-admin", "user": user}],
            "contexts": [{"name": "c1-admin@c1", "context": {"cluster": "c1", "user": "c1-admin"}}],
            "current-context": "c1-admin@c1",
        }
    )


def secret_api(monkeypatch: pytest.MonkeyPatch, answer: SecretAnswer) -> list[Any]:
    asked: list[Any] = []

    def fetch(api: Any, ref: Any) -> SecretAnswer:
        asked.append(ref)
        return answer

    monkeypatch.setattr("kubectl_capc.kube.read.fetch_secret", fetch)
    return asked


def test_a_missing_secret_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = secret_api(monkeypatch, SecretAnswer(None, 404, "Not Found"))
    read = read_workload(object(), "prod", "c1")
    assert [str(ref) for ref in asked] == ["prod/c1-kubeconfig"]
    assert read.facts.unreachable == "Secret prod/c1-kubeconfig not found"
    assert read.requests == 0


def test_a_refused_secret_and_a_secret_without_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret_api(monkeypatch, SecretAnswer(None, 403, "Forbidden"))
    assert (
        read_workload(object(), "prod", "c1").facts.unreachable
        == "Secret prod/c1-kubeconfig: HTTP 403 Forbidden"
    )
    secret_api(monkeypatch, SecretAnswer({"other": "x"}))
    assert (
        read_workload(object(), "prod", "c1").facts.unreachable
        == "Secret prod/c1-kubeconfig has no key value"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not yaml", "not valid YAML"),
        ("apiVersion: v1\nkind: Config\n", "no current context"),
        (kubeconfig("https://h:6443", exec="x"), "credential plugin"),  # type: ignore[arg-type]
    ],
)
def test_unusable_kubeconfigs(monkeypatch: pytest.MonkeyPatch, text: str, reason: str) -> None:
    secret_api(monkeypatch, SecretAnswer({"value": text}))
    assert reason in read_workload(object(), "prod", "c1").facts.unreachable


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="in-memory files are Linux only")
def test_client_keys_stay_in_memory_and_the_ca_is_data() -> None:
    text = kubeconfig("https://10.0.0.1:6443/", **{"client-certificate-data": CERT, "client-key-data": KEY})
    client = workload._workload_client(text, "Secret prod/c1-kubeconfig", 3.0)
    credentials = client.credentials
    assert credentials.server == "https://10.0.0.1:6443"
    assert credentials.ca_pem is not None and credentials.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert credentials.certificate is not None
    assert credentials.certificate.key == b"client-key-bytes-very-secret"
    assert client.request_timeout == 3.0
    assert "very-secret" not in repr(credentials)
    # The TLS layer reads the key from a memfd: no file of it is ever on disk.
    path = rest._memory_file(credentials.certificate.key)
    assert os.readlink(path).startswith("/memfd:")
    with open(path, "rb") as handle:
        assert handle.read() == b"client-key-bytes-very-secret"


def test_a_token_user_sends_a_bearer_token() -> None:
    client = workload._workload_client(kubeconfig("https://h:6443", token="t0ken"), "s", 3.0)
    assert client.credentials.authorization == "Bearer t0ken"
    assert "t0ken" not in repr(client.credentials)


def _no_sleeping(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The transport's retry waits, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr("kubectl_capc.kube.rest.time.sleep", waits.append)
    return waits


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_workload_api_server_that_refuses_connections_is_unreachable_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits = _no_sleeping(monkeypatch)
    server = f"https://127.0.0.1:{_free_port()}"
    document = yaml.safe_load(kubeconfig(server, token="t0ken"))
    document["clusters"][0]["cluster"] = {"server": server, "insecure-skip-tls-verify": True}
    secret_api(monkeypatch, SecretAnswer({"value": yaml.safe_dump(document)}))
    read = read_workload(object(), "prod", "c1", request_timeout=2.0)
    assert read.facts.unreachable.startswith("GET /api")
    assert server in read.facts.unreachable
    assert "refused" in read.facts.unreachable
    assert "t0ken" not in read.facts.unreachable
    assert read.requests >= 3
    assert waits == []  # refused before it ever answered: a wrong address or a cluster down, not a blip


def test_a_workload_kubeconfig_whose_certificate_authority_is_no_certificate_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits = _no_sleeping(monkeypatch)
    server = f"https://127.0.0.1:{_free_port()}"
    secret_api(monkeypatch, SecretAnswer({"value": kubeconfig(server, token="t0ken")}))
    read = read_workload(object(), "prod", "c1", request_timeout=2.0)
    assert f"the certificate authority of {server} in the kubeconfig is not a PEM certificate" in (
        read.facts.unreachable
    )
    assert "_ssl.c" not in read.facts.unreachable
    assert "t0ken" not in read.facts.unreachable
    assert waits == []


class FakeWorkload:
    """Answers the workload reader's GETs from a table of paths; records the paths and Accept headers."""

    server = "https://w:6443"

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers, self.asked, self.accepts = answers, [], []  # type: ignore[var-annotated]

    def send(self, method: str, path: str, *, headers: dict[str, str], **_: Any) -> Any:
        self.asked.append(path.partition("?")[0])
        self.accepts.append(headers["Accept"])
        body = self.answers.get(path.partition("?")[0], (404, {"message": "not found"}))
        status, body = body if isinstance(body, tuple) else (200, body)
        data = body.encode() if isinstance(body, str) else __import__("json").dumps(body).encode()
        return type("R", (), {"status": status, "data": data})()


def _budget(allowed: int) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns"}, "spec": {"selector": {}},
            "status": {"disruptionsAllowed": allowed}}  # fmt: skip


@pytest.mark.parametrize(("allowed", "pods_read"), [(1, False), (0, True)])
def test_pods_are_read_only_when_a_budget_allows_no_disruption(allowed: int, pods_read: bool) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    fake = FakeWorkload(
        {
            "/api/v1/nodes": {"items": [{"metadata": {"name": "n1"}}], "metadata": {}},
            "/apis/policy/v1/poddisruptionbudgets": {"items": [_budget(allowed)], "metadata": {}},
            "/api/v1/pods": {"items": [pod], "metadata": {}},
            "/metrics": 'apiserver_requested_deprecated_apis{group="x",version="v1beta1",resource="r",'
            'removed_release="1.29"} 1\n',
        }
    )
    reader = workload._Workload(fake)
    facts = reader.read()
    assert ("/api/v1/pods" in fake.asked) is pods_read
    assert reader.requests == (4 if pods_read else 3)
    assert [p.name for p in facts.pods] == (["p"] if pods_read else [])
    assert [n.name for n in facts.nodes] == ["n1"]
    assert facts.deprecated_apis is not None and facts.deprecated_apis[0].removed_release == "1.29"


FLOWCONTROL = "flowcontrol.apiserver.k8s.io"


def test_an_objects_writers_versions_come_from_managed_fields_and_last_applied() -> None:
    applied = '{"apiVersion":"flowcontrol.apiserver.k8s.io/v1beta2","kind":"FlowSchema","spec":{}}'
    obj = {
        "metadata": {
            "name": "team-a",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied},
            "managedFields": [
                {"manager": "helm", "apiVersion": f"{FLOWCONTROL}/v1beta2", "time": "2026-01-01T00:00:00Z"},
                {
                    "manager": "kubectl",
                    "apiVersion": f"{FLOWCONTROL}/v1beta2",
                    "time": "2026-01-01T00:00:00Z",
                },
                {
                    "manager": "kubectl",
                    "apiVersion": f"{FLOWCONTROL}/v1beta3",
                    "time": "2026-02-01T00:00:00Z",
                },
                {"manager": "odd"},
            ],
        }
    }
    written = written_from_object(FLOWCONTROL, "flowschemas", obj)
    assert (written.label, written.resource) == ("team-a", "flowschemas")
    # kubectl's newest write is in v1beta3: its older v1beta2 entry stays, but kubectl has moved on.
    assert written.writers_of(f"{FLOWCONTROL}/v1beta2") == ["helm", "last-applied-configuration"]
    assert written.writers_of(f"{FLOWCONTROL}/v1beta3") == ["kubectl"]
    annotations = {"kubectl.kubernetes.io/last-applied-configuration": "{"}
    broken = {"metadata": {"name": "x", "namespace": "ns", "annotations": annotations}}
    assert written_from_object("g", "r", broken).writers == ()
    assert written_from_object("g", "r", broken).label == "ns/x"


def _metadata_list(*names: str) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadataList",
        "metadata": {},
        "items": [
            {"metadata": {"name": n, "managedFields": [{"apiVersion": f"{FLOWCONTROL}/v1beta3"}]}}
            for n in names
        ],
    }


BASE = {
    "/api/v1/nodes": {"items": [], "metadata": {}},
    "/apis/policy/v1/poddisruptionbudgets": {"items": [], "metadata": {}},
    "/metrics": "",
}


def _groups(**served: tuple[str, ...]) -> dict[str, Any]:
    """`GET /apis`: each group (its `_` spelled `.`) with its versions, the preferred one first."""
    groups = []
    for name, versions in served.items():
        listed = [{"version": v} for v in sorted(versions)]
        groups.append(
            {"name": name.replace("_", "."), "preferredVersion": {"version": versions[0]}, "versions": listed}
        )
    return {"kind": "APIGroupList", "groups": groups}


def test_removed_resources_are_listed_as_metadata_in_the_preferred_version() -> None:
    removed = removed_between(parse_version("v1.28.5"), (1, 32)) + removed_between(
        parse_version("v1.37.0"), (1, 38)
    )
    fake = FakeWorkload(
        {
            **BASE,
            "/apis": _groups(flowcontrol_apiserver_k8s_io=("v1", "v1beta3")),
            f"/apis/{FLOWCONTROL}/v1/flowschemas": _metadata_list("team-a", "global-default"),
            f"/apis/{FLOWCONTROL}/v1/prioritylevelconfigurations": _metadata_list("slow"),
            # resource.k8s.io is not served at all: nothing of it is stored
        }
    )
    reader = workload._Workload(fake)
    facts = reader.read(removed)
    assert sorted((w.resource, w.name) for w in facts.written or ()) == [
        ("flowschemas", "global-default"), ("flowschemas", "team-a"), ("prioritylevelconfigurations", "slow"),
    ]  # fmt: skip
    assert facts.written_error == ""
    # One discovery GET for every group, one LIST per resource served, never in a removed version.
    assert fake.asked.count("/apis") == 1 and not any(
        path.startswith("/apis/resource.k8s.io") for path in fake.asked
    )
    assert not any("v1beta" in path for path in fake.asked)
    assert reader.requests == 3 + 1 + 2
    assert any(
        a.startswith("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1") for a in fake.accepts
    )


def test_a_refused_list_of_a_removed_resource_leaves_the_rest_of_the_read() -> None:
    removed = removed_between(parse_version("v1.28.5"), (1, 29))
    fake = FakeWorkload(
        {
            **BASE,
            "/apis": _groups(flowcontrol_apiserver_k8s_io=("v1beta3", "v1beta2")),
            f"/apis/{FLOWCONTROL}/v1beta3/flowschemas": (403, {"message": "flowschemas is forbidden"}),
        }
    )
    facts = workload._Workload(fake).read(removed)
    assert facts.unreachable == "" and facts.deprecated_apis == ()
    assert facts.written is None and "HTTP 403 flowschemas is forbidden" in facts.written_error
    assert workload._Workload(FakeWorkload(BASE)).read().written == ()


def test_a_resource_the_preferred_version_lacks_is_listed_in_another_but_never_a_removed_one() -> None:
    admission = "admissionregistration.k8s.io"
    fake = FakeWorkload(
        {
            **BASE,
            "/apis": _groups(admissionregistration_k8s_io=("v1", "v1beta1", "v1alpha1")),
            f"/apis/{admission}/v1alpha1/validatingadmissionpolicies": _metadata_list("p"),
        }
    )
    removed = removed_between(parse_version("v1.33.0"), (1, 34))  # admissionregistration v1beta1
    facts = workload._Workload(fake).read(removed)
    assert [(w.resource, w.name) for w in facts.written or ()] == [("validatingadmissionpolicies", "p")]
    assert f"/apis/{admission}/v1/validatingadmissionpolicies" in fake.asked
    assert not any("/v1beta1/" in path for path in fake.asked)
