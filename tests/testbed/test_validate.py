"""`kubectl capc validate` on the real test bed (both CAPI profiles) against the CloudStack double.

One namespace per profile holds a healthy two-zone cluster and one cluster per scene, each built to
trip one check; every scene is validated on its own (exit code and the exact set of check IDs), and
`-A` validates them all at once. The double is loaded with the example seed plus the templates the
scenes need (duplicates, a failed download, a XenServer image in a KVM zone) and reset afterwards.
"""

from __future__ import annotations

import copy
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from kubectl_capc.__main__ import main
from kubectl_capc.kube.read import read_inventories
from tests.support.fixtures_capc import Zone, create_objects, render_cluster
from tests.testenv.bed import DEFAULT_SEED, TestBed

pytestmark = pytest.mark.testbed  # its fixtures start beds through request.getfixturevalue

TWO_ZONES = (Zone("zone1", "capc-net-zone1"), Zone("zone2", "capc-net-zone2"))
ANTI_AFFINITY_GROUP = "1f90c25e-ebfc-4079-8121-6936a14224e3"  # from examples/cloudstack-seed.yaml
KUBE_128_ID = "317ce714-9cda-4d6e-b3bb-ecaa12fe532f"  # ubuntu-2204-kube-v1.28.5, in both zones
SINGLE_ZONE_ID = "5a1e0a0e-0000-4000-8000-00000000a001"
DATA_DISK = {"mountPath": "/data", "device": "/dev/vdb", "filesystem": "ext4", "label": "data_disk"}

NO_WORKLOAD = "CAPC-W001"

Objects = list[dict[str, Any]]


def _template(name: str, zones: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "ostype": "Ubuntu 22.04 LTS", "ispublic": True, "zones": zones, **extra}


def scene_seed() -> dict[str, Any]:
    """The example seed, plus a XenServer hypervisor in zone2 and the templates scenes refer to."""
    seed: dict[str, Any] = yaml.safe_load(DEFAULT_SEED.read_text())
    zone2 = next(z for z in seed["zones"] if z["name"] == "zone2")
    zone2["hypervisors"] = ["KVM", "XenServer"]
    seed["templates"] += [
        _template("dup-kube-v1.28.5", ["zone1", "zone2"]),
        _template("DUP-kube-v1.28.5", ["zone1"]),
        _template(
            "notready-kube-v1.28.5", {"zone1": {"error": "HTTP Server returned 404"}, "zone2": "ready"}
        ),
        _template("single-kube-v1.28.5", ["zone1"], id=SINGLE_ZONE_ID),
        _template("xen-kube-v1.28.5", ["zone1", "zone2"], hypervisor="XenServer", format="VHD"),
        _template("ubuntu-2204-kube-v1.30.2", ["zone1", "zone2"]),
    ]
    return seed


# -- scenes ----------------------------------------------------------------------------------------


def _find(objects: Objects, kind: str, suffix: str = "") -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix))


def _csmt(objects: Objects, suffix: str) -> dict[str, Any]:
    spec: dict[str, Any] = _find(objects, "CloudStackMachineTemplate", suffix)["spec"]["template"]["spec"]
    return spec


def _fd(objects: Objects) -> dict[str, Any]:
    domain: dict[str, Any] = _find(objects, "CloudStackCluster")["spec"]["failureDomains"][0]
    return domain


def _md_version(objects: Objects, version: str) -> None:
    _find(objects, "MachineDeployment")["spec"]["template"]["spec"]["version"] = version


Edit = Callable[[Objects, str], None]


@dataclass(frozen=True)
class Scene:
    """A cluster built to trip `expected` (the exact set of check IDs) and the exit code it gives."""

    name: str
    edit: Edit = lambda objects, ns: None
    expected: frozenset[str] = frozenset()
    exit_code: int = 1
    args: tuple[str, ...] = ()
    secret: dict[str, str] | None = None  # a credentials Secret for this scene's failure domains
    render: dict[str, Any] = field(default_factory=dict)
    on: str = ""  # validate the cluster of this other scene (with other arguments)

    @property
    def cluster(self) -> str:
        name = self.on or self.name
        return "healthy" if name == "healthy" else f"s-{name.lower()}"

    @property
    def found(self) -> frozenset[str]:
        """`expected`, and CAPC-W001 (its kubeconfig Secret is missing): this bed runs no workload
        clusters, and only the healthy cluster's Secret points at a reachable API server."""
        return self.expected if self.cluster == "healthy" else self.expected | {NO_WORKLOAD}


