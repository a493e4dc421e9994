"""Version-free, immutable inventory of CAPC workload clusters as read from a management cluster.

CAPI serves its objects as v1beta1 (CAPI <= 1.10) or v1beta2 (CAPI >= 1.11) and the two shapes differ
(references, status fields, conditions). Everything downstream of the reader -- describe, validate and
the upgrade planner -- works on these types only, so the version split is handled once, in
`kubectl_capc.domain.inventory`. All types are frozen; nested raw data is deep-frozen with `FrozenDict`/tuples
and turned back into plain JSON-like data with `thaw` when a manifest has to be cloned.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

CapiVersion = Literal["v1beta1", "v1beta2"]

CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
CONTROL_PLANE_LABEL = "cluster.x-k8s.io/control-plane"
CONTROL_PLANE_NAME_LABEL = "cluster.x-k8s.io/control-plane-name"
DEPLOYMENT_NAME_LABEL = "cluster.x-k8s.io/deployment-name"
PAUSED_ANNOTATION = "cluster.x-k8s.io/paused"
CLONED_FROM_NAME = "cluster.x-k8s.io/cloned-from-name"
CLONED_FROM_GROUPKIND = "cluster.x-k8s.io/cloned-from-groupkind"
TOPOLOGY_OWNED_LABEL = "topology.cluster.x-k8s.io/owned"

CLUSTER_GROUP = "cluster.x-k8s.io"
CONTROL_PLANE_GROUP = "controlplane.cluster.x-k8s.io"
BOOTSTRAP_GROUP = "bootstrap.cluster.x-k8s.io"
INFRASTRUCTURE_GROUP = "infrastructure.cluster.x-k8s.io"
CLOUDSTACK_MACHINE_TEMPLATE_KIND = "CloudStackMachineTemplate"
CLOUDSTACK_CLUSTER_KIND = "CloudStackCluster"
KUBEADM_CONTROL_PLANE_KIND = "KubeadmControlPlane"
KUBEADM_CONFIG_TEMPLATE_KIND = "KubeadmConfigTemplate"


class FrozenDict(Mapping[str, Any]):
    """A hashable, read-only mapping; values are frozen by `freeze`."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = {key: freeze(value) for key, value in (data or {}).items()}
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"


def freeze(value: Any) -> Any:
    """Deep-freeze JSON-like data: dicts become `FrozenDict`, lists become tuples."""
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of `freeze`: fresh, mutable dicts and lists safe to edit and send to the API."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


def normalize_version(version: str) -> str:
    """Kubernetes versions as CAPI stores them: with a leading `v` (its defaulting webhooks add it)."""
    version = version.strip()
    if version and not version.startswith("v"):
        return "v" + version
    return version


@dataclass(frozen=True)
class Ref:
    """A reference to another object with the API version dropped (the v1beta2 shape).

    `namespace` is the referencing object's namespace unless a v1beta1 reference named another one.
    """

    group: str
    kind: str
    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Condition:
    """One status condition, in either CAPI condition flavour (`status.conditions`, `status.v1beta2`,
    `status.deprecated.v1beta1`): the types differ between the flavours, so one list can hold all."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None

    @property
    def is_true(self) -> bool:
        return self.status == "True"


def find_condition(conditions: tuple[Condition, ...], condition_type: str) -> Condition | None:
    return next((c for c in conditions if c.type == condition_type), None)


@dataclass(frozen=True)
class CloudStackResource:
    """A CloudStack object named as CAPC names it: by id, by name or both (`{id, name}`)."""

    id: str = ""
    name: str = ""

    @property
    def is_set(self) -> bool:
        return bool(self.id or self.name)

    def __str__(self) -> str:
        if self.id and self.name:
            return f"{self.name} ({self.id})"
        return self.name or self.id or "-"


@dataclass(frozen=True)
class DiskOffering:
    offering: CloudStackResource
    custom_size_gb: int = 0
    mount_path: str = ""
    device: str = ""
    filesystem: str = ""
    label: str = ""


@dataclass(frozen=True)
class MachineNetwork:
    """An entry of the v1beta3-only `networks` list, which overrides the failure domain's network."""

    name: str
    id: str = ""
    ip: str = ""


