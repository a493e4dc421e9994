"""Kubernetes API faults during `image-upgrade`, with the real CLI process on the test bed.

The faults are real where the bed can make them real (a concurrent change gives a true 409, the
apiserver is restarted mid-wait, an expired client certificate, a revoked ServiceAccount token, a port
nobody listens on) and injected by a loopback proxy in front of the apiserver otherwise (429 and 503,
with and without Retry-After, before or after the apiserver acted on the request). Reads are retried;
a write is sent again only when the server cannot have acted on it, and is otherwise re-checked by
reading the cluster again; every failure is one line naming the object and what to do, with a
documented exit code, and leaves nothing half-written.
"""

from __future__ import annotations

import datetime
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from kubectl_capc.domain.errors import ExitCode
from kubectl_capc.kube.write import WATCH_SECONDS, watch_seconds
from tests.support.fault_support import end_state, failure_line, start_upgrade, stopped, upgrade
from tests.support.kube_proxy import Fault, KubeProxy
from tests.support.rbac_support import bind_cluster_role, service_account_token, token_kubeconfig
from tests.support.upgrade_support import (
    create_cluster,
    get,
    history,
    patch,
    resource_versions,
    version_and_template,
)
from tests.testenv.bed import TestBed, restart_apiserver
from tests.testenv.rollout_model import STALL_ANNOTATION

pytestmark = pytest.mark.timeout(300)

TO = ["--to", "v1.29.3"]
SMALL = {"control_plane_replicas": 1, "worker_replicas": 1}
KCP = ("KubeadmControlPlane", "c1-control-plane")
# The KubeadmControlPlane's real patch, not the dryRun=All one of the preview.
KCP_PATCH = r"/kubeadmcontrolplanes/c1-control-plane\?(?!.*dryRun)"


@pytest.fixture
def bed(testenv_v1beta2: TestBed) -> TestBed:
    return testenv_v1beta2


@pytest.fixture
def cluster(bed: TestBed, namespace: str) -> str:
    create_cluster(bed, namespace, **SMALL)
    return namespace


@pytest.fixture
def robot_bindings(bed: TestBed) -> Iterator[None]:
    """Remove the ClusterRoleBindings that `_service_account_kubeconfig` makes."""
    from kubernetes import client

    yield
    client.RbacAuthorizationV1Api(bed.api_client()).delete_collection_cluster_role_binding(
        label_selector="fault-tests=robot"
    )


@pytest.fixture
def proxy(bed: TestBed) -> Iterator[KubeProxy]:
    started = KubeProxy(bed).start()
    yield started
    started.stop()


def upgraded_once(bed: TestBed, namespace: str) -> None:
    """The run ended where it should, each owner patched exactly once."""
    for kind, name in (KCP, ("MachineDeployment", "c1-md-0"), ("MachineDeployment", "c1-md-1")):
        obj = get(bed, namespace, kind, name)
        assert version_and_template(obj) == ("v1.29.3", f"{name}-v1-29-3")
        assert len(history(obj)) == 1, f"{name} was patched {len(history(obj))} times"


