"""Workload-cluster preflight: what the workload cluster says, and the checks over it (CAPC-W0xx).

The adapter reads Nodes, Pods, PodDisruptionBudgets, the API server's deprecated-API metric and, with a
target, the metadata of the objects of each built-in resource a version of which the upgrade removes
(`removed_between`), through the cluster's `<cluster>-kubeconfig` Secret into `WorkloadFacts`;
everything here is pure. A rollout
replaces (and drains) every machine of the owners it moves, so the checks ask which nodes those are.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from kubectl_capc.domain.checks.base import Check, Finding, ObjectRef, Severity
from kubectl_capc.domain.machines import Machine
from kubectl_capc.domain.model import ClusterInventory
from kubectl_capc.domain.selectors import LabelSelector
from kubectl_capc.domain.versions import Hop, KubeVersion, kubelet_max_lag, parse_version

__all__ = [
    "API_USAGE_UNREADABLE",
    "CHECKS",
    "DRAIN_BLOCKED",
    "KUBELET_SKEW",
    "MACHINE_WITHOUT_NODE",
    "NODE_NOT_READY",
    "NODE_WITHOUT_MACHINE",
    "NO_DRAIN_TIMEOUT",
    "REMOVED_APIS",
    "REMOVED_BUILTIN_APIS",
    "UNREACHABLE",
    "DeprecatedApiUse",
    "Node",
    "Pod",
    "PodDisruptionBudget",
    "RemovedApi",
    "RolloutScope",
    "WorkloadFacts",
    "WorkloadReading",
    "WrittenObject",
    "check_reading",
    "check_workload",
    "drained_nodes",
    "match_nodes",
    "parse_deprecated_api_metrics",
    "removed_between",
    "rollout_scope",
]

CONTROL_PLANE_KIND = "KubeadmControlPlane"
_SHOWN = 5  # names listed in one message before "+N more"

UNREACHABLE = Check(
    "CAPC-W001",
    Severity.WARNING,
    "Workload cluster unreachable",
    "check the <cluster>-kubeconfig Secret and that the workload API server answers from here; "
    "until then Nodes, PodDisruptionBudgets and API usage are not checked",
)
NODE_NOT_READY = Check(
    "CAPC-W002",
    Severity.ERROR,
    "Nodes are not Ready",
    "repair or replace the nodes first: a drain of a NotReady node can hang and the control plane "
    "does not roll while it is unhealthy",
)
MACHINE_WITHOUT_NODE = Check(
    "CAPC-W003",
    Severity.ERROR,
    "Machine has no Node",
    "find out why the machine's node did not join (kubectl capc status), or delete the machine so that "
    "it is replaced",
)
NODE_WITHOUT_MACHINE = Check(
    "CAPC-W004",
    Severity.WARNING,
    "Node has no Machine",
    "a node Cluster API does not manage is not upgraded and may fall out of the kubelet skew; remove "
    "it or manage it with a MachineDeployment",
)
KUBELET_SKEW = Check(
    "CAPC-W005",
    Severity.ERROR,
    "Kubelet outside the version skew policy during an upgrade hop",
    "upgrade or replace those nodes first: a kubelet must not be newer than the API server nor more "
    "minors older than the skew policy allows",
)
DRAIN_BLOCKED = Check(
    "CAPC-W006",
    Severity.ERROR,
    "PodDisruptionBudget allows no disruption on nodes the rollout drains",
    "scale the workload up, relax the budget (minAvailable/maxUnavailable) or make its pods healthy, "
    "so that at least one disruption is allowed",
)
NO_DRAIN_TIMEOUT = Check(
    "CAPC-W007",
    Severity.WARNING,
    "Machines without nodeDrainTimeout",
    "set nodeDrainTimeout (v1beta1) or deletion.nodeDrainTimeoutSeconds (v1beta2) on the owner's "
    "machine template, so that a blocked drain ends; Machines already deleting keep their old value",
)
REMOVED_APIS = Check(
    "CAPC-W008",
    Severity.ERROR,
    "Workload uses APIs that the target release removes",
    "move the clients and manifests to the replacement API version before upgrading, and write the "
    "objects named once more in that version (kubectl apply of the moved manifest)",
)
API_USAGE_UNREADABLE = Check(
    "CAPC-W009",
    Severity.WARNING,
    "Workload API usage could not be read",
    "allow `get` on the non-resource URL /metrics and `list` on the resources named of the workload "
    "API server, so that removed APIs in use can be found",
)
CHECKS = (
    UNREACHABLE,
    NODE_NOT_READY,
    MACHINE_WITHOUT_NODE,
    NODE_WITHOUT_MACHINE,
    KUBELET_SKEW,
    DRAIN_BLOCKED,
    NO_DRAIN_TIMEOUT,
    REMOVED_APIS,
    API_USAGE_UNREADABLE,
)


@dataclass(frozen=True)
class Node:
    name: str
    ready: bool
    kubelet_version: str
    provider_id: str = ""
    unschedulable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()  # `key=value:Effect`


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    node: str
    labels: dict[str, str] = field(default_factory=dict)
    phase: str = "Running"
    owner_kind: str = ""

    @property
    def evicted_by_drain(self) -> bool:
        """Whether a drain evicts it under its PDB: DaemonSet and mirror (static, owned by the Node)
        pods are skipped, and the Eviction API ignores budgets for Pending, Succeeded and Failed pods."""
        return self.owner_kind not in ("DaemonSet", "Node") and self.phase not in (
            "Pending",
            "Succeeded",
            "Failed",
        )


@dataclass(frozen=True)
class PodDisruptionBudget:
    """`selector` None is a null selector (selects no pod); an empty LabelSelector selects all."""

    namespace: str
    name: str
    selector: LabelSelector | None
    disruptions_allowed: int
    current_healthy: int
    desired_healthy: int
    expected_pods: int

    def selects(self, pod: Pod) -> bool:
        return (
            self.selector is not None
            and pod.namespace == self.namespace
            and self.selector.matches(pod.labels)
        )

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class DeprecatedApiUse:
    """One row of `apiserver_requested_deprecated_apis`; `removed_release` is `MAJOR.MINOR` or empty."""

    group: str
    version: str
    resource: str
    subresource: str = ""
    removed_release: str = ""

    @property
    def label(self) -> str:
        api = f"{self.group}/{self.version}" if self.group else self.version
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{api} {resource}"


@dataclass(frozen=True)
class RemovedApi:
    """A built-in API version that a Kubernetes release stops serving, and the version to use instead."""

    group: str
    version: str
    resource: str
    removed: tuple[int, int]
    replacement: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _removed(release: str, group: str, version: str, replacement: str, *resources: str) -> list[RemovedApi]:
    major, minor = (int(part) for part in release.split("."))
    return [RemovedApi(group, version, resource, (major, minor), replacement) for resource in resources]


_DRA = ("deviceclasses", "resourceclaims", "resourceclaimtemplates", "resourceslices")
REMOVED_BUILTIN_APIS: tuple[RemovedApi, ...] = (
    *_removed("1.25", "batch", "v1beta1", "batch/v1", "cronjobs"),
    *_removed("1.25", "discovery.k8s.io", "v1beta1", "discovery.k8s.io/v1", "endpointslices"),
    *_removed("1.25", "events.k8s.io", "v1beta1", "events.k8s.io/v1", "events"),
    *_removed("1.25", "autoscaling", "v2beta1", "autoscaling/v2", "horizontalpodautoscalers"),
    *_removed("1.25", "policy", "v1beta1", "policy/v1", "poddisruptionbudgets"),
    *_removed("1.25", "node.k8s.io", "v1beta1", "node.k8s.io/v1", "runtimeclasses"),
    *_removed("1.26", "autoscaling", "v2beta2", "autoscaling/v2", "horizontalpodautoscalers"),
    *_removed("1.26", "flowcontrol.apiserver.k8s.io", "v1beta1", "flowcontrol.apiserver.k8s.io/v1beta3",
              "flowschemas", "prioritylevelconfigurations"),
    *_removed("1.27", "storage.k8s.io", "v1beta1", "storage.k8s.io/v1", "csistoragecapacities"),
    *_removed("1.29", "flowcontrol.apiserver.k8s.io", "v1beta2", "flowcontrol.apiserver.k8s.io/v1beta3",
              "flowschemas", "prioritylevelconfigurations"),
    *_removed("1.32", "flowcontrol.apiserver.k8s.io", "v1beta3", "flowcontrol.apiserver.k8s.io/v1",
              "flowschemas", "prioritylevelconfigurations"),
    *_removed("1.34", "admissionregistration.k8s.io", "v1beta1", "admissionregistration.k8s.io/v1",
              "validatingadmissionpolicies", "validatingadmissionpolicybindings"),
    *_removed("1.37", "networking.k8s.io", "v1beta1", "networking.k8s.io/v1", "ipaddresses", "servicecidrs"),
    *_removed("1.37", "storage.k8s.io", "v1beta1", "storage.k8s.io/v1", "volumeattributesclasses"),
    *_removed("1.38", "resource.k8s.io", "v1beta1", "resource.k8s.io/v1", *_DRA),
    *_removed("1.39", "resource.k8s.io", "v1beta2", "resource.k8s.io/v1", *_DRA),
)  # fmt: skip
"""Built-in API versions removed since v1.25 whose replacement is stable, with the release that removes
them (each type's prerelease lifecycle in k8s.io/api). Reviews, Scale and Eviction are not stored."""


def removed_between(current: KubeVersion, target: KubeVersion | tuple[int, int]) -> tuple[RemovedApi, ...]:
    """The built-in API versions removed after `current`'s minor and up to `target`'s."""
    up_to = target if isinstance(target, tuple) else (target.major, target.minor)
    return tuple(api for api in REMOVED_BUILTIN_APIS if (current.major, current.minor) < api.removed <= up_to)


@dataclass(frozen=True)
class WrittenObject:
    """An object of a built-in resource, and the API version each of its writers last used: per field
    manager, its newest managedFields entry, and kubectl's last-applied-configuration (writer
    `last-applied-configuration`). The server stores every object in its own storage version; a writer
    that still writes it in a removed version fails once that version is gone."""

    group: str
    resource: str
    namespace: str
    name: str
    writers: tuple[tuple[str, str], ...] = ()  # (writer, apiVersion)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def writers_of(self, api_version: str) -> list[str]:
        return sorted({writer for writer, version in self.writers if version == api_version})


@dataclass(frozen=True)
class WorkloadFacts:
    """What was read from the workload cluster; `unreachable` is the reason nothing could be read.

    `deprecated_apis` None means the metric could not be read (`metrics_error` says why). `written` holds
    the objects of the resources asked for (`removed_between`); None means some could not be listed
    (`written_error` says why).
    """

    nodes: tuple[Node, ...] = ()
    pods: tuple[Pod, ...] = ()
    pdbs: tuple[PodDisruptionBudget, ...] = ()
    deprecated_apis: tuple[DeprecatedApiUse, ...] | None = ()
    metrics_error: str = ""
    written: tuple[WrittenObject, ...] | None = ()
    written_error: str = ""
    unreachable: str = ""


@dataclass(frozen=True)
class WorkloadReading:
    """One cluster's workload facts and its Machines, as validate gathers them."""

    facts: WorkloadFacts
    machines: tuple[Machine, ...] = ()


@dataclass(frozen=True)
class RolloutScope:
    """Which owners a rollout replaces: the control plane and/or these MachineDeployments."""

    control_plane: bool
    deployments: frozenset[str]

    def replaces(self, machine: Machine) -> bool:
        if machine.owner_kind == CONTROL_PLANE_KIND:
            return self.control_plane
        return machine.owner_name in self.deployments


def rollout_scope(hops: Iterable[Hop]) -> RolloutScope:
    hops = tuple(hops)
    return RolloutScope(
        any(hop.moves_control_plane for hop in hops),
        frozenset(move.name for hop in hops for move in hop.workers),
    )


def match_nodes(machines: Iterable[Machine], nodes: Iterable[Node]) -> dict[str, Node]:
    """Machine name -> its Node: by providerID, else by the Machine's nodeRef name."""
    by_provider = {node.provider_id: node for node in nodes if node.provider_id}
    by_name = {node.name: node for node in nodes}
    matched = {}
    for machine in machines:
        node = (by_provider.get(machine.provider_id) if machine.provider_id else None) or (
            by_name.get(machine.node_ref) if machine.node_ref else None
        )
        if node is not None:
            matched[machine.name] = node
    return matched


def drained_nodes(machines: Iterable[Machine], nodes: Iterable[Node], scope: RolloutScope) -> set[str]:
    """Names of the nodes the rollout drains: those of the machines it replaces."""
    machines = [m for m in machines if scope.replaces(m)]
    return {node.name for node in match_nodes(machines, nodes).values()}


def check_workload(
    cluster: ObjectRef,
    facts: WorkloadFacts,
    machines: Sequence[Machine],
    hops: Sequence[Hop],
    current: KubeVersion,
) -> list[Finding]:
    """Every workload finding for one cluster; `current` is the control plane's version and `hops` the
    plan (empty without a target). Machines being deleted are left out of the Node matching."""
    scope = rollout_scope(hops)
    findings = [*_drain_timeouts(machines, scope)]
    if facts.unreachable:
        what = "Node readiness and matching, kubelet versions, PodDisruptionBudgets and removed APIs"
        message = f"workload cluster unreachable ({facts.unreachable}): {what} were not checked"
        return [UNREACHABLE.finding(cluster, message), *findings]
    live = [m for m in machines if m.deleting_since is None]
    findings += _not_ready(cluster, facts.nodes)
    findings += _matching(live, facts.nodes)
    findings += _kubelet_skew(cluster, live, facts.nodes, hops, current)
    findings += _blocking_pdbs(facts, drained_nodes(live, facts.nodes, scope))
    findings += _removed_apis(cluster, facts, hops, current)
    return findings


def check_reading(
    inventory: ClusterInventory, reading: WorkloadReading, hops: Sequence[Hop]
) -> list[Finding]:
    """`check_workload` for an inventory; nothing when its control plane's version is unknown (the
    cluster checks report that)."""
    control_plane = inventory.control_plane
    try:
        current = parse_version(control_plane.version) if control_plane is not None else None
    except ValueError:
        current = None
    if current is None:
        return []
    cluster = ObjectRef("Cluster", inventory.namespace, inventory.name)
    return check_workload(cluster, reading.facts, reading.machines, hops, current)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown} (+{len(names) - _SHOWN} more)"


