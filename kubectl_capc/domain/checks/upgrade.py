"""Checks for `--to VERSION`: no downgrade, the hops the upgrade takes, and a template for every hop.

The hops come from `kubectl_capc.domain.versions.plan_hops` (one control-plane minor at a time, workers
following). The template each hop needs is named by the convention of the current one
(`kubectl_capc.domain.naming.template_name_for`) and must already be a single, ready, executable template in
the zone of every failure domain, as CAPC will look it up by name there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from kubectl_capc.domain.checks.base import Check, Finding, ObjectRef, Severity
from kubectl_capc.domain.checks.common import TemplateUser, template_ref, template_users
from kubectl_capc.domain.checks.credentials import CLOUDSTACK_FAILED
from kubectl_capc.domain.checks.facts import Facts, Query, Resource, Row
from kubectl_capc.domain.checks.zone import ZonedDomain, zoned_domains
from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.model import ClusterInventory, FailureDomain, MachineTemplate
from kubectl_capc.domain.naming import TemplateName, parse_template_name, template_name_for
from kubectl_capc.domain.versions import (
    Hop,
    KubeVersion,
    TargetVersion,
    plan_hops,
    version_or_none,
)

__all__ = [
    "DOWNGRADE",
    "HOP_TEMPLATE_MISSING",
    "INVALID_TARGET",
    "MULTIPLE_HOPS",
    "PAUSED_FOR_UPGRADE",
    "UNNAMED_TARGET_TEMPLATE",
    "catalog_queries",
    "check_target",
]

INVALID_TARGET = Check(
    "CAPC-U001",
    Severity.ERROR,
    "--to is not a Kubernetes version",
    "write the target as v1.MINOR or v1.MINOR.PATCH, e.g. --to v1.29 or --to v1.29.3",
)
DOWNGRADE = Check(
    "CAPC-U002",
    Severity.ERROR,
    "Target version is older than what runs",
    "Kubernetes does not support downgrades: pick a version at or above every object's version",
)
MULTIPLE_HOPS = Check(
    "CAPC-U003",
    Severity.WARNING,
    "Upgrade takes more than one control-plane hop",
    "expected for a jump of several minors: the upgrade goes one minor at a time, so it takes longer",
)
HOP_TEMPLATE_MISSING = Check(
    "CAPC-U004",
    Severity.ERROR,
    "No usable template for an upgrade hop",
    "build and register the template first (kubectl capc image register), in every failure-domain zone",
)
UNNAMED_TARGET_TEMPLATE = Check(
    "CAPC-U005",
    Severity.WARNING,
    "Cannot tell which template an upgrade would use",
    "the template name does not follow <os>-kube-vX.Y.Z[-hypervisor]; name the new template "
    "explicitly when upgrading",
)

PAUSED_FOR_UPGRADE = Check(
    "CAPC-U006",
    Severity.ERROR,
    "Paused object blocks the upgrade",
    "remove the cluster.x-k8s.io/paused annotation or set spec.paused to false first: image-upgrade "
    "refuses a cluster with a paused object, whose controller would never roll it out",
)


def catalog_query(zone_id: str) -> Query:
    """Every executable template of a zone: what upgrade hops can choose from."""
    return Query(Resource.TEMPLATE, zone_id=zone_id)


def catalog_queries(
    inventory: ClusterInventory, facts: Facts, target: TargetVersion | None
) -> Iterator[tuple[FailureDomain, Query]]:
    if target is None:
        return
    for zoned in zoned_domains(inventory, facts):
        yield zoned.failure_domain, catalog_query(zoned.zone_id)


def check_target(inventory: ClusterInventory, facts: Facts, target: TargetVersion | None) -> list[Finding]:
    if target is None:
        return []
    return [*_paused(inventory, target), *_target_findings(inventory, facts, target)]


def _paused(inventory: ClusterInventory, target: TargetVersion) -> list[Finding]:
    """What image-upgrade refuses as a plan blocker: the Cluster, its control plane or a MachineDeployment
    paused."""
    subjects = [ObjectRef("Cluster", inventory.namespace, inventory.name)] if inventory.cluster.paused else []
    control_plane = inventory.control_plane
    if control_plane is not None and control_plane.paused:
        subjects.append(ObjectRef(control_plane.kind, control_plane.namespace, control_plane.name))
    subjects.extend(
        ObjectRef("MachineDeployment", md.namespace, md.name)
        for md in inventory.machine_deployments
        if md.paused
    )
    return [
        PAUSED_FOR_UPGRADE.finding(subject, f"paused: image-upgrade --to {target} refuses to start")
        for subject in subjects
    ]


def _target_findings(inventory: ClusterInventory, facts: Facts, target: TargetVersion) -> list[Finding]:
    control_plane = inventory.control_plane
    if control_plane is None or inventory.cluster.topology is not None:
        return []
    cp = version_or_none(control_plane.version)
    if cp is None:
        return []
    cp_subject = ObjectRef(control_plane.kind, control_plane.namespace, control_plane.name)
    workers = {
        md.name: v for md in inventory.machine_deployments if (v := version_or_none(md.version)) is not None
    }
    versions = {
        cp_subject: cp,
        **{ObjectRef("MachineDeployment", inventory.namespace, name): v for name, v in workers.items()},
    }
    downgrades = _downgrades(versions, target)
    if downgrades:
        return downgrades

    zoned = zoned_domains(inventory, facts)
    catalogs, findings = _catalogs(inventory, zoned, facts)
    if catalogs is None:
        return findings
    users = list(template_users(inventory))
    families = _families(users, catalogs)
    unnamed = {user.template.name: user.template for user in users if user.template.name not in families}
    findings.extend(
        UNNAMED_TARGET_TEMPLATE.finding(
            template_ref(template),
            f"template {template.cloudstack_template} does not follow the <os>-kube-vX.Y.Z naming, so the "
            f"{target} template cannot be derived from it",
        )
        for template in unnamed.values()
    )
    available = _available(families.values(), zoned, catalogs)
    try:
        hops = plan_hops(cp, workers, target, available)
    except PlanError as err:
        findings.append(HOP_TEMPLATE_MISSING.finding(cp_subject, err.message, hint=err.hint))
        return findings
    control_plane_hops = [hop for hop in hops if hop.moves_control_plane]
    if len(control_plane_hops) > 1:
        path = " → ".join([str(cp), *(str(hop.version) for hop in control_plane_hops)])
        findings.append(
            MULTIPLE_HOPS.finding(
                cp_subject,
                f"reaching {target} takes {len(control_plane_hops)} control-plane upgrades ({path}): "
                f"Kubernetes upgrades one minor at a time",
            )
        )
    findings.extend(
        _hop_template_findings(
            inventory, hops, users=users, families=families, zoned=zoned, catalogs=catalogs
        )
    )
    return findings


def _downgrades(versions: Mapping[ObjectRef, KubeVersion], target: TargetVersion) -> list[Finding]:
    findings = []
    for subject, version in versions.items():
        if version.major != target.major:
            findings.append(DOWNGRADE.finding(subject, f"runs {version}; {target} is another major version"))
        elif (target.exact is not None and target.exact < version) or (
            target.exact is None and target.minor < version.minor
        ):
            findings.append(DOWNGRADE.finding(subject, f"runs {version}, newer than the target {target}"))
    return findings


Catalogs = Mapping[str, tuple[Row, ...]]
"""Failure-domain name -> the executable templates listed in its zone."""


def _catalogs(
    inventory: ClusterInventory, zoned: list[ZonedDomain], facts: Facts
) -> tuple[Catalogs | None, list[Finding]]:
    catalogs: dict[str, tuple[Row, ...]] = {}
    findings = []
    for domain in zoned:
        lookup = facts.lookup(domain.failure_domain, catalog_query(domain.zone_id))
        if lookup is None:
            continue
        if lookup.failed:
            findings.append(
                CLOUDSTACK_FAILED.finding(
                    ObjectRef("Cluster", inventory.namespace, inventory.name),
                    f"listing the templates of {domain.label} failed: {lookup.error}",
                    failure_domain=domain.failure_domain.name,
                )
            )
            continue
        catalogs[domain.failure_domain.name] = lookup.rows
    if findings or not zoned:
        return None, findings
    return catalogs, findings


def _families(users: Iterable[TemplateUser], catalogs: Catalogs) -> dict[str, TemplateName]:
    """Machine template name -> the naming family of its current CloudStack template, when conventional."""
    names_by_id = {row.id: row.name for rows in catalogs.values() for row in rows}
    out = {}
    for user in users:
        ref = user.template.cloudstack_template
        parsed = parse_template_name(ref.name or names_by_id.get(ref.id, ""))
        if parsed is not None:
            out[user.template.name] = parsed
    return out


def _usable(rows: Iterable[Row], name: str) -> list[Row]:
    return [row for row in rows if row.name.lower() == name.lower()]


def _available(
    families: Iterable[TemplateName], zoned: list[ZonedDomain], catalogs: Catalogs
) -> set[KubeVersion]:
    """Versions for which every family in use has exactly one ready template in every zone."""
    family_list = list(families)
    if not family_list:
        return set()
    candidates = {
        parsed.version
        for rows in catalogs.values()
        for row in rows
        if (parsed := parse_template_name(row.name)) is not None
    }
    available = set()
    for version in candidates:
        if all(
            _verdict(_usable(catalogs.get(domain.failure_domain.name, ()), str(family.with_version(version))))
            is None
            for family in family_list
            for domain in zoned
        ):
            available.add(version)
    return available


def _verdict(rows: list[Row]) -> str | None:
    """Why these rows are not one usable template, or None when they are."""
    if not rows:
        return "is not registered"
    if len(rows) > 1:
        return f"is registered {len(rows)} times (CAPC needs exactly one)"
    if not rows[0].ready:
        return f"is not ready ({rows[0].status or 'no status'})"
    return None


def _hop_template_findings(
    inventory: ClusterInventory,
    hops: Iterable[Hop],
    *,
    users: list[TemplateUser],
    families: Mapping[str, TemplateName],
    zoned: list[ZonedDomain],
    catalogs: Catalogs,
) -> list[Finding]:
    by_subject = {user.subject: user.template for user in users}
    control_plane = inventory.control_plane
    findings = []
    seen: set[tuple[str, str, str]] = set()
    for hop in hops:
        moving: list[tuple[ObjectRef, MachineTemplate | None]] = []
        if hop.moves_control_plane and control_plane is not None:
            subject = ObjectRef(control_plane.kind, control_plane.namespace, control_plane.name)
            moving.append((subject, by_subject.get(subject)))
        for move in hop.workers:
            subject = ObjectRef("MachineDeployment", inventory.namespace, move.name)
            moving.append((subject, by_subject.get(subject)))
        for subject, template in moving:
            if template is None or template.name not in families:
                continue
            wanted = template_name_for(str(families[template.name]), hop.version)
            for domain in zoned:
                key = (wanted, domain.failure_domain.name, subject.name)
                problem = _verdict(_usable(catalogs.get(domain.failure_domain.name, ()), wanted))
                if problem is None or key in seen:
                    continue
                seen.add(key)
                findings.append(
                    HOP_TEMPLATE_MISSING.finding(
                        subject,
                        f"the {hop.version} hop needs template {wanted!r}, which {problem} in {domain.label}",
                        failure_domain=domain.failure_domain.name,
                    )
                )
    return findings


def planned_hops(inventory: ClusterInventory, facts: Facts, target: TargetVersion | None) -> tuple[Hop, ...]:
    """The hops an upgrade to `target` takes, for the checks that follow a plan (the workload ones).

    Planned as `check_target` plans them, from the templates the zones hold; when those cannot tell
    (a catalog not read, no release patch found), one hop per minor at the target's patch, or .0: the
    minors are what the version skew depends on. No target, a downgrade or no version: no hops.
    """
    control_plane = inventory.control_plane
    if target is None or control_plane is None or inventory.cluster.topology is not None:
        return ()
    cp = version_or_none(control_plane.version)
    if cp is None:
        return ()
    workers = {
        md.name: v for md in inventory.machine_deployments if (v := version_or_none(md.version)) is not None
    }
    subjects = {ObjectRef("MachineDeployment", inventory.namespace, n): v for n, v in workers.items()}
    if _downgrades({ObjectRef("", "", ""): cp, **subjects}, target):
        return ()
    zoned = zoned_domains(inventory, facts)
    catalogs, _ = _catalogs(inventory, zoned, facts)
    if catalogs is not None:
        families = _families(template_users(inventory), catalogs)
        try:
            return plan_hops(cp, workers, target, _available(families.values(), zoned, catalogs))
        except PlanError:
            pass
    steps = {KubeVersion(cp.major, minor, 0) for minor in range(cp.minor + 1, target.minor)}
    steps.add(target.exact or KubeVersion(target.major, target.minor, 0))
    try:
        return plan_hops(cp, workers, target, steps)
    except PlanError:
        return ()
