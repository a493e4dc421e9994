"""The plugin's own Kubernetes transport (`kube.rest`, `kube.credentials`, `kube.exec_credential`) against
the real test-bed API server: every way a kubeconfig can trust the server and log in, proxies, and no
secret in any message."""

from __future__ import annotations

import base64
import json
import select
import socket
import socketserver
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_capc.domain.errors import ConfigError, KubeApiError
from kubectl_capc.kube.client import kube_client
from kubectl_capc.kube.read import discover, request_json
from kubectl_capc.kube.rest import KubeClient
from kubectl_capc.kube.target import KubeTarget
from tests.support.rbac_support import service_account_token
from tests.testenv.bed import TestBed

WHO_AM_I = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


def admin(bed: TestBed) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(bed.kubeconfig.read_text())
    return document


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bed", "cluster": cluster}],
        "users": [{"name": "me", "user": user}],
        "contexts": [{"name": "here", "context": {"cluster": "bed", "user": "me", "namespace": "default"}}],
        "current-context": "here",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def client_for(path: Path, timeout: float | None = 10.0) -> KubeClient:
    return kube_client(KubeTarget(kubeconfig=str(path), request_timeout=timeout))


def who(client: KubeClient) -> str:
    review = request_json(client, "POST", WHO_AM_I, body=REVIEW)
    return str(review["status"]["userInfo"]["username"])


@pytest.fixture
def account(testenv_v1beta2: TestBed, namespace: str) -> tuple[str, str]:
    """A ServiceAccount's token and its user name."""
    token = service_account_token(testenv_v1beta2, namespace, "reader")
    return token, f"system:serviceaccount:{namespace}:reader"


def test_client_certificate_and_ca_as_data_and_as_files(testenv_v1beta2: TestBed, tmp_path: Path) -> None:
    bed = testenv_v1beta2
    assert who(client_for(bed.kubeconfig)) == "testenv-admin"
    cluster = {
        "server": admin(bed)["clusters"][0]["cluster"]["server"],
        "certificate-authority": "pki/ca.crt",
    }
    user = {"client-certificate": "pki/admin.crt", "client-key": "pki/admin.key"}
    (tmp_path / "kube" / "pki").mkdir(parents=True)
    for name in ("ca.crt", "admin.crt", "admin.key"):
        (tmp_path / "kube" / "pki" / name).write_bytes((bed.dir / "pki" / name).read_bytes())
    path = write_kubeconfig(tmp_path / "kube" / "config", cluster, user)  # paths relative to the file
    assert who(client_for(path)) == "testenv-admin"


def test_bearer_token_and_token_file(
    testenv_v1beta2: TestBed, tmp_path: Path, account: tuple[str, str]
) -> None:
    token, name = account
    cluster = admin(testenv_v1beta2)["clusters"][0]["cluster"]
    assert who(client_for(write_kubeconfig(tmp_path / "a", cluster, {"token": token}))) == name
    (tmp_path / "token").write_text(token + "\n")
    assert (
        who(client_for(write_kubeconfig(tmp_path / "b", cluster, {"tokenFile": str(tmp_path / "token")})))
        == name
    )


def test_a_refused_token_is_a_401_without_the_token(testenv_v1beta2: TestBed, tmp_path: Path) -> None:
    cluster = admin(testenv_v1beta2)["clusters"][0]["cluster"]
    client = client_for(write_kubeconfig(tmp_path / "k", cluster, {"token": "not-a-valid-token-31337"}))
    with pytest.raises(KubeApiError) as caught:
        discover(client)
    assert "HTTP 401" in str(caught.value) and "log in again" in str(caught.value)
    assert "31337" not in str(caught.value)


def plugin(tmp_path: Path, body: str = "", *, status: str | None = None, version: str = "v1") -> Path:
    """An exec credential plugin: a Python script whose runs are counted in `runs`; with `status` (a
    Python expression), it ends by printing an ExecCredential of `version` with that status."""
    script = tmp_path / "plugin.py"
    answer = ""
    if status is not None:
        kind = f'"apiVersion": "client.authentication.k8s.io/{version}", "kind": "ExecCredential"'
        answer = f'print(json.dumps({{{kind}, "status": {status}}}))\n'
    script.write_text(
        "import json, os, sys\n"
        f"runs = {str(tmp_path / 'runs')!r}\n"
        "with open(runs, 'a') as f: f.write(os.environ['KUBERNETES_EXEC_INFO'] + '\\n')\n"
        + textwrap.dedent(body)
        + answer
    )
    return script


def exec_user(script: Path, **extra: Any) -> dict[str, Any]:
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(script)],
            "env": [{"name": "PLUGIN_MODE", "value": "test"}],
            "interactiveMode": "Never",
            **extra,
        }
    }


