"""CloudStack headroom before an upgrade (CAPC-R001), from the failure domains' zone targets.

`image-upgrade` asks only what the check needs: each tenant's account, domain and project counts (one
list call per level) and, in each failure domain's zone, the machine templates' service offering,
template and data disk offering -- as the tenant CAPC acts as sees them. Owners already at the target and
rollouts still under way are left out: their surge machines exist already and are counted in the totals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from kubectl_capc.domain.checks.base import Finding
from kubectl_capc.domain.checks.capacity import capacity_queries, check_rollout_capacity
from kubectl_capc.domain.checks.facts import Connection, Facts, Lookup, Query, Reach, Row, Tenant
from kubectl_capc.domain.checks.zone import zone_query
from kubectl_capc.domain.model import ClusterInventory, normalize_version
from kubectl_capc.domain.versions import KubeVersion, parse_target
from kubectl_capc.ops.validate import Session

if TYPE_CHECKING:
    from kubectl_capc.ops.image_targets import ZoneTarget

__all__ = ["rollout_capacity"]


def rollout_capacity(
    inventory: ClusterInventory, targets: Sequence[ZoneTarget], version: KubeVersion
) -> list[Finding]:
    """CAPC-R001 findings for rolling the owners not yet at `version`; none while a rollout runs."""
    owners = [inventory.control_plane, *inventory.machine_deployments]
    if any(owner is not None and owner.rollout_in_progress() for owner in owners):
        return []
    wanted = normalize_version(str(version))
    control_plane = inventory.control_plane
    if control_plane is not None and normalize_version(control_plane.version) == wanted:
        control_plane = None
    pending = replace(
        inventory,
        control_plane=control_plane,
        machine_deployments=tuple(
            md for md in inventory.machine_deployments if normalize_version(md.version) != wanted
        ),
    )
    by_name = {fd.name: fd for fd in inventory.failure_domains}
    sessions: dict[Tenant, Session] = {}
    lookups: dict[tuple[Tenant, Query], Lookup] = {}
    for target in targets:
        fd = by_name.get(target.failure_domain)
        if fd is None:
            continue
        tenant = Tenant.of(fd)
        sessions.setdefault(tenant, Session(target.client, target.owner, (target.zone,)))
        lookups[(tenant, zone_query(fd))] = _zone_answer(target)
    connections = {tenant: Connection(tenant, Reach.OK) for tenant in sessions}
    limits = {tenant: session.limits() for tenant, session in sessions.items()}
    facts = Facts(connections=connections, lookups=lookups, limits={t: f for t, f in limits.items() if f})
    asked = {
        (Tenant.of(fd), query): None
        for fd, query in capacity_queries(pending, facts)
        if Tenant.of(fd) in sessions
    }
    answers = {key: sessions[key[0]].ask(key[1]) for key in asked if key not in facts.lookups}
    facts = replace(facts, lookups={**facts.lookups, **answers})
    return check_rollout_capacity(pending, facts, parse_target(str(version)))


def _zone_answer(target: ZoneTarget) -> Lookup:
    return Lookup((Row(target.zone.id, target.zone.name),))
