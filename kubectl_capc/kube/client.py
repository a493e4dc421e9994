"""Kubernetes API clients built from a `KubeTarget`.

Importing the kubernetes library costs about half a second, so it happens inside these functions, and
only commands that talk to a cluster pay for it. The kubeconfig is merged by `kubectl_capc.kube.kubeconfig`
(kubectl's rules) and handed to the client as one document, so both agree on the context.

`forbidden_error` is the one place that turns an RBAC refusal (HTTP 403) into the error users see, and
`retry_delay` the one place that decides which failed requests are sent again: reads after any
transient failure, writes only when the server cannot have acted on them (see its docstring).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubectl_capc.domain.backoff import Backoff, retry_after
from kubectl_capc.domain.errors import ConfigError, KubeApiError, one_line
from kubectl_capc.kube.kubeconfig import ResolvedContext
from kubectl_capc.kube.target import KubeTarget

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from kubernetes.dynamic import DynamicClient

__all__ = [
    "RETRIES",
    "api_client",
    "certificate_refused",
    "dynamic_client",
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
# Client keys handed to the TLS layer as in-memory files, by digest; open for the life of the process.
_KEY_FILES: dict[str, int] = {}


def api_client(target: KubeTarget) -> ApiClient:
    """An ApiClient for the selected context that applies `--request-timeout` to every request."""
    return _connect(target)[1]


def dynamic_client(target: KubeTarget) -> DynamicClient:
    """A DynamicClient for the selected context; building it contacts the server for discovery."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic import DynamicClient
    from urllib3.exceptions import HTTPError

    resolved, api = _connect(target)
    where = f"the API server {resolved.server} of context {resolved.context!r}"
    try:
        return DynamicClient(api, cache_file=_discovery_cache_file(resolved.server))  # type: ignore[no-untyped-call]
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


def _connect(wanted: KubeTarget) -> tuple[ResolvedContext, ApiClient]:
    from kubernetes import client, config

    kubeconfig = wanted.load_kubeconfig()
    target = kubeconfig.resolve(wanted.context, wanted.namespace)
    configuration = client.Configuration()
    try:
        config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
            _client_key_in_memory(kubeconfig.as_dict(), target.user),
            context=target.context,
            client_configuration=configuration,
            persist_config=False,
        )
    except config.ConfigException as err:
        raise ConfigError(
            f"cannot use context {target.context!r} from {kubeconfig.describe()}: {one_line(str(err))}",
            hint="fix the context's cluster or user entry",
        ) from err
    _log.info("context %s: server %s, namespace %s", target.context, target.server, target.namespace)
    return target, _timed_api_client_class()(configuration, wanted.request_timeout)


def _client_key_in_memory(document: dict[str, Any], user: str) -> dict[str, Any]:
    """Give `user`'s `client-key-data` to the client as an in-memory file (Linux memfd).

    Left as data, the kubernetes client writes the key to a temporary file for the TLS handshake and
    deletes it only at a clean exit: a killed run would leave the private key on disk.
    """
    if not hasattr(os, "memfd_create"):
        return document
    for entry in document.get("users") or []:
        body = entry.get("user") or {}
        if entry.get("name") != user or not body.get("client-key-data"):
            continue
        try:
            key = base64.b64decode(body["client-key-data"])
        except ValueError:
            return document  # the client reports the malformed entry
        rest = {name: value for name, value in body.items() if name != "client-key-data"}
        entry["user"] = {**rest, "client-key": f"/proc/self/fd/{_key_file(key)}"}
    return document


def _key_file(key: bytes) -> int:
    """A memfd holding `key`: one per key, however many clients are made from it."""
    digest = hashlib.sha256(key).hexdigest()
    if digest not in _KEY_FILES:
        descriptor = os.memfd_create("kubectl-capc-client-key")
        with open(descriptor, "wb", closefd=False) as handle:
            handle.write(key)
        _KEY_FILES[digest] = descriptor
    return _KEY_FILES[digest]


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
def _timed_api_client_class() -> Any:
    """Define the ApiClient subclass on first use, so that importing this module stays cheap."""
    from kubernetes import client

    class TimedApiClient(client.ApiClient):
        """Applies a default request timeout, retries as `retry_delay` allows, and logs each request's
        outcome at debug level (-v=6)."""

        def __init__(self, configuration: client.Configuration, request_timeout: float | None) -> None:
            configuration.retries = 0  # urllib3 would retry on its own, at once and for any method
            super().__init__(configuration)
            self.request_timeout = request_timeout
            self.answered = False

        def call_api(
            self,
            method: str,
            url: str,
            header_params: Any = None,
            body: Any = None,
            post_params: Any = None,
            _request_timeout: Any = None,
        ) -> Any:
            timeout = self.request_timeout if _request_timeout is None else _request_timeout
            attempt = 1
            while True:
                started = time.monotonic()
                try:
                    response = super().call_api(
                        method, url, header_params, body, post_params, _request_timeout=timeout
                    )
                except Exception as err:
                    _log.debug(
                        "%s %s failed after %s: %s", method, url, _elapsed(started), type(err).__name__
                    )
                    delay = retry_delay(method, attempt, error=err, answered_before=self.answered)
                    if delay is None:
                        raise
                    outcome = transport_failure(err)
                else:
                    self.answered = True
                    _log.debug("%s %s %s in %s", method, url, response.status, _elapsed(started))
                    delay = retry_delay(method, attempt, status=response.status, headers=response.headers)
                    if delay is None:
                        return response
                    response.read()  # type: ignore[no-untyped-call]  # frees the connection for the next try
                    outcome = f"HTTP {response.status}"
                path = url.partition("?")[0]
                _log.info("%s %s: %s; trying again in %.1fs", method, path, outcome, delay)
                time.sleep(delay)
                attempt += 1

    return TimedApiClient


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


def _elapsed(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"
