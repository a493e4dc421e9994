"""Kubernetes API clients built from a `KubeTarget`, and the policy every request follows.

`kube_client` gives a `kubectl_capc.kube.rest.KubeClient`: the plugin's own transport, which the
plain-JSON reads use without importing the kubernetes library. `api_client` wraps one in the library's
`ApiClient` for the typed APIs and watches the writes use; its requests go through the same transport,
so both read the kubeconfig (merged by kubectl's rules, `kubectl_capc.kube.kubeconfig`) the same way.
The kubernetes library is imported only when `api_client` is called: it costs about half a second.

`retry_delay` is the one place that decides which failed requests are sent again: reads after any
transient failure, writes only when the server cannot have acted on them (see its docstring).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubectl_capc.domain.backoff import Backoff, retry_after
from kubectl_capc.domain.errors import KubeApiError, one_line
from kubectl_capc.kube.target import KubeTarget

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from kubernetes.dynamic import DynamicClient

    from kubectl_capc.kube.rest import KubeClient, Sender

    class LibraryClient(ApiClient, Sender):
        """The library's ApiClient that `library_client` builds: a `Sender` too."""

        kube: KubeClient


__all__ = [
    "RETRIES",
    "api_client",
    "certificate_refused",
    "dynamic_client",
    "kube_client",
    "library_client",
    "request_was_sent",
    "retry_delay",
    "transport_failure",
]

_log = logging.getLogger(__name__)

_CONNECTION_PREFIX = re.compile(r"^HTTPS?Connection(?:Pool)?\([^)]*\): ")
RETRIES = Backoff(attempts=8, base=0.5, cap=8.0)
"""Kubernetes requests: up to 8 tries, spread over roughly 16 to 32 seconds, to ride out an API server
restart or a short overload."""
_READ_METHODS = frozenset({"GET", "HEAD"})
_OVERLOADED = frozenset({502, 503, 504})
_JSON_PATCH = "application/json-patch+json"


def kube_client(target: KubeTarget, user_agent: str | None = None) -> KubeClient:
    """The transport to the selected context's API server, applying `--request-timeout`."""
    from kubectl_capc.kube.credentials import credentials_for
    from kubectl_capc.kube.rest import DEFAULT_USER_AGENT, KubeClient

    kubeconfig = target.load_kubeconfig()
    resolved = kubeconfig.resolve(target.context, target.namespace)
    credentials = credentials_for(kubeconfig, resolved)
    _log.info("context %s: server %s, namespace %s", resolved.context, resolved.server, resolved.namespace)
    where = f"the API server {resolved.server} of context {resolved.context!r}"
    return KubeClient(credentials, target.request_timeout, user_agent or DEFAULT_USER_AGENT, where=where)


def api_client(target: KubeTarget, user_agent: str | None = None) -> LibraryClient:
    """The library's ApiClient for the selected context, sending through `kube_client`'s transport."""
    return library_client(kube_client(target, user_agent))


def library_client(kube: KubeClient) -> LibraryClient:
    """The library's ApiClient over `kube`; it is also a `kubectl_capc.kube.rest.Sender`."""
    return _library_client_class()(kube)  # type: ignore[no-any-return]