def _not_ready(cluster: ObjectRef, nodes: Iterable[Node]) -> list[Finding]:
    names = sorted(node.name for node in nodes if not node.ready)
    if not names:
        return []
    return [NODE_NOT_READY.finding(cluster, f"{len(names)} node(s) not Ready: {_listed(names)}")]


def _matching(machines: Sequence[Machine], nodes: Sequence[Node]) -> list[Finding]:
    matched = match_nodes(machines, nodes)
    findings = []
    for machine in machines:
        if machine.name not in matched:
            shown = machine.node_ref or machine.provider_id
            detail = f" (nodeRef/providerID {shown} not found)" if shown else " (no nodeRef yet)"
            findings.append(
                MACHINE_WITHOUT_NODE.finding(
                    ObjectRef("Machine", machine.namespace, machine.name),
                    f"Machine {machine.name} has no Node in the workload cluster{detail}",
                )
            )
    owned = {node.name for node in matched.values()}
    for node in sorted(nodes, key=lambda n: n.name):
        if node.name not in owned:
            findings.append(
                NODE_WITHOUT_MACHINE.finding(
                    ObjectRef("Node", "", node.name),
                    f"Node {node.name} matches no Machine of the cluster (providerID "
                    f"{node.provider_id or 'unset'})",
                )
            )
    return findings