def runs(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "runs").read_text().splitlines()]


def test_exec_plugin_token_kept_until_it_expires(
    testenv_v1beta2: TestBed, tmp_path: Path, account: tuple[str, str]
) -> None:
    token, name = account
    script = plugin(
        tmp_path,
        f"""
        assert os.environ["PLUGIN_MODE"] == "test"
        status = {{"token": {token!r}, "expirationTimestamp": sys.argv[1]}}
        """,
        status="status",
    )
    cluster = admin(testenv_v1beta2)["clusters"][0]["cluster"]
    lasting = exec_user(script, provideClusterInfo=True)
    lasting["exec"]["args"].append("2999-01-01T00:00:00Z")
    client = client_for(write_kubeconfig(tmp_path / "k", cluster, lasting))
    assert [who(client), who(client)] == [name, name]
    (info,) = runs(tmp_path)  # one run for both requests
    assert info["kind"] == "ExecCredential" and info["spec"]["interactive"] is False
    assert info["spec"]["cluster"]["server"] == cluster["server"]

    (tmp_path / "runs").unlink()
    expired = exec_user(script)
    expired["exec"]["args"].append("2000-01-01T00:00:00Z")
    client = client_for(write_kubeconfig(tmp_path / "k", cluster, expired))
    assert [who(client), who(client)] == [name, name]
    assert len(runs(tmp_path)) == 2  # an expired answer is asked for again
    assert "cluster" not in runs(tmp_path)[0]["spec"]  # no provideClusterInfo


def test_exec_plugin_asked_again_once_when_the_server_refuses_its_token(
    testenv_v1beta2: TestBed, tmp_path: Path, account: tuple[str, str]
) -> None:
    token, name = account
    script = plugin(
        tmp_path,
        f"""
        first = sum(1 for _ in open(runs)) == 1
        status = {{"token": "revoked-token" if first else {token!r}}}
        """,
        status="status",
    )
    cluster = admin(testenv_v1beta2)["clusters"][0]["cluster"]
    client = client_for(write_kubeconfig(tmp_path / "k", cluster, exec_user(script)))
    assert who(client) == name
    assert len(runs(tmp_path)) == 2


def test_exec_plugin_client_certificate(testenv_v1beta2: TestBed, tmp_path: Path) -> None:
    pki = testenv_v1beta2.dir / "pki"
    status = {
        "clientCertificateData": (pki / "admin.crt").read_text(),
        "clientKeyData": (pki / "admin.key").read_text(),
    }
    script = plugin(tmp_path, status=repr(status), version="v1beta1")
    user = exec_user(script, apiVersion="client.authentication.k8s.io/v1beta1")
    cluster = admin(testenv_v1beta2)["clusters"][0]["cluster"]
    assert who(client_for(write_kubeconfig(tmp_path / "k", cluster, user))) == "testenv-admin"


def client_certificate(pki: Path, user: str) -> dict[str, str]:
    """An ExecCredential status with a new client certificate for `user`, signed by the test bed's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "clientCertificateData": certificate.public_bytes(pem).decode(),
        "clientKeyData": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    }


def test_a_new_client_certificate_from_the_exec_plugin_is_presented_at_once(
    testenv_v1beta2: TestBed, tmp_path: Path
) -> None:
    """Connections made with the plugin's expired certificate are not reused once it gives another."""
    pki = testenv_v1beta2.dir / "pki"
    admin_status = {
        "clientCertificateData": (pki / "admin.crt").read_text(),
        "clientKeyData": (pki / "admin.key").read_text(),
        "expirationTimestamp": "2000-01-01T00:00:00Z",  # expired: asked for again at each request
    }
    rotated = client_certificate(pki, "rotated-user")
    script = plugin(
        tmp_path,
        f"""
        first = sum(1 for _ in open(runs)) == 1
        status = {admin_status!r} if first else {rotated!r}
        """,
        status="status",
    )
    cluster = admin(testenv_v1beta2)["clusters"][0]["cluster"]
    client = client_for(write_kubeconfig(tmp_path / "k", cluster, exec_user(script)))
    assert [who(client), who(client), who(client)] == ["testenv-admin", "rotated-user", "rotated-user"]
    assert len(runs(tmp_path)) == 2  # the second answer has no expiry: kept


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('print(\'{"status": {"token": "leaked-7731"}}\'); sys.exit(3)', "exited 3"),
        ('print(\'{"kind": "ExecCredential", "status": {"token": "leaked-7731"}}\')', "apiVersion"),
        ("print('leaked-7731')", "no usable ExecCredential"),
    ],
)
def test_a_failing_exec_plugin_is_a_config_error_without_its_output(
    testenv_v1beta2: TestBed, tmp_path: Path, body: str, expected: str
) -> None:
    cluster = admin(testenv_v1beta2)["clusters"][0]["cluster"]
    client = client_for(write_kubeconfig(tmp_path / "k", cluster, exec_user(plugin(tmp_path, body))))
    with pytest.raises(ConfigError) as caught:
        discover(client)
    assert expected in str(caught.value)
    assert "leaked-7731" not in str(caught.value)