def dynamic_client(target: KubeTarget) -> DynamicClient:
    """A DynamicClient for the selected context; building it contacts the server for discovery."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic import DynamicClient
    from urllib3.exceptions import HTTPError

    api = api_client(target)
    where = api.kube.where
    try:
        return DynamicClient(api, cache_file=_discovery_cache_file(api.kube.server))  # type: ignore[no-untyped-call]
    except ApiException as err:
        raise KubeApiError(
            f"{where} refused API discovery: HTTP {err.status} {err.reason}",
            hint="check the credentials of the context's user",
        ) from err
    except (HTTPError, ValueError) as err:
        raise KubeApiError(
            f"cannot reach {where}: {transport_failure(err)}",
            hint="check that the cluster is running and that --context/--kubeconfig select it",
        ) from err


def retry_delay(
    method: str,
    attempt: int,
    *,
    status: int | None = None,
    headers: Any = None,
    error: BaseException | None = None,
    answered_before: bool = True,
) -> float | None:
    """Seconds to wait before sending a failed request again, or None to give up: the Kubernetes retry
    policy, for the answer `status` (with its `headers`) or the transport `error` of try `attempt`.

    - A read (GET, and so LIST and WATCH) is retried after a transient failure: a connection refused or
      reset, 429, or 502/503/504. A request that ran into `--request-timeout` is not: the user bounded
      how long it may take.
    - A write is retried only when the server cannot have acted on it: the connection was never made,
      or the server refused it up front, with 429 (API Priority and Fairness rejects before handling) or
      any 5xx carrying `Retry-After`, its explicit request to try again, as client-go honours it. After
      an ambiguous failure (a reset or timeout once the request was sent) the caller must re-check
      before writing again.
    - A connection refused before the server has ever answered this process fails at once: that is a
      wrong address or a cluster that is down, not a blip.
    - A server certificate that fails verification (unknown CA, wrong host name, expired) fails at once,
      whatever the method: asking again gets the same certificate.
    `Retry-After` sets the delay when given; otherwise `RETRIES` backs off with jitter.
    """
    if attempt >= RETRIES.attempts:
        return None
    read = method.upper() in _READ_METHODS
    if error is not None:
        if _timed_out(error) or certificate_refused(error):
            return None
        sent = request_was_sent(error)
        if (not sent and not answered_before) or (sent and not read):
            return None
        return RETRIES.delay(attempt)
    asked = retry_after(headers)
    if status == 429 or (status is not None and status >= 500 and asked is not None):
        return RETRIES.delay(attempt, asked)
    if read and status in _OVERLOADED:
        return RETRIES.delay(attempt)
    return None


def _timed_out(error: BaseException) -> bool:
    from urllib3.exceptions import ReadTimeoutError

    return isinstance(getattr(error, "reason", None) or error, ReadTimeoutError)


def request_was_sent(error: BaseException) -> bool:
    """Whether a request that failed with transport `error` may have reached the server: anything but a
    connection never made (refused, unresolvable, connect timeout, server certificate refused)."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    reason = getattr(error, "reason", None) or error
    if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
        return False
    return not certificate_refused(error)


def certificate_refused(error: BaseException) -> bool:
    """Whether transport `error` is the server's certificate failing verification (untrusted CA, host
    name mismatch, expired), found in urllib3's wrappers (`MaxRetryError` around `SSLError` around
    `ssl.SSLCertVerificationError`). Other TLS failures, such as a handshake cut short while the server
    restarts, are not: those may pass."""
    import ssl

    pending: list[object] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        pending.extend((getattr(current, "reason", None), current.__cause__, current.__context__))
        pending.extend(current.args)
    return False


@functools.cache
def _library_client_class() -> Any:
    """Define the ApiClient subclass on first use, so that importing this module stays cheap."""
    from kubernetes import client
    from kubernetes.client import rest

    class LibraryClient(client.ApiClient):
        """The typed APIs' requests, sent through a `KubeClient` (login, timeouts, retries, logging);
        its own configuration holds the server's address and no credentials."""

        def __init__(self, kube: KubeClient) -> None:
            super().__init__(client.Configuration(host=kube.server))
            self.kube = kube
            self.user_agent = kube.user_agent

        def call_api(
            self,
            method: str,
            url: str,
            header_params: Any = None,
            body: Any = None,
            post_params: Any = None,
            _request_timeout: Any = None,
        ) -> Any:
            if post_params:
                raise ValueError("form bodies are not sent to the Kubernetes API")
            headers = dict(header_params or {})
            if headers.get("Content-Type") == _JSON_PATCH and not isinstance(body, list):
                # The typed APIs offer JSON Patch first; an object is a strategic merge patch, as the
                # library's own transport decides.
                headers["Content-Type"] = "application/strategic-merge-patch+json"
            response = self.kube.send(
                method, url, headers=headers, body=_encoded(body), timeout=_request_timeout, stream=True
            )
            return rest.RESTResponse(response)

        @property
        def server(self) -> str:
            return self.kube.server

        def send(self, *args: Any, **kwargs: Any) -> Any:
            return self.kube.send(*args, **kwargs)

    return LibraryClient


def _encoded(body: Any) -> bytes | None:
    """A request body as the library's own transport sends it: structured bodies as JSON."""
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def _discovery_cache_file(server: str) -> str | None:
    """A per-user discovery cache beside kubectl's (~/.kube/cache), or the library's default if unwritable."""
    directory = Path.home() / ".kube" / "cache" / "kubectl-capc"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    digest = hashlib.sha256(server.encode()).hexdigest()[:16]
    return str(directory / f"discovery-{digest}.json")


def transport_failure(err: BaseException) -> str:
    """The cause of a failed request (refused, timed out, TLS) in one line, without urllib3's wrappers."""
    # urllib3 wraps the cause (refused, timed out, TLS) in MaxRetryError and prefixes it with the repr
    # of its connection objects; keep just the cause.
    reason = getattr(err, "reason", None) or err
    return _CONNECTION_PREFIX.sub("", one_line(str(reason)))
