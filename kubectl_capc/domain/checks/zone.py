"""Checks on each failure domain's zone and network, and the zone ids the other CloudStack checks use.

A zone is resolved like CAPC does it: by name when the failure domain gives one (CAPC then overwrites
the id with the named zone's), else by id; exactly one zone must answer. The network likewise, within
that zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kubectl_capc.domain.checks.base import Check, Finding, Severity
from kubectl_capc.domain.checks.common import cloudstack_cluster_ref
from kubectl_capc.domain.checks.credentials import CLOUDSTACK_FAILED
from kubectl_capc.domain.checks.facts import Facts, Lookup, Query, Resource
from kubectl_capc.domain.model import ClusterInventory, FailureDomain

__all__ = [
    "NETWORK_NOT_FOUND",
    "ZONE_NOT_FOUND",
    "ZonedDomain",
    "check_zones",
    "network_queries",
    "network_query",
    "zone_queries",
    "zone_query",
    "zoned_domains",
]

ZONE_NOT_FOUND = Check(
    "CAPC-Z001",
    Severity.ERROR,
    "Failure domain zone not found",
    "fix the failure domain's zone name or id; `cmk list zones` shows the zones the keys can see",
)
NETWORK_NOT_FOUND = Check(
    "CAPC-Z002",
    Severity.ERROR,
    "Failure domain network not found in its zone",
    "fix the failure domain's network name or id, or create the network in that zone",
)


def zone_query(fd: FailureDomain) -> Query:
    if fd.zone.name:
        return Query(Resource.ZONE, name=fd.zone.name)
    return Query(Resource.ZONE, id=fd.zone.id)


def zone_queries(inventory: ClusterInventory, facts: Facts) -> Iterator[tuple[FailureDomain, Query]]:
    """The first CloudStack questions: each reachable failure domain's zone."""
    for fd in inventory.failure_domains:
        connection = facts.connection(fd)
        if connection is not None and connection.usable and fd.zone.is_set:
            yield fd, zone_query(fd)


def network_query(fd: FailureDomain, zone_id: str) -> Query:
    if fd.network.id:
        return Query(Resource.NETWORK, id=fd.network.id)
    return Query(Resource.NETWORK, name=fd.network.name, zone_id=zone_id)


def network_queries(inventory: ClusterInventory, facts: Facts) -> Iterator[tuple[FailureDomain, Query]]:
    for zoned in zoned_domains(inventory, facts):
        fd = zoned.failure_domain
        if fd.network.id or fd.network.name:
            yield fd, network_query(fd, zoned.zone_id)


@dataclass(frozen=True)
class ZonedDomain:
    """A failure domain whose credentials work and whose zone resolved to exactly one zone."""

    failure_domain: FailureDomain
    zone_id: str

    @property
    def label(self) -> str:
        """`fd-a (zone zone-a)`, for messages."""
        fd = self.failure_domain
        return f"{fd.name} (zone {fd.zone.name or fd.zone.id})"


def _zone_problem(fd: FailureDomain, lookup: Lookup) -> str | None:
    wanted = fd.zone.name or fd.zone.id
    if not lookup.rows:
        return f"no zone {wanted!r} is visible to the failure domain's API keys"
    if len(lookup.rows) > 1:
        return f"{len(lookup.rows)} zones are named {wanted!r}"
    return None


def zoned_domains(inventory: ClusterInventory, facts: Facts) -> list[ZonedDomain]:
    """Failure domains the zone-scoped checks can look at: usable credentials, zone resolved."""
    out = []
    for fd, query in zone_queries(inventory, facts):
        lookup = facts.lookup(fd, query)
        if lookup is None or lookup.failed or _zone_problem(fd, lookup) is not None:
            continue
        out.append(ZonedDomain(fd, lookup.rows[0].id))
    return out


def check_zones(inventory: ClusterInventory, facts: Facts) -> list[Finding]:
    subject = cloudstack_cluster_ref(inventory)
    findings = []
    for fd, query in zone_queries(inventory, facts):
        lookup = facts.lookup(fd, query)
        if lookup is None:
            continue
        if lookup.failed:
            findings.append(
                CLOUDSTACK_FAILED.finding(
                    subject, f"listing zones failed: {lookup.error}", failure_domain=fd.name
                )
            )
            continue
        problem = _zone_problem(fd, lookup)
        if problem is not None:
            findings.append(ZONE_NOT_FOUND.finding(subject, problem, failure_domain=fd.name))
    for zoned in zoned_domains(inventory, facts):
        findings.extend(_network_findings(inventory, zoned, facts))
    return findings


def _network_findings(inventory: ClusterInventory, zoned: ZonedDomain, facts: Facts) -> list[Finding]:
    fd = zoned.failure_domain
    if not (fd.network.id or fd.network.name):
        return []
    subject = cloudstack_cluster_ref(inventory)
    lookup = facts.lookup(fd, network_query(fd, zoned.zone_id))
    if lookup is None:
        return []
    if lookup.failed:
        return [
            CLOUDSTACK_FAILED.finding(
                subject, f"listing networks failed: {lookup.error}", failure_domain=fd.name
            )
        ]
    wanted = fd.network.id or fd.network.name
    rows = lookup.rows
    if fd.network.id:
        rows = tuple(row for row in rows if row.zone_id in ("", zoned.zone_id))
    if not rows:
        return [
            NETWORK_NOT_FOUND.finding(
                subject,
                f"no network {wanted!r} in {zoned.label} is visible to its API keys",
                failure_domain=fd.name,
            )
        ]
    if len(rows) > 1:
        return [
            NETWORK_NOT_FOUND.finding(
                subject,
                f"{len(rows)} networks are named {wanted!r} in {zoned.label}; CAPC needs exactly one",
                hint="rename the duplicates or reference the network by id",
                failure_domain=fd.name,
            )
        ]
    found = rows[0].name
    if fd.network.id and fd.network.name and found.lower() != fd.network.name.lower():
        return [
            NETWORK_NOT_FOUND.finding(
                subject,
                f"network id {fd.network.id} is named {found!r}, not {fd.network.name!r}",
                failure_domain=fd.name,
            )
        ]
    return []
