"""Checks that what each machine template names besides its image exists where CAPC deploys it.

Service offering: by id (no zone; a name, if also set, must match) or by name within the failure
domain's zone, exactly one. Disk offering: by name within the zone (an id, if also set, must match) or
by id; a customized offering needs `customSizeInGB` > 0 and a fixed-size one must leave it 0.
Affinity groups by id and the SSH key pair by name, as the failure domain's account sees them.
"""

from __future__ import annotations

from collections.abc import Iterator

from kubectl_capc.domain.checks.base import Check, Finding, ObjectRef, Severity
from kubectl_capc.domain.checks.common import template_ref
from kubectl_capc.domain.checks.credentials import CLOUDSTACK_FAILED
from kubectl_capc.domain.checks.facts import Facts, Lookup, Query, Resource
from kubectl_capc.domain.checks.zone import ZonedDomain, zoned_domains
from kubectl_capc.domain.model import CloudStackResource, ClusterInventory, FailureDomain, MachineTemplate

__all__ = [
    "AFFINITY_GROUP_MISSING",
    "DISK_OFFERING_MISSING",
    "DISK_SIZE_MISMATCH",
    "SERVICE_OFFERING_MISSING",
    "SSH_KEY_MISSING",
    "check_offerings",
    "offering_queries",
]

SERVICE_OFFERING_MISSING = Check(
    "CAPC-O001",
    Severity.ERROR,
    "Service offering not found",
    "fix the machine template's offering, or make the offering available in the zone",
)
DISK_OFFERING_MISSING = Check(
    "CAPC-O002",
    Severity.ERROR,
    "Disk offering not found",
    "fix the machine template's diskOffering, or make the offering available in the zone",
)
DISK_SIZE_MISMATCH = Check(
    "CAPC-O003",
    Severity.ERROR,
    "Disk size does not fit the disk offering",
    "set diskOffering.customSizeInGB for a customized offering, and leave it 0 for a fixed-size one",
)
AFFINITY_GROUP_MISSING = Check(
    "CAPC-O004",
    Severity.ERROR,
    "Affinity group not found",
    "create the affinity group for the failure domain's account or remove its id from affinityGroupIDs",
)
SSH_KEY_MISSING = Check(
    "CAPC-O005",
    Severity.ERROR,
    "SSH key pair not found",
    "register the key pair for the failure domain's account (registerSSHKeyPair) or fix sshKey",
)


def _service_offering_query(offering: CloudStackResource, zone_id: str) -> Query:
    if offering.id:
        return Query(Resource.SERVICE_OFFERING, id=offering.id)
    return Query(Resource.SERVICE_OFFERING, name=offering.name, zone_id=zone_id)


def _disk_offering_query(offering: CloudStackResource, zone_id: str) -> Query:
    if offering.name:
        return Query(Resource.DISK_OFFERING, name=offering.name, zone_id=zone_id)
    return Query(Resource.DISK_OFFERING, id=offering.id)


def _template_queries(template: MachineTemplate, zone_id: str) -> Iterator[Query]:
    if template.offering.is_set:
        yield _service_offering_query(template.offering, zone_id)
    if template.disk_offering is not None:
        yield _disk_offering_query(template.disk_offering.offering, zone_id)
    for group_id in template.affinity_group_ids:
        yield Query(Resource.AFFINITY_GROUP, id=group_id)
    if template.ssh_key:
        yield Query(Resource.SSH_KEY_PAIR, name=template.ssh_key)


def offering_queries(inventory: ClusterInventory, facts: Facts) -> Iterator[tuple[FailureDomain, Query]]:
    for zoned in zoned_domains(inventory, facts):
        for template in inventory.machine_templates_in_use():
            for query in _template_queries(template, zoned.zone_id):
                yield zoned.failure_domain, query


def check_offerings(inventory: ClusterInventory, facts: Facts) -> list[Finding]:
    findings: list[Finding] = []
    for zoned in zoned_domains(inventory, facts):
        for template in inventory.machine_templates_in_use():
            findings.extend(_template_findings(template, zoned, facts))
    return findings