def test_a_missing_exec_plugin_shows_its_install_hint(testenv_v1beta2: TestBed, tmp_path: Path) -> None:
    cluster = admin(testenv_v1beta2)["clusters"][0]["cluster"]
    user = exec_user(tmp_path / "x", command=str(tmp_path / "no-such-plugin"), installHint="get it from IT")
    with pytest.raises(ConfigError, match=r"cannot run the exec plugin .*no-such-plugin.*; get it from IT"):
        discover(client_for(write_kubeconfig(tmp_path / "k", cluster, user)))


def test_trust_insecure_skip_verify_and_tls_server_name(testenv_v1beta2: TestBed, tmp_path: Path) -> None:
    bed = testenv_v1beta2
    cluster = admin(bed)["clusters"][0]["cluster"]
    user = admin(bed)["users"][0]["user"]
    other_ca = base64.b64encode(bed.upload_ca_file.read_bytes()).decode()  # signed nothing the apiserver has
    untrusted = client_for(
        write_kubeconfig(tmp_path / "a", {**cluster, "certificate-authority-data": other_ca}, user)
    )
    with pytest.raises(KubeApiError, match="certificate is not trusted") as caught:
        discover(untrusted)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)

    insecure = {"server": cluster["server"], "insecure-skip-tls-verify": True}
    assert who(client_for(write_kubeconfig(tmp_path / "b", insecure, user))) == "testenv-admin"
    named = {**cluster, "tls-server-name": "kubernetes"}  # a name of the serving certificate, not the IP
    assert who(client_for(write_kubeconfig(tmp_path / "c", named, user))) == "testenv-admin"
    wrong = client_for(write_kubeconfig(tmp_path / "d", {**cluster, "tls-server-name": "elsewhere"}, user))
    with pytest.raises(KubeApiError, match="certificate is not trusted"):
        discover(wrong)


class ConnectProxy(socketserver.ThreadingTCPServer):
    """An HTTP CONNECT proxy on loopback that records the addresses it tunnels to."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.tunnels: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Tunnel(socketserver.StreamRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        method, target, _ = self.rfile.readline().decode().split(" ", 2)
        while self.rfile.readline().strip():
            pass
        if method != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        self.server.tunnels.append(target)
        host, _, port = target.rpartition(":")
        with socket.create_connection((host, int(port))) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            sockets = [self.connection, upstream]
            while True:
                ready, _, _ = select.select(sockets, [], [], 5)
                if not ready:
                    return
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is self.connection else self.connection).sendall(data)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    server = ConnectProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_proxy_url_and_the_proxy_environment(
    testenv_v1beta2: TestBed, tmp_path: Path, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    bed = testenv_v1beta2
    cluster = admin(bed)["clusters"][0]["cluster"]
    user = admin(bed)["users"][0]["user"]
    address = cluster["server"].removeprefix("https://")
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert who(client_for(write_kubeconfig(tmp_path / "a", {**cluster, "proxy-url": proxy.url}, user))) == (
        "testenv-admin"
    )
    assert proxy.tunnels == [address]

    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    plain = write_kubeconfig(tmp_path / "b", cluster, user)
    assert who(client_for(plain)) == "testenv-admin"
    assert proxy.tunnels == [address, address]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert who(client_for(plain)) == "testenv-admin"
    assert len(proxy.tunnels) == 2  # NO_PROXY names the server: sent directly


def test_the_library_client_sends_through_the_same_transport(
    testenv_v1beta2: TestBed, tmp_path: Path, account: tuple[str, str]
) -> None:
    """The typed APIs (used by the writes) log in the way the plain reads do, here with an exec plugin."""
    from kubernetes import client

    from kubectl_capc.kube.client import library_client

    token, name = account
    script = plugin(tmp_path, status=repr({"token": token}))
    cluster = admin(testenv_v1beta2)["clusters"][0]["cluster"]
    kube = client_for(write_kubeconfig(tmp_path / "k", cluster, exec_user(script)))
    api = library_client(kube)
    review = client.AuthenticationV1Api(api).create_self_subject_review({"apiVersion": REVIEW["apiVersion"]})
    assert review.status.user_info.username == name
    assert who(api) == name
    assert len(runs(tmp_path)) == 1
