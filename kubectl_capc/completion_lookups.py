"""What shell completion asks the servers: namespaces, Cluster names and the node-image versions in
CloudStack, read with the plugin's own kubeconfig handling and clients.

Only reads. Every request runs with the time the completion has left as its timeout, and the caller
drops a lookup that is still running at its deadline, so nothing here needs to be quick on its own.
The kubernetes client and cs are imported inside the functions: a completion that needs no server
never pays for them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubectl_capc.options import GlobalOptions

if TYPE_CHECKING:
    from kubectl_capc.versions import KubeVersion

__all__ = ["NamedObject", "TemplateVersions", "clusters", "namespaces", "template_versions"]


@dataclass(frozen=True)
class NamedObject:
    """An object's name and a few words about it for the completion menu."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class TemplateVersions:
    """The releases that node-image templates in a cluster's zones are named for, and the version its
    control plane runs (None when it cannot be read): a `--to` below it would be a downgrade."""

    templates: tuple[tuple[KubeVersion, str], ...]
    current: KubeVersion | None


def namespaces(opts: GlobalOptions) -> tuple[NamedObject, ...]:
    """Every namespace of the context's API server: one LIST."""
    from kubectl_capc.kube import api_client

    opts.resolve_context()  # a kubeconfig problem ends the lookup before the client is imported
    listed = _get_list(api_client(opts), "/api/v1/namespaces")
    return tuple(NamedObject(_name(item), _text(item, "status", "phase")) for item in listed if _name(item))


def clusters(opts: GlobalOptions) -> tuple[NamedObject, ...]:
    """The Cluster API Clusters in the namespace `opts` selects: one discovery request and one LIST."""
    from kubectl_capc.kube import api_client
    from kubectl_capc.kube_read import discover
    from kubectl_capc.model import CLUSTER_GROUP

    namespace = opts.resolve_context().namespace
    api = api_client(opts)
    version = discover(api).cluster
    listed = _get_list(api, f"/apis/{CLUSTER_GROUP}/{version}/namespaces/{namespace}/clusters")
    return tuple(
        NamedObject(_name(item), " ".join(filter(None, (_version_of(item), _text(item, "status", "phase")))))
        for item in listed
        if _name(item)
    )


def template_versions(opts: GlobalOptions, cluster: str) -> TemplateVersions:
    """The templates named like node images that the cluster's failure domains can boot, found as
    `kubectl capc image list --cluster` finds them: through each failure domain's credentials Secret."""
    from kubectl_capc.cloudstack import CloudStackClient, Credentials
    from kubectl_capc.image_targets import zone_targets
    from kubectl_capc.images import describe_template
    from kubectl_capc.kube import api_client
    from kubectl_capc.kube_read import read_inventories
    from kubectl_capc.versions import parse_version

    timeout = opts.request_timeout or 1.0

    def client(credentials: Credentials) -> CloudStackClient:
        return CloudStackClient(credentials, request_timeout=timeout)

    namespace = opts.resolve_context().namespace
    api = api_client(opts)
    (inventory,) = read_inventories(api, namespace=namespace, cluster=cluster)
    current = None
    if inventory.control_plane is not None:
        try:
            current = parse_version(inventory.control_plane.version)
        except ValueError:
            current = None
    found: dict[str, KubeVersion] = {}
    seen: set[tuple[int, Any]] = set()
    for target in zone_targets(api, inventory, client):
        if (id(target.client), target.owner) in seen:
            continue
        seen.add((id(target.client), target.owner))
        for template_filter in ("self", "executable"):
            for row in target.client.templates(template_filter=template_filter, owner=target.owner):
                version = describe_template(row.name).version
                if version is not None:
                    found[row.name] = version
    return TemplateVersions(tuple((version, name) for name, version in found.items()), current)


def _get_list(api: Any, path: str) -> Sequence[dict[str, Any]]:
    """One LIST as plain JSON (no typed models to build); a non-2xx answer raises."""
    request = api.param_serialize(
        "GET", path, query_params=[("limit", 500)], header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )  # fmt: skip
    response = api.call_api(*request)
    response.read()
    if not 200 <= response.status <= 299:
        raise RuntimeError(f"GET {path}: HTTP {response.status}")
    items = json.loads(response.data).get("items") or []
    return [item for item in items if isinstance(item, dict)]


def _name(item: dict[str, Any]) -> str:
    return _text(item, "metadata", "name")


def _version_of(cluster: dict[str, Any]) -> str:
    return _text(cluster, "spec", "topology", "version")


def _text(item: dict[str, Any], *path: str) -> str:
    value: Any = item
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else ""
