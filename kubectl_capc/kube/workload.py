"""Read a workload cluster through the `<cluster>-kubeconfig` Secret CAPI writes for it.

`read_workload` reads the Secret (key `value`) with the management client, builds a client for the
workload cluster in memory (`kubectl_capc.kube.credentials.credentials_from_document`) -- the kubeconfig
is never written to disk or logged; client keys and certificates reach the TLS layer as in-memory files
(Linux memfd; elsewhere private temporary files, removed once read) -- and then sends a fixed set of
requests: one paginated LIST each of Nodes and PodDisruptionBudgets and one `GET /metrics` for the API
server's `apiserver_requested_deprecated_apis` gauge, concurrently; then, only when some budget allows
no disruption (the one check that needs them), one paginated LIST of the Pods a drain would evict
(scheduled, not Pending/Succeeded/Failed), which are most of the bytes a big cluster sends. Objects are
read as plain JSON (the typed models would cost seconds of CPU for ten thousand pods). With `removed`
(the built-in API versions an upgrade removes, `removed_between`), also, per API group, one discovery
GET for its versions and one metadata-only LIST per resource (as PartialObjectMetadata: the versions its
writers used are in managedFields and kubectl's last-applied-configuration), in the preferred version,
else the first other served one that is not being removed. However large the cluster, that is 1 Secret
GET + 2 or 3 LISTs + 1 GET (+ those of `removed`), plus one request per further page of `PAGE_SIZE`
objects.

Nothing here raises for the workload cluster: a missing or unreadable Secret, a kubeconfig that cannot
be used, or an API server that does not answer gives `WorkloadFacts.unreachable` (what went wrong), a
refused or malformed `/metrics` gives `deprecated_apis` None with `metrics_error`, a refused LIST of
the resources of `removed` gives `written` None with `written_error`.

`read_machines` reads the Machines of one cluster, a namespace or all namespaces with one LIST (plus
pages) into `kubectl_capc.domain.machines.Machine`, from either CAPI shape (`machine_from_object`).
"""

from __future__ import annotations

import functools
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubectl_capc.domain.checks.workload import (
    DeprecatedApiUse,
    Node,
    Pod,
    PodDisruptionBudget,
    RemovedApi,
    WorkloadFacts,
    WrittenObject,
    parse_deprecated_api_metrics,
)
from kubectl_capc.domain.machines import Machine
from kubectl_capc.domain.model import (
    CLUSTER_NAME_LABEL,
    SecretRef,
)
from kubectl_capc.domain.selectors import LabelSelector, Operator, Requirement
from kubectl_capc.kube.rest import KubeClient, Sender

__all__ = [
    "DEFAULT_TIMEOUT",
    "EVICTABLE_PODS",
    "KUBECONFIG_KEY",
    "PAGE_SIZE",
    "WorkloadRead",
    "blocks_evictions",
    "kubeconfig_secret",
    "machine_cluster",
    "machine_from_object",
    "node_from_object",
    "pdb_from_object",
    "pod_from_object",
    "read_machines",
    "read_workload",
    "written_from_object",
]

_log = logging.getLogger(__name__)

KUBECONFIG_KEY = "value"
PAGE_SIZE = 500
DEFAULT_TIMEOUT = 10.0
"""Seconds each workload request may take when no --request-timeout is given."""
EVICTABLE_PODS = "spec.nodeName!=,status.phase!=Pending,status.phase!=Succeeded,status.phase!=Failed"
"""The field selector of the Pod LIST: only pods a drain evicts under their budget."""
_MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
"""The Accept header of the removed resources' LISTs: object metadata only, whatever the resource."""


def kubeconfig_secret(namespace: str, cluster: str) -> SecretRef:
    return SecretRef(namespace, f"{cluster}-kubeconfig")


@dataclass(frozen=True)
class WorkloadRead:
    """What `read_workload` learnt, and how many requests it sent to the workload API server."""

    facts: WorkloadFacts
    requests: int = 0
    seconds: float = 0.0


class _Unusable(Exception):
    """The workload cluster cannot be read; the message says why (no secret values in it)."""


class _NotServed(Exception):
    """The server does not serve the resource listed in that version (HTTP 404)."""


# -- the Machines ----------------------------------------------------------------------------------