def _kubelet_skew(
    cluster: ObjectRef,
    machines: Sequence[Machine],
    nodes: Sequence[Node],
    hops: Sequence[Hop],
    current: KubeVersion,
) -> list[Finding]:
    """Each node's kubelet against the API server before the upgrade and after each control-plane move,
    until the hop that replaces its machine (the control plane moves first within a hop, so its old
    kubelets still meet the new API server)."""
    owner = {node.name: machine for machine, node in _machine_of_node(machines, nodes)}
    problems: dict[tuple[str, str], list[str]] = {}
    for node in nodes:
        try:
            kubelet = parse_version(node.kubelet_version)
        except ValueError:
            problems.setdefault((f"unreadable kubelet version {node.kubelet_version!r}", ""), []).append(
                node.name
            )
            continue
        machine = owner.get(node.name)
        stages: list[tuple[KubeVersion, str]] = [(current, "now")]
        for hop in hops:
            if hop.moves_control_plane:
                stages.append((hop.version, f"during the {hop.version} hop"))
            if machine is not None and _hop_replaces(hop, machine):
                break
        for apiserver, when in stages:
            problem = _skew_problem(kubelet, apiserver)
            if problem is not None:
                problems.setdefault((f"kubelet {kubelet} {problem} {apiserver}", when), []).append(node.name)
                break
    return [
        KUBELET_SKEW.finding(cluster, f"{what}{' ' + when if when else ''}: node(s) {_listed(sorted(names))}")
        for (what, when), names in problems.items()
    ]


