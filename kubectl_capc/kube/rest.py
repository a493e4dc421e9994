"""The one transport to Kubernetes API servers: urllib3 with the plugin's own reading of the kubeconfig.

`KubeClient.send` adds the context's login (bearer token, basic auth or an exec plugin's answer; a
client certificate in the TLS handshake) and the client's User-Agent, applies `--request-timeout`, retries as
`kubectl_capc.kube.retries.retry_delay` allows and logs each request's outcome at debug level (-v=6),
never a header or a body. The plain-JSON reads use it directly, without importing the kubernetes
library (its import costs a quarter of a second); the library's typed APIs and watches, which the
writes use, are sent through it too (`kubectl_capc.kube.client.api_client`).

Proxies: the cluster's `proxy-url`, else `HTTPS_PROXY`/`HTTP_PROXY` unless `NO_PROXY` names the host,
as kubectl does; `socks5://` proxies need PySocks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kubectl_capc.domain.errors import ConfigError
from kubectl_capc.kube.credentials import ClientCertificate, Credentials
from kubectl_capc.kube.exec_credential import ExecAnswer, ExecPlugin
from kubectl_capc.kube.retries import retry_delay, transport_failure

if TYPE_CHECKING:
    import urllib3

__all__ = ["DEFAULT_USER_AGENT", "ApiError", "KubeClient", "Sender"]

_log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "kubectl-capc"
_POOL_SIZE = 16
"""Connections kept per server: validate sends up to this many requests at once."""
# Client keys handed to the TLS layer as in-memory files, by digest; open for the life of the process.
_MEMORY_FILES: dict[str, int] = {}
_MEMORY_LOCK = threading.Lock()


class ApiError(Exception):
    """The server answered with a status other than 2xx; `body` is its answer (a Status, as text)."""

    def __init__(self, status: int, reason: str, body: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status, self.reason, self.body, self.headers = status, reason, body, headers


class Sender(Protocol):
    """What sends requests to one API server: a `KubeClient`, or the library client built on one."""

    @property
    def server(self) -> str: ...

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse: ...


@dataclass(frozen=True)
class _Login:
    """What one request authenticates with; with an exec plugin, its `answer`, to expire on a 401."""

    authorization: str | None
    certificate: ClientCertificate | None
    plugin: ExecPlugin | None = None
    answer: ExecAnswer | None = None


class KubeClient:
    """Requests to the API server of one set of `Credentials`; safe to share between threads."""

    def __init__(
        self,
        credentials: Credentials,
        request_timeout: float | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        *,
        where: str = "",
    ) -> None:
        self.credentials = credentials
        self.request_timeout = request_timeout
        self.user_agent = user_agent
        self.where = where or f"the API server {credentials.server}"
        # Whether the server has answered yet (see `retry_delay`): only ever set, from any thread; one
        # that reads it just before another's first answer lands fails as if it had come first.
        self._answered = False
        self._lock = threading.Lock()
        self._pool: tuple[ClientCertificate | None, urllib3.PoolManager] | None = None

    @property
    def server(self) -> str:
        return self.credentials.server

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request (`path` below the server, or a URL on it) and return the answer, whatever its
        status, read unless `stream`. Transport failures raise urllib3's `HTTPError` or `OSError` once
        `retry_delay` gives up; an exec plugin that fails, or a certificate authority TLS cannot load,
        raises `ConfigError`."""
        url = path if path.startswith(("http://", "https://")) else self.server + path
        if query:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode([(k, str(v)) for k, v in query])
        limit = self.request_timeout if timeout is None else timeout
        attempt, refreshed = 1, False
        while True:
            login = self._login()
            connections = self._connections(login.certificate)  # TLS that cannot load fails here, at once
            started = time.monotonic()
            try:
                response = connections.request(
                    method, url, body=body, headers=self._headers(headers, login),
                    timeout=_timeout(limit), preload_content=not stream, retries=0, redirect=False,
                )  # fmt: skip
            except Exception as err:
                _log.debug("%s %s failed after %s: %s", method, url, _elapsed(started), type(err).__name__)
                delay = retry_delay(method, attempt, error=err, answered_before=self._answered)
                if delay is None:
                    raise
                outcome = transport_failure(err)
            else:
                self._answered = True
                _log.debug("%s %s %s in %s", method, url, response.status, _elapsed(started))
                if response.status == 401 and login.plugin and login.answer and not refreshed:
                    # The plugin's credential was refused (revoked or expired early): ask it once more.
                    login.plugin.expire(login.answer)
                    refreshed = True
                    _drain(response)
                    continue
                delay = retry_delay(method, attempt, status=response.status, headers=response.headers)
                if delay is None:
                    return response
                _drain(response)
                outcome = f"HTTP {response.status}"
            _log.info("%s %s: %s; trying again in %.1fs", method, url.partition("?")[0], outcome, delay)
            time.sleep(delay)
            attempt += 1

    def _login(self) -> _Login:
        plugin = self.credentials.exec_plugin
        if plugin is None:
            return _Login(self.credentials.authorization, self.credentials.certificate)
        answer = plugin.answer()
        if answer.certificate is not None:
            return _Login(None, ClientCertificate(*answer.certificate), plugin, answer)
        return _Login(f"Bearer {answer.token}", self.credentials.certificate, plugin, answer)

    def _headers(self, given: Mapping[str, str] | None, login: _Login) -> dict[str, str]:
        headers = {**(given or {}), "User-Agent": self.user_agent}
        if login.authorization:
            headers["Authorization"] = login.authorization
        return headers

    def _connections(self, certificate: ClientCertificate | None) -> urllib3.PoolManager:
        """The connections that present `certificate`; another one (an exec plugin's next) replaces
        them, so that no request goes out on a connection made with the certificate before."""
        with self._lock:
            if self._pool is None or self._pool[0] != certificate:
                self._pool = (certificate, _pool_manager(self.credentials, certificate))
            return self._pool[1]


