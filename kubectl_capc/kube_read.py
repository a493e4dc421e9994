"""Read CAPC workload clusters from a management cluster with a fixed, small number of requests.

One discovery request (`GET /apis`) picks the CAPI version the server serves (v1beta2 when served, else
v1beta1); CAPC objects are always read at v1beta3. Then one LIST per kind, filtered by namespace and,
for a named cluster, by name or the `cluster.x-k8s.io/cluster-name` label -- never one GET per object --
so reading a cluster with 1 or 50 MachineDeployments costs the same: for a named cluster 1 discovery +
1 Cluster LIST + 6 LISTs; for a namespace or `-A`, 1 discovery + 7 LISTs. (A kind with more than
`PAGE_SIZE` objects takes one more request per page, as kubectl's chunked lists do.)

The kubernetes library is imported inside the functions: importing it costs about half a second.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubectl_capc.errors import KubeApiError, UsageError, one_line
from kubectl_capc.inventory import RawObjects, build_inventories
from kubectl_capc.model import CLUSTER_NAME_LABEL, CapiVersion, ClusterInventory

__all__ = [
    "CAPC_VERSION",
    "PAGE_SIZE",
    "ServedVersions",
    "discover",
    "pick_versions",
    "read_inventories",
    "read_template_referrers",
]

_log = logging.getLogger(__name__)

CAPC_VERSION = "v1beta3"
PAGE_SIZE = 500
_CAPI_PREFERENCE = ("v1beta2", "v1beta1")

CLUSTER_GROUP = "cluster.x-k8s.io"
CONTROL_PLANE_GROUP = "controlplane.cluster.x-k8s.io"
BOOTSTRAP_GROUP = "bootstrap.cluster.x-k8s.io"
INFRASTRUCTURE_GROUP = "infrastructure.cluster.x-k8s.io"


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
    """One kind to LIST: where it lives and which `RawObjects` field it fills."""

    field: str
    kind: str
    group: str
    plural: str


_CLUSTERS = _Kind("clusters", "Cluster", CLUSTER_GROUP, "clusters")
_CONTROL_PLANES = _Kind("control_planes", "KubeadmControlPlane", CONTROL_PLANE_GROUP, "kubeadmcontrolplanes")
_MACHINE_DEPLOYMENTS = _Kind("machine_deployments", "MachineDeployment", CLUSTER_GROUP, "machinedeployments")
_MACHINES = _Kind("machines", "Machine", CLUSTER_GROUP, "machines")
_MACHINE_TEMPLATES = _Kind(
    "machine_templates", "CloudStackMachineTemplate", INFRASTRUCTURE_GROUP, "cloudstackmachinetemplates"
)
_CLOUDSTACK_CLUSTERS = _Kind(
    "cloudstack_clusters", "CloudStackCluster", INFRASTRUCTURE_GROUP, "cloudstackclusters"
)
_BOOTSTRAP_TEMPLATES = _Kind(
    "bootstrap_templates", "KubeadmConfigTemplate", BOOTSTRAP_GROUP, "kubeadmconfigtemplates"
)
_MACHINE_SETS = _Kind("machine_sets", "MachineSet", CLUSTER_GROUP, "machinesets")
_CLOUDSTACK_MACHINES = _Kind(
    "cloudstack_machines", "CloudStackMachine", INFRASTRUCTURE_GROUP, "cloudstackmachines"
)
_TEMPLATE_REFERRERS = (_CONTROL_PLANES, _MACHINE_DEPLOYMENTS, _MACHINE_SETS, _MACHINES, _CLOUDSTACK_MACHINES)
_DEPENDENTS = (
    _CONTROL_PLANES,
    _MACHINE_DEPLOYMENTS,
    _MACHINES,
    _MACHINE_TEMPLATES,
    _CLOUDSTACK_CLUSTERS,
    _BOOTSTRAP_TEMPLATES,
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


def discover(api_client: Any) -> ServedVersions:
    """One `GET /apis` request, then `pick_versions`."""
    from kubernetes import client

    group_list = _call("API discovery", lambda: client.ApisApi(api_client).get_api_versions())
    served = {group.name: [v.version for v in group.versions or []] for group in group_list.groups or []}
    versions = pick_versions(served)
    _log.info("reading CAPI %s, CAPC %s", versions.capi, versions.infrastructure)
    return versions


def read_inventories(
    api_client: Any, *, namespace: str | None, cluster: str | None = None
) -> tuple[ClusterInventory, ...]:
    """Every cluster in `namespace` (None = all namespaces), or just `cluster` in `namespace`.

    A named cluster that does not exist is a `UsageError`.
    """
    if cluster is None:
        versions = discover(api_client)
        raw = _list_all(api_client, versions, [_Query(kind, namespace) for kind in (_CLUSTERS, *_DEPENDENTS)])
    elif namespace is None:
        raise UsageError("a cluster name needs a namespace", hint="drop -A or drop the cluster name")
    else:
        versions = discover(api_client)
        raw = _read_named(api_client, versions, namespace, cluster)
    return build_inventories(RawObjects(**raw), versions.capi)


def read_template_referrers(api_client: Any, *, namespace: str) -> dict[str, list[Any]]:
    """Every object in `namespace` that can point at a CloudStackMachineTemplate, keyed by kind.

    KubeadmControlPlanes, MachineDeployments and MachineSets reference one; Machines and CloudStackMachines
    carry the `cluster.x-k8s.io/cloned-from-name` of the one they were made from. All clusters of the
    namespace count, since a template may be shared. 1 discovery + one LIST per kind.
    """
    versions = discover(api_client)
    raw = _list_all(api_client, versions, [_Query(kind, namespace) for kind in _TEMPLATE_REFERRERS])
    return {kind.kind: raw[kind.field] for kind in _TEMPLATE_REFERRERS}


def _read_named(api_client: Any, versions: ServedVersions, namespace: str, name: str) -> dict[str, list[Any]]:
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
    by_cluster_label = f"{CLUSTER_NAME_LABEL}={name}"
    queries = [
        _named_query(_CONTROL_PLANES, namespace, spec.get("controlPlaneRef")),
        _Query(_MACHINE_DEPLOYMENTS, namespace, label_selector=by_cluster_label),
        _Query(_MACHINES, namespace, label_selector=by_cluster_label),
        _Query(_MACHINE_TEMPLATES, namespace),  # all of them: a planner needs the names already taken
        _named_query(_CLOUDSTACK_CLUSTERS, namespace, spec.get("infrastructureRef")),
        _Query(_BOOTSTRAP_TEMPLATES, namespace),
    ]
    return {"clusters": clusters, **_list_all(api_client, versions, queries)}


def _named_query(kind: _Kind, namespace: str, ref: Any) -> _Query:
    """Narrow a LIST to the referenced object's name when the reference names one in this namespace."""
    if isinstance(ref, Mapping) and ref.get("name") and (ref.get("namespace") or namespace) == namespace:
        return _Query(kind, namespace, field_selector=f"metadata.name={ref['name']}")
    return _Query(kind, namespace)


