"""TLS certificates are checked unless the cluster's own credentials Secret says `verify-ssl: "false"`.

The CloudStack double is put behind an HTTPS endpoint whose certificate no system trust store knows
(the test bed's serving certificate, signed by the bed's own CA). A Secret without `verify-ssl`, or
with any other value than the exact string "false" (as in CAPC), must make the plugin refuse the
endpoint; `"false"` must let it through with a warning on stderr, at the default log level. Either way
no key reaches the output. On the Kubernetes side, a kubeconfig without the cluster's CA is refused too.
"""

from __future__ import annotations

import http.server
import ssl
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rbac_support import credentials_secret, small_cluster
from tests.testenv.bed import TestBed
from tests.upgrade_support import REPO


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
    assert [f["id"] for f in yaml.safe_load(validate.stdout)["clusters"][0]["findings"]] == ["CAPC-S006"]
    assert no_keys(scene.bed, listing) and no_keys(scene.bed, upgrade) and no_keys(scene.bed, validate)


def test_validate_reports_the_refused_certificate_as_a_finding(scene: Scene) -> None:
    done = capc(scene.bed, "validate", "unset", "-n", scene.namespace, "-o", "json")
    assert done.returncode == 1, done.stderr
    findings = yaml.safe_load(done.stdout)["clusters"][0]["findings"]
    assert [f["id"] for f in findings] == ["CAPC-S004"]
    assert "certificate" in findings[0]["message"]
    assert no_keys(scene.bed, done)


def test_a_kubeconfig_without_the_cluster_ca_is_refused(testenv_v1beta2: TestBed, tmp_path: Path) -> None:
    document = yaml.safe_load(testenv_v1beta2.kubeconfig.read_text())
    del document["clusters"][0]["cluster"]["certificate-authority-data"]
    kubeconfig = tmp_path / "no-ca.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(document))
    done = capc(testenv_v1beta2, "validate", "c1", "-n", "default", kubeconfig=kubeconfig)
    assert done.returncode == 4, done.stderr
    assert "certificate verify failed" in done.stderr or "CERTIFICATE_VERIFY_FAILED" in done.stderr
