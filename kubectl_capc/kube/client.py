"""Kubernetes API clients built from a `KubeTarget`: the plugin's transport, and the library's client over it.

`kube_client` gives a `kubectl_capc.kube.rest.KubeClient`: the plugin's own transport, which the
plain-JSON reads use without importing the kubernetes library. `api_client` wraps one in the library's
`ApiClient` for the typed APIs and watches the writes use; its requests go through the same transport,
so both read the kubeconfig (merged by kubectl's rules, `kubectl_capc.kube.kubeconfig`) the same way.
The kubernetes library is imported only when `api_client` is called: it costs about half a second.

Which failed requests are sent again is decided in `kubectl_capc.kube.retries`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubectl_capc.domain.errors import KubeApiError
from kubectl_capc.kube.retries import transport_failure
from kubectl_capc.kube.target import KubeTarget

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from kubernetes.dynamic import DynamicClient

    from kubectl_capc.kube.rest import KubeClient, Sender

    class LibraryClient(ApiClient, Sender):
        """The library's ApiClient that `library_client` builds: a `Sender` too."""

        kube: KubeClient


__all__ = ["api_client", "dynamic_client", "kube_client", "library_client"]

_log = logging.getLogger(__name__)

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


@functools.cache
def _library_client_class() -> Any:
    """Define the ApiClient subclass on first use, so that importing this module stays cheap."""
    from kubernetes import client
    from kubernetes.client import rest

    class LibraryClient(client.ApiClient):
        """The typed APIs' requests, sent through a `KubeClient` (login, User-Agent, timeouts, retries,
        logging); its own configuration holds the server's address and no credentials."""

        def __init__(self, kube: KubeClient) -> None:
            super().__init__(client.Configuration(host=kube.server))
            self.kube = kube

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
