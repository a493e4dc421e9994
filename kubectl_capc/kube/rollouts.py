"""Read what `kubectl capc status` diagnoses, and watch Machines to follow it live.

One LIST per kind, whatever the number of clusters: the Clusters (by name, by label selector, or all of
a namespace or of every namespace), then at once the control planes, MachineDeployments, Machines,
CloudStackMachines, MachineHealthChecks, CloudStackMachineTemplates, CloudStackClusters and
KubeadmConfigTemplates of the same namespace (or of all namespaces); objects of clusters not selected
are left out when the inventories are built.

The kubernetes library is imported inside the functions: importing it costs about half a second.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubectl_capc.domain.errors import KubeApiError, UsageError
from kubectl_capc.domain.inventory import RawObjects, build_inventories
from kubectl_capc.domain.model import CapiVersion, ClusterInventory
from kubectl_capc.kube.errors import forbidden_error, unreachable_error
from kubectl_capc.kube.read import (
    _BOOTSTRAP_TEMPLATES,
    _CLOUDSTACK_CLUSTERS,
    _CLOUDSTACK_MACHINES,
    _CLUSTERS,
    _CONTROL_PLANES,
    _MACHINE_DEPLOYMENTS,
    _MACHINE_TEMPLATES,
    _MACHINES,
    PAGE_SIZE,
    ServedVersions,
    _Kind,
    _list,
    _list_all,
    _Query,
    _require_valid_names,
    _version_for,
    discover,
)

__all__ = ["RolloutObjects", "read_rollout_objects", "watch_machines"]

_log = logging.getLogger(__name__)

_HEALTH_CHECKS = _Kind("health_checks", "MachineHealthCheck")
_DEPENDENTS = (
    _CONTROL_PLANES,
    _MACHINE_DEPLOYMENTS,
    _MACHINES,
    _CLOUDSTACK_MACHINES,
    _HEALTH_CHECKS,
    _MACHINE_TEMPLATES,
    _CLOUDSTACK_CLUSTERS,
    _BOOTSTRAP_TEMPLATES,
)


@dataclass(frozen=True)
class RolloutObjects:
    """The selected clusters, and the raw objects the doctor reads beyond their inventories."""

    capi_version: CapiVersion
    inventories: tuple[ClusterInventory, ...]
    machines: tuple[Mapping[str, Any], ...]
    cloudstack_machines: tuple[Mapping[str, Any], ...]
    health_checks: tuple[Mapping[str, Any], ...]
    resource_version: str = ""  # of the Machine LIST: where a watch of Machines starts


def read_rollout_objects(
    api_client: Any,
    *,
    namespace: str | None,
    cluster: str | None = None,
    label_selector: str | None = None,
) -> RolloutObjects:
    """The clusters `namespace` (None: all namespaces) and `cluster` or `label_selector` select.

    A named cluster that does not exist is a `UsageError`; a selector that selects none gives none.
    """
    _require_valid_names(namespace, cluster)
    if cluster is not None and namespace is None:
        raise UsageError("a cluster name needs a namespace", hint="drop -A or drop the cluster name")
    versions = discover(api_client)
    field_selector = f"metadata.name={cluster}" if cluster else None
    clusters = _list(api_client, versions, _Query(_CLUSTERS, namespace, label_selector, field_selector))
    if cluster is not None and not clusters:
        raise UsageError(
            f'cluster "{cluster}" not found in namespace "{namespace}"',
            hint=f"list them with `kubectl get clusters -n {namespace}`, or pass -A",
        )
    if not clusters:
        return RolloutObjects(versions.capi, (), (), (), ())
    # One namespace when every selected cluster is in it, else every namespace.
    namespaces = {str(c["metadata"]["namespace"]) for c in clusters}
    scope = namespace if namespace is not None else (next(iter(namespaces)) if len(namespaces) == 1 else None)
    machines, resource_version = _list_machines(api_client, versions, scope)
    rest = [kind for kind in _DEPENDENTS if kind is not _MACHINES]
    raw = _list_all(api_client, versions, [_Query(kind, scope) for kind in rest])
    inventories = build_inventories(
        RawObjects(
            clusters=clusters,
            control_planes=raw["control_planes"],
            machine_deployments=raw["machine_deployments"],
            machines=machines,
            machine_templates=raw["machine_templates"],
            cloudstack_clusters=raw["cloudstack_clusters"],
            bootstrap_templates=raw["bootstrap_templates"],
            cloudstack_machines=raw["cloudstack_machines"],
        ),
        versions.capi,
    )
    return RolloutObjects(
        versions.capi,
        inventories,
        tuple(machines),
        tuple(raw["cloudstack_machines"]),
        tuple(raw["health_checks"]),
        resource_version,
    )


def _list_machines(api_client: Any, versions: ServedVersions, namespace: str | None) -> tuple[list[Any], str]:
    """The Machines, and the resourceVersion of the list (a watch of them starts there)."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    version = _version_for(_MACHINES, versions)
    items: list[Any] = []
    token: str | None = None
    where = f"list {_MACHINES.plural}.{version}.{_MACHINES.group} in " + (
        f"namespace {namespace}" if namespace else "all namespaces"
    )
    if namespace:
        request = functools.partial(
            api.list_namespaced_custom_object, _MACHINES.group, version, namespace, _MACHINES.plural
        )
    else:
        request = functools.partial(
            api.list_cluster_custom_object, _MACHINES.group, version, _MACHINES.plural
        )
    while True:
        page = _request(
            where, functools.partial(request, limit=PAGE_SIZE, **({"_continue": token} if token else {}))
        )
        for item in page.get("items") or []:
            item.setdefault("apiVersion", f"{_MACHINES.group}/{version}")
            item.setdefault("kind", _MACHINES.kind)
            items.append(item)
        metadata = page.get("metadata") or {}
        token = metadata.get("continue")
        if not token:
            return items, str(metadata.get("resourceVersion") or "")


