"""CloudStack headroom for a rollout's surge machines (CAPC-R001).

CAPC checks limits one VM at a time, just before it deploys it; a rollout needs room for its surge
machines all at once. Assumption: the control plane rolls first and the MachineDeployments roll one
after another, so the peak need at each level (account, domain, project) is that of the single step --
the control plane's surge machine, or one deployment's surge machines -- that needs the most of each
resource. Old machines are deleted only after their replacements run, so the surge adds to what exists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from kubectl_capc.domain.checks.base import Check, Finding, ObjectRef, Severity
from kubectl_capc.domain.checks.facts import Facts, Query, Tenant
from kubectl_capc.domain.checks.facts import Resource as Asked
from kubectl_capc.domain.checks.limits import Level, Resource, ResourceCount, ScopeLimits, parse_count
from kubectl_capc.domain.checks.templates import template_query
from kubectl_capc.domain.checks.zone import ZonedDomain, zoned_domains
from kubectl_capc.domain.model import (
    ClusterInventory,
    FailureDomain,
    MachineTemplate,
    RolloutStrategy,
    scaled_count,
)
from kubectl_capc.domain.versions import TargetVersion

__all__ = [
    "CHECKS",
    "NO_HEADROOM",
    "Level",
    "MachineShape",
    "Resource",
    "ResourceCount",
    "ScopeLimits",
    "Step",
    "capacity_queries",
    "check_capacity",
    "check_rollout_capacity",
    "control_plane_surge",
    "deployment_surge",
    "parse_count",
    "resolve_max_surge",
]

NO_HEADROOM = Check(
    "CAPC-R001",
    Severity.ERROR,
    "Not enough CloudStack capacity for the rollout's surge machines",
    "raise the limit (updateResourceLimit), free resources, or lower maxSurge so fewer machines roll at once",
)
CHECKS = (NO_HEADROOM,)


@dataclass(frozen=True)
class MachineShape:
    """What one machine takes: the offering's cpunumber and memory (MiB), and its disks (GiB)."""

    cpus: int
    memory_mib: int
    disk_gib: int

    def need(self, machines: int) -> dict[Resource, int]:
        return {
            Resource.VM: machines,
            Resource.CPU: machines * self.cpus,
            Resource.MEMORY: machines * self.memory_mib,
            Resource.PRIMARY_STORAGE: machines * self.disk_gib,
        }


@dataclass(frozen=True)
class Step:
    """One owner's roll: `surge` machines of `shape` at once, placed in the scopes of `placement`
    (the account, and its domain and project, of the failure domain the machines land in)."""

    owner: ObjectRef
    surge: int
    shape: MachineShape
    placement: tuple[ScopeLimits, ...]


def resolve_max_surge(max_surge: int | str | None, replicas: int) -> int:
    """Machines a MachineDeployment adds at once: maxSurge (default 1) as a count, or a percentage of
    replicas rounded up as Cluster API does, and never more than the replicas it replaces."""
    try:
        surge = 1 if max_surge is None else scaled_count(max_surge, replicas, round_up=True)
    except ValueError as err:
        raise ValueError(f"maxSurge {err}") from None
    return max(min(surge, replicas), 0)


def deployment_surge(strategy: RolloutStrategy, replicas: int) -> int:
    """The machines a MachineDeployment adds at once: none with OnDelete (a machine is created only once
    an old one is gone), else maxSurge; a value CAPI would not accept counts as its default of one."""
    if strategy.on_delete:
        return 0
    try:
        return resolve_max_surge(strategy.max_surge, replicas)
    except ValueError:
        return resolve_max_surge(None, replicas)


def control_plane_surge(max_surge: int | str | None, replicas: int | None) -> int:
    """A KubeadmControlPlane surges 0 or 1 machine (default 1; maxSurge 0 removes an old one first)."""
    try:
        surge = resolve_max_surge(max_surge, 1 if replicas is None else max(replicas, 1))
    except ValueError:
        surge = 1
    return min(surge, 1)


def check_capacity(steps: Sequence[Step], subject: ObjectRef) -> list[Finding]:
    """One finding per scope and resource whose free amount is below the peak step's need."""
    scopes: dict[tuple[Level, str], ScopeLimits] = {}
    peak: dict[tuple[Level, str, Resource], tuple[int, Step]] = {}
    for step in steps:
        if step.surge == 0:
            continue
        for scope in step.placement:
            scopes[(scope.level, scope.name)] = scope
            for resource, amount in step.shape.need(step.surge).items():
                key = (scope.level, scope.name, resource)
                if amount > peak.get(key, (0, step))[0]:
                    peak[key] = (amount, step)
    findings = []
    for (level, name, resource), (need, step) in peak.items():
        count = scopes[(level, name)].counts.get(resource)
        free = None if count is None else count.free
        if free is not None and need > free:
            findings.append(
                NO_HEADROOM.finding(
                    subject,
                    f"{level.value} {name} has {free} {resource.unit} free; the rollout needs {need} at its "
                    f"peak ({step.owner}: {step.surge} surge machine(s))",
                )
            )
    return findings


# -- the rollout of one cluster, from gathered facts -------------------------------------------------


