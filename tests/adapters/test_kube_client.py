"""Kubernetes clients built from the global options: kubeconfig, timeouts, failures, a real server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kubectl_capc.cli.options import configure_logging
from kubectl_capc.domain.errors import ConfigError, ExitCode, KubeApiError
from kubectl_capc.kube import client as kube
from kubectl_capc.kube.target import KubeTarget
from tests.testenv.bed import TestBed
from tests.unit.cli.test_kubeconfig import kubeconfig_text, write

TOKEN = "s3cret-token"


class DiscoveryStub(BaseHTTPRequestHandler):
    """Answers the three discovery requests a DynamicClient makes, after an adjustable delay."""

    delay = 0.0
    status = 200
    agents: list[str] = []  # noqa: RUF012
    answers: dict[str, Any] = {  # noqa: RUF012
        "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0"},
        "/api": {"kind": "APIVersions", "versions": ["v1"]},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    }

    def do_GET(self) -> None:
        self.agents.append(self.headers.get("User-Agent", ""))
        time.sleep(self.delay)
        body = json.dumps(self.answers.get(self.path, {})).encode()
        try:
            self.send_response(self.status if self.path in self.answers else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting, as the timeout tests mean it to

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), DiscoveryStub)
    # server_close waits for a delayed answer still being written, so it never lands in a later test.
    server.daemon_threads = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    DiscoveryStub.delay = 0.0
    DiscoveryStub.status = 200
    DiscoveryStub.agents.clear()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)


def kubeconfig_for(tmp_path: Path, server: str, **cluster: Any) -> Path:
    return write(
        tmp_path / "kube" / "config",
        kubeconfig_text(
            current="here",
            clusters={"c": {"server": server, **cluster}},
            users={"u": {"token": TOKEN}},
            contexts={"here": {"cluster": "c", "user": "u", "namespace": "team"}},
        ),
    )


def url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


def test_api_client_carries_server_credentials_and_relative_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = kubeconfig_for(tmp_path, "https://127.0.0.1:6443", **{"certificate-authority": "pki/ca.crt"})
    write(tmp_path / "kube" / "pki" / "ca.crt", "not checked until a request is made\n")
    monkeypatch.chdir(tmp_path)  # the CA path must resolve against the kubeconfig's directory, not here

    api = kube.api_client(KubeTarget(kubeconfig=str(path), request_timeout=7.0))
    assert api.configuration.host == "https://127.0.0.1:6443"
    credentials = api.kube.credentials
    assert credentials.ca_pem == b"not checked until a request is made\n"
    assert credentials.authorization == f"Bearer {TOKEN}"
    assert api.kube.request_timeout == 7.0
    assert not api.configuration.api_key  # the transport logs in, not the library


def test_unusable_context_is_a_config_error_without_the_token(tmp_path: Path) -> None:
    path = kubeconfig_for(tmp_path, "https://127.0.0.1:6443", **{"certificate-authority": "missing-ca.crt"})
    with pytest.raises(ConfigError) as caught:
        kube.api_client(KubeTarget(kubeconfig=str(path)))
    assert "cannot use context 'here'" in str(caught.value)
    assert "missing-ca.crt" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert caught.value.exit_code == ExitCode.CONFIG


def test_dynamic_client_discovers_and_logs_requests_at_v6(
    tmp_path: Path, stub_server: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = kubeconfig_for(tmp_path, url(stub_server))
    configure_logging(6)
    client = kube.dynamic_client(KubeTarget(kubeconfig=str(path)))
    assert client.version["kubernetes"]["gitVersion"] == "v1.32.0"
    err = capsys.readouterr().err
    assert f"GET {url(stub_server)}/version 200 in" in err
    assert TOKEN not in err
    assert set(DiscoveryStub.agents) == {"kubectl-capc"}  # the library's requests carry the plugin's name
    configure_logging(0)


def test_request_timeout_bounds_a_hanging_server(tmp_path: Path, stub_server: ThreadingHTTPServer) -> None:
    DiscoveryStub.delay = 5.0
    path = kubeconfig_for(tmp_path, url(stub_server))
    started = time.monotonic()
    with pytest.raises(KubeApiError, match="timed out") as caught:
        kube.dynamic_client(KubeTarget(kubeconfig=str(path), request_timeout=0.2))
    # A request that ran into --request-timeout is not sent again: the whole stays well under the delay.
    assert time.monotonic() - started < 4.0
    assert caught.value.exit_code == ExitCode.KUBE_API


def test_refused_credentials_are_a_kube_api_error(tmp_path: Path, stub_server: ThreadingHTTPServer) -> None:
    DiscoveryStub.status = 401
    path = kubeconfig_for(tmp_path, url(stub_server))
    with pytest.raises(
        KubeApiError, match=r"refused API discovery: HTTP 401 Unauthorized; check the credentials"
    ):
        kube.dynamic_client(KubeTarget(kubeconfig=str(path)))


def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    path = kubeconfig_for(tmp_path, "http://127.0.0.1:1")
    with pytest.raises(KubeApiError) as caught:
        kube.dynamic_client(KubeTarget(kubeconfig=str(path)))
    message = str(caught.value)
    assert message.startswith("cannot reach the API server http://127.0.0.1:1 of context 'here': ")
    assert "Connection refused" in message
    assert "object at 0x" not in message and "HTTPConnection(" not in message


def test_dynamic_client_against_the_real_apiserver(testenv_v1beta2: TestBed) -> None:
    client = kube.dynamic_client(KubeTarget(kubeconfig=str(testenv_v1beta2.kubeconfig)))
    namespaces = client.resources.get(api_version="v1", kind="Namespace").get()
    assert "default" in {item.metadata.name for item in namespaces.items}
    templates = client.resources.get(
        api_version="infrastructure.cluster.x-k8s.io/v1beta3", kind="CloudStackMachineTemplate"
    )
    assert templates.namespaced