def read_machines(
    api_client: Sender, capi_version: str, *, namespace: str | None, cluster: str | None = None
) -> dict[tuple[str, str], tuple[Machine, ...]]:
    """The Machines of `cluster` in `namespace`, or of every cluster there (None = all namespaces), keyed
    by (namespace, cluster name): one LIST, however many clusters."""
    from kubectl_capc.kube.read import ServedVersions, _Kind, _list, _Query

    versions = ServedVersions(capi_version, capi_version, capi_version)
    selector = f"{CLUSTER_NAME_LABEL}={cluster}" if cluster else None
    query = _Query(_Kind("machines", "Machine"), namespace, label_selector=selector)
    grouped: dict[tuple[str, str], list[Machine]] = {}
    for item in _list(api_client, versions, query):
        grouped.setdefault(machine_cluster(item), []).append(machine_from_object(item))
    return {key: tuple(machines) for key, machines in grouped.items()}


def machine_cluster(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, cluster name) of a raw Machine."""
    return _s(obj, "metadata", "namespace"), _s(obj, "spec", "clusterName") or str(
        _labels(obj).get(CLUSTER_NAME_LABEL, "")
    )


def machine_from_object(obj: Mapping[str, Any]) -> Machine:
    """A raw Machine (v1beta1 or v1beta2) as `Machine`, read as the rollout doctor reads it."""
    from kubectl_capc.domain.status_facts import parse_machine

    return parse_machine(obj)


def node_from_object(obj: Mapping[str, Any]) -> Node:
    conditions = [c for c in _list_at(obj, "status", "conditions") if isinstance(c, Mapping)]
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = tuple(
        f"{t.get('key', '')}{'=' + str(t['value']) if t.get('value') else ''}:{t.get('effect', '')}"
        for t in _list_at(obj, "spec", "taints")
        if isinstance(t, Mapping)
    )
    return Node(
        name=_s(obj, "metadata", "name"),
        ready=ready,
        kubelet_version=_s(obj, "status", "nodeInfo", "kubeletVersion"),
        provider_id=_s(obj, "spec", "providerID"),
        unschedulable=bool((obj.get("spec") or {}).get("unschedulable")),
        labels=_labels(obj),
        taints=taints,
    )


def pod_from_object(obj: Mapping[str, Any]) -> Pod:
    """A Pod; a mirror (static) pod has owner kind `Node`, as its owner reference says."""
    owners = [o for o in _list_at(obj, "metadata", "ownerReferences") if isinstance(o, Mapping)]
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else {})
    owner_kind = str(owner.get("kind", ""))
    if _MIRROR_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {}):
        owner_kind = "Node"
    return Pod(
        namespace=_s(obj, "metadata", "namespace"),
        name=_s(obj, "metadata", "name"),
        node=_s(obj, "spec", "nodeName"),
        labels=_labels(obj),
        phase=_s(obj, "status", "phase") or "Pending",
        owner_kind=owner_kind,
    )


def pdb_from_object(obj: Mapping[str, Any]) -> PodDisruptionBudget:
    """A policy/v1 PodDisruptionBudget; a malformed selector expression selects nothing (None)."""
    raw = (obj.get("spec") or {}).get("selector")
    selector: LabelSelector | None = None
    if isinstance(raw, Mapping):
        try:
            selector = LabelSelector(
                {str(k): str(v) for k, v in (raw.get("matchLabels") or {}).items()},
                tuple(
                    Requirement(
                        str(e.get("key", "")),
                        Operator(str(e.get("operator", ""))),
                        frozenset(str(v) for v in e.get("values") or ()),
                    )
                    for e in raw.get("matchExpressions") or ()
                ),
            )
        except (ValueError, AttributeError):
            selector = None
    status = obj.get("status") or {}
    return PodDisruptionBudget(
        namespace=_s(obj, "metadata", "namespace"),
        name=_s(obj, "metadata", "name"),
        selector=selector,
        disruptions_allowed=_int(status.get("disruptionsAllowed")),
        current_healthy=_int(status.get("currentHealthy")),
        desired_healthy=_int(status.get("desiredHealthy")),
        expected_pods=_int(status.get("expectedPods")),
    )


def written_from_object(group: str, resource: str, obj: Mapping[str, Any]) -> WrittenObject:
    """An object's metadata as `WrittenObject`: the apiVersion of each field manager's newest
    managedFields entry (a manager that wrote in another version since keeps its older entry too), and
    that of kubectl's last-applied-configuration (nothing else of that annotation is kept)."""
    metadata = obj.get("metadata") or {}
    newest: dict[str, tuple[str, str]] = {}
    for entry in _list_at(obj, "metadata", "managedFields"):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("apiVersion"), str):
            continue
        manager, when = str(entry.get("manager") or "unknown manager"), str(entry.get("time") or "")
        if manager not in newest or when >= newest[manager][0]:
            newest[manager] = (when, entry["apiVersion"])
    writers = {(manager, version) for manager, (_, version) in newest.items()}
    applied = (metadata.get("annotations") or {}).get(_LAST_APPLIED)
    if isinstance(applied, str):
        try:
            document = json.loads(applied)
        except ValueError:
            document = None
        if isinstance(document, Mapping) and isinstance(document.get("apiVersion"), str):
            writers.add(("last-applied-configuration", document["apiVersion"]))
    return WrittenObject(group, resource, _s(obj, "metadata", "namespace"), _s(obj, "metadata", "name"),
                         tuple(sorted(writers)))  # fmt: skip


