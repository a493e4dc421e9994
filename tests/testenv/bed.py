"""The test bed: a real kube-apiserver+etcd with upstream CRDs and admission policies, the CloudStack
API double, and (optionally) the rollout simulator, each a background process recorded under DIR/pids.

`up()` returns once everything answers; `down()` stops every recorded process (and its process group),
so nothing is left running. The same code serves `python -m tests.testenv` and the pytest fixtures.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.testenv import crds, gobuild, upstream

REPO = Path(__file__).resolve().parents[2]
POLICIES = Path(__file__).resolve().parent / "policies.yaml"
MUTATING_API = "admissionregistration.k8s.io/v1beta1"
"""MutatingAdmissionPolicies: served with the feature gate and runtime-config the bed's apiserver sets."""
NO_DEFAULTING_LABEL = "testenv.kubectl-capc.io/no-capi-defaulting"
"""On a namespace: CAPI's defaulting is not applied there (a cluster without CAPI's webhooks)."""
DEFAULT_SEED = REPO / "examples" / "cloudstack-seed.yaml"
CREDENTIALS_SECRET = ("default", "cloudstack-credentials")
PR_SET_PDEATHSIG = 1
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""


class TestBedError(RuntimeError):
    """A test-bed component failed to start; the message names it and points at its log."""


@dataclass(frozen=True)
class TestBed:
    """What a test needs to reach the bed. Stable interface: later tests depend on these names."""

    __test__ = False  # not a pytest test class

    dir: Path
    capi: str
    kubeconfig: Path
    endpoint: str
    kubectl: Path
    cloudstack: dict[str, str]

    @property
    def audit_log(self) -> Path:
        return self.dir / "audit.log"

    @property
    def upload_ca_file(self) -> Path:
        """The CA that signed the certificate of the double's upload server (for `--upload-ca-file`)."""
        return self.dir / "ssvm-ca.crt"

    def api_client(self) -> Any:
        """The plugin's kubernetes ApiClient for the admin identity: typed APIs and plain reads alike."""
        from kubectl_capc.kube.client import api_client
        from kubectl_capc.kube.target import KubeTarget

        return api_client(KubeTarget(kubeconfig=str(self.kubeconfig)))

    def admin_url(self, path: str) -> str:
        """URL of the CloudStack double's unsigned admin endpoint (seeding, faults, call log)."""
        base = self.cloudstack["CLOUDSTACK_ENDPOINT"].split("/client/api")[0]
        return f"{base}/admin/{path.lstrip('/')}"