def _list_all(api_client: Any, versions: ServedVersions, queries: Sequence[_Query]) -> dict[str, list[Any]]:
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


def _list(api_client: Any, versions: ServedVersions, query: _Query) -> list[Any]:
    """All items of one LIST, following `continue` tokens; items carry apiVersion and kind."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    kind = query.kind
    version = _version_for(kind, versions)
    scope = f"namespace {query.namespace}" if query.namespace else "all namespaces"
    where = f"list {kind.plural}.{version}.{kind.group} in {scope}"
    selectors: dict[str, Any] = {"limit": PAGE_SIZE}
    if query.label_selector:
        selectors["label_selector"] = query.label_selector
    if query.field_selector:
        selectors["field_selector"] = query.field_selector
    if query.namespace is None:
        request = functools.partial(
            api.list_cluster_custom_object, kind.group, version, kind.plural, **selectors
        )
    else:
        request = functools.partial(
            api.list_namespaced_custom_object, kind.group, version, query.namespace, kind.plural, **selectors
        )
    items: list[Any] = []
    token: str | None = None
    while True:
        page = _call(where, functools.partial(request, _continue=token) if token else request)
        for item in page.get("items") or []:
            item.setdefault("apiVersion", f"{kind.group}/{version}")
            item.setdefault("kind", kind.kind)
            items.append(item)
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items


def _call(what: str, request: Callable[[], Any]) -> Any:
    """Run one request, turning client failures into a `KubeApiError` that says which request failed."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return request()
    except ApiException as err:
        hint = None
        if err.status in (401, 403):
            hint = "the context's user lacks permission; ask for read access to CAPI and CAPC objects"
        raise KubeApiError(f"{what}: HTTP {err.status} {one_line(str(err.reason))}", hint=hint) from err
    except (HTTPError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise KubeApiError(
            f"{what}: cannot reach the API server: {one_line(str(reason))}",
            hint="check that the cluster is running and that --context/--kubeconfig select it",
        ) from err