def _healthy(objects: Objects, ns: str) -> None:
    """Every optional reference set, so the healthy scene exercises the offering checks too."""
    control_plane = _csmt(objects, "control-plane")
    control_plane["sshKey"] = "capc-key"
    control_plane["affinityGroupIDs"] = [ANTI_AFFINITY_GROUP]
    _csmt(objects, "md-0")["diskOffering"] = {"name": "Custom", "customSizeInGB": 20, **DATA_DISK}


def _then(*edits: Edit) -> Edit:
    def apply(objects: Objects, ns: str) -> None:
        _healthy(objects, ns)
        for edit in edits:
            edit(objects, ns)

    return apply


def _set(suffix: str, **fields: Any) -> Edit:
    return lambda objects, ns: _csmt(objects, suffix).update(copy.deepcopy(fields))


def _image(name: str, suffix: str = "") -> Edit:
    def apply(objects: Objects, ns: str) -> None:
        for o in objects:
            if o["kind"] == "CloudStackMachineTemplate" and o["metadata"]["name"].endswith(suffix):
                o["spec"]["template"]["spec"]["template"] = {"name": name}

    return apply


def _fd_secret(name: str | None = None) -> Edit:
    """Point every failure domain at Secret `name`, default: the scene's own `<cluster>-creds`."""

    def apply(objects: Objects, ns: str) -> None:
        secret = name or f"{_find(objects, 'Cluster')['metadata']['name']}-creds"
        for fd in _find(objects, "CloudStackCluster")["spec"]["failureDomains"]:
            fd["acsEndpoint"] = {"name": secret, "namespace": ns}

    return apply


def _paused_md(objects: Objects, ns: str) -> None:
    _find(objects, "MachineDeployment")["metadata"]["annotations"] = {"cluster.x-k8s.io/paused": "true"}


def _straggler(objects: Objects, ns: str) -> None:
    _find(objects, "Machine", "md-0-1")["spec"]["version"] = "v1.27.9"


