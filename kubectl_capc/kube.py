"""Kubernetes API clients built from the global options.

Importing the kubernetes library costs about half a second, so it happens inside these functions, and
only commands that talk to a cluster pay for it. The kubeconfig is merged by `kubectl_capc.kubeconfig`
(kubectl's rules) and handed to the client as one document, so both agree on the context.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubectl_capc.errors import ConfigError, KubeApiError, one_line
from kubectl_capc.kubeconfig import ResolvedContext
from kubectl_capc.options import GlobalOptions

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from kubernetes.dynamic import DynamicClient

__all__ = ["api_client", "dynamic_client"]

_log = logging.getLogger(__name__)

_CONNECTION_PREFIX = re.compile(r"^HTTPS?Connection(?:Pool)?\([^)]*\): ")


def api_client(opts: GlobalOptions) -> ApiClient:
    """An ApiClient for the selected context that applies `--request-timeout` to every request."""
    return _connect(opts)[1]


def dynamic_client(opts: GlobalOptions) -> DynamicClient:
    """A DynamicClient for the selected context; building it contacts the server for discovery."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic import DynamicClient
    from urllib3.exceptions import HTTPError

    target, api = _connect(opts)
    where = f"the API server {target.server} of context {target.context!r}"
    try:
        return DynamicClient(api, cache_file=_discovery_cache_file(target.server))  # type: ignore[no-untyped-call]
    except ApiException as err:
        raise KubeApiError(
            f"{where} refused API discovery: HTTP {err.status} {err.reason}",
            hint="check the credentials of the context's user",
        ) from err
    except (HTTPError, ValueError) as err:
        raise KubeApiError(
            f"cannot reach {where}: {_http_failure(err)}",
            hint="check that the cluster is running and that --context/--kubeconfig select it",
        ) from err


def _connect(opts: GlobalOptions) -> tuple[ResolvedContext, ApiClient]:
    from kubernetes import client, config

    kubeconfig = opts.load_kubeconfig()
    target = kubeconfig.resolve(opts.context, opts.namespace)
    configuration = client.Configuration()
    try:
        config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
            kubeconfig.as_dict(),
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
    return target, _timed_api_client_class()(configuration, opts.request_timeout)


@functools.cache
def _timed_api_client_class() -> Any:
    """Define the ApiClient subclass on first use, so that importing this module stays cheap."""
    from kubernetes import client

    class TimedApiClient(client.ApiClient):
        """Applies a default request timeout and logs each request's outcome at debug level (-v=6)."""

        def __init__(self, configuration: client.Configuration, request_timeout: float | None) -> None:
            super().__init__(configuration)
            self.request_timeout = request_timeout

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
            started = time.monotonic()
            try:
                response = super().call_api(
                    method, url, header_params, body, post_params, _request_timeout=timeout
                )
            except Exception as err:
                _log.debug("%s %s failed after %s: %s", method, url, _elapsed(started), type(err).__name__)
                raise
            _log.debug("%s %s %s in %s", method, url, response.status, _elapsed(started))
            return response

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


def _http_failure(err: Exception) -> str:
    # urllib3 wraps the cause (refused, timed out, TLS) in MaxRetryError and prefixes it with the repr
    # of its connection objects; keep just the cause.
    reason = getattr(err, "reason", None) or err
    return _CONNECTION_PREFIX.sub("", one_line(str(reason)))


def _elapsed(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"