def blocks_evictions(pdb: PodDisruptionBudget) -> bool:
    """Whether the budget refuses every eviction of a pod it selects (the only case Pods are read for)."""
    return pdb.selector is not None and pdb.disruptions_allowed <= 0


# -- reading ---------------------------------------------------------------------------------------


def read_workload(
    api_client: Sender,
    namespace: str,
    cluster: str,
    *,
    request_timeout: float | None = None,
    removed: Sequence[RemovedApi] = (),
) -> WorkloadRead:
    """What the workload cluster of `namespace/cluster` says; never raises for the workload cluster.
    `removed`: the API versions whose resources' objects are read (`WorkloadFacts.written`).

    Raises only when the management API server itself cannot be reached for the Secret.
    """
    from kubectl_capc.kube.read import fetch_secret

    started = time.monotonic()
    ref = kubeconfig_secret(namespace, cluster)
    answer = fetch_secret(api_client, ref)
    if answer.data is None:
        if answer.invalid:
            reason = f"Secret {ref}: {answer.invalid}"
        elif answer.status == 404:
            reason = f"Secret {ref} not found"
        else:
            reason = f"Secret {ref}: HTTP {answer.status} {answer.reason}"
        return WorkloadRead(WorkloadFacts(unreachable=reason))
    text = answer.data.get(KUBECONFIG_KEY)
    if not text:
        return WorkloadRead(WorkloadFacts(unreachable=f"Secret {ref} has no key {KUBECONFIG_KEY}"))
    try:
        workload = _Workload(_workload_client(text, f"Secret {ref}", request_timeout or DEFAULT_TIMEOUT))
    except _Unusable as err:
        return WorkloadRead(WorkloadFacts(unreachable=str(err)))
    facts = workload.read(removed)
    seconds = time.monotonic() - started
    _log.info(
        "workload cluster %s/%s: %d node(s), %d pod(s), %d PodDisruptionBudget(s) in %d request(s), %.2fs",
        namespace, cluster, len(facts.nodes), len(facts.pods), len(facts.pdbs), workload.requests, seconds,
    )  # fmt: skip
    return WorkloadRead(facts, workload.requests, seconds)


