"""No credential reaches the output of any command, nor any file the plugin writes, even at -v 9.

Every command runs as its own process at the highest log level, with HOME and TMPDIR pointing at a
fresh directory, in paths that succeed and in paths that fail (CloudStack refusing the keys, answering
530 or unreachable; the API server refusing, not accepting the token, or unreachable; a run interrupted
or killed while it waits). Then stdout, stderr and every file under that directory are searched for
each credential the run could have seen: the CloudStack API and secret keys of the test bed (as text
and base64, as a Secret holds them) and the wrong keys of the failing cases, the ServiceAccount's bearer
token, and the admin client key of the kubeconfig (its data, its PEM body and each PEM line).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.rbac_support import (
    Login,
    apply_documented_role,
    create_role,
    credentials_secret,
    login,
    small_cluster,
    write_manifests,
)
from tests.support.upgrade_support import (
    REPO,
    ensure_cloudstack_template,
    get,
    version_and_template,
    wait_for,
)
from tests.testenv.bed import TestBed

MAX_VERBOSITY = "9"
STANDIN_IMAGE_BUILDER = Path(__file__).resolve().parents[1] / "imagebuilder_standin"
FAIL = "testenv.kubectl-capc.io/fail"


@dataclass(frozen=True)
class Outcome:
    """A finished run: exit code, outputs, and every file left under its HOME, TMPDIR and outputs."""

    code: int
    stdout: str
    stderr: str
    files: Mapping[Path, bytes]


@dataclass
class Sandbox:
    """Runs `kubectl capc` in a process of its own with HOME and TMPDIR under `root`."""

    root: Path
    runs: int = 0

    def prepare(self) -> tuple[Path, dict[str, str]]:
        self.runs += 1
        directory = self.root / f"run-{self.runs}"
        for sub in ("home", "tmp", "out"):
            (directory / sub).mkdir(parents=True)
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("CLOUDSTACK_", "KUBECONFIG", "XDG_")) and name not in ("HOME", "TMPDIR")
        }
        env.update(HOME=str(directory / "home"), TMPDIR=str(directory / "tmp"), NO_COLOR="1")
        return directory, env

    def run(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 180) -> Outcome:
        """`args` may contain `{out}`: a directory of this run for files the command writes."""
        directory, environ = self.prepare()
        argv = [arg.replace("{out}", str(directory / "out")) for arg in args]
        done = subprocess.run(
            [sys.executable, "-m", "kubectl_capc", *argv],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=REPO,
            env={**environ, **(env or {})},
        )  # fmt: skip
        return Outcome(done.returncode, done.stdout, done.stderr, files_under(directory))


def files_under(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}


@dataclass
class Credentials:
    """Every credential a run may see, by what it is."""

    known: dict[str, str] = field(default_factory=dict)

    def add_cloudstack(self, label: str, api_key: str, secret_key: str) -> None:
        for what, value in (("API key", api_key), ("secret key", secret_key)):
            self.known[f"{label} {what}"] = value
            self.known[f"{label} {what} (base64)"] = base64.b64encode(value.encode()).decode()

    def add_client_key(self, kubeconfig: Path) -> None:
        data = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["client-key-data"]
        body = [line for line in base64.b64decode(data).decode().splitlines() if not line.startswith("-----")]
        self.known["client key (kubeconfig data)"] = data
        self.known["client key (PEM body)"] = "".join(body)
        self.known.update(
            {f"client key (PEM line {n})": line for n, line in enumerate(body) if len(line) >= 16}
        )

    def add_token(self, label: str, token: str) -> None:
        self.known[label] = token
        self.known[f"{label} (signature)"] = token.rsplit(".", 1)[-1]

    def leaks(self, outcome: Outcome) -> list[str]:
        """`what in where` for each credential found in the run's outputs or files."""
        places = {"stdout": outcome.stdout.encode(), "stderr": outcome.stderr.encode()}
        places.update({str(path): data for path, data in outcome.files.items()})
        return [
            f"{what} in {where}"
            for where, data in places.items()
            for what, value in self.known.items()
            if value.encode() in data
        ]


@dataclass(frozen=True)
class Scene:
    bed: TestBed
    namespace: str
    credentials: Credentials
    kubeconfigs: Mapping[str, Path]
    manifests: Path
    root: Path

    def sandbox(self, name: str) -> Sandbox:
        return Sandbox(self.root / name)