def _missing_md_template(objects: Objects, ns: str) -> None:
    md = _find(objects, "MachineDeployment")
    md["spec"]["template"]["spec"]["infrastructureRef"]["name"] = "no-such-template"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scenes(bed: TestBed) -> list[Scene]:
    double = bed.cloudstack
    good = {
        "api-url": double["CLOUDSTACK_ENDPOINT"],
        "api-key": double["CLOUDSTACK_KEY"],
        "secret-key": double["CLOUDSTACK_SECRET"],
    }
    e = frozenset
    return [
        Scene("healthy", _then(), exit_code=0),
        Scene("healthy-to-v1.29", on="healthy", exit_code=0, args=("--to", "v1.29")),
        Scene("healthy-downgrade", on="healthy", expected=e({"CAPC-U002"}), args=("--to", "v1.27")),
        Scene(
            "healthy-two-hops", on="healthy", expected=e({"CAPC-U003"}), exit_code=0, args=("--to", "v1.30")
        ),
        Scene(
            "healthy-two-hops-strict",
            on="healthy",
            expected=e({"CAPC-U003"}),
            args=("--to", "v1.30", "--strict"),
        ),
        Scene("healthy-no-template", on="healthy", expected=e({"CAPC-U004"}), args=("--to", "v1.29.4")),
        Scene("C001", _then(), e({"CAPC-C001"}), render={"topology_class": "quick-start"}),
        Scene("C002", _then(_paused_md), e({"CAPC-C002"}), exit_code=0),
        Scene("C002-strict", on="C002", expected=e({"CAPC-C002"}), args=("--strict",)),
        Scene("C003", _then(_straggler), e({"CAPC-C003"}), render={"with_machines": True}),
        Scene(
            "C004",
            _then(lambda o, ns: _md_version(o, "v1.29.3"), _image("ubuntu-2204-kube-v1.29.3", "md-0")),
            e({"CAPC-C004"}),
        ),
        Scene("C005", _then(lambda o, ns: _md_version(o, "v1.24.17")), e({"CAPC-C005", "CAPC-T005"})),
        Scene(
            "C006", _then(lambda o, ns: _md_version(o, "v1.27.3")), e({"CAPC-C006", "CAPC-T005"}), exit_code=0
        ),
        Scene("C007", _then(_missing_md_template), e({"CAPC-C007"})),
        Scene("S001", _then(_fd_secret("no-such-secret")), e({"CAPC-S001"})),
        Scene("S002", _then(_fd_secret()), e({"CAPC-S002"}), secret={**good, "secret-key": ""}),
        Scene("S003", _then(_fd_secret()), e({"CAPC-S003"}), secret={**good, "api-url": "ftp://127.0.0.1/x"}),
        Scene(
            "S004",
            _then(_fd_secret()),
            e({"CAPC-S004"}),
            secret={**good, "api-url": f"http://127.0.0.1:{_closed_port()}/client/api"},
        ),
        Scene(
            "S005",
            _then(_fd_secret()),
            e({"CAPC-S005"}),
            secret={**good, "api-key": "wrong-api-key-0123", "secret-key": "wrong-secret-key-0123"},
        ),
        Scene(
            "S006", _then(_fd_secret()), e({"CAPC-S006"}), exit_code=0, secret={**good, "verify-ssl": "false"}
        ),
        Scene(
            "S009",
            _then(_fd_secret()),
            e({"CAPC-S009", "CAPC-S005"}),  # CloudStack knows no key ending in a newline
            secret={**good, "api-key": good["api-key"] + "\n"},
        ),
        Scene(
            "S009-verify-ssl",
            _then(_fd_secret()),
            e({"CAPC-S009"}),  # "false\n" is not "false": TLS stays verified, so no CAPC-S006
            secret={**good, "verify-ssl": "false\n"},
        ),
        Scene(
            "S007",
            _then(lambda o, ns: _fd(o).update(account="nobody", domain="ROOT/capc")),
            e({"CAPC-S007"}),
        ),
        Scene("Z001", _then(lambda o, ns: _fd(o)["zone"].update(name="zone9")), e({"CAPC-Z001"})),
        Scene(
            "Z002",
            _then(lambda o, ns: _fd(o)["zone"]["network"].update(name="no-such-net")),
            e({"CAPC-Z002"}),
        ),
        Scene("T001", _then(_image("missing-kube-v1.28.5", "md-0")), e({"CAPC-T001"})),
        Scene("T002", _then(_image("dup-kube-v1.28.5", "md-0")), e({"CAPC-T002"})),
        Scene("T002-by-id", _then(_set("md-0", template={"id": KUBE_128_ID})), e({"CAPC-T002"})),
        Scene("T003", _then(_image("notready-kube-v1.28.5", "md-0")), e({"CAPC-T003"})),
        Scene(
            "T004",
            _then(_set("md-0", template={"id": SINGLE_ZONE_ID, "name": "other-kube-v1.28.5"})),
            e({"CAPC-T004"}),
        ),
        Scene(
            "T005", _then(_image("ubuntu-2204-kube-v1.29.3", "control-plane")), e({"CAPC-T005"}), exit_code=0
        ),
        Scene("T006", _then(_image("xen-kube-v1.28.5", "md-0")), e({"CAPC-T006"})),
        Scene("O001", _then(_set("control-plane", offering={"name": "Huge Instance"})), e({"CAPC-O001"})),
        Scene(
            "O002", _then(_set("md-0", diskOffering={"name": "No Such Disk", **DATA_DISK})), e({"CAPC-O002"})
        ),
        Scene("O003", _then(_set("md-0", diskOffering={"name": "Custom", **DATA_DISK})), e({"CAPC-O003"})),
        Scene("O004", _then(_set("control-plane", affinityGroupIDs=[str(uuid.uuid4())])), e({"CAPC-O004"})),
        Scene("O005", _then(_set("control-plane", sshKey="no-such-key")), e({"CAPC-O005"})),
        Scene(
            "U005",
            _then(_image("CentOS 5.5(64-bit) no GUI (KVM)", "md-0")),
            e({"CAPC-T005", "CAPC-U005"}),
            exit_code=0,
            args=("--to", "v1.29.3"),
        ),
    ]


# -- the bed ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneBed:
    bed: TestBed
    namespace: str
    scenes: dict[str, Scene]


def _admin(bed: TestBed, path: str, body: dict[str, Any]) -> None:
    response = requests.post(bed.admin_url(path), json=body, timeout=10)
    response.raise_for_status()