def _template_findings(template: MachineTemplate, zoned: ZonedDomain, facts: Facts) -> list[Finding]:
    subject = template_ref(template)
    fd = zoned.failure_domain
    findings: list[Finding] = []

    def ask(query: Query, what: str) -> Lookup | None:
        lookup = facts.lookup(fd, query)
        if lookup is not None and lookup.failed:
            findings.append(
                CLOUDSTACK_FAILED.finding(
                    subject, f"listing {what} failed: {lookup.error}", failure_domain=fd.name
                )
            )
            return None
        return lookup

    if template.offering.is_set:
        lookup = ask(_service_offering_query(template.offering, zoned.zone_id), "service offerings")
        if lookup is not None:
            problem = _one(template.offering, lookup, zoned, zone_scoped=not template.offering.id)
            if problem:
                findings.append(SERVICE_OFFERING_MISSING.finding(subject, problem, failure_domain=fd.name))
    if template.disk_offering is not None:
        disk = template.disk_offering
        lookup = ask(_disk_offering_query(disk.offering, zoned.zone_id), "disk offerings")
        if lookup is not None:
            problem = _one(disk.offering, lookup, zoned, zone_scoped=bool(disk.offering.name), name_wins=True)
            if problem:
                findings.append(DISK_OFFERING_MISSING.finding(subject, problem, failure_domain=fd.name))
            else:
                findings.extend(_disk_size(subject, disk.offering, disk.custom_size_gb, lookup, fd.name))
    for group_id in template.affinity_group_ids:
        lookup = ask(Query(Resource.AFFINITY_GROUP, id=group_id), "affinity groups")
        if lookup is not None and not lookup.rows:
            findings.append(
                AFFINITY_GROUP_MISSING.finding(
                    subject,
                    f"no affinity group with id {group_id} for the failure domain's account",
                    failure_domain=fd.name,
                )
            )
    if template.ssh_key:
        lookup = ask(Query(Resource.SSH_KEY_PAIR, name=template.ssh_key), "SSH key pairs")
        if lookup is not None and not lookup.rows:
            findings.append(
                SSH_KEY_MISSING.finding(
                    subject,
                    f"no SSH key pair {template.ssh_key!r} for the failure domain's account",
                    failure_domain=fd.name,
                )
            )
    return findings


def _one(
    wanted: CloudStackResource,
    lookup: Lookup,
    zoned: ZonedDomain,
    *,
    zone_scoped: bool,
    name_wins: bool = False,
) -> str | None:
    """Why `lookup` does not name exactly one offering matching `wanted`, or None when it does."""
    where = f" in {zoned.label}" if zone_scoped else ""
    looked_up_by_name = (name_wins and bool(wanted.name)) or not wanted.id
    key = wanted.name if looked_up_by_name else wanted.id
    if not lookup.rows:
        return f"no offering {key!r}{where}"
    if len(lookup.rows) > 1:
        return f"{len(lookup.rows)} offerings match {key!r}{where}; CAPC needs exactly one"
    row = lookup.rows[0]
    if looked_up_by_name and wanted.id and row.id != wanted.id:
        return f"offering {wanted.name!r} has id {row.id}, not {wanted.id}"
    if not looked_up_by_name and wanted.name and row.name != wanted.name:
        return f"offering id {wanted.id} is named {row.name!r}, not {wanted.name!r}"
    return None


def _disk_size(
    subject: ObjectRef, offering: CloudStackResource, size_gb: int, lookup: Lookup, fd: str
) -> list[Finding]:
    customized = lookup.rows[0].customized
    if customized and size_gb <= 0:
        message = f"disk offering {offering} is customized, so customSizeInGB must be set (> 0)"
    elif not customized and size_gb > 0:
        message = f"disk offering {offering} has a fixed size, so customSizeInGB ({size_gb}) must be 0"
    else:
        return []
    return [DISK_SIZE_MISMATCH.finding(subject, message, failure_domain=fd)]
