"""The validation checks, one module per family, as pure functions over an inventory and gathered facts.

`kubectl_capc.ops.validate` gathers facts in two rounds -- first each failure domain's zone
(`first_queries`), then what the checks need inside the resolved zones (`second_queries`) -- and then
calls `run_checks`. `CHECKS` lists every check; docs/checks.md documents each by its ID.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from kubectl_capc.domain.checks import (
    capacity,
    cluster,
    credentials,
    gitops_owners,
    offerings,
    permissions,
    templates,
    upgrade,
    workload,
    zone,
)
from kubectl_capc.domain.checks.base import Check, Finding, ObjectRef, Severity
from kubectl_capc.domain.checks.facts import Facts, Query
from kubectl_capc.domain.model import ClusterInventory, FailureDomain
from kubectl_capc.domain.versions import TargetVersion

__all__ = [
    "CHECKS",
    "Check",
    "Finding",
    "ObjectRef",
    "Severity",
    "first_queries",
    "run_checks",
    "second_queries",
]

_FAMILIES = (
    cluster,
    credentials,
    zone,
    templates,
    offerings,
    upgrade,
    permissions,
    workload,
    capacity,
    gitops_owners,
)
_FAMILY_ORDER = (
    "C",
    "S",
    "Z",
    "T",
    "O",
    "U",
    "P",
    "W",
    "R",
    "G",
)  # the ID letter of each family, in report order

CHECKS: tuple[Check, ...] = tuple(
    sorted(
        {
            value.id: value
            for module in _FAMILIES
            for value in vars(module).values()
            if isinstance(value, Check)
        }.values(),
        key=lambda check: (_FAMILY_ORDER.index(check.id[5]), check.id),
    )
)
"""Every check, in report order: cluster, credentials, zones, templates, offerings, --to, permissions,
workload cluster, CloudStack capacity, GitOps owners."""


def first_queries(inventory: ClusterInventory, facts: Facts) -> Iterator[tuple[FailureDomain, Query]]:
    """What to ask CloudStack once the credentials are known: each failure domain's zone."""
    yield from zone.zone_queries(inventory, facts)


def second_queries(
    inventory: ClusterInventory, facts: Facts, target: TargetVersion | None
) -> Iterator[tuple[FailureDomain, Query]]:
    """What to ask once zones are resolved: networks, templates, hypervisors, offerings, keys."""
    yield from zone.network_queries(inventory, facts)
    yield from templates.template_queries(inventory, facts)
    yield from offerings.offering_queries(inventory, facts)
    yield from upgrade.catalog_queries(inventory, facts, target)


def run_checks(
    inventory: ClusterInventory, facts: Facts, target: TargetVersion | None = None
) -> list[Finding]:
    """Every finding for one cluster: errors first, then warnings, each group in check order."""
    findings = [
        *cluster.check_cluster(inventory),
        *credentials.check_credentials(inventory, facts),
        *zone.check_zones(inventory, facts),
        *templates.check_templates(inventory, facts),
        *offerings.check_offerings(inventory, facts),
        *upgrade.check_target(inventory, facts, target),
        *permissions.check_permissions(inventory, facts),
        *gitops_owners.check_gitops_owners(inventory),
        *_workload_findings(inventory, facts, target),
        *capacity.check_rollout_capacity(inventory, facts, target),
    ]
    # With --to, a paused object is the upgrade's error (CAPC-U006), not also the general warning.
    blocking = {f.subject for f in findings if f.check_id == upgrade.PAUSED_FOR_UPGRADE.id}
    findings = [f for f in findings if not (f.check_id == cluster.PAUSED.id and f.subject in blocking)]
    order = {check.id: index for index, check in enumerate(CHECKS)}
    return sorted(
        _merged(findings),
        key=lambda f: (f.severity is not Severity.ERROR, order.get(f.check_id, len(order))),
    )


def _workload_findings(
    inventory: ClusterInventory, facts: Facts, target: TargetVersion | None
) -> list[Finding]:
    reading = facts.workloads.get((inventory.namespace, inventory.name))
    if reading is None:
        return []
    return workload.check_reading(inventory, reading, upgrade.planned_hops(inventory, facts, target))


def _merged(findings: list[Finding]) -> list[Finding]:
    """One finding per distinct problem: the same message from several failure domains (a problem that
    does not depend on the zone) becomes one finding naming them all."""
    domains: dict[Finding, list[str]] = {}
    for finding in findings:
        key = replace(finding, failure_domain="")
        names = domains.setdefault(key, [])
        names.extend(name for name in finding.failure_domain.split(", ") if name and name not in names)
    return [replace(key, failure_domain=", ".join(names)) for key, names in domains.items()]