class _Workload:
    """The requests to one workload API server; counts them."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.requests = 0

    def read(self, removed: Sequence[RemovedApi] = ()) -> WorkloadFacts:
        """Nodes, budgets, the metric and the objects of `removed` at once; then the Pods, but only when
        some budget allows no disruption: no other check reads them, and they are most of what a big
        cluster sends."""
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="workload") as pool:
            metrics = pool.submit(self._metrics)
            written = pool.submit(self._written, removed)
            nodes = pool.submit(self._list, "/api/v1/nodes", "", node_from_object)
            budgets = pool.submit(self._list, "/apis/policy/v1/poddisruptionbudgets", "", pdb_from_object)
            try:
                pdbs: list[PodDisruptionBudget] = budgets.result()
                pods = (
                    self._list("/api/v1/pods", EVICTABLE_PODS, pod_from_object)
                    if any(blocks_evictions(pdb) for pdb in pdbs)
                    else []
                )
                listed_nodes = nodes.result()
            except _Unusable as err:
                return WorkloadFacts(unreachable=str(err))
            deprecated, metrics_error = metrics.result()
            objects, written_error = written.result()
        return WorkloadFacts(
            tuple(listed_nodes), tuple(pods), tuple(pdbs), deprecated, metrics_error, objects, written_error
        )

    def _written(self, removed: Sequence[RemovedApi]) -> tuple[tuple[WrittenObject, ...] | None, str]:
        """The metadata of every object of the resources of `removed`, listed in the group's preferred
        version, else the first other one it is served in that is not one of `removed` (which the
        metric would count); a group or resource served in no such version is not read."""
        resources = list(dict.fromkeys((api.group, api.resource) for api in removed))
        skipped = {(api.group, api.resource, api.version) for api in removed}
        if not resources:
            return (), ""
        objects: list[WrittenObject] = []
        try:
            served = self._served_groups()
            for group, resource in resources:
                parse = functools.partial(written_from_object, group, resource)
                versions = served.get(group, [])
                for version in versions:
                    if version != versions[0] and (group, resource, version) in skipped:
                        continue
                    try:
                        objects += self._list(f"/apis/{group}/{version}/{resource}", "", parse,
                                              accept=_METADATA_ONLY, missing_ok=True)  # fmt: skip
                    except _NotServed:
                        continue
                    break
        except _Unusable as err:
            return None, str(err)
        return tuple(objects), ""

    def _served_groups(self) -> dict[str, list[str]]:
        """Each API group's versions from one discovery request, the preferred one first."""
        status, body = self._get("/apis", "application/json")
        if status != 200:
            raise _Unusable(f"GET /apis: HTTP {status} {_status_message(body)}")
        try:
            groups = json.loads(body).get("groups") or []
            served = {}
            for group in groups:
                preferred = str((group.get("preferredVersion") or {}).get("version") or "")
                versions = [str(v.get("version") or "") for v in group.get("versions") or []]
                served[str(group.get("name") or "")] = [v for v in dict.fromkeys([preferred, *versions]) if v]
        except (ValueError, AttributeError):
            raise _Unusable("GET /apis: the answer is not an API group list") from None
        return served

    def _list(
        self,
        path: str,
        field_selector: str,
        parse: Callable[[Mapping[str, Any]], Any],
        *,
        accept: str = "application/json",
        missing_ok: bool = False,
    ) -> list[Any]:
        items: list[Any] = []
        token = ""
        while True:
            query = {"limit": str(PAGE_SIZE)}
            if field_selector:
                query["fieldSelector"] = field_selector
            if token:
                query["continue"] = token
            status, body = self._get(f"{path}?{urllib.parse.urlencode(query)}", accept)
            if status == 404 and missing_ok and not token:
                raise _NotServed(path)
            if status != 200:
                raise _Unusable(f"list {path}: HTTP {status} {_status_message(body)}")
            try:
                page = json.loads(body)
            except ValueError:
                raise _Unusable(f"list {path}: the answer is not JSON") from None
            items.extend(parse(item) for item in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    def _metrics(self) -> tuple[tuple[DeprecatedApiUse, ...] | None, str]:
        try:
            status, body = self._get("/metrics", "text/plain")
        except _Unusable as err:
            return None, str(err)
        if status != 200:
            return None, f"GET /metrics: HTTP {status} {_status_message(body)}"
        try:
            return tuple(parse_deprecated_api_metrics(body.decode("utf-8", "replace"))), ""
        except ValueError as err:
            return None, str(err)

    def _get(self, path: str, accept: str) -> tuple[int, bytes]:
        from kubectl_capc.domain.errors import one_line
        from kubectl_capc.kube.retries import transport_failure

        self.requests += 1
        try:
            response = self.client.send("GET", path, headers={"Accept": accept})
        except Exception as err:  # urllib3's HTTPError, OSError, SSL errors: no answer
            where = path.partition("?")[0]
            failure = one_line(transport_failure(err))
            raise _Unusable(f"GET {where} on {self.client.server}: {failure}") from None
        return int(response.status), bytes(response.data or b"")


def _status_message(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    return str(document.get("message") or document.get("reason") or "") if isinstance(document, dict) else ""


def _workload_client(text: str, where: str, request_timeout: float) -> KubeClient:
    """A client for the kubeconfig `text`'s current context, built in memory."""
    import yaml

    from kubectl_capc.domain.errors import ConfigError
    from kubectl_capc.kube.credentials import credentials_from_document
    from kubectl_capc.kube.rest import KubeClient

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        raise _Unusable(f"{where}: the kubeconfig is not valid YAML") from None
    if not isinstance(document, Mapping):
        raise _Unusable(f"{where}: the kubeconfig is not a mapping")
    try:
        return KubeClient(credentials_from_document(document, where), request_timeout)
    except ConfigError as err:
        raise _Unusable(err.message) from None


# -- small readers ---------------------------------------------------------------------------------


def _s(obj: Mapping[str, Any], *path: str) -> str:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return ""
        value = value.get(key)
    return value if isinstance(value, str) else ""


def _list_at(obj: Mapping[str, Any], *path: str) -> Sequence[Any]:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return ()
        value = value.get(key)
    return value if isinstance(value, list) else ()


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