def _request(what: str, request: Any) -> Any:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return request()
    except ApiException as err:
        denied = forbidden_error(what, err)
        if denied is not None:
            raise denied from None
        raise KubeApiError(f"{what}: HTTP {err.status} {err.reason}") from None
    except (HTTPError, OSError) as err:
        raise unreachable_error(what, err) from None


def watch_machines(
    api_client: Any,
    capi_version: CapiVersion,
    *,
    namespace: str | None,
    resource_version: str,
    seconds: int,
    namespaces: Sequence[str] = (),
) -> Generator[str, None, None]:
    """One WATCH of Machines from `resource_version`, for at most `seconds`: yields the name of each
    Machine that changed (`namespaces`, when given, keeps those of other namespaces out). Ends when the
    server ends the stream; a 410 Gone (the version is too old) ends it too, so the caller lists again.
    """
    from kubernetes import client, watch
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError, ProtocolError

    api = client.CustomObjectsApi(api_client)
    group, plural = _MACHINES.group, _MACHINES.plural
    what = f"watch {plural}.{capi_version}.{group}"
    args: dict[str, Any] = {
        "resource_version": resource_version,
        "timeout_seconds": seconds,
        "allow_watch_bookmarks": True,
        "_request_timeout": seconds + 30,
    }
    if namespace:
        request: Any = api.list_namespaced_custom_object
        positional: tuple[Any, ...] = (group, capi_version, namespace, plural)
    else:
        request = api.list_cluster_custom_object
        positional = (group, capi_version, plural)
    watcher = watch.Watch()  # type: ignore[no-untyped-call]
    try:
        for event in watcher.stream(request, *positional, **args):  # type: ignore[no-untyped-call]
            kind, obj = event["type"], event.get("raw_object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    return
                raise KubeApiError(f"{what}: {obj.get('message', obj)}")
            if kind == "BOOKMARK":
                continue
            metadata = obj.get("metadata") or {}
            if namespaces and metadata.get("namespace") not in namespaces:
                continue
            yield str(metadata.get("name", ""))
    except ApiException as err:
        if err.status == 410:
            return
        denied = forbidden_error(what, err)
        if denied is not None:
            raise denied from None
        raise KubeApiError(f"{what}: HTTP {err.status} {err.reason}") from None
    except ProtocolError as err:
        _log.info("%s ended: %s", what, err)  # the stream broke: the caller lists and watches again
    except (HTTPError, OSError) as err:
        raise unreachable_error(what, err) from None
    finally:
        watcher.stop()  # type: ignore[no-untyped-call]