def _machine_of_node(machines: Sequence[Machine], nodes: Sequence[Node]) -> list[tuple[Machine, Node]]:
    matched = match_nodes(machines, nodes)
    return [(machine, matched[machine.name]) for machine in machines if machine.name in matched]


def _hop_replaces(hop: Hop, machine: Machine) -> bool:
    if machine.owner_kind == CONTROL_PLANE_KIND:
        return hop.moves_control_plane
    return any(move.name == machine.owner_name for move in hop.workers)


def _skew_problem(kubelet: KubeVersion, apiserver: KubeVersion) -> str | None:
    if (kubelet.major, kubelet.minor) > (apiserver.major, apiserver.minor):
        return "is newer than the API server"
    lag = kubelet_max_lag(apiserver.minor)
    if kubelet.major != apiserver.major or apiserver.minor - kubelet.minor > lag:
        return f"is more than {lag} minors older than the API server"
    return None


def _blocking_pdbs(facts: WorkloadFacts, drained: Collection[str]) -> list[Finding]:
    pods_by_namespace: dict[str, list[Pod]] = {}
    for pod in facts.pods:
        if pod.node in drained and pod.evicted_by_drain:
            pods_by_namespace.setdefault(pod.namespace, []).append(pod)
    findings = []
    for pdb in sorted(facts.pdbs, key=lambda p: p.label):
        if pdb.disruptions_allowed > 0:
            continue
        pods = [pod for pod in pods_by_namespace.get(pdb.namespace, ()) if pdb.selects(pod)]
        if not pods:
            continue
        names = sorted(f"{pod.namespace}/{pod.name}" for pod in pods)
        nodes = sorted({pod.node for pod in pods})
        findings.append(
            DRAIN_BLOCKED.finding(
                ObjectRef("PodDisruptionBudget", pdb.namespace, pdb.name),
                f"PodDisruptionBudget {pdb.label} allows no disruption ({pdb.current_healthy} healthy, "
                f"needs {pdb.desired_healthy}): the drain of node(s) {_listed(nodes)} cannot evict "
                f"pod(s) {_listed(names)}",
            )
        )
    return findings