def test_429_and_503_with_retry_after_are_waited_out_for_reads_and_writes(
    bed: TestBed, cluster: str, proxy: KubeProxy, tmp_path: Path
) -> None:
    proxy.inject(
        Fault("GET", r"/kubeadmcontrolplanes\?", 429, times=2, retry_after=1),
        Fault("GET", r"/machinedeployments\?", 503, times=1, retry_after=1),
        Fault("PATCH", KCP_PATCH, 429, times=1, retry_after=1),
        Fault("POST", r"/cloudstackmachinetemplates\?(?!.*dryRun)", 503, times=1, retry_after=1),
    )
    started = time.monotonic()
    run = upgrade(bed, cluster, [*TO, "-v", "1"], kubeconfig=proxy.kubeconfig(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert time.monotonic() - started >= 4  # every Retry-After was honoured
    assert all(fault.times == 0 for fault in proxy.faults)
    assert run.stderr.count("trying again in 1.0s") == 5
    # The refused write reached the apiserver once, after the refusal: sent again, never twice.
    assert [e.injected for e in proxy.requests("PATCH", KCP_PATCH)] == [True, False]
    upgraded_once(bed, cluster)


def test_a_write_answered_503_is_checked_by_reading_again_not_sent_blindly(
    bed: TestBed, cluster: str, proxy: KubeProxy, tmp_path: Path
) -> None:
    # The apiserver applies the patch, but the client hears 503 without Retry-After: did it happen?
    proxy.inject(Fault("PATCH", KCP_PATCH, 503, after_forwarding=True))
    run = upgrade(bed, cluster, TO, kubeconfig=proxy.kubeconfig(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "it may or may not have done it: reading the cluster again and re-planning" in run.stderr
    assert len(proxy.requests("PATCH", KCP_PATCH, forwarded=True)) == 1  # re-checked, so not sent again
    upgraded_once(bed, cluster)


def test_a_write_refused_503_is_made_again_after_reading_the_cluster(
    bed: TestBed, cluster: str, proxy: KubeProxy, tmp_path: Path
) -> None:
    proxy.inject(Fault("PATCH", KCP_PATCH, 503))  # never reaches the apiserver
    run = upgrade(bed, cluster, TO, kubeconfig=proxy.kubeconfig(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert [e.injected for e in proxy.requests("PATCH", KCP_PATCH)] == [True, False]
    upgraded_once(bed, cluster)


def test_a_real_409_from_a_concurrent_change_replans_without_overwriting(bed: TestBed, cluster: str) -> None:
    run = start_upgrade(
        bed, cluster, TO, signal_at="SIGSTOP@writing patch KubeadmControlPlane/c1-control-plane"
    )
    stopped(run.process.pid)
    # Someone else changes the control plane between the plan and the guarded patch.
    patch(bed, cluster, *KCP, {"metadata": {"annotations": {"example.com/owner": "team-a"}}})
    run.process.send_signal(signal.SIGCONT)
    done = run.finish()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reading the cluster again and re-planning" in done.stderr
    assert get(bed, cluster, *KCP)["metadata"]["annotations"]["example.com/owner"] == "team-a"
    upgraded_once(bed, cluster)


def test_connection_refused_at_the_start_fails_fast_in_one_line(
    bed: TestBed, cluster: str, tmp_path: Path
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    document = yaml.safe_load(bed.kubeconfig.read_text())
    document["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(document))
    before = resource_versions(bed, cluster)
    started = time.monotonic()
    run = upgrade(bed, cluster, TO, kubeconfig=kubeconfig)
    assert time.monotonic() - started < 10  # nothing ever answered: no point in waiting
    line = failure_line(run, ExitCode.KUBE_API, f"127.0.0.1:{port}", "Connection refused")
    assert "check that the cluster is running" in line
    assert resource_versions(bed, cluster) == before


def test_connection_refused_mid_run_is_ridden_out(
    bed: TestBed, cluster: str, proxy: KubeProxy, tmp_path: Path
) -> None:
    run = start_upgrade(
        bed, cluster, [*TO, "-v", "1"], kubeconfig=proxy.kubeconfig(tmp_path),
        signal_at="SIGSTOP@v1.29.3 start Patch KubeadmControlPlane/c1-control-plane",
    )  # fmt: skip
    stopped(run.process.pid)
    proxy.stop()
    run.process.send_signal(signal.SIGCONT)
    time.sleep(3)  # the patch finds nobody listening, and tries again
    proxy.start()
    done = run.finish()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Connection refused; trying again" in done.stderr
    upgraded_once(bed, cluster)


def test_expired_client_certificate_is_one_line_and_changes_nothing(
    bed: TestBed, cluster: str, tmp_path: Path
) -> None:
    kubeconfig = _kubeconfig_with_expired_certificate(bed, tmp_path)
    before = resource_versions(bed, cluster)
    run = upgrade(bed, cluster, TO, kubeconfig=kubeconfig)
    line = failure_line(run, ExitCode.KUBE_API, "401")
    assert "log in again" in line
    assert resource_versions(bed, cluster) == before


@pytest.mark.usefixtures("robot_bindings")
def test_credentials_revoked_mid_run_stop_cleanly_and_a_rerun_converges(
    bed: TestBed, cluster: str, tmp_path: Path
) -> None:
    kubeconfig, delete_account = _service_account_kubeconfig(bed, cluster, tmp_path)
    run = start_upgrade(
        bed, cluster, TO, kubeconfig=kubeconfig,
        signal_at="SIGSTOP@v1.29.3 start Patch KubeadmControlPlane/c1-control-plane",
    )  # fmt: skip
    stopped(run.process.pid)
    delete_account()  # its tokens stop working at once
    reference = end_state(bed, cluster)
    run.process.send_signal(signal.SIGCONT)
    failed = run.finish()
    line = failure_line(failed, ExitCode.KUBE_API, "KubeadmControlPlane/c1-control-plane", "401")
    assert "log in again" in line and "re-run the same command" in line
    assert end_state(bed, cluster) == reference  # nothing written after the credentials went
    again = upgrade(bed, cluster, TO)
    assert again.returncode == 0, again.stderr[-3000:]
    upgraded_once(bed, cluster)


def test_an_apiserver_restart_mid_wait_is_ridden_out_and_the_watch_resumes(
    bed: TestBed, cluster: str
) -> None:
    patch(bed, cluster, *KCP, {"metadata": {"annotations": {STALL_ANNOTATION: "0"}}})
    run = start_upgrade(bed, cluster, [*TO, "-v", "1"])
    run.wait_for_point("v1.29.3 waiting WaitRollout KubeadmControlPlane/c1-control-plane")
    time.sleep(1)  # the wait has listed and is now watching
    restart_apiserver(bed, down_seconds=2)
    patch(bed, cluster, *KCP, {"metadata": {"annotations": {STALL_ANNOTATION: None}}})
    done = run.finish()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "watch of kubeadmcontrolplanes ended" in done.stderr and "watching again" in done.stderr
    upgraded_once(bed, cluster)


def test_a_watch_lasts_five_to_ten_minutes_and_never_past_the_waits_deadline() -> None:
    assert WATCH_SECONDS == (300, 600)
    assert [watch_seconds(None, rand=lambda r=r: r) for r in (0.0, 0.5, 0.999)] == [300, 450, 599]
    assert {watch_seconds(None) for _ in range(50)} <= set(range(300, 601))
    assert len({watch_seconds(None) for _ in range(50)}) > 10  # spread, so clients do not re-watch at once
    assert watch_seconds(42.2, rand=lambda: 0.5) == 43  # the server ends it at the deadline
    assert watch_seconds(0.3) == 1 and watch_seconds(3600, rand=lambda: 1.0) == 600


# -- credentials ---------------------------------------------------------------------------------------


def _kubeconfig_with_expired_certificate(bed: TestBed, directory: Path) -> Path:
    """The bed's kubeconfig with a client certificate from the bed's CA that expired yesterday."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pki = bed.dir / "pki"
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "expired-admin"),
         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")]
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    document = yaml.safe_load(bed.kubeconfig.read_text())
    user = document["users"][0]["user"]
    user["client-certificate-data"] = base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()
    user["client-key-data"] = base64.b64encode(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    ).decode()
    path = directory / "expired-kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


def _service_account_kubeconfig(
    bed: TestBed, namespace: str, directory: Path
) -> tuple[Path, Callable[[], None]]:
    """A kubeconfig with a ServiceAccount token bound to cluster-admin, and how to revoke it."""
    from kubernetes import client
    from kubernetes import config as kubernetes_config

    core = client.CoreV1Api(bed.api_client())
    name = f"fm-{uuid.uuid4().hex[:8]}"
    token = service_account_token(bed, namespace, name)
    bind_cluster_role(bed, namespace, name, "cluster-admin", binding=name, labels={"fault-tests": "robot"})
    path = token_kubeconfig(bed, directory / "robot-kubeconfig", "robot", token)

    def revoke() -> None:
        """Delete the ServiceAccount and wait until the apiserver no longer accepts its token (401)."""
        from kubernetes.client.exceptions import ApiException

        core.delete_namespaced_service_account(name, namespace)
        robot = client.VersionApi(kubernetes_config.new_client_from_config(config_file=str(path)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                robot.get_code()
            except ApiException as err:
                if err.status == 401:
                    return
            time.sleep(0.2)
        raise AssertionError("the token of a deleted ServiceAccount still works")

    return path, revoke
