"""Read CAPC workload clusters from a management cluster with a fixed, small number of requests.

One discovery request (`GET /apis`) picks the CAPI version the server serves (v1beta2 when served, else
v1beta1); CAPC objects are always read at v1beta3. Then one LIST per kind, filtered by namespace and,
for a named cluster's control plane and CloudStackCluster, by name -- never one GET per object -- so
reading a cluster with 1 or 50 MachineDeployments costs the same: for a named cluster 1 discovery +
1 Cluster LIST + 7 LISTs; for a namespace or `-A`, 1 discovery + 8 LISTs. The CloudStackMachines are
read for the template each Machine was built from (`domain.inventory.machine_templates`). (A kind
with more than `PAGE_SIZE` objects takes one more request per page, as kubectl's chunked lists do.)

MachineDeployments and Machines belong to the Cluster their `spec.clusterName` names, as CAPI decides it:
the `cluster.x-k8s.io/cluster-name` label is only added by CAPI's defaulting webhook, and objects applied
without it (CAPC's stock templates, with no webhook running) lack it. So they are listed for the whole
namespace and joined to their Cluster in `kubectl_capc.domain.inventory`.

Every request is sent as plain JSON through a `kubectl_capc.kube.rest.Sender` (the plugin's transport:
its login, timeouts and retries), not through the kubernetes library's generated typed APIs: those
import a module of typed methods per API group, check each call's arguments with pydantic and build
typed models from the answer, and importing the library alone costs about a quarter of a second, which
`validate` does not pay. A `Sender` is a `KubeClient`, or the library's client built on one for the
commands that also write.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubectl_capc.domain.checks.facts import Access
from kubectl_capc.domain.errors import KubeApiError, UsageError, one_line
from kubectl_capc.domain.inventory import RawObjects, build_inventories
from kubectl_capc.domain.model import (
    BOOTSTRAP_GROUP,
    CLUSTER_GROUP,
    CONTROL_PLANE_GROUP,
    INFRASTRUCTURE_GROUP,
    CapiVersion,
    ClusterInventory,
    SecretRef,
)
from kubectl_capc.kube.errors import forbidden_error, unreachable_error
from kubectl_capc.kube.resources import CAPC_VERSION, RESOURCES
from kubectl_capc.kube.rest import ApiError, Sender

__all__ = [
    "CAPC_VERSION",
    "PAGE_SIZE",
    "SecretAnswer",
    "ServedVersions",
    "access_review",
    "discover",
    "fetch_secret",
    "pick_versions",
    "read_inventories",
    "read_secret_data",
    "read_template_referrers",
    "request_json",
]

_log = logging.getLogger(__name__)

PAGE_SIZE = 500
_CAPI_PREFERENCE = ("v1beta2", "v1beta1")
# Namespaces are DNS-1123 labels; Cluster names are object names that CAPI also writes into the
# cluster-name label, so both are at most 63 characters long.
_MAX_LABEL_VALUE = 63
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE = re.compile(_DNS_LABEL)
_DNS_SUBDOMAIN_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_NOT_AUTHENTICATED = "log in again: the API server did not accept the context's credentials"


@dataclass(frozen=True)
class ServedVersions:
    """The version each API group is read at."""

    cluster: str
    control_plane: str
    bootstrap: str
    infrastructure: str = CAPC_VERSION

    @property
    def capi(self) -> CapiVersion:
        return "v1beta2" if self.cluster == "v1beta2" else "v1beta1"


@dataclass(frozen=True)
class _Kind:
    """One kind to LIST: where it lives (`kube.resources`) and which `RawObjects` field it fills."""

    field: str
    kind: str

    @property
    def group(self) -> str:
        return RESOURCES[self.kind].group

    @property
    def plural(self) -> str:
        return RESOURCES[self.kind].plural


_CLUSTERS = _Kind("clusters", "Cluster")
_CONTROL_PLANES = _Kind("control_planes", "KubeadmControlPlane")
_MACHINE_DEPLOYMENTS = _Kind("machine_deployments", "MachineDeployment")
_MACHINES = _Kind("machines", "Machine")
_MACHINE_TEMPLATES = _Kind("machine_templates", "CloudStackMachineTemplate")
_CLOUDSTACK_CLUSTERS = _Kind("cloudstack_clusters", "CloudStackCluster")
_BOOTSTRAP_TEMPLATES = _Kind("bootstrap_templates", "KubeadmConfigTemplate")
_MACHINE_SETS = _Kind("machine_sets", "MachineSet")
_CLOUDSTACK_MACHINES = _Kind("cloudstack_machines", "CloudStackMachine")
_TEMPLATE_REFERRERS = (_CONTROL_PLANES, _MACHINE_DEPLOYMENTS, _MACHINE_SETS, _MACHINES, _CLOUDSTACK_MACHINES)
_DEPENDENTS = (
    _CONTROL_PLANES,
    _MACHINE_DEPLOYMENTS,
    _MACHINES,
    _MACHINE_TEMPLATES,
    _CLOUDSTACK_CLUSTERS,
    _BOOTSTRAP_TEMPLATES,
    _CLOUDSTACK_MACHINES,
)


@dataclass(frozen=True)
class _Query:
    """One LIST: a kind, a namespace (None = all namespaces) and optional selectors."""

    kind: _Kind
    namespace: str | None
    label_selector: str | None = None
    field_selector: str | None = None


def pick_versions(served: Mapping[str, Sequence[str]]) -> ServedVersions:
    """Choose versions from discovery (`group -> served versions`); fail if CAPI or CAPC is missing."""

    def capi(group: str) -> str:
        versions = served.get(group, ())
        chosen = next((v for v in _CAPI_PREFERENCE if v in versions), None)
        if chosen is None:
            raise KubeApiError(
                f"the API server does not serve {group} at v1beta1 or v1beta2 "
                f"(found: {', '.join(versions) or 'none'})",
                hint="point --context at a Cluster API management cluster (CAPI v1.8 or newer)",
            )
        return chosen

    versions = ServedVersions(capi(CLUSTER_GROUP), capi(CONTROL_PLANE_GROUP), capi(BOOTSTRAP_GROUP))
    if CAPC_VERSION not in served.get(INFRASTRUCTURE_GROUP, ()):
        raise KubeApiError(
            f"the API server does not serve {INFRASTRUCTURE_GROUP}/{CAPC_VERSION}",
            hint="install Cluster API Provider CloudStack v0.4.9 or newer on this management cluster",
        )
    return versions


def discover(api_client: Sender) -> ServedVersions:
    """One `GET /apis` request, then `pick_versions`."""
    where = f"API discovery at {api_client.server}"
    group_list = _call(where, lambda: request_json(api_client, "GET", "/apis/"))
    served = {
        str(group.get("name")): [str(v.get("version")) for v in group.get("versions") or []]
        for group in group_list.get("groups") or []
    }
    versions = pick_versions(served)
    _log.info("reading CAPI %s, CAPC %s", versions.capi, versions.infrastructure)
    return versions


def read_inventories(
    api_client: Sender,
    *,
    namespace: str | None,
    cluster: str | None = None,
    label_selector: str | None = None,
) -> tuple[ClusterInventory, ...]:
    """Every cluster in `namespace` (None = all namespaces), or just `cluster` in `namespace`;
    `label_selector` (kubectl's `-l`) narrows the Cluster LIST of a namespace or of all namespaces.

    A named cluster that does not exist, or a name no Kubernetes object can have, is a `UsageError`.
    """
    _require_valid_names(namespace, cluster)
    if label_selector is not None and cluster is not None:
        raise UsageError("a cluster name cannot be combined with -l", hint="drop -l or drop the cluster name")
    if cluster is None:
        versions = discover(api_client)
        queries = [_Query(_CLUSTERS, namespace, label_selector=label_selector or None)]
        raw = _list_all(api_client, versions, [*queries, *(_Query(kind, namespace) for kind in _DEPENDENTS)])
    elif namespace is None:
        raise UsageError("a cluster name needs a namespace", hint="drop -A or drop the cluster name")
    else:
        versions = discover(api_client)
        raw = _read_named(api_client, versions, namespace, cluster)
    return build_inventories(RawObjects(**raw), versions.capi)


def _require_valid_names(namespace: str | None, cluster: str | None) -> None:
    """Refuse names no object can have before any request: they end up in field and label selectors,
    where `c1,metadata.name!=x` would select another cluster."""
    if namespace is not None and not _is_name(namespace, _DNS_LABEL_RE):
        raise UsageError(
            f"{_shown(namespace)} is not a valid namespace name",
            hint="namespaces have at most 63 lowercase letters, digits and '-'; "
            "list them with `kubectl get namespaces`",
        )
    if cluster is not None and not _is_name(cluster, _DNS_SUBDOMAIN_RE):
        where = f" -n {namespace}" if namespace else ""
        raise UsageError(
            f"{_shown(cluster)} is not a valid Cluster name",
            hint="Cluster names have at most 63 lowercase letters, digits, '-' and '.' (they are label "
            f"values too); list them with `kubectl get clusters{where}`",
        )


def _is_name(name: str, pattern: re.Pattern[str]) -> bool:
    return len(name) <= _MAX_LABEL_VALUE and pattern.fullmatch(name) is not None


def _shown(name: str, limit: int = 40) -> str:
    """Quote user input for a one-line message: escaped, and cut when long."""
    return repr(name if len(name) <= limit else name[:limit] + "…")


def read_template_referrers(api_client: Sender, *, namespace: str) -> dict[str, list[Any]]:
    """Every object in `namespace` that can point at a CloudStackMachineTemplate, keyed by kind.

    KubeadmControlPlanes, MachineDeployments and MachineSets reference one; Machines and CloudStackMachines
    carry the `cluster.x-k8s.io/cloned-from-name` of the one they were made from. All clusters of the
    namespace count, since a template may be shared. 1 discovery + one LIST per kind.
    """
    versions = discover(api_client)
    raw = _list_all(api_client, versions, [_Query(kind, namespace) for kind in _TEMPLATE_REFERRERS])
    return {kind.kind: raw[kind.field] for kind in _TEMPLATE_REFERRERS}


def read_secret_data(api_client: Sender, ref: SecretRef) -> dict[str, str]:
    """The data of Secret `ref`, each value decoded to text; the values are never logged.

    Raises `ApiError` for an answer other than 2xx (callers tell 404 and RBAC refusals
    apart), urllib3's `HTTPError` or `OSError` when the API server cannot be reached, and `ValueError`
    naming the key whose value is not base64-encoded UTF-8 text.
    """
    secret = _get_core_object(
        api_client, "/api/v1/namespaces/{namespace}/secrets/{name}", namespace=ref.namespace, name=ref.name
    )
    data: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(value).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"key {key} is not valid base64 UTF-8 text") from None
    return data


@dataclass(frozen=True)
class SecretAnswer:
    """What reading a Secret gave: its decoded `data`, or the HTTP `status` and `reason` of the refusal
    (`denied`: the RBAC error when RBAC refused), or `invalid`: which value is not text."""

    data: dict[str, str] | None
    status: int = 200
    reason: str = ""
    denied: KubeApiError | None = None
    invalid: str = ""


def fetch_secret(api_client: Sender, ref: SecretRef) -> SecretAnswer:
    """Read Secret `ref` for a caller that decides what a missing or refused Secret means; raises only
    when the API server cannot be reached. The values are never logged."""
    from urllib3.exceptions import HTTPError

    try:
        return SecretAnswer(read_secret_data(api_client, ref))
    except ApiError as err:
        denied = forbidden_error(f"read Secret {ref}", err)
        return SecretAnswer(None, int(err.status or 0), one_line(str(err.reason)), denied)
    except (HTTPError, OSError) as err:
        raise unreachable_error(f"read Secret {ref}", err) from None
    except ValueError as err:
        return SecretAnswer(None, invalid=str(err))


def _get_core_object(api_client: Sender, path: str, **names: str) -> dict[str, Any]:
    """GET a core/v1 object as plain JSON; see `request_json`."""
    return request_json(api_client, "GET", path, path_params=names)


def request_json(
    api_client: Sender,
    method: str,
    path: str,
    *,
    path_params: Mapping[str, str] | None = None,
    query: Sequence[tuple[str, Any]] = (),
    body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Send one request through `api_client` (its login, timeouts and retries) and return the JSON
    answer; `{name}` in `path` is replaced by `path_params[name]`, escaped. A non-2xx answer raises
    `ApiError`."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode("utf-8")
    escaped = {name: urllib.parse.quote(value, safe="") for name, value in (path_params or {}).items()}
    response = api_client.send(method, path.format(**escaped), query=query, headers=headers, body=data)
    if not 200 <= response.status <= 299:
        text = response.data.decode("utf-8", "replace")
        raise ApiError(response.status, response.reason or "", text, dict(response.headers))
    document: dict[str, Any] = json.loads(response.data)
    return document


def _read_named(
    api_client: Sender, versions: ServedVersions, namespace: str, name: str
) -> dict[str, list[Any]]:
    """The Cluster first (its refs name the control plane and infrastructure), then the rest at once."""
    clusters = _list(
        api_client, versions, _Query(_CLUSTERS, namespace, field_selector=f"metadata.name={name}")
    )
    if not clusters:
        raise UsageError(
            f'cluster "{name}" not found in namespace "{namespace}"',
            hint=f"list them with `kubectl get clusters -n {namespace}`, or pass -A",
        )
    spec = clusters[0].get("spec") or {}
    queries = [
        _named_query(_CONTROL_PLANES, namespace, spec.get("controlPlaneRef")),
        # spec.clusterName, not the cluster-name label: the label is absent without CAPI's webhook.
        _Query(_MACHINE_DEPLOYMENTS, namespace),
        _Query(_MACHINES, namespace),
        _Query(_MACHINE_TEMPLATES, namespace),  # all of them: a planner needs the names already taken
        _named_query(_CLOUDSTACK_CLUSTERS, namespace, spec.get("infrastructureRef")),
        _Query(_BOOTSTRAP_TEMPLATES, namespace),
        _Query(_CLOUDSTACK_MACHINES, namespace),
    ]
    return {"clusters": clusters, **_list_all(api_client, versions, queries)}


def _named_query(kind: _Kind, namespace: str, ref: Any) -> _Query:
    """Narrow a LIST to the referenced object's name when the reference names one in this namespace."""
    if isinstance(ref, Mapping) and ref.get("name") and (ref.get("namespace") or namespace) == namespace:
        return _Query(kind, namespace, field_selector=f"metadata.name={ref['name']}")
    return _Query(kind, namespace)


def _list_all(
    api_client: Sender, versions: ServedVersions, queries: Sequence[_Query]
) -> dict[str, list[Any]]:
    """Run the LISTs concurrently; results keyed by `RawObjects` field."""
    with ThreadPoolExecutor(max_workers=len(queries), thread_name_prefix="list") as pool:
        results = list(pool.map(lambda q: _list(api_client, versions, q), queries))
    return {query.kind.field: items for query, items in zip(queries, results, strict=True)}


def _version_for(kind: _Kind, versions: ServedVersions) -> str:
    return {
        CLUSTER_GROUP: versions.cluster,
        CONTROL_PLANE_GROUP: versions.control_plane,
        BOOTSTRAP_GROUP: versions.bootstrap,
        INFRASTRUCTURE_GROUP: versions.infrastructure,
    }[kind.group]


def _list(api_client: Sender, versions: ServedVersions, query: _Query) -> list[Any]:
    """All items of one LIST, following `continue` tokens; items carry apiVersion and kind."""
    kind = query.kind
    version = _version_for(kind, versions)
    scope = f"namespace {query.namespace}" if query.namespace else "all namespaces"
    where = f"list {kind.plural}.{version}.{kind.group} in {scope}"
    selectors: list[tuple[str, Any]] = [("limit", PAGE_SIZE)]
    if query.label_selector:
        selectors.append(("labelSelector", query.label_selector))
    if query.field_selector:
        selectors.append(("fieldSelector", query.field_selector))
    if query.namespace is None:
        path = f"/apis/{kind.group}/{version}/{kind.plural}"
    else:
        path = f"/apis/{kind.group}/{version}/namespaces/{{namespace}}/{kind.plural}"
    names = {"namespace": query.namespace} if query.namespace else {}

    def request(token: str | None = None) -> dict[str, Any]:
        page = [*selectors, ("continue", token)] if token else selectors
        return request_json(api_client, "GET", path, path_params=names, query=page)

    items: list[Any] = []
    token: str | None = None
    while True:
        page = _call(where, functools.partial(request, token))
        for item in page.get("items") or []:
            item.setdefault("apiVersion", f"{kind.group}/{version}")
            item.setdefault("kind", kind.kind)
            items.append(item)
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items


def _call(what: str, request: Callable[[], Any]) -> Any:
    """Run one request, turning client failures into a `KubeApiError` that says which request failed."""
    from urllib3.exceptions import HTTPError

    try:
        return request()
    except ApiError as err:
        denied = forbidden_error(what, err)
        if denied is not None:
            raise denied from None
        hint = _NOT_AUTHENTICATED if err.status == 401 else None
        raise KubeApiError(f"{what}: HTTP {err.status} {one_line(str(err.reason))}", hint=hint) from err
    except (HTTPError, OSError) as err:
        raise unreachable_error(what, err) from err


def access_review(api_client: Sender, access: Access) -> bool:
    """One SelfSubjectAccessReview: may the caller do `access`?"""
    from urllib3.exceptions import HTTPError

    attributes = {
        "verb": access.verb,
        "group": access.group,
        "resource": access.resource,
        "namespace": access.namespace,
        "name": access.name or None,
    }
    given = {key: value for key, value in attributes.items() if value is not None}
    review_request = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": given},
    }
    try:
        review = request_json(
            api_client, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review_request
        )
    except ApiError as err:
        raise KubeApiError(
            f"SelfSubjectAccessReview for {access}: HTTP {err.status} {one_line(str(err.reason))}",
            hint="the API server must serve authorization.k8s.io/v1",
        ) from None
    except (HTTPError, OSError) as err:
        raise unreachable_error("SelfSubjectAccessReview", err) from None
    allowed = bool((review.get("status") or {}).get("allowed"))
    _log.debug("may %s: %s", access, allowed)
    return allowed