def _create_secret(bed: TestBed, namespace: str, name: str, data: dict[str, str]) -> None:
    from kubernetes import client

    body = {"metadata": {"name": name, "namespace": namespace}, "stringData": data}
    client.CoreV1Api(bed.api_client()).create_namespaced_secret(namespace, body)


def _settled(bed: TestBed, namespace: str, clusters: set[str]) -> bool:
    inventories = read_inventories(bed.api_client(), namespace=namespace)
    found = {inv.name: inv for inv in inventories}
    if set(found) != clusters:
        return False
    for inventory in found.values():
        owners = [inventory.control_plane, *inventory.machine_deployments]
        if any(owner is not None and owner.rollout_in_progress() for owner in owners):
            return False
    return True


@pytest.fixture(scope="module", params=["v1beta1", "v1beta2"])
def scene_bed(request: pytest.FixtureRequest) -> Iterator[SceneBed]:
    from kubernetes import client

    bed: TestBed = request.getfixturevalue(f"testenv_{request.param}")
    namespace = f"validate-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(bed.api_client())
    core.create_namespace({"metadata": {"name": namespace}})
    _admin(bed, "seed", scene_seed())
    try:
        all_scenes = scenes(bed)
        by_cluster = {scene.cluster: scene for scene in all_scenes if not scene.on}
        for scene in by_cluster.values():
            if scene.secret is not None:
                _create_secret(bed, namespace, f"{scene.cluster}-creds", scene.secret)
            objects = render_cluster(
                scene.cluster,
                namespace,
                capi=bed.capi,
                zones=TWO_ZONES,
                control_plane_offering="Large Instance",
                worker_offering="Medium Instance",
                **scene.render,
            )
            scene.edit(objects, namespace)
            create_objects(bed.api_client(), objects)
        # The healthy cluster's "workload cluster" is the bed's own API server: reachable, with no
        # Nodes, Machines or budgets, so that every workload check passes.
        _create_secret(bed, namespace, "healthy-kubeconfig", {"value": bed.kubeconfig.read_text()})
        deadline = time.monotonic() + 60
        while not _settled(bed, namespace, set(by_cluster)):
            assert time.monotonic() < deadline, "scene clusters did not settle"
            time.sleep(0.3)
        yield SceneBed(bed, namespace, {scene.name: scene for scene in all_scenes})
    finally:
        _admin(bed, "reset", {})
        core.delete_namespace(namespace)


def run_cli(bed: TestBed, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "--kubeconfig", str(bed.kubeconfig)])
    out, err = capsys.readouterr()
    return code, out, err