def _drain_timeouts(machines: Sequence[Machine], scope: RolloutScope) -> list[Finding]:
    waiting: dict[tuple[str, str, str], list[str]] = {}
    for machine in machines:
        if scope.replaces(machine) and machine.drain_timeout_seconds == 0:
            key = (machine.owner_kind, machine.namespace, machine.owner_name)
            waiting.setdefault(key, []).append(machine.name)
    return [
        NO_DRAIN_TIMEOUT.finding(
            ObjectRef(kind, namespace, name),
            f"machine(s) {_listed(sorted(names))} have no nodeDrainTimeout: a blocked drain waits forever",
        )
        for (kind, namespace, name), names in sorted(waiting.items())
    ]


_RELEASE_RE = re.compile(r"v?(\d+)\.(\d+)")


def _removed_apis(
    cluster: ObjectRef, facts: WorkloadFacts, hops: Sequence[Hop], current: KubeVersion
) -> list[Finding]:
    """Removed APIs still requested (the metric) and objects still written in them (their metadata);
    what could not be read is a warning of its own."""
    findings = []
    if facts.deprecated_apis is None:
        reason = f" ({facts.metrics_error})" if facts.metrics_error else ""
        findings.append(
            API_USAGE_UNREADABLE.finding(
                cluster,
                f"the apiserver_requested_deprecated_apis metric{reason} "
                "could not be read: removed APIs in use were not checked",
            )
        )
    if not hops:
        return findings
    if facts.written is None:
        findings.append(
            API_USAGE_UNREADABLE.finding(
                cluster,
                f"the objects of the resources the upgrade removes a version of could not be listed "
                f"({facts.written_error}): objects written in removed versions were not checked",
            )
        )
    target = max(hop.version for hop in hops)
    findings += _removed_requests(cluster, facts.deprecated_apis or (), current, target)
    findings += _written_in_removed(cluster, facts.written or (), current, target)
    return findings