def _pid_dir(directory: Path) -> Path:
    return directory / "pids"


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when the process that started the bed dies (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(directory: Path, name: str, argv: list[str], *, tied: bool) -> subprocess.Popen[bytes]:
    log = open(directory / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=REPO,
        preexec_fn=_die_with_parent if tied else None,
    )
    log.close()
    _pid_dir(directory).mkdir(parents=True, exist_ok=True)
    (_pid_dir(directory) / f"{name}.pid").write_text(str(proc.pid))
    return proc


def _wait(what: str, probe: Any, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TestBedError(f"{what} exited with {proc.returncode}; see {log}:\n{_tail(log)}")
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # the component is still starting
            last_error = exc
        time.sleep(0.2)
    raise TestBedError(f"{what} not ready after {timeout:.0f}s ({last_error}); see {log}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _ssl_context(directory: Path) -> ssl.SSLContext:
    pki = directory / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def _readyz(directory: Path) -> bool:
    endpoint = (directory / "endpoint").read_text().strip()
    with urllib.request.urlopen(f"{endpoint}/readyz", context=_ssl_context(directory), timeout=2) as resp:
        return bool(resp.status == 200)


def _start_apiserver(directory: Path, binary: Path, tied: bool) -> str:
    policy = directory / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    for stale in ("endpoint", "kubeconfig"):
        (directory / stale).unlink(missing_ok=True)
    proc = _spawn(
        directory,
        "apiserver",
        [str(binary), "-dir", str(directory), "-audit-policy-file", str(policy)],
        tied=tied,
    )
    _wait("kube-apiserver", lambda: _readyz(directory), proc, directory / "apiserver.log", timeout=90)
    return (directory / "endpoint").read_text().strip()


def restart_apiserver(bed: TestBed, *, down_seconds: float = 0.0, tied: bool = True) -> None:
    """Stop the bed's kube-apiserver and start it again on the same port, etcd data and PKI, as an
    apiserver restart looks to clients: connections and watches break, requests are refused for a while,
    and then the same credentials and resourceVersions work again. `down_seconds` keeps it down longer.
    """
    pidfile = _pid_dir(bed.dir) / "apiserver.pid"
    pid = int(pidfile.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _alive(pid):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.05)
    time.sleep(down_seconds)
    port = urllib.parse.urlsplit(bed.endpoint).port
    binary = gobuild.ensure_binaries()["apiserver"]
    argv = [str(binary), "-dir", str(bed.dir), "-port", str(port), "-keep-state"]
    if (bed.dir / "audit-policy.yaml").exists():
        argv += ["-audit-policy-file", str(bed.dir / "audit-policy.yaml")]
    proc = _spawn(bed.dir, "apiserver", argv, tied=tied)
    _wait("kube-apiserver (restarted)", lambda: _readyz(bed.dir), proc, bed.dir / "apiserver.log", timeout=90)


def _install_crds(bed: TestBed) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(bed.api_client())
    wanted = crds.profile_crds(bed.capi)
    for crd in wanted:
        try:
            ext.create_custom_resource_definition(body=crd)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def established() -> bool:
        ready = set()
        for item in ext.list_custom_resource_definition().items:
            for cond in item.status.conditions or []:
                if cond.type == "Established" and cond.status == "True":
                    ready.add(item.metadata.name)
        return all(c["metadata"]["name"] in ready for c in wanted)

    _wait("CRDs Established", established, None, bed.dir / "apiserver.log", timeout=60)


def _install_policies(bed: TestBed) -> None:
    from kubernetes import client, utils
    from kubernetes.client.rest import ApiException

    api = bed.api_client()
    for doc in yaml.safe_load_all(POLICIES.read_text()):
        if doc["apiVersion"] == MUTATING_API:
            _create_raw(api, doc)
            continue
        try:
            utils.create_from_dict(api, doc)
        except utils.FailToCreateError as exc:
            if not all(isinstance(e, ApiException) and e.status == 409 for e in exc.api_exceptions):
                raise

    # Policies take effect asynchronously: probe with a dry-run create that only a policy rejects.
    custom = client.CustomObjectsApi(api)
    probe = {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
        "kind": "CloudStackMachineTemplate",
        "metadata": {"name": "testenv-policy-probe", "namespace": "default"},
        "spec": {"template": {"spec": {"offering": {"name": "probe"}, "template": {}}}},
    }

    def enforced() -> bool:
        try:
            custom.create_namespaced_custom_object(
                "infrastructure.cluster.x-k8s.io",
                "v1beta3",
                "default",
                "cloudstackmachinetemplates",
                probe,
                dry_run="All",
            )
        except ApiException as exc:
            return exc.status == 422 and "Template ID or Name" in str(exc.body)
        return False

    _wait("admission policies", enforced, None, bed.dir / "apiserver.log", timeout=60)
    _wait("mutating admission policies", lambda: _defaulted(bed), None, bed.dir / "apiserver.log", timeout=60)
    _wait(
        "CAPI kinds behind the admission chain",
        lambda: _admits_capi_kinds(bed),
        None,
        bed.dir / "apiserver.log",
        timeout=60,
    )


def _admits_capi_kinds(bed: TestBed) -> bool:
    """Whether a dry-run create of each kind the mutating policies match gets past admission.

    Until the admission chain has seen a new CRD it answers 503 "Resource kind … not found"; any other
    answer (including a validation error of the empty probe) means the kind is served end to end."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    custom = client.CustomObjectsApi(bed.api_client())
    for plural, kind in (
        ("machinedeployments", "MachineDeployment"),
        ("machinesets", "MachineSet"),
        ("machines", "Machine"),
    ):
        probe = {
            "apiVersion": f"cluster.x-k8s.io/{bed.capi}",
            "kind": kind,
            "metadata": {"name": "testenv-admission-probe", "namespace": "default"},
            "spec": {"clusterName": "probe"},
        }
        try:
            custom.create_namespaced_custom_object(
                "cluster.x-k8s.io", bed.capi, "default", plural, probe, dry_run="All"
            )
        except ApiException as exc:
            if exc.status == 503:
                return False
    return True


def _create_raw(api: Any, doc: dict[str, Any]) -> None:
    """Create a cluster-scoped object of an API group version the Python client has no model for
    (MutatingAdmissionPolicy v1beta1); an existing one is left as it is."""
    from kubernetes.client.rest import ApiException

    plural = {
        "MutatingAdmissionPolicy": "mutatingadmissionpolicies",
        "MutatingAdmissionPolicyBinding": "mutatingadmissionpolicybindings",
    }[doc["kind"]]
    try:
        response = api.call_api(
            "POST",
            f"{api.configuration.host}/apis/{doc['apiVersion']}/{plural}",
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=doc,
        )
        response.read()
        status = response.status
    except ApiException as exc:
        status = exc.status
    if status not in (200, 201, 409):
        raise TestBedError(f"creating {doc['kind']} {doc['metadata']['name']} failed: HTTP {status}")


def _defaulted(bed: TestBed) -> bool:
    """Whether a dry-run KubeadmControlPlane with version "1.30.2" comes back as "v1.30.2" (its policy
    binding is the last one policies.yaml creates)."""
    from kubernetes import client

    ref = {"kind": "CloudStackMachineTemplate", "name": "probe"}
    if bed.capi == "v1beta1":
        machine_template: dict[str, Any] = {
            "infrastructureRef": {**ref, "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3"}
        }
    else:
        machine_template = {
            "spec": {"infrastructureRef": {**ref, "apiGroup": "infrastructure.cluster.x-k8s.io"}}
        }
    probe = {
        "apiVersion": f"controlplane.cluster.x-k8s.io/{bed.capi}",
        "kind": "KubeadmControlPlane",
        "metadata": {"name": "testenv-defaulting-probe", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "version": "1.30.2",
            "machineTemplate": machine_template,
            "kubeadmConfigSpec": {"preKubeadmCommands": ["true"]},
        },
    }
    created = client.CustomObjectsApi(bed.api_client()).create_namespaced_custom_object(
        "controlplane.cluster.x-k8s.io", bed.capi, "default", "kubeadmcontrolplanes", probe, dry_run="All"
    )
    return bool(created["spec"]["version"] == "v1.30.2")


def _start_cloudstack(
    directory: Path, seed: Path | None, allow_loopback_urls: bool, tied: bool
) -> dict[str, str]:
    env_file = directory / "cloudstack.env"
    env_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tests.csdouble", "--dir", str(directory)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if allow_loopback_urls:
        argv.append("--allow-loopback-urls")
    proc = _spawn(directory, "cloudstack", argv, tied=tied)
    _wait("CloudStack double", env_file.exists, proc, directory / "cloudstack.log", timeout=30)
    values = {}
    for line in env_file.read_text().splitlines():
        key, _, value = line.partition("=")
        if key:
            values[key.strip()] = value.strip()
    return values


def _create_credentials_secret(bed: TestBed) -> None:
    namespace, name = CREDENTIALS_SECRET
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": {
            "api-url": bed.cloudstack["CLOUDSTACK_ENDPOINT"],
            "api-key": bed.cloudstack["CLOUDSTACK_KEY"],
            "secret-key": bed.cloudstack["CLOUDSTACK_SECRET"],
            "verify-ssl": "true",
        },
    }
    put_secret(bed, body)


def put_secret(bed: TestBed, body: dict[str, Any]) -> None:
    """Create the Secret `body` describes, or replace it when it exists already."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    core = client.CoreV1Api(bed.api_client())
    try:
        core.create_namespaced_secret(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_secret(name, namespace, body)


def _start_simulator(bed: TestBed, seconds_per_machine: float, tied: bool) -> None:
    argv = [
        sys.executable,
        "-m",
        "tests.testenv.rollout",
        "--kubeconfig",
        str(bed.kubeconfig),
        "--capi",
        bed.capi,
        "--seconds-per-machine",
        str(seconds_per_machine),
    ]
    proc = _spawn(bed.dir, "rollout", argv, tied=tied)
    time.sleep(0.5)
    if proc.poll() is not None:
        raise TestBedError(
            f"rollout simulator exited with {proc.returncode}:\n{_tail(bed.dir / 'rollout.log')}"
        )


def _start_namespace_controller(bed: TestBed, binary: Path, tied: bool) -> None:
    """kube-controller-manager with the namespace controller alone: a deleted namespace takes its
    objects with it, as on a real management cluster, so a test's Clusters (and their workload control
    planes) go away with its namespace instead of running on in a namespace left Terminating."""
    kubeconfig = str(bed.kubeconfig)
    argv = [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--controllers=namespace",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        "--v=0",
    ]
    _spawn(bed.dir, "controller-manager", argv, tied=tied)


def _start_workload_manager(bed: TestBed, namespace_selector: str, tied: bool) -> None:
    argv = [sys.executable, "-m", "tests.testenv.workload", "--dir", str(bed.dir), "--capi", bed.capi,
            "--namespace-selector", namespace_selector]  # fmt: skip
    proc = _spawn(bed.dir, "workload", argv, tied=tied)
    time.sleep(0.5)
    if proc.poll() is not None:
        raise TestBedError(
            f"workload manager exited with {proc.returncode}:\n{_tail(bed.dir / 'workload.log')}"
        )


def up(
    directory: Path,
    capi: str = "v1beta2",
    *,
    simulate_rollouts: bool = False,
    workload_clusters: bool = False,
    workload_namespaces: str = "",
    seconds_per_machine: float = 1.0,
    seed: Path | None = DEFAULT_SEED,
    allow_loopback_urls: bool = True,
    tie_to_caller: bool = False,
) -> TestBed:
    """Start the whole bed under `directory` and return how to reach it. Stops what it started on failure.

    With `tie_to_caller` (the pytest fixtures) every component is stopped by the kernel if the caller
    dies without running `down`, so a killed test run leaves nothing behind; `python -m tests.testenv up`
    leaves it off, since there the bed must outlive the command.

    With `workload_clusters` every CAPI Cluster gets a workload control plane of its own
    (`tests.testenv.workload`), or with `workload_namespaces` (a label selector) only the Clusters of
    the namespaces it selects; its programs are built here first, so a build failure fails `up`. Such
    a bed also runs the namespace controller, so a deleted namespace stops the planes of its Clusters.
    """
    if capi not in crds.PROFILES:
        raise TestBedError(f"unknown CAPI profile {capi!r}; use one of {', '.join(crds.PROFILES)}")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if any(_running(directory)):
        raise TestBedError(
            f"a test bed is already running in {directory}; "
            f"run 'python -m tests.testenv down --dir {directory}'"
        )
    binaries = gobuild.ensure_workload_binaries() if workload_clusters else gobuild.ensure_binaries()
    try:
        crds.profile_crds(capi)  # fetch the pinned upstream files before anything starts
    except upstream.UpstreamError as exc:
        raise TestBedError(str(exc)) from exc
    try:
        endpoint = _start_apiserver(directory, binaries["apiserver"], tie_to_caller)
        cloudstack = _start_cloudstack(directory, seed, allow_loopback_urls, tie_to_caller)
        bed = TestBed(directory, capi, directory / "kubeconfig", endpoint, binaries["kubectl"], cloudstack)
        _install_crds(bed)
        _install_policies(bed)
        _create_credentials_secret(bed)
        if simulate_rollouts:
            _start_simulator(bed, seconds_per_machine, tie_to_caller)
        if workload_clusters:
            _start_namespace_controller(bed, binaries["controller-manager"], tie_to_caller)
            _start_workload_manager(bed, workload_namespaces, tie_to_caller)
        (directory / "testenv.json").write_text(
            json.dumps({"capi": capi, "kubectl": str(binaries["kubectl"])})
        )
        return bed
    except BaseException:
        down(directory)
        raise


def attach(directory: Path) -> TestBed:
    """Describe a bed that `up` started earlier (e.g. from another process)."""
    directory = directory.resolve()
    meta = json.loads((directory / "testenv.json").read_text())
    cloudstack = {}
    for line in (directory / "cloudstack.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key:
            cloudstack[key] = value
    return TestBed(
        directory,
        meta["capi"],
        directory / "kubeconfig",
        (directory / "endpoint").read_text().strip(),
        Path(meta["kubectl"]),
        cloudstack,
    )


def _running(directory: Path) -> list[tuple[Path, int]]:
    found = []
    for pidfile in sorted(_pid_dir(directory).glob("*.pid")):
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            pidfile.unlink(missing_ok=True)
            continue
        found.append((pidfile, pid))
    return found


def down(directory: Path, timeout: float = 20) -> list[str]:
    """Stop every process the bed started (SIGTERM, then SIGKILL); return the names stopped."""
    directory = directory.resolve()
    running = _running(directory)
    # Stop clients before the apiserver so they do not log connection errors on the way down.
    running.sort(key=lambda item: item[0].stem == "apiserver")
    for _pidfile, pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for _pidfile, pid in running:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    for pidfile, pid in running:
        while _alive(pid):
            time.sleep(0.05)
        pidfile.unlink(missing_ok=True)
    stopped = [pidfile.stem for pidfile, _ in running]
    # Workload control planes normally stop with the manager; stop any it could not.
    for plane in sorted((directory / "workload").glob("*/")):
        stopped += [f"{plane.name}/{name}" for name in down(plane, timeout)]
    return stopped


def _alive(pid: int) -> bool:
    try:
        waited, _status = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall back to a signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