def validate_json(sb: SceneBed, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run_cli(sb.bed, capsys, "validate", *args, "-n", sb.namespace, "-o", "json")
    assert out, err
    document: dict[str, Any] = json.loads(out)
    return code, document


def finding_ids(document: dict[str, Any]) -> set[str]:
    return {f["id"] for cluster in document["clusters"] for f in cluster["findings"]}


SCENE_NAMES = [
    "healthy", "healthy-to-v1.29", "healthy-downgrade", "healthy-two-hops", "healthy-two-hops-strict",
    "healthy-no-template", "C001", "C002", "C002-strict", "C003", "C004", "C005", "C006", "C007",
    "S001", "S002", "S003", "S004", "S005", "S006", "S007", "S009", "S009-verify-ssl", "Z001", "Z002",
    "T001", "T002", "T002-by-id", "T003", "T004", "T005", "T006", "O001", "O002", "O003", "O004", "O005",
    "U005",
]  # fmt: skip


@pytest.mark.parametrize("name", SCENE_NAMES)
def test_scene(scene_bed: SceneBed, capsys: pytest.CaptureFixture[str], name: str) -> None:
    scene = scene_bed.scenes[name]
    code, document = validate_json(scene_bed, capsys, scene.cluster, *scene.args)
    assert finding_ids(document) == scene.found, json.dumps(document["clusters"], indent=1)
    assert code == scene.exit_code
    assert document["kind"] == "ValidationReport"
    assert document["summary"]["passed"] is (scene.exit_code == 0)

    table_code, table, _ = run_cli(
        scene_bed.bed, capsys, "validate", scene.cluster, "-n", scene_bed.namespace, *scene.args
    )
    assert table_code == scene.exit_code
    for check_id in scene.found:
        assert check_id in table
    assert table.rstrip().splitlines()[-1].startswith("1 cluster validated: ")


def test_scene_names_cover_every_scene(scene_bed: SceneBed) -> None:
    assert sorted(SCENE_NAMES) == sorted(scene_bed.scenes)


def test_healthy_table_and_yaml(scene_bed: SceneBed, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(scene_bed.bed, capsys, "validate", "healthy", "-n", scene_bed.namespace)
    assert (code, out) == (0, "1 cluster validated: no problems found.\n")
    code, out, _ = run_cli(
        scene_bed.bed, capsys, "validate", "healthy", "-n", scene_bed.namespace, "-o", "yaml"
    )
    document = yaml.safe_load(out)
    assert code == 0
    assert document["apiVersion"] == "capc.kubectl.io/v1alpha1"
    assert document["clusters"] == [
        {"namespace": scene_bed.namespace, "name": "healthy", "errors": 0, "warnings": 0, "findings": []}
    ]


def test_a_failing_cloudstack_call_is_a_finding(
    scene_bed: SceneBed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubectl_capc.cloudstack import errors as cloudstack_errors
    from kubectl_capc.domain.backoff import Backoff

    # Reads are tried twice here (quickly): the call for each of the two zones fails both times.
    monkeypatch.setattr(cloudstack_errors, "RETRIES", Backoff(attempts=2, base=0.01, cap=0.01))
    _admin(scene_bed.bed, "faults", {"errors": [{"command": "listHypervisors", "times": 4}]})
    try:
        code, document = validate_json(scene_bed, capsys, "healthy")
    finally:
        _admin(scene_bed.bed, "faults", {})
    assert code == 1
    assert finding_ids(document) == {"CAPC-S008"}
    [finding, *_] = document["clusters"][0]["findings"]
    assert "listHypervisors" in finding["message"] or "hypervisors" in finding["message"]


def test_invalid_target_is_a_usage_error_naming_the_check(
    scene_bed: SceneBed, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        scene_bed.bed, capsys, "validate", "healthy", "-n", scene_bed.namespace, "--to", "1.x"
    )
    assert (code, out) == (2, "")
    assert err.startswith("error: CAPC-U001: invalid target version '1.x'")


def test_all_namespaces(scene_bed: SceneBed, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(scene_bed.bed, capsys, "validate", "-A", "-o", "json")
    assert code == 1, err
    document = json.loads(out)
    mine = {c["name"]: c for c in document["clusters"] if c["namespace"] == scene_bed.namespace}
    created = {s.cluster: s for s in scene_bed.scenes.values() if not s.on}
    assert set(mine) == set(created)
    for cluster, scene in created.items():
        expected = scene.found - {"CAPC-U005"}  # the one scene whose check needs --to
        assert {f["id"] for f in mine[cluster]["findings"]} == expected, cluster
    assert document["summary"]["clusters"] >= len(created)

    code, table, _ = run_cli(scene_bed.bed, capsys, "validate", "-A")
    assert code == 1
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["CLUSTER", "CHECK", "SEVERITY"]
    assert any(line.startswith(f"{scene_bed.namespace}/s-t001 ") and "CAPC-T001" in line for line in lines)
    assert lines[-1].startswith(f"{document['summary']['clusters']} clusters validated: ")


def test_a_label_selector_picks_the_clusters_validated(
    scene_bed: SceneBed, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.upgrade_support import patch

    namespace, team = scene_bed.namespace, uuid.uuid4().hex[:8]
    patch(scene_bed.bed, namespace, "Cluster", "healthy", {"metadata": {"labels": {"team": team}}})
    try:
        for scope in (("-A",), ("-n", namespace)):
            args = ("validate", *scope, "-l", f"team={team}", "-o", "yaml")
            code, out, err = run_cli(scene_bed.bed, capsys, *args)
            assert code == 0, err
            clusters = yaml.safe_load(out)["clusters"]
            assert [(c["namespace"], c["name"]) for c in clusters] == [(namespace, "healthy")]
        code, out, err = run_cli(scene_bed.bed, capsys, "validate", "-A", "-l", f"team={team},team!={team}")
        assert (code, out) == (0, "")
        assert f"No clusters found matching team={team},team!={team}." in err
        code, out, err = run_cli(scene_bed.bed, capsys, "validate", "healthy", "-n", namespace, "-l", "team")
        assert (code, out) == (2, "")
        assert "a cluster name cannot be combined with -A or -l" in err
    finally:
        patch(scene_bed.bed, namespace, "Cluster", "healthy", {"metadata": {"labels": {"team": None}}})


def test_secrets_never_appear_in_any_output(scene_bed: SceneBed, capsys: pytest.CaptureFixture[str]) -> None:
    double = scene_bed.bed.cloudstack
    secrets = [
        double["CLOUDSTACK_KEY"],
        double["CLOUDSTACK_SECRET"],
        "wrong-api-key-0123",
        "wrong-secret-key-0123",
    ]
    outputs = []
    # -A covers every scene, among them wrong keys (S005) and an unreachable endpoint (S004).
    for args in (
        ("-A",),
        ("-A", "-o", "json"),
        ("healthy", "-n", scene_bed.namespace, "--to", "v1.30", "-o", "yaml"),
    ):
        code, out, err = run_cli(scene_bed.bed, capsys, "validate", *args, "-v", "9")
        assert code in (0, 1), err
        outputs.append(out + err)
    assert any("CAPC-S005" in text for text in outputs)
    assert any("D kubectl_capc." in text for text in outputs)  # -v 9 did log
    for text in outputs:
        for secret in secrets:
            assert secret not in text


def test_restricted_user_sees_exactly_the_missing_permissions(
    scene_bed: SceneBed, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from kubernetes import client

    bed, namespace = scene_bed.bed, scene_bed.namespace
    api = bed.api_client()
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "auditor"}})
    read = ["get", "list", "watch"]
    rules = [
        {
            "apiGroups": ["cluster.x-k8s.io"],
            "resources": ["clusters", "machinedeployments", "machines"],
            "verbs": read,
        },
        {
            "apiGroups": ["controlplane.cluster.x-k8s.io"],
            "resources": ["kubeadmcontrolplanes"],
            "verbs": [*read, "patch"],
        },
        {"apiGroups": ["bootstrap.cluster.x-k8s.io"], "resources": ["kubeadmconfigtemplates"], "verbs": read},
        {
            "apiGroups": ["infrastructure.cluster.x-k8s.io"],
            "resources": ["cloudstackclusters", "cloudstackmachinetemplates", "cloudstackmachines"],
            "verbs": read,
        },
    ]
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "auditor"}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "auditor"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "auditor"},
            "subjects": [{"kind": "ServiceAccount", "name": "auditor", "namespace": namespace}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "auditor", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    admin = yaml.safe_load(bed.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    kubeconfig = tmp_path / "auditor.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "auditor", "user": {"token": token}}],
                "contexts": [{"name": "auditor", "context": {"cluster": cluster["name"], "user": "auditor"}}],
                "current-context": "auditor",
            }
        )
    )
    capsys.readouterr()
    code = main(
        ["validate", "healthy", "-n", namespace, "-o", "json", "--kubeconfig", str(kubeconfig), "-v", "9"]
    )
    out, err = capsys.readouterr()
    assert code == 1, err
    assert token not in out + err
    findings = json.loads(out)["clusters"][0]["findings"]
    missing = sorted(f["message"] for f in findings if f["id"] == "CAPC-P001")
    assert missing == [
        "you cannot create cloudstackmachinetemplates.infrastructure.cluster.x-k8s.io "
        f"in namespace {namespace}",
        f"you cannot create leases.coordination.k8s.io in namespace {namespace}",
        f"you cannot delete leases.coordination.k8s.io in namespace {namespace}",
        f"you cannot get leases.coordination.k8s.io in namespace {namespace}",
        "you cannot get secrets/cloudstack-credentials in namespace default",
        f"you cannot patch machinedeployments.cluster.x-k8s.io in namespace {namespace}",
        f"you cannot update leases.coordination.k8s.io in namespace {namespace}",
    ]
    # The Secrets it may not read are reported too (credentials, kubeconfig), and nothing else is.
    assert {f["id"] for f in findings} == {"CAPC-P001", "CAPC-S001", NO_WORKLOAD}
    (workload,) = [f for f in findings if f["id"] == NO_WORKLOAD]
    assert f"Secret {namespace}/healthy-kubeconfig: HTTP 403" in workload["message"]
