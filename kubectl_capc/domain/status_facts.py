"""What `kubectl capc status` reads, turned into the rollout doctor's inputs (pure).

The adapters LIST Machines, CloudStackMachines and MachineHealthChecks as raw objects (either Cluster API
shape) and ask CloudStack, per zone, for its virtual machines and templates; this module joins them per
cluster and calls `diagnose`. A VM's state as CloudStack lists it wins over the CloudStackMachine's copy
of it (CAPC refreshes that copy only when it reconciles).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from kubectl_capc.domain.checks.workload import WorkloadFacts
from kubectl_capc.domain.diagnosis import (
    InfraMachine,
    OwnerSpec,
    RolloutStatus,
    TemplateReadiness,
    diagnose,
)
from kubectl_capc.domain.inventory import capi_version_of
from kubectl_capc.domain.machines import Machine
from kubectl_capc.domain.model import (
    CLUSTER_NAME_LABEL,
    CONTROL_PLANE_LABEL,
    CONTROL_PLANE_NAME_LABEL,
    DEPLOYMENT_NAME_LABEL,
    KUBEADM_CONTROL_PLANE_KIND,
    ClusterInventory,
    Condition,
)
from kubectl_capc.domain.selectors import LabelSelector, Operator, Requirement

__all__ = [
    "HealthCheck",
    "VirtualMachineState",
    "ZoneFacts",
    "cluster_status",
    "owner_specs",
    "parse_health_check",
    "parse_infra_machine",
    "parse_machine",
    "parse_selector",
    "parse_time",
]

Obj = Mapping[str, Any]


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _str(obj: Any, *path: str) -> str:
    value = _get(obj, *path)
    return value if isinstance(value, str) else ""


def _map(obj: Any, *path: str) -> Mapping[str, Any]:
    value = _get(obj, *path)
    return value if isinstance(value, Mapping) else {}


def _list(obj: Any, *path: str) -> list[Any]:
    value = _get(obj, *path)
    return list(value) if isinstance(value, list) else []


def parse_time(text: str) -> datetime | None:
    """A metav1.Time (RFC 3339, `Z` or an offset); None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _conditions(raw: Iterable[Any]) -> tuple[Condition, ...]:
    return tuple(
        Condition(
            _str(item, "type"),
            _str(item, "status"),
            _str(item, "reason"),
            _str(item, "message"),
            parse_time(_str(item, "lastTransitionTime")),
        )
        for item in raw
        if isinstance(item, Mapping) and _str(item, "type")
    )


def _all_conditions(obj: Obj) -> tuple[Condition, ...]:
    """Both condition flavours of a Machine: v1beta2 objects keep the old ones under
    `status.deprecated.v1beta1`, v1beta1 objects the new ones under `status.v1beta2`."""
    if capi_version_of(obj) == "v1beta2":
        other = _list(obj, "status", "deprecated", "v1beta1", "conditions")
    else:
        other = _list(obj, "status", "v1beta2", "conditions")
    return (*_conditions(_list(obj, "status", "conditions")), *_conditions(other))