def _pool_manager(credentials: Credentials, certificate: ClientCertificate | None) -> urllib3.PoolManager:
    import urllib3

    options: dict[str, Any] = {"maxsize": _POOL_SIZE}
    if credentials.server.startswith("https://"):
        options["ssl_context"] = _tls_context(credentials, certificate)
        if credentials.tls_server_name:
            options["server_hostname"] = credentials.tls_server_name
    proxy = credentials.proxy or _environment_proxy(credentials.server)
    if proxy is None:
        return urllib3.PoolManager(**options)
    if proxy.startswith("socks"):
        from urllib3.contrib.socks import SOCKSProxyManager

        return SOCKSProxyManager(proxy, **options)
    return urllib3.ProxyManager(proxy, **options)


def _tls_context(credentials: Credentials, certificate: ClientCertificate | None) -> ssl.SSLContext:
    """Trust the context's CA only when it names one (else the system's), as kubectl does."""
    ca = credentials.ca_pem.decode("utf-8", "replace") if credentials.ca_pem else None
    try:
        context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    except ssl.SSLError as err:  # as client-go, which refuses to build the transport: no request is sent
        raise ConfigError(
            f"the certificate authority of {credentials.server} in the kubeconfig is not a PEM certificate "
            f"({re.sub(r' [(]_ssl[.]c:[0-9]+[)]$', '', str(err.strerror or err.reason))})",
            hint="fix the kubeconfig's certificate-authority-data",
        ) from None
    if not credentials.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if certificate is not None:
        _load_certificate(context, certificate)
    return context


def _environment_proxy(server: str) -> str | None:
    from urllib.request import getproxies, proxy_bypass

    parts = urllib.parse.urlsplit(server)
    proxies = getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or proxy_bypass(parts.netloc):
        return None
    return proxy


def _memory_file(data: bytes) -> str:
    """A path the TLS layer can open that names memory, not disk (a Linux memfd, one per content)."""
    digest = hashlib.sha256(data).hexdigest()
    with _MEMORY_LOCK:
        if digest not in _MEMORY_FILES:
            descriptor = os.memfd_create("kubectl-capc-credential")
            with open(descriptor, "wb", closefd=False) as handle:
                handle.write(data)
            _MEMORY_FILES[digest] = descriptor
        return f"/proc/self/fd/{_MEMORY_FILES[digest]}"


def _load_certificate(context: ssl.SSLContext, certificate: ClientCertificate) -> None:
    """Hand the client certificate to TLS from memory; without memfd (not Linux), from private
    temporary files that exist only while TLS reads them."""
    if hasattr(os, "memfd_create"):
        context.load_cert_chain(_memory_file(certificate.certificate), _memory_file(certificate.key))
        return
    with tempfile.TemporaryDirectory(prefix="kubectl-capc-") as directory:
        paths = (os.path.join(directory, "client.crt"), os.path.join(directory, "client.key"))
        for path, data in zip(paths, (certificate.certificate, certificate.key), strict=True):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
                handle.write(data)
        context.load_cert_chain(*paths)


def _timeout(seconds: float | None) -> Any:
    import urllib3

    return urllib3.Timeout(total=seconds) if seconds else urllib3.Timeout(connect=None, read=None)


def _drain(response: urllib3.BaseHTTPResponse) -> None:
    """Read and release an answer that is not returned, freeing its connection for the next try."""
    response.read()
    response.release_conn()


def _elapsed(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"