def check_rollout_capacity(
    inventory: ClusterInventory, facts: Facts, target: TargetVersion | None
) -> list[Finding]:
    """CAPC-R001 for an upgrade to `target`: the control plane's surge machine and each MachineDeployment's
    surge machines, placed in the tenants (account, domain, project) of the failure domains they may land
    in. Nothing is judged without a target, or where a shape or the limits were not read."""
    if target is None or not facts.limits:
        return []
    zoned = {z.failure_domain.name: z for z in zoned_domains(inventory, facts)}
    everywhere = tuple(inventory.failure_domains)
    steps: list[Step] = []
    control_plane = inventory.control_plane
    if control_plane is not None and control_plane.machine_template is not None:
        kind = control_plane.kind or "KubeadmControlPlane"
        owner = ObjectRef(kind, control_plane.namespace, control_plane.name)
        surge = control_plane_surge(control_plane.max_surge, control_plane.replicas.desired)
        template = control_plane.machine_template
        steps += _steps(owner, surge, template=template, domains=everywhere, zoned=zoned, facts=facts)
    for md in inventory.machine_deployments:
        if md.machine_template is None or md.paused:
            continue
        domains = tuple(fd for fd in everywhere if fd.name == md.failure_domain) or everywhere
        replicas = 1 if md.replicas.desired is None else md.replicas.desired  # CAPI's default
        owner = ObjectRef("MachineDeployment", md.namespace, md.name)
        surge = deployment_surge(md.strategy, replicas)
        steps += _steps(owner, surge, template=md.machine_template, domains=domains, zoned=zoned, facts=facts)
    subject = ObjectRef("Cluster", inventory.namespace, inventory.name)
    return check_capacity(steps, subject)


def _steps(
    owner: ObjectRef,
    surge: int,
    *,
    template: MachineTemplate,
    domains: Sequence[FailureDomain],
    zoned: Mapping[str, ZonedDomain],
    facts: Facts,
) -> list[Step]:
    """The step of `owner` adding `surge` machines, once per distinct tenant its machines may land in,
    with the machine's shape and the tenant's limits (the worst case counts)."""
    steps: dict[Tenant, Step] = {}
    for fd in domains:
        tenant = Tenant.of(fd)
        placement = facts.limits.get(tenant)
        zone = zoned.get(fd.name)
        if tenant in steps or not placement or zone is None:
            continue
        shape = _shape(template, fd, zone.zone_id, facts)
        if shape is not None:
            steps[tenant] = Step(owner, surge, shape, placement)
    return list(steps.values())


def capacity_queries(inventory: ClusterInventory, facts: Facts) -> Iterator[tuple[FailureDomain, Query]]:
    """What the machine shapes need once zones are resolved: service offerings, templates, disk offerings
    (validate asks these anyway; an upgrade's preflight asks only these)."""
    for zoned in zoned_domains(inventory, facts):
        for template in inventory.machine_templates_in_use():
            for query in _shape_queries(template, zoned.zone_id):
                if query is not None:
                    yield zoned.failure_domain, query


def _shape_queries(template: MachineTemplate, zone_id: str) -> tuple[Query, Query | None, Query | None]:
    """The service offering's, the template's and the data disk offering's list calls."""
    offering = template.offering
    by_offering = (
        Query(Asked.SERVICE_OFFERING, id=offering.id)
        if offering.id
        else Query(Asked.SERVICE_OFFERING, name=offering.name, zone_id=zone_id)
    )
    image = template.cloudstack_template
    by_image = template_query(image, zone_id) if image.is_set else None
    data = template.disk_offering
    by_disk = None
    if data is not None and not data.custom_size_gb:
        ref = data.offering
        by_disk = (
            Query(Asked.DISK_OFFERING, name=ref.name, zone_id=zone_id)
            if ref.name
            else Query(Asked.DISK_OFFERING, id=ref.id)
        )
    return by_offering, by_image, by_disk


def _shape(template: MachineTemplate, fd: FailureDomain, zone_id: str, facts: Facts) -> MachineShape | None:
    """What one machine of `template` takes, from the lookups validation made; None when unknown.

    The root disk is the size of the template the machine template names today (at least 1 GiB, as
    CloudStack sizes it); the new node image is taken to be about as large."""
    by_offering, by_image, by_disk = _shape_queries(template, zone_id)
    lookup = facts.lookup(fd, by_offering)
    if lookup is None or lookup.failed or len(lookup.rows) != 1:
        return None
    cpus, memory = lookup.rows[0].cpus, lookup.rows[0].memory_mib
    disk = 0
    if by_image is not None:
        found = facts.lookup(fd, by_image)
        sizes = [row.size_gib for row in (found.rows if found is not None else ()) if row.zone_id == zone_id]
        disk += max([*sizes, 1])
    if template.disk_offering is not None and template.disk_offering.custom_size_gb:
        disk += template.disk_offering.custom_size_gb
    elif by_disk is not None:
        found = facts.lookup(fd, by_disk)
        disk += max((row.size_gib for row in (found.rows if found is not None else ())), default=0)
    return MachineShape(cpus, memory, disk)