def parse_machine(obj: Obj) -> Machine:
    """A raw Machine (v1beta1 or v1beta2) as the doctor and the workload checks read it."""
    labels = _map(obj, "metadata", "labels")
    if CONTROL_PLANE_LABEL in labels or CONTROL_PLANE_NAME_LABEL in labels:
        owner_kind, owner_name = KUBEADM_CONTROL_PLANE_KIND, str(labels.get(CONTROL_PLANE_NAME_LABEL, ""))
    elif DEPLOYMENT_NAME_LABEL in labels:
        owner_kind, owner_name = "MachineDeployment", str(labels.get(DEPLOYMENT_NAME_LABEL, ""))
    else:  # no CAPI labels: the first owner reference, if any (a MachineSet, say)
        owner = next((o for o in _list(obj, "metadata", "ownerReferences") if isinstance(o, Mapping)), {})
        owner_kind, owner_name = str(owner.get("kind", "")), str(owner.get("name", ""))
    if capi_version_of(obj) == "v1beta2":
        raw_timeout = _get(obj, "spec", "deletion", "nodeDrainTimeoutSeconds")
        timeout: str | int | None = raw_timeout if isinstance(raw_timeout, int) else None
    else:
        timeout = _str(obj, "spec", "nodeDrainTimeout") or None
    return Machine(
        name=_str(obj, "metadata", "name"),
        namespace=_str(obj, "metadata", "namespace"),
        owner_kind=owner_kind,
        owner_name=owner_name,
        version=_str(obj, "spec", "version"),
        provider_id=_str(obj, "spec", "providerID"),
        node_ref=_str(obj, "status", "nodeRef", "name"),
        phase=_str(obj, "status", "phase"),
        failure_domain=_str(obj, "spec", "failureDomain") or _str(obj, "status", "failureDomain"),
        created=parse_time(_str(obj, "metadata", "creationTimestamp")),
        deleting_since=parse_time(_str(obj, "metadata", "deletionTimestamp")),
        conditions=_all_conditions(obj),
        node_drain_timeout=timeout,
        drain_started=parse_time(_str(obj, "status", "deletion", "nodeDrainStartTime")),
        volume_detach_started=parse_time(_str(obj, "status", "deletion", "waitForNodeVolumeDetachStartTime")),
    )


@dataclass(frozen=True)
class VirtualMachineState:
    """One listVirtualMachines row: what CloudStack says about a VM."""

    id: str
    name: str
    state: str
    zone: str  # zone name


@dataclass(frozen=True)
class ZoneFacts:
    """What CloudStack answered for the zones of one cluster's failure domains.

    `checked` names the zones that were asked (by zone name); `vms` holds every VM listed there and
    `templates` every template, keyed by (template name or id, zone name). Machines in other zones get
    their VM state from their CloudStackMachine only.
    """

    checked: frozenset[str] = frozenset()
    vms: tuple[VirtualMachineState, ...] = ()
    templates: Mapping[tuple[str, str], TemplateReadiness] = field(default_factory=dict)


def parse_infra_machine(obj: Obj, zones: Mapping[str, str], facts: ZoneFacts) -> InfraMachine:
    """A CloudStackMachine: its VM's state (CloudStack's, else the object's copy), CAPC's failure reason,
    its template and the zone of its failure domain (`zones`: failure domain name -> zone name).

    A VM CAPC recorded (`spec.instanceID`) that its zone no longer lists is reported as such.
    """
    zone = zones.get(_str(obj, "spec", "failureDomainName"), "")
    template = _str(obj, "spec", "template", "name") or _str(obj, "spec", "template", "id")
    state = _str(obj, "status", "instanceState")
    failure = _str(obj, "status", "reason") if _str(obj, "status", "status") == "Failure" else ""
    instance = _str(obj, "spec", "instanceID")
    name = _str(obj, "metadata", "name")
    if zone in facts.checked:
        listed = [vm for vm in facts.vms if vm.zone == zone]
        vm = next((v for v in listed if instance and v.id == instance), None)
        if vm is None and not instance:
            vm = next((v for v in listed if v.name == name), None)
        if vm is not None:
            state = vm.state
        elif instance and state not in ("", "Expunging", "Expunged", "Destroyed"):
            failure = failure or f"VM {instance} is not listed in zone {zone} any more"
    return InfraMachine(state, failure, template, zone)


@dataclass(frozen=True)
class HealthCheck:
    """A MachineHealthCheck: the Machines of `cluster` its selector picks."""

    namespace: str
    name: str
    cluster: str
    selector: LabelSelector

    def watches(self, namespace: str, cluster: str, labels: Mapping[str, str]) -> bool:
        return (self.namespace, self.cluster) == (namespace, cluster) and self.selector.matches(labels)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_selector(raw: Any) -> LabelSelector | None:
    """A metav1.LabelSelector; None when it is absent or not understood."""
    if not isinstance(raw, Mapping):
        return None
    try:
        requirements = tuple(
            Requirement(
                _str(item, "key"),
                Operator(_str(item, "operator")),
                frozenset(str(v) for v in _list(item, "values")),
            )
            for item in _list(raw, "matchExpressions")
        )
    except ValueError:
        return None
    labels = {str(k): str(v) for k, v in _map(raw, "matchLabels").items()}
    return LabelSelector(labels, requirements)


