"""What shell completion asks the servers: namespaces, Cluster names and the node-image versions in
CloudStack, read with the plugin's own kubeconfig handling and clients.

Only reads. Every request runs with the time the completion has left as its timeout, and the caller
drops a lookup that is still running at its deadline, so nothing here needs to be quick on its own.
The Kubernetes transport and cs are imported inside the functions: a completion that needs no server
never pays for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubectl_capc.kube.target import KubeTarget

if TYPE_CHECKING:
    from kubectl_capc.domain.versions import KubeVersion

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


def namespaces(target: KubeTarget) -> tuple[NamedObject, ...]:
    """Every namespace of the context's API server: one LIST."""
    from kubectl_capc.kube.client import kube_client

    target.resolve_context()  # a kubeconfig problem ends the lookup before the client is made
    listed = _get_list(kube_client(target), "/api/v1/namespaces")
    return tuple(NamedObject(_name(item), _text(item, "status", "phase")) for item in listed if _name(item))


def clusters(target: KubeTarget) -> tuple[NamedObject, ...]:
    """The Cluster API Clusters in the namespace `target` selects: one discovery request and one LIST."""
    from kubectl_capc.domain.model import CLUSTER_GROUP
    from kubectl_capc.kube.client import kube_client
    from kubectl_capc.kube.read import discover

    namespace = target.resolve_context().namespace
    api = kube_client(target)
    version = discover(api).cluster
    listed = _get_list(api, f"/apis/{CLUSTER_GROUP}/{version}/namespaces/{namespace}/clusters")
    return tuple(
        NamedObject(_name(item), " ".join(filter(None, (_version_of(item), _text(item, "status", "phase")))))
        for item in listed
        if _name(item)
    )


def template_versions(target: KubeTarget, cluster: str) -> TemplateVersions:
    """The templates named like node images that the cluster's failure domains can boot, found as
    `kubectl capc image list --cluster` finds them: through each failure domain's credentials Secret."""
    from kubectl_capc.cloudstack.client import CloudStackClient
    from kubectl_capc.cloudstack.credentials import Credentials
    from kubectl_capc.domain.images import describe_template
    from kubectl_capc.domain.versions import parse_version
    from kubectl_capc.kube.client import kube_client
    from kubectl_capc.kube.read import read_inventories
    from kubectl_capc.ops.image_targets import zone_targets

    timeout = target.request_timeout or 1.0

    def client(credentials: Credentials) -> CloudStackClient:
        return CloudStackClient(credentials, request_timeout=timeout)

    namespace = target.resolve_context().namespace
    api = kube_client(target)
    (inventory,) = read_inventories(api, namespace=namespace, cluster=cluster)
    current = None
    if inventory.control_plane is not None:
        try:
            current = parse_version(inventory.control_plane.version)
        except ValueError:
            current = None
    found: dict[str, KubeVersion] = {}
    seen: set[tuple[int, Any]] = set()
    for zone in zone_targets(api, inventory, client):
        if (id(zone.client), zone.owner) in seen:
            continue
        seen.add((id(zone.client), zone.owner))
        for template_filter in ("self", "executable"):
            for row in zone.client.templates(template_filter=template_filter, owner=zone.owner):
                version = describe_template(row.name).version
                if version is not None:
                    found[row.name] = version
    return TemplateVersions(tuple((version, name) for name, version in found.items()), current)


def _get_list(api: Any, path: str) -> Sequence[dict[str, Any]]:
    """One LIST (of at most 500) as plain JSON; a non-2xx answer raises."""
    from kubectl_capc.kube.read import request_json

    items = request_json(api, "GET", path, query=[("limit", 500)]).get("items") or []
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
