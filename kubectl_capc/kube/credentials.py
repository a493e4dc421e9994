"""How to reach and authenticate to one kubeconfig context's API server, read the way kubectl reads it.

The cluster entry gives the server, the trust (`certificate-authority` file or `-data`,
`insecure-skip-tls-verify`, `tls-server-name`) and `proxy-url`; the user entry gives one way to log in,
in kubectl's order: a client certificate (`client-certificate`/`client-key`, file or `-data`) and/or a
bearer token (`token`, else `tokenFile`), else an exec credential plugin, else `username`/`password`.
`auth-provider` entries (gcp, azure, oidc) are refused with a hint: kubectl 1.26 dropped gcp and azure.

Secrets stay in memory, out of every `repr`, message and log line. A kubeconfig from a Secret (a
workload cluster's) may name no local file and no plugin: those would run or read something on this
machine on behalf of a document from the cluster.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubectl_capc.domain.errors import ConfigError
from kubectl_capc.kube.exec_credential import ExecPlugin
from kubectl_capc.kube.kubeconfig import Kubeconfig, ResolvedContext

__all__ = ["ClientCertificate", "Credentials", "credentials_for", "credentials_from_document"]


@dataclass(frozen=True)
class ClientCertificate:
    """A client certificate chain and its private key, PEM."""

    certificate: bytes = field(repr=False)
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class Credentials:
    """Server address, trust and login of one context; no field holding a secret is in the repr."""

    server: str
    verify: bool = True
    ca_pem: bytes | None = field(default=None, repr=False)
    tls_server_name: str | None = None
    proxy: str | None = None
    certificate: ClientCertificate | None = field(default=None, repr=False)
    authorization: str | None = field(default=None, repr=False)
    exec_plugin: ExecPlugin | None = field(default=None, repr=False)


def credentials_for(kubeconfig: Kubeconfig, context: ResolvedContext) -> Credentials:
    """The credentials of `context` in the merged `kubeconfig`; files it names are read now."""
    cluster = kubeconfig.clusters[context.cluster]
    user = kubeconfig.users.get(context.user, {})
    where = f"cannot use context {context.context!r} from {kubeconfig.describe()}"
    return _credentials(context.server, cluster, user, where, local=True)


def credentials_from_document(document: Mapping[str, Any], where: str) -> Credentials:
    """The credentials of a kubeconfig document's current context (or its only one), in memory only.

    Raises `ConfigError` (naming `where`, never a value) when it has none or names files or a plugin.
    """
    contexts = _named(document, "contexts", "context")
    name = str(document.get("current-context") or "")
    context = contexts.get(name) or (next(iter(contexts.values())) if len(contexts) == 1 else None)
    if context is None:
        raise ConfigError(f"{where}: the kubeconfig has no current context")
    cluster = _named(document, "clusters", "cluster").get(str(context.get("cluster") or ""))
    user = _named(document, "users", "user").get(str(context.get("user") or ""), {})
    if cluster is None or not cluster.get("server"):
        raise ConfigError(f"{where}: the kubeconfig's context names no cluster with a server")
    return _credentials(str(cluster["server"]), cluster, user, where, local=False)


def _credentials(
    server: str, cluster: Mapping[str, Any], user: Mapping[str, Any], where: str, *, local: bool
) -> Credentials:
    provider = user.get("auth-provider")
    if provider:
        name = provider.get("name") if isinstance(provider, Mapping) else None
        named = f" {name!r}" if name else ""
        raise ConfigError(
            f"{where}: the user's auth-provider{named} is not supported",
            hint="use an exec credential plugin (kubectl 1.26 and newer dropped the gcp and azure providers)",
        )
    if not local and (user.get("exec") or _names_files(cluster, user)):
        what = "runs a credential plugin" if user.get("exec") else "names local files"
        raise ConfigError(f"{where}: the kubeconfig's user {what}, which is not supported here")
    certificate = None
    if _given(user, "client-certificate") or _given(user, "client-key"):
        cert = _data_or_file(user, "client-certificate", where)
        key = _data_or_file(user, "client-key", where)
        if cert is None or key is None:
            raise ConfigError(
                f"{where}: the user has only one of a client certificate and its key",
                hint="fix the kubeconfig",
            )
        certificate = ClientCertificate(cert, key)
    token = _text(user.get("token"))
    if not token and _text(user.get("tokenFile")):
        token = _read(user["tokenFile"], where, "token file").decode("utf-8", "replace").strip()
    authorization = f"Bearer {token}" if token else None
    plugin = None
    if not authorization and isinstance(user.get("exec"), Mapping):
        plugin = ExecPlugin.from_config(user["exec"], _cluster_info(server, cluster), where)
    elif not authorization and _text(user.get("username")) and _text(user.get("password")):
        pair = f"{user['username']}:{user['password']}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    return Credentials(
        server=_normalised(server),
        verify=not cluster.get("insecure-skip-tls-verify"),
        ca_pem=_data_or_file(cluster, "certificate-authority", where),
        tls_server_name=_text(cluster.get("tls-server-name")) or None,
        proxy=_text(cluster.get("proxy-url")) or None,
        certificate=certificate,
        authorization=authorization,
        exec_plugin=plugin,
    )


def _normalised(server: str) -> str:
    """kubectl reads a bare `host:port` as https; requests are made below the server's path."""
    return (server if "://" in server else f"https://{server}").rstrip("/")


def _given(entry: Mapping[str, Any], name: str) -> bool:
    return bool(entry.get(name) or entry.get(f"{name}-data"))


def _names_files(cluster: Mapping[str, Any], user: Mapping[str, Any]) -> bool:
    files = (cluster.get("certificate-authority"), user.get("client-certificate"), user.get("client-key"))
    return any(files) or bool(user.get("tokenFile"))


def _data_or_file(entry: Mapping[str, Any], name: str, where: str) -> bytes | None:
    """`NAME-data` (base64) wins over the file `NAME`, as in kubectl."""
    data = entry.get(f"{name}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: {name}-data is not base64", hint="fix the kubeconfig") from None
    path = _text(entry.get(name))
    return _read(path, where, name) if path else None


def _read(path: str, where: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"{where}: cannot read {what} {path}: {reason}",
            hint="fix the kubeconfig",
        ) from None


def _cluster_info(server: str, cluster: Mapping[str, Any]) -> dict[str, Any]:
    """The cluster as an exec plugin is told it (`spec.cluster`, with `provideClusterInfo`)."""
    info: dict[str, Any] = {"server": server}
    for name in ("tls-server-name", "insecure-skip-tls-verify", "certificate-authority-data", "proxy-url"):
        if cluster.get(name):
            info[name] = cluster[name]
    extensions = cluster.get("extensions")
    for extension in extensions if isinstance(extensions, list) else []:
        if isinstance(extension, Mapping) and extension.get("name") == "client.authentication.k8s.io/exec":
            info["config"] = extension.get("extension")
    return info


def _named(document: Mapping[str, Any], section: str, body: str) -> dict[str, Mapping[str, Any]]:
    entries = document.get(section) or []
    named: dict[str, Mapping[str, Any]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get(body), Mapping):
            named[str(entry.get("name") or "")] = entry[body]
    return named


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