def parse_health_check(obj: Obj) -> HealthCheck | None:
    selector = parse_selector(_get(obj, "spec", "selector"))
    if selector is None:
        return None
    return HealthCheck(
        _str(obj, "metadata", "namespace"),
        _str(obj, "metadata", "name"),
        _str(obj, "spec", "clusterName"),
        selector,
    )


def owner_specs(inventory: ClusterInventory) -> tuple[OwnerSpec, ...]:
    """The control plane, then each MachineDeployment, with the version and template its spec asks for."""
    owners = []
    if inventory.control_plane is not None:
        cp = inventory.control_plane
        owners.append(
            OwnerSpec(
                KUBEADM_CONTROL_PLANE_KIND, cp.namespace, cp.name, cp.version, cp.infrastructure_ref.name
            )
        )
    for md in inventory.machine_deployments:
        owners.append(
            OwnerSpec("MachineDeployment", md.namespace, md.name, md.version, md.infrastructure_ref.name)
        )
    return tuple(owners)


def _belongs(obj: Obj, inventory: ClusterInventory) -> bool:
    labels = _map(obj, "metadata", "labels")
    cluster = _str(obj, "spec", "clusterName") or str(labels.get(CLUSTER_NAME_LABEL, ""))
    return (_str(obj, "metadata", "namespace"), cluster) == (inventory.namespace, inventory.name)


def _infra_name(machine: Obj) -> str:
    return _str(machine, "spec", "infrastructureRef", "name") or _str(machine, "metadata", "name")


def cluster_status(
    inventory: ClusterInventory,
    machines: Sequence[Obj],
    cloudstack_machines: Sequence[Obj],
    health_checks: Sequence[HealthCheck],
    *,
    zones: ZoneFacts,
    workload: WorkloadFacts | None,
    now: datetime,
    join_timeout: timedelta = timedelta(minutes=10),
) -> RolloutStatus:
    """The doctor's verdict for one cluster from everything read (objects of other clusters are skipped).

    A machine held by MachineHealthCheck remediation is named with the check that watches it.
    """
    mine = [m for m in machines if _belongs(m, inventory)]
    infra_by_name = {
        _str(csm, "metadata", "name"): csm
        for csm in cloudstack_machines
        if _str(csm, "metadata", "namespace") == inventory.namespace
    }
    zone_of = {fd.name: fd.zone.name or fd.zone.id for fd in inventory.failure_domains}
    infra = {
        _str(m, "metadata", "name"): parse_infra_machine(infra_by_name[_infra_name(m)], zone_of, zones)
        for m in mine
        if _infra_name(m) in infra_by_name
    }
    status = diagnose(
        inventory.namespace,
        inventory.name,
        owner_specs(inventory),
        [parse_machine(m) for m in mine],
        infra=infra,
        workload=workload,
        templates=zones.templates,
        now=now,
        join_timeout=join_timeout,
        built_from={m.name: m.machine_template for m in inventory.machines},
    )
    checks = {
        _str(m, "metadata", "name"): check
        for m in mine
        for check in health_checks
        if check.watches(inventory.namespace, inventory.name, _map(m, "metadata", "labels"))
    }
    return _name_health_checks(status, checks)


_REMEDIATION = "MachineHealthCheck remediation in progress"


def _name_health_checks(status: RolloutStatus, checks: Mapping[str, HealthCheck]) -> RolloutStatus:
    owners = []
    for owner in status.owners:
        machines = tuple(
            replace(m, cause=f"MachineHealthCheck {checks[m.name].label} remediation in progress")
            if m.cause == _REMEDIATION and m.name in checks
            else m
            for m in owner.machines
        )
        owners.append(replace(owner, machines=machines))
    return replace(status, owners=tuple(owners))