def admin(bed: TestBed, path: str, body: Any) -> None:
    request = urllib.request.Request(
        bed.admin_url(path), data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kubeconfig_with_server(source: Path, server: str, target: Path) -> Path:
    document = yaml.safe_load(source.read_text())
    document["clusters"][0]["cluster"]["server"] = server
    target.write_text(yaml.safe_dump(document))
    return target


@pytest.fixture(scope="module")
def scene(testenv_v1beta2: TestBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """Clusters whose credentials work (c1), are refused (badkeys) or point nowhere (nowhere); a
    ServiceAccount with the documented Role, one with none, one whose token no longer counts."""
    from kubernetes import client

    bed = testenv_v1beta2
    root = tmp_path_factory.mktemp("secrets")
    namespace = f"secrets-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(bed.api_client())
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        credentials = Credentials()
        double = bed.cloudstack
        credentials.add_cloudstack("CloudStack", double["CLOUDSTACK_KEY"], double["CLOUDSTACK_SECRET"])
        credentials.add_client_key(bed.kubeconfig)
        wrong = {
            "api_key": f"wrong-api-key-{uuid.uuid4().hex}",
            "secret_key": f"wrong-secret-{uuid.uuid4().hex}",
        }
        credentials.add_cloudstack("wrong", wrong["api_key"], wrong["secret_key"])

        ensure_cloudstack_template(bed, "ubuntu-2204-kube-v1.28.9")
        credentials_secret(bed, namespace)
        credentials_secret(bed, namespace, "wrong-credentials", **wrong)
        nowhere = f"http://127.0.0.1:{closed_port()}/client/api"
        credentials_secret(bed, namespace, "nowhere-credentials", api_url=nowhere)
        manifests = write_manifests(small_cluster(bed, namespace), root / "git")
        small_cluster(bed, namespace, "badkeys", secret="wrong-credentials")
        small_cluster(bed, namespace, "nowhere", secret="nowhere-credentials")

        documented = apply_documented_role(bed, namespace)
        accounts: dict[str, Login] = {
            "upgrader": login(bed, namespace, "upgrader", documented, root),
            "nobody": login(bed, namespace, "nobody", create_role(bed, namespace, "nothing", []), root),
            "revoked": login(bed, namespace, "revoked", documented, root),
        }
        core.delete_namespaced_service_account("revoked", namespace)  # its token is refused from now on
        for name, account in accounts.items():
            credentials.add_token(f"token of {name}", account.token)
        kubeconfigs = {name: account.kubeconfig for name, account in accounts.items()}
        kubeconfigs["admin"] = bed.kubeconfig
        kubeconfigs["unreachable"] = kubeconfig_with_server(
            bed.kubeconfig, f"https://127.0.0.1:{closed_port()}", root / "unreachable.kubeconfig"
        )
        yield Scene(bed, namespace, credentials, kubeconfigs, manifests, root)
    finally:
        core.delete_namespace(namespace)


@dataclass(frozen=True)
class Case:
    """One run: `args` as the user of `kubeconfig`, expected to exit with `code`."""

    name: str
    args: tuple[str, ...]
    code: int
    kubeconfig: str | None = "upgrader"
    cloudstack_env: bool = False  # CLOUDSTACK_* set, as `image list` without --cluster reads them
    faults: Mapping[str, Any] | None = None  # of the CloudStack double, for this run only
    logs: bool = True  # the command has something to log at -v 9

    def argv(self, scene: Scene) -> list[str]:
        argv = [arg.replace("{ns}", scene.namespace) for arg in self.args]
        argv = [arg.replace("{git}", str(scene.manifests)) for arg in argv]
        if self.kubeconfig is not None:
            argv += ["--kubeconfig", str(scene.kubeconfigs[self.kubeconfig]), "-v", MAX_VERBOSITY]
        return argv


def upgrade(cluster: str, *args: str) -> tuple[str, ...]:
    return ("image-upgrade", cluster, "-n", "{ns}", *args)


def register(cluster: str) -> tuple[str, ...]:
    url = "http://127.0.0.1:9/ubuntu-2204-kube-v1.29.4.qcow2"
    return ("image", "register", "--cluster", cluster, "-n", "{ns}", "--version", "v1.29.4", "--url", url,
            "--poll-interval", "0.05s", "--timeout", "60s")  # fmt: skip


GITOPS = ("-f", "{git}", "--output-dir", "{out}", "--server-dry-run")
CASES = [
    # -- paths that succeed (none of them changes the clusters) --
    Case("version", ("version",), 0, kubeconfig=None, logs=False),
    Case("context", ("context", "-o", "yaml"), 0, kubeconfig="admin", logs=False),
    Case("describe", ("describe", "c1", "-n", "{ns}"), 0, kubeconfig="admin"),
    Case("validate", ("validate", "c1", "-n", "{ns}", "--to", "v1.29.3", "-o", "json"), 0),
    Case("history", ("history", "c1", "-n", "{ns}"), 0, kubeconfig="admin"),
    Case("image-list-cluster", ("image", "list", "--cluster", "c1", "-n", "{ns}"), 0),
    Case(
        "image-list-config", ("image", "list", "-v", MAX_VERBOSITY), 0, kubeconfig=None, cloudstack_env=True
    ),
    Case("upgrade-dry-run", upgrade("c1", "--to", "v1.28.9", "--dry-run"), 1),
    Case("gitops-server-dry-run", upgrade("c1", "--to", "v1.29.3", *GITOPS), 0, kubeconfig="admin"),
    Case("rollback-nothing", ("rollback", "c1", "-n", "{ns}", "--dry-run"), 5),
    Case("cleanup-nothing", ("cleanup", "c1", "-n", "{ns}", "--dry-run"), 0, kubeconfig="admin"),
    # -- CloudStack refuses the keys, fails or cannot be reached --
    Case("validate-keys-refused", ("validate", "badkeys", "-n", "{ns}"), 1),
    Case("validate-namespace", ("validate", "-n", "{ns}", "-o", "json"), 1, kubeconfig="admin"),
    Case("upgrade-keys-refused", upgrade("badkeys", "--to", "v1.29.3", "--yes"), 4),
    Case("register-keys-refused", register("badkeys"), 4),
    Case("upgrade-unreachable", upgrade("nowhere", "--to", "v1.29.3", "--yes"), 4),
    Case("describe-unreachable", ("describe", "nowhere", "-n", "{ns}"), 0, kubeconfig="admin"),
    Case(
        "upgrade-530",
        upgrade("c1", "--to", "v1.29.3", "--dry-run"),
        4,
        kubeconfig="admin",
        faults={"errors": [{"command": "listTemplates", "times": 20}]},
    ),
    Case(
        "upgrade-key-expired", upgrade("c1", "--to", "v1.29.3", "--dry-run"), 4, faults={"key_expired": True}
    ),
    Case(
        "register-530",
        register("c1"),
        4,
        kubeconfig="admin",
        faults={"errors": [{"command": "registerTemplate", "times": 20}]},
    ),
    # -- the API server refuses, does not accept the token, or cannot be reached --
    Case("validate-forbidden", ("validate", "c1", "-n", "{ns}"), 4, kubeconfig="nobody"),
    Case("upgrade-forbidden", upgrade("c1", "--to", "v1.29.3", "--yes"), 4, kubeconfig="nobody"),
    Case("cleanup-forbidden", ("cleanup", "c1", "-n", "{ns}", "--yes"), 4, kubeconfig="nobody"),
    Case("describe-token-refused", ("describe", "c1", "-n", "{ns}"), 4, kubeconfig="revoked"),
    Case("rollback-token-refused", ("rollback", "c1", "-n", "{ns}", "--yes"), 4, kubeconfig="revoked"),
    Case("validate-unreachable", ("validate", "c1", "-n", "{ns}"), 4, kubeconfig="unreachable"),
    Case("upgrade-unreachable-api", upgrade("c1", "--to", "v1.29.3"), 4, kubeconfig="unreachable"),
    # -- refused before anything is done --
    Case("upgrade-without-yes", upgrade("c1", "--to", "v1.28.9"), 2, kubeconfig="admin"),
]


def test_the_cases_have_distinct_names() -> None:
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_no_credential_in_any_output_or_file(scene: Scene, case: Case) -> None:
    env = dict(scene.bed.cloudstack) if case.cloudstack_env else {}
    if case.faults is not None:
        admin(scene.bed, "faults", case.faults)
    try:
        outcome = scene.sandbox(case.name).run(*case.argv(scene), env=env)
    finally:
        if case.faults is not None:
            admin(scene.bed, "faults", {})
    assert outcome.code == case.code, outcome.stderr
    assert "D kubectl_capc." in outcome.stderr or not case.logs
    assert scene.credentials.leaks(outcome) == []


def test_an_upgrade_its_rollback_and_a_cleanup_leak_nothing(scene: Scene) -> None:
    """The writing commands, in their order of use, alternating the token and the client key."""
    small_cluster(scene.bed, scene.namespace, "seq")
    sandbox = scene.sandbox("sequence")
    steps = [
        ("upgrader", ("image-upgrade", "seq", "--to", "v1.28.9", "--yes")),
        ("admin", ("rollback", "seq", "--yes")),
        ("admin", ("image-upgrade", "seq", "--to", "v1.29.3", "--yes", "-o", "json")),
        ("upgrader", ("cleanup", "seq", "--yes")),
        ("upgrader", ("history", "seq", "-o", "yaml")),
    ]
    for user, args in steps:
        kubeconfig = str(scene.kubeconfigs[user])
        outcome = sandbox.run(*args, "-n", scene.namespace, "--kubeconfig", kubeconfig, "-v", MAX_VERBOSITY)
        assert outcome.code == 0, f"{args}: {outcome.stderr}"
        assert scene.credentials.leaks(outcome) == [], args
    kcp = get(scene.bed, scene.namespace, "KubeadmControlPlane", "seq-control-plane")
    assert version_and_template(kcp) == ("v1.29.3", "seq-control-plane-v1-29-3")


def test_image_build_leaks_nothing_with_cloudstack_credentials_in_its_environment(
    scene: Scene, tmp_path: Path
) -> None:
    """image-builder's make runs with the plugin's environment: its log must not take the keys along."""
    checkout = Path(shutil.copytree(STANDIN_IMAGE_BUILDER, tmp_path / "image-builder"))
    (checkout / ".gitignore").write_text("images/capi/output/\n")
    for args in (("init", "-q"), ("add", "."), ("-c", "user.name=t", "-c", "user.email=t@example.com",
                                                 "commit", "-q", "-m", "standin")):  # fmt: skip
        subprocess.run(["git", "-C", str(checkout), *args], check=True, capture_output=True)
    env = {**scene.bed.cloudstack, "PYTHON": sys.executable}
    outcome = scene.sandbox("build").run(
        "image", "build", "--os", "ubuntu-2204", "--version", "v1.29.3", "--image-builder-dir", str(checkout),
        "-v", MAX_VERBOSITY, env=env,
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    assert any(path.name.endswith(".log") for path in outcome.files), "the build log is under HOME"
    assert scene.credentials.leaks(outcome) == []


# -- a run stopped while it waits --------------------------------------------------------------------


def start_waiting(scene: Scene, sandbox: Sandbox, cluster: str) -> tuple[subprocess.Popen[str], Path]:
    """`image-upgrade` as the admin (client key) on a cluster whose control plane never finishes."""
    directory, env = sandbox.prepare()
    args = [*upgrade(cluster, "--to", "v1.28.9", "--yes", "--timeout", "5m"), "-v", MAX_VERBOSITY]
    args = [arg.replace("{ns}", scene.namespace) for arg in args]
    process = subprocess.Popen(
        [sys.executable, "-m", "kubectl_capc", *args, "--kubeconfig", str(scene.bed.kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, cwd=REPO, env=env,
    )  # fmt: skip

    def waiting() -> bool:
        assert process.poll() is None, process.communicate()
        kcp = get(scene.bed, scene.namespace, "KubeadmControlPlane", f"{cluster}-control-plane")
        return version_and_template(kcp)[0] == "v1.28.9"

    wait_for("the upgrade to patch the control plane and wait", waiting)
    return process, directory


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_the_client_key_is_never_in_a_file_even_when_the_run_is_killed(
    scene: Scene, stop: signal.Signals
) -> None:
    cluster = f"stuck-{stop.name.lower()}"
    small_cluster(scene.bed, scene.namespace, cluster, annotate={f"{cluster}-control-plane": {FAIL: "Stuck"}})
    process, directory = start_waiting(scene, scene.sandbox(cluster), cluster)
    try:
        while_waiting = Outcome(0, "", "", files_under(directory))
        assert scene.credentials.leaks(while_waiting) == []
    finally:
        process.send_signal(stop)
        stdout, stderr = process.communicate(timeout=60)
    outcome = Outcome(process.returncode, stdout, stderr, files_under(directory))
    assert outcome.code == (130 if stop is signal.SIGINT else -signal.SIGKILL), stderr
    assert scene.credentials.leaks(outcome) == []