def _removed_requests(
    cluster: ObjectRef, uses: Sequence[DeprecatedApiUse], current: KubeVersion, target: KubeVersion
) -> list[Finding]:
    removed: dict[tuple[int, int], set[str]] = {}
    for use in uses:
        match = _RELEASE_RE.fullmatch(use.removed_release)
        if match is None:
            continue
        release = (int(match[1]), int(match[2]))
        if (current.major, current.minor) < release <= (target.major, target.minor):
            removed.setdefault(release, set()).add(use.label)
    return [
        REMOVED_APIS.finding(
            cluster,
            f"the workload still requests {_listed(sorted(apis))}, removed in v{major}.{minor} "
            f"(upgrade to {target})",
        )
        for (major, minor), apis in sorted(removed.items())
    ]


def _written_in_removed(
    cluster: ObjectRef, written: Sequence[WrittenObject], current: KubeVersion, target: KubeVersion
) -> list[Finding]:
    findings = []
    for api in removed_between(current, target):
        names = sorted(
            f"{obj.label} ({', '.join(writers)})"
            for obj in written
            if (obj.group, obj.resource) == (api.group, api.resource)
            and (writers := obj.writers_of(api.api_version))
        )
        if names:
            major, minor = api.removed
            findings.append(
                REMOVED_APIS.finding(
                    cluster,
                    f"{len(names)} object(s) of {api.resource} were written as {api.api_version}, removed in "
                    f"v{major}.{minor} (upgrade to {target}): {_listed(names)}; write them as "
                    f"{api.replacement}",
                )
            )
    return findings


_METRIC = "apiserver_requested_deprecated_apis"
_SAMPLE_RE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?"
)
_LABEL_RE = re.compile(r'\s*(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*(?:,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_deprecated_api_metrics(text: str) -> list[DeprecatedApiUse]:
    """The deprecated APIs requested, from a /metrics scrape in the Prometheus text format.

    Only samples of `apiserver_requested_deprecated_apis` with a value of at least 1 count; labels may
    come in any order and carry `\\\\`, `\\"` and `\\n` escapes. Each API appears once, in first-seen order.
    Raises ValueError for a malformed sample of that metric.
    """
    seen: dict[DeprecatedApiUse, None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith(_METRIC) or line[len(_METRIC) : len(_METRIC) + 1] not in ("{", " ", "\t"):
            continue
        match = _SAMPLE_RE.fullmatch(line)
        if match is None:
            raise ValueError(f"malformed {_METRIC} sample: {line[:80]!r}")
        try:
            value = float(match["value"])
        except ValueError:
            raise ValueError(f"malformed {_METRIC} value: {match['value'][:20]!r}") from None
        if not value >= 1:
            continue
        labels = _labels(match["labels"] or "", line)
        use = DeprecatedApiUse(
            labels.get("group", ""),
            labels.get("version", ""),
            labels.get("resource", ""),
            labels.get("subresource", ""),
            labels.get("removed_release", ""),
        )
        seen.setdefault(use, None)
    return list(seen)


def _labels(text: str, line: str) -> dict[str, str]:
    labels = {}
    position = 0
    while position < len(text.rstrip()):
        match = _LABEL_RE.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"malformed {_METRIC} labels: {line[:80]!r}")
        labels[match["key"]] = re.sub(r"\\.", lambda m: _ESCAPES.get(m[0], m[0]), match["value"])
        position = match.end()
    return labels
