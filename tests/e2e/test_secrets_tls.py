"""TLS certificates are checked unless the cluster's own credentials Secret says `verify-ssl: "false"`.

The CloudStack double is put behind an HTTPS endpoint whose certificate no system trust store knows
(the test bed's serving certificate, signed by the bed's own CA). A Secret without `verify-ssl`, or
with any other value than the exact string "false" (as in CAPC), must make the plugin refuse the
endpoint; `"false"` must let it through with a warning on stderr, at the default log level. Either way
no key reaches the output. On the Kubernetes side, a kubeconfig without the cluster's CA, or naming a
host the serving certificate does not hold, is refused too: at the first attempt, since asking again
would get the same certificate.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from urllib3.exceptions import MaxRetryError, SSLError

from kubectl_capc.kube.retries import certificate_refused, request_was_sent, retry_delay
from tests.support.rbac_support import credentials_secret, small_cluster
from tests.support.upgrade_support import REPO
from tests.testenv.bed import TestBed


class _Forward(http.server.BaseHTTPRequestHandler):
    """Relays each request to the double's plain-HTTP endpoint."""

    upstream = ""

    def do_GET(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _relay(self, body: bytes | None = None) -> None:
        request = urllib.request.Request(self.upstream + self.path, data=body, method=self.command)
        if self.headers.get("Content-Type"):
            request.add_header("Content-Type", self.headers["Content-Type"])
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, content_type, payload = (
                    response.status,
                    response.headers["Content-Type"],
                    response.read(),
                )
        except urllib.error.HTTPError as err:
            status, content_type, payload = err.code, err.headers["Content-Type"], err.read()
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the plugin's output, not the proxy's."""


@pytest.fixture(scope="module")
def https_endpoint(testenv_v1beta2: TestBed) -> Iterator[str]:
    """`https://127.0.0.1:PORT/client/api` in front of the double, with a certificate for 127.0.0.1."""
    upstream = testenv_v1beta2.cloudstack["CLOUDSTACK_ENDPOINT"].split("/client/api")[0]
    handler = type("Forward", (_Forward,), {"upstream": upstream})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki = testenv_v1beta2.dir / "pki"
    context.load_cert_chain(str(pki / "serving.crt"), str(pki / "serving.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/client/api"
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Scene:
    bed: TestBed
    namespace: str


# verify-ssl value of each cluster's Secret (None: the key is absent).
CLUSTERS = {"unset": None, "is-true": "true", "is-capital-false": "False", "is-no": "no", "is-false": "false"}


@pytest.fixture(scope="module")
def scene(testenv_v1beta2: TestBed, https_endpoint: str) -> Iterator[Scene]:
    from kubernetes import client

    bed = testenv_v1beta2
    namespace = f"tls-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(bed.api_client())
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        for cluster, verify_ssl in CLUSTERS.items():
            extra = {} if verify_ssl is None else {"verify_ssl": verify_ssl}
            credentials_secret(bed, namespace, f"{cluster}-creds", api_url=https_endpoint, **extra)
            small_cluster(bed, namespace, cluster, secret=f"{cluster}-creds")
        yield Scene(bed, namespace)
    finally:
        core.delete_namespace(namespace)


def capc(bed: TestBed, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubectl_capc", *args, "--kubeconfig", str(kubeconfig or bed.kubeconfig)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip


def no_keys(bed: TestBed, done: subprocess.CompletedProcess[str]) -> bool:
    keys = (bed.cloudstack["CLOUDSTACK_KEY"], bed.cloudstack["CLOUDSTACK_SECRET"])
    return not any(key in done.stdout + done.stderr for key in keys)


WARNING = "sets verify-ssl to false: TLS certificates of https://127.0.0.1:"


@pytest.mark.parametrize("cluster", [c for c in CLUSTERS if c != "is-false"])
def test_the_certificate_is_checked_unless_the_secret_says_exactly_false(scene: Scene, cluster: str) -> None:
    listing = capc(scene.bed, "image", "list", "--cluster", cluster, "-n", scene.namespace)
    assert listing.returncode == 4, listing.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in listing.stderr or "certificate verify failed" in listing.stderr
    assert WARNING not in listing.stderr
    upgrade = capc(scene.bed, "image-upgrade", cluster, "-n", scene.namespace, "--to", "v1.29.3", "--dry-run")
    assert upgrade.returncode == 4, upgrade.stderr
    assert upgrade.stderr.splitlines()[-1].startswith("error: ") and "certificate" in upgrade.stderr
    assert no_keys(scene.bed, listing) and no_keys(scene.bed, upgrade)


def test_verify_ssl_false_goes_through_with_a_warning(scene: Scene) -> None:
    listing = capc(scene.bed, "image", "list", "--cluster", "is-false", "-n", scene.namespace)
    assert listing.returncode == 0, listing.stderr
    assert "ubuntu-2204-kube-v1.29.3" in listing.stdout
    (warning,) = [line for line in listing.stderr.splitlines() if WARNING in line]
    assert warning.startswith("W ") and f"Secret {scene.namespace}/is-false-creds" in warning
    upgrade = capc(
        scene.bed, "image-upgrade", "is-false", "-n", scene.namespace, "--to", "v1.29.3", "--dry-run"
    )
    assert upgrade.returncode == 1, upgrade.stderr
    assert WARNING in upgrade.stderr
    validate = capc(scene.bed, "validate", "is-false", "-n", scene.namespace, "-o", "json")
    assert validate.returncode == 0, validate.stderr
    found = yaml.safe_load(validate.stdout)["clusters"][0]["findings"]
    assert [f["id"] for f in found if f["id"] != "CAPC-W001"] == ["CAPC-S006"]  # no workload cluster here
    assert no_keys(scene.bed, listing) and no_keys(scene.bed, upgrade) and no_keys(scene.bed, validate)


def test_validate_reports_the_refused_certificate_as_a_finding(scene: Scene) -> None:
    done = capc(scene.bed, "validate", "unset", "-n", scene.namespace, "-o", "json")
    assert done.returncode == 1, done.stderr
    findings = yaml.safe_load(done.stdout)["clusters"][0]["findings"]
    assert [f["id"] for f in findings if f["id"] != "CAPC-W001"] == ["CAPC-S004"]  # no workload cluster here
    assert "certificate" in findings[0]["message"]
    assert no_keys(scene.bed, done)


class CountingRelay:
    """A loopback TCP relay in front of the apiserver that counts the connections made to it: each one is
    a TLS handshake the client tried, so the count is the number of attempts, retries included."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            self.connections += 1
            server = socket.create_connection(self.upstream)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def relay(testenv_v1beta2: TestBed) -> Iterator[CountingRelay]:
    endpoint = urlsplit(testenv_v1beta2.endpoint)
    started = CountingRelay((endpoint.hostname or "127.0.0.1", endpoint.port or 443))
    yield started
    started.close()


def _without_ca(cluster: dict[str, Any]) -> None:
    del cluster["certificate-authority-data"]


def _other_host_name(cluster: dict[str, Any]) -> None:
    cluster["tls-server-name"] = "apiserver.invalid"  # not a name the serving certificate holds


@pytest.mark.parametrize(
    ("break_tls", "cause"),
    [(_without_ca, "unable to get local issuer certificate"), (_other_host_name, "Hostname mismatch")],
    ids=["unknown-ca", "hostname-mismatch"],
)
def test_a_server_certificate_that_fails_verification_is_refused_at_once(
    testenv_v1beta2: TestBed,
    relay: CountingRelay,
    tmp_path: Path,
    break_tls: Callable[[dict[str, Any]], None],
    cause: str,
) -> None:
    """A refused certificate is not a blip: one attempt, no retries, one line naming the server."""
    document = yaml.safe_load(testenv_v1beta2.kubeconfig.read_text())
    cluster = document["clusters"][0]["cluster"]
    server = cluster["server"] = f"https://127.0.0.1:{relay.port}"
    break_tls(cluster)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(document))
    for command in (("validate", "c1", "-n", "default"), ("image-upgrade", "c1", "--to", "v1.29.3", "--yes")):
        before = relay.connections
        done = capc(testenv_v1beta2, *command, "-v", "6", kubeconfig=kubeconfig)
        assert done.returncode == 4, done.stderr
        assert relay.connections - before == 1, done.stderr
        assert "trying again" not in done.stderr
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("error: ") and server in line and "certificate verify failed" in line, line
        assert cause in line and "check the kubeconfig's certificate-authority" in line, line


def test_only_a_refused_certificate_is_final_among_tls_failures() -> None:
    """A handshake cut short (as while the apiserver restarts) is still retried; a refused certificate,
    never, and a request refused there never reached the server."""
    refused = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    cut_short = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    for method in ("GET", "PATCH"):
        error = MaxRetryError(None, "/apis", SSLError(refused))  # type: ignore[arg-type]
        assert certificate_refused(error) and not request_was_sent(error)
        assert retry_delay(method, 1, error=error) is None
    error = MaxRetryError(None, "/apis", SSLError(cut_short))  # type: ignore[arg-type]
    assert not certificate_refused(error) and request_was_sent(error)
    assert retry_delay("GET", 1, error=error) is not None
