"""A context's credentials as the plugin reads them from a kubeconfig, without a server."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from kubectl_capc.domain.errors import ConfigError
from kubectl_capc.kube.credentials import credentials_for, credentials_from_document
from kubectl_capc.kube.exec_credential import ExecPlugin
from kubectl_capc.kube.kubeconfig import load_kubeconfig
from tests.unit.cli.test_kubeconfig import kubeconfig_text, write


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def load(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Any:
    path = write(
        tmp_path / "kube" / "config",
        kubeconfig_text(
            current="here",
            clusters={"c": {"server": "https://10.0.0.1:6443/", **cluster}},
            users={"u": user},
            contexts={"here": {"cluster": "c", "user": "u"}},
        ),
    )
    kubeconfig = load_kubeconfig(str(path))
    return credentials_for(kubeconfig, kubeconfig.resolve())


def test_files_relative_to_the_kubeconfig_and_data_winning_over_files(tmp_path: Path) -> None:
    write(tmp_path / "kube" / "pki" / "ca.crt", "CA FROM FILE")
    write(tmp_path / "kube" / "pki" / "u.crt", "CERT FROM FILE")
    write(tmp_path / "kube" / "pki" / "u.key", "KEY FROM FILE")
    write(tmp_path / "kube" / "token", "tok-from-file\n")
    files = load(
        tmp_path,
        {
            "certificate-authority": "pki/ca.crt",
            "tls-server-name": "api.internal",
            "proxy-url": "http://p:3128",
        },
        {"client-certificate": "pki/u.crt", "client-key": "pki/u.key", "tokenFile": "token"},
    )
    assert (files.server, files.ca_pem, files.tls_server_name, files.proxy) == (
        "https://10.0.0.1:6443",
        b"CA FROM FILE",
        "api.internal",
        "http://p:3128",
    )
    assert (files.certificate.certificate, files.certificate.key) == (b"CERT FROM FILE", b"KEY FROM FILE")
    assert files.authorization == "Bearer tok-from-file"
    data = load(
        tmp_path,
        {"certificate-authority": "pki/ca.crt", "certificate-authority-data": b64(b"CA DATA")},
        {"token": "inline", "tokenFile": "token"},
    )
    assert (data.ca_pem, data.authorization, data.verify) == (b"CA DATA", "Bearer inline", True)


def test_basic_auth_insecure_and_bare_host_port(tmp_path: Path) -> None:
    found = load(tmp_path, {"server": "10.0.0.2:443", "insecure-skip-tls-verify": True},
                 {"username": "ann", "password": "pa55"})  # fmt: skip
    assert found.server == "https://10.0.0.2:443"
    assert found.verify is False
    assert found.authorization == "Basic " + b64(b"ann:pa55")


def test_no_secret_in_the_repr(tmp_path: Path) -> None:
    found = load(tmp_path, {"certificate-authority-data": b64(b"CA")},
                 {"token": "tok-4411", "client-certificate-data": b64(b"CRT-4411"),
                  "client-key-data": b64(b"KEY-4411")})  # fmt: skip
    assert "4411" not in repr(found)


@pytest.mark.parametrize(
    ("cluster", "user", "message"),
    [
        ({"certificate-authority": "missing.crt"}, {}, "cannot read certificate-authority .*missing.crt"),
        ({"certificate-authority-data": "%%%"}, {}, "certificate-authority-data is not base64"),
        ({}, {"client-certificate-data": b64(b"c")}, "only one of a client certificate and its key"),
        ({}, {"auth-provider": {"name": "oidc", "config": {"id-token": "tok-77"}}}, "auth-provider 'oidc'"),
        ({}, {"auth-provider": "tok-77"}, "the user's auth-provider is not supported"),
        ({}, {"exec": {"apiVersion": "client.authentication.k8s.io/v9", "command": "x"}}, "apiVersion"),
        (
            {},
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": "x",
                    "interactiveMode": "Sometimes",
                }
            },
            "interactiveMode",
        ),
    ],
)
def test_unusable_entries_name_the_context_and_no_value(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(tmp_path, cluster, user)
    assert str(caught.value).startswith("cannot use context 'here' from kubeconfig ")
    assert "tok-77" not in str(caught.value)


@pytest.mark.parametrize(
    ("user", "cluster", "what"),
    [
        (
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}},
            {},
            "credential plugin",
        ),
        ({"tokenFile": "/var/run/token"}, {}, "local files"),
        ({"client-certificate": "/c", "client-key": "/k"}, {}, "local files"),
        ({"token": "t"}, {"certificate-authority": "/etc/ca.crt"}, "local files"),
        ({"auth-provider": {"name": "gcp"}}, {}, "auth-provider 'gcp' is not supported"),
    ],
)
def test_a_kubeconfig_from_a_secret_reads_no_file_and_runs_nothing(
    user: dict[str, Any], cluster: dict[str, Any], what: str
) -> None:
    document = {
        "clusters": [{"name": "w", "cluster": {"server": "https://w:6443", **cluster}}],
        "users": [{"name": "a", "user": user}],
        "contexts": [{"name": "a@w", "context": {"cluster": "w", "user": "a"}}],
    }
    with pytest.raises(ConfigError, match=what):
        credentials_from_document(document, "Secret ns/w-kubeconfig")


def test_an_exec_plugin_that_must_prompt_needs_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "login",
        "interactiveMode": "Always",
    }
    plugin = ExecPlugin.from_config(config, {"server": "https://h"}, "context 'x'")
    monkeypatch.setattr("sys.stdin", None)
    with pytest.raises(ConfigError, match="needs a terminal"):
        plugin.answer()