@dataclass(frozen=True)
class MachineTemplate:
    """A CloudStackMachineTemplate (read at v1beta3), with the full object kept for cloning."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    cloudstack_template: CloudStackResource
    offering: CloudStackResource
    disk_offering: DiskOffering | None
    ssh_key: str
    affinity: str
    affinity_group_ids: tuple[str, ...]
    details: FrozenDict
    networks: tuple[MachineNetwork, ...]
    failure_domain_name: str
    labels: FrozenDict
    annotations: FrozenDict
    manifest: FrozenDict = field(repr=False)

    @property
    def spec(self) -> FrozenDict:
        """`spec.template.spec` as stored: what a clone copies and what the webhooks compare."""
        template = self.manifest.get("spec", FrozenDict()).get("template", FrozenDict())
        spec: FrozenDict = template.get("spec", FrozenDict())
        return spec

    def clone_manifest(self) -> dict[str, Any]:
        """A mutable deep copy of the whole object, ready for a caller to rename and strip."""
        copy: dict[str, Any] = thaw(self.manifest)
        return copy


@dataclass(frozen=True)
class BootstrapTemplate:
    """The bootstrap config template a MachineDeployment points at (KubeadmConfigTemplate)."""

    namespace: str
    name: str
    kind: str
    resource_version: str
    manifest: FrozenDict = field(repr=False)


@dataclass(frozen=True)
class SecretRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Network:
    id: str = ""
    name: str = ""
    type: str = ""

    def __str__(self) -> str:
        return str(CloudStackResource(self.id, self.name))


@dataclass(frozen=True)
class FailureDomain:
    """One `CloudStackCluster.spec.failureDomains[]` entry: where and as whom CAPC creates VMs."""

    name: str
    zone: CloudStackResource
    network: Network
    account: str
    domain: str
    project: str
    credentials: SecretRef


@dataclass(frozen=True)
class CloudStackCluster:
    namespace: str
    name: str
    resource_version: str
    failure_domains: tuple[FailureDomain, ...]
    endpoint_host: str
    endpoint_port: int
    ready: bool


@dataclass(frozen=True)
class Replicas:
    """Replica counts with the same meaning in both CAPI versions.

    `up_to_date` is v1beta2 `upToDateReplicas` or v1beta1 `updatedReplicas`; `available` is
    `availableReplicas`, or `replicas - unavailableReplicas` for a v1beta1 control plane.
    `desired` is `spec.replicas` (None when unset and not yet defaulted).
    """

    desired: int | None
    current: int = 0
    ready: int = 0
    up_to_date: int = 0
    available: int = 0

    @property
    def settled(self) -> bool:
        """Every desired replica exists, is up to date, ready and available, and no extra one remains."""
        want = self.desired if self.desired is not None else self.current
        return self.current == self.up_to_date == self.ready == self.available == want


ROLLING_UPDATE = "RollingUpdate"
ON_DELETE = "OnDelete"


def scaled_count(value: int | str, replicas: int, *, round_up: bool) -> int:
    """A maxSurge/maxUnavailable value as a machine count, as CAPI scales an int-or-percent: an int as
    it is, a percentage of `replicas` rounded up (maxSurge) or down (maxUnavailable). Raises ValueError
    for text that is neither."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    if not text.endswith("%") or not text[:-1].isdigit():
        raise ValueError(f"{value!r} is neither a number nor a percentage like 25%")
    scaled = int(text[:-1]) * max(replicas, 0)
    return -(-scaled // 100) if round_up else scaled // 100


def resolve_fencepost(value: int | str, replicas: int, *, round_up: bool) -> int:
    """`scaled_count`, never negative; a malformed value counts as 0."""
    try:
        return max(scaled_count(value, replicas, round_up=round_up), 0)
    except ValueError:
        return 0


@dataclass(frozen=True)
class RolloutStrategy:
    """How a MachineDeployment replaces its Machines (v1beta1 `spec.strategy`, v1beta2
    `spec.rollout.strategy`), with CAPI's defaults: RollingUpdate, maxSurge 1, maxUnavailable 0.

    With OnDelete, CAPI replaces a Machine only once someone deletes it; maxSurge and maxUnavailable
    are kept as written (an int or a percentage such as "25%").
    """

    type: str = ROLLING_UPDATE
    max_surge: int | str = 1
    max_unavailable: int | str = 0

    @property
    def on_delete(self) -> bool:
        return self.type == ON_DELETE

    def unavailable_allowed(self, replicas: int) -> int:
        """maxUnavailable as a machine count for `replicas` desired machines."""
        return resolve_fencepost(self.max_unavailable, replicas, round_up=False)

    def __str__(self) -> str:
        if self.on_delete:
            return ON_DELETE
        return f"{self.type} (maxSurge {self.max_surge}, maxUnavailable {self.max_unavailable})"

    def to_document(self) -> dict[str, Any]:
        return {"type": self.type, "maxSurge": self.max_surge, "maxUnavailable": self.max_unavailable}


@dataclass(frozen=True)
class VersionCount:
    """One `status.versions[]` entry (CAPI >= 1.14): how many machines run a version."""

    version: str
    replicas: int


class MachineRole(str, enum.Enum):
    CONTROL_PLANE = "control-plane"
    WORKER = "worker"


def built_from_another(built: str, wanted: str) -> bool:
    """Whether a Machine built from CloudStackMachineTemplate `built` is not one of `wanted`; an unknown
    template (empty) on either side tells nothing."""
    return bool(built and wanted and built != wanted)


@dataclass(frozen=True)
class Machine:
    """A CAPI Machine: the version really running somewhere, and who owns it.

    `owner` is the control plane's name (control-plane role) or the MachineDeployment's name (worker
    role), taken from the labels CAPI sets; empty when neither label is present.
    """

    namespace: str
    name: str
    role: MachineRole
    owner: str
    version: str
    node_version: str
    failure_domain: str
    phase: str
    node_name: str
    infrastructure_ref: Ref | None
    deleting: bool
    node_ready: bool | None = None
    """The Machine's `NodeReady` condition (v1beta1: `NodeHealthy`); None when it reports neither."""
    machine_template: str = ""
    """The CloudStackMachineTemplate the Machine was built from: the cloned-from annotation of its
    CloudStackMachine; empty when that is not known (no CloudStackMachine read, or no annotation)."""

    def outdated(self, version: str, template: str = "") -> bool:
        """Whether the Machine runs another version than `version`, or was built from another
        CloudStackMachineTemplate than `template` (only when both templates are known: a change of
        image alone keeps the version)."""
        if normalize_version(self.version) != normalize_version(version):
            return True
        return built_from_another(self.machine_template, template)

    @property
    def ready(self) -> bool:
        """Running with a Node that is Ready (or that reports no readiness condition), not deleting."""
        return (
            not self.deleting
            and self.phase == "Running"
            and bool(self.node_name)
            and self.node_ready is not False
        )


class _RolloutOwner:
    """What a KubeadmControlPlane and a MachineDeployment share: conditions and rollout progress."""

    version: str
    generation: int
    observed_generation: int
    status_versions: tuple[VersionCount, ...]
    replicas: Replicas
    rolling_out: bool
    conditions: tuple[Condition, ...]

    def condition(self, condition_type: str) -> Condition | None:
        return find_condition(self.conditions, condition_type)

    @property
    def observed(self) -> bool:
        """The controller has seen the latest spec (status is about the current generation)."""
        return self.observed_generation >= self.generation

    @property
    def versions_reported(self) -> tuple[str, ...]:
        """Versions the controller reports running (`status.versions`)."""
        return tuple(v.version for v in self.status_versions)

    def rollout_in_progress(self) -> bool:
        """True while machines are still being replaced or the spec change is not yet picked up."""
        if self.rolling_out or not self.observed or not self.replicas.settled:
            return True
        return any(normalize_version(v) != normalize_version(self.version) for v in self.versions_reported)


@dataclass(frozen=True)
class ControlPlane(_RolloutOwner):
    """A KubeadmControlPlane and the CloudStackMachineTemplate it clones machines from."""

    namespace: str
    name: str
    kind: str
    resource_version: str
    generation: int
    observed_generation: int
    version: str
    status_version: str
    status_versions: tuple[VersionCount, ...]
    replicas: Replicas
    infrastructure_ref: Ref
    machine_template: MachineTemplate | None
    paused: bool
    topology_owned: bool
    rolling_out: bool
    conditions: tuple[Condition, ...]
    annotations: FrozenDict = field(default_factory=FrozenDict)
    labels: FrozenDict = field(default_factory=FrozenDict)
    max_surge: int | str = 1
    """The rolling update's maxSurge as written (v1beta1 `spec.rolloutStrategy`, v1beta2
    `spec.rollout.strategy`); Cluster API allows 0 or 1 and defaults to 1."""

    @property
    def versions_reported(self) -> tuple[str, ...]:
        """Versions the controller reports running: `status.versions`, else `status.version`."""
        if self.status_versions:
            return tuple(v.version for v in self.status_versions)
        return (self.status_version,) if self.status_version else ()


@dataclass(frozen=True)
class MachineDeployment(_RolloutOwner):
    namespace: str
    name: str
    cluster_name: str
    resource_version: str
    generation: int
    observed_generation: int
    version: str
    status_versions: tuple[VersionCount, ...]
    replicas: Replicas
    infrastructure_ref: Ref
    machine_template: MachineTemplate | None
    bootstrap_ref: Ref | None
    bootstrap_template: BootstrapTemplate | None
    failure_domain: str
    phase: str
    paused: bool
    topology_owned: bool
    rolling_out: bool
    conditions: tuple[Condition, ...]
    labels: FrozenDict
    annotations: FrozenDict
    strategy: RolloutStrategy = field(default_factory=RolloutStrategy)


@dataclass(frozen=True)
class Topology:
    """`Cluster.spec.topology`: the cluster is managed through a ClusterClass."""

    class_name: str
    class_namespace: str
    version: str


@dataclass(frozen=True)
class Cluster:
    namespace: str
    name: str
    uid: str
    resource_version: str
    paused: bool
    phase: str
    topology: Topology | None
    infrastructure_ref: Ref | None
    control_plane_ref: Ref | None
    conditions: tuple[Condition, ...]
    labels: FrozenDict = field(default_factory=FrozenDict)
    annotations: FrozenDict = field(default_factory=FrozenDict)

    @property
    def topology_managed(self) -> bool:
        return self.topology is not None


@dataclass(frozen=True)
class CloudStackTemplateRow:
    """One `listTemplates` row: a CloudStack template as registered in one zone."""

    id: str
    name: str
    zone_id: str
    zone_name: str
    ready: bool
    status: str = ""


ZoneTemplates = Mapping[str, tuple[CloudStackTemplateRow, ...]]
"""Failure-domain name -> the templates CloudStack lists as executable in that domain's zone, for that
domain's credentials (account/domain/project). Keyed by failure domain rather than zone because the
visibility of a template depends on who asks."""


@dataclass(frozen=True)
class Problem:
    """Something the reader could not resolve (a dangling reference, an unsupported kind)."""

    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass(frozen=True)
class ClusterInventory:
    """One workload cluster with everything an upgrade touches.

    `namespace_templates` holds every CloudStackMachineTemplate in the cluster's namespace (also the ones
    no object uses), so a planner can detect name collisions and reuse an identical existing template.
    """

    capi_version: CapiVersion
    cluster: Cluster
    control_plane: ControlPlane | None
    infrastructure: CloudStackCluster | None
    machine_deployments: tuple[MachineDeployment, ...]
    machines: tuple[Machine, ...]
    namespace_templates: tuple[MachineTemplate, ...]
    problems: tuple[Problem, ...]

    @property
    def namespace(self) -> str:
        return self.cluster.namespace

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def failure_domains(self) -> tuple[FailureDomain, ...]:
        return self.infrastructure.failure_domains if self.infrastructure else ()

    @property
    def paused(self) -> bool:
        """The Cluster, its control plane or any MachineDeployment is paused."""
        return (
            self.cluster.paused
            or (self.control_plane is not None and self.control_plane.paused)
            or any(md.paused for md in self.machine_deployments)
        )

    def machine_templates_in_use(self) -> tuple[MachineTemplate, ...]:
        """The CloudStackMachineTemplates the control plane and MachineDeployments point at, once each."""
        seen: dict[str, MachineTemplate] = {}
        control_plane = [self.control_plane.machine_template] if self.control_plane else []
        for template in [*control_plane, *(md.machine_template for md in self.machine_deployments)]:
            if template is not None:
                seen.setdefault(template.name, template)
        return tuple(seen.values())

    def template_named(self, name: str) -> MachineTemplate | None:
        return next((t for t in self.namespace_templates if t.name == name), None)

    def control_plane_machines(self) -> tuple[Machine, ...]:
        return tuple(m for m in self.machines if m.role is MachineRole.CONTROL_PLANE)

    def machines_of(self, deployment: MachineDeployment) -> tuple[Machine, ...]:
        return tuple(m for m in self.machines if m.role is MachineRole.WORKER and m.owner == deployment.name)

    def machines_behind(
        self, deployment: MachineDeployment, target: tuple[str, str] | None = None
    ) -> tuple[Machine, ...]:
        """The deployment's Machines, not being deleted, that are `Machine.outdated` for `target`
        (version, CloudStackMachineTemplate name); default: its spec's."""
        version, template = target or (deployment.version, deployment.infrastructure_ref.name)
        return tuple(
            m for m in self.machines_of(deployment) if not m.deleting and m.outdated(version, template)
        )

    def machines_off_spec(self) -> tuple[Machine, ...]:
        """Machines whose version differs from their owner's spec version (a rollout not finished)."""
        wanted: dict[tuple[MachineRole, str], str] = {}
        if self.control_plane is not None:
            wanted[(MachineRole.CONTROL_PLANE, self.control_plane.name)] = self.control_plane.version
        for md in self.machine_deployments:
            wanted[(MachineRole.WORKER, md.name)] = md.version
        return tuple(
            m
            for m in self.machines
            if (m.role, m.owner) in wanted
            and normalize_version(m.version) != normalize_version(wanted[(m.role, m.owner)])
        )

    def rollout_in_progress(self) -> bool:
        """Any owner is mid-rollout by its own status, or a machine is not at its owner's version."""
        if self.control_plane is not None and self.control_plane.rollout_in_progress():
            return True
        if any(md.rollout_in_progress() for md in self.machine_deployments):
            return True
        return bool(self.machines_off_spec())
