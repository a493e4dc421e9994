"""Scenes for the pure check tests: a rendered CAPC cluster read into an inventory, and facts answered
from a small in-memory description of a cloud.

`Cloud.facts` asks exactly the questions the checks declare, through validate's own `ask_in_rounds`,
and answers each by filtering its rows the way CloudStack filters a list call (ids exactly, names
case-insensitively, zone-scoped rows by zone), so a scene only states what exists.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubectl_capc.domain.checks import Finding, run_checks
from kubectl_capc.domain.checks import facts as check_facts
from kubectl_capc.domain.checks.facts import Facts, Lookup, Query, Resource, Row
from kubectl_capc.domain.checks.permissions import required_access
from kubectl_capc.domain.inventory import build_inventories
from kubectl_capc.domain.model import ClusterInventory
from kubectl_capc.domain.versions import TargetVersion
from kubectl_capc.ops.validate import ask_in_rounds
from tests.support.fixtures_capc import Zone, raw_objects, render_cluster, with_settled_status

ZONE1, ZONE2 = "zone1", "zone2"
ZONE_IDS = {ZONE1: "11111111-0000-0000-0000-000000000001", ZONE2: "11111111-0000-0000-0000-000000000002"}
ZONES = (Zone(ZONE1, "net1"), Zone(ZONE2, "net2"))
IMAGE_128 = "ubuntu-2204-kube-v1.28.5"
IMAGE_129 = "ubuntu-2204-kube-v1.29.3"
API_URL = "https://cloud.example.com/client/api"

Objects = list[dict[str, Any]]


def render(name: str = "c1", *, capi: str = "v1beta2", **kwargs: Any) -> Objects:
    """A settled two-zone cluster (3 control-plane machines, one MachineDeployment) at v1.28.5."""
    options: dict[str, Any] = {
        "zones": ZONES,
        "control_plane_offering": "Large Instance",
        "worker_offering": "Medium Instance",
        "image": IMAGE_128,
        **kwargs,
    }
    return with_settled_status(render_cluster(name, "ns", capi=capi, **options))


def inventory_of(objects: Iterable[Mapping[str, Any]], capi: str = "v1beta2") -> ClusterInventory:
    [inventory] = build_inventories(raw_objects(objects), capi)  # type: ignore[arg-type]
    return inventory


def find(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def machine_spec(objects: Objects, template_name: str) -> dict[str, Any]:
    """`spec.template.spec` of a CloudStackMachineTemplate, to edit a scene."""
    spec: dict[str, Any] = find(objects, "CloudStackMachineTemplate", template_name)["spec"]["template"][
        "spec"
    ]
    return spec


def template_row(name: str, zone: str, *, template_id: str | None = None, **fields: Any) -> Row:
    return Row(
        id=template_id or f"tmpl-{name}",
        name=name,
        zone_id=ZONE_IDS[zone],
        zone_name=zone,
        hypervisor=fields.pop("hypervisor", "KVM"),
        **fields,
    )


def default_templates() -> list[Row]:
    return [template_row(image, zone) for image in (IMAGE_128, IMAGE_129) for zone in (ZONE1, ZONE2)]


@dataclass
class Cloud:
    """What a CloudStack holds, as the failure domains' tenant sees it."""

    zones: dict[str, str] = field(default_factory=lambda: dict(ZONE_IDS))
    hypervisors: dict[str, list[str]] = field(default_factory=lambda: {z: ["KVM"] for z in ZONE_IDS.values()})
    templates: list[Row] = field(default_factory=default_templates)
    service_offerings: list[Row] = field(
        default_factory=lambda: [Row("so-large", "Large Instance"), Row("so-medium", "Medium Instance")]
    )
    disk_offerings: list[Row] = field(
        default_factory=lambda: [Row("do-small", "Small"), Row("do-custom", "Custom", customized=True)]
    )
    networks: list[Row] = field(
        default_factory=lambda: [
            Row("net1-id", "net1", ZONE_IDS[ZONE1]),
            Row("net2-id", "net2", ZONE_IDS[ZONE2]),
        ]
    )
    affinity_groups: list[Row] = field(default_factory=lambda: [Row("ag-1", "anti")])
    ssh_key_pairs: list[Row] = field(default_factory=lambda: [Row("key-1", "capc-key")])
    failing: dict[Resource, str] = field(default_factory=dict)
    asked: list[Query] = field(default_factory=list)

    def answer(self, query: Query) -> Lookup:
        self.asked.append(query)
        if query.resource in self.failing:
            return Lookup(error=self.failing[query.resource])
        if query.resource is Resource.ZONE:
            rows = [Row(zone_id, name) for name, zone_id in self.zones.items()]
        elif query.resource is Resource.HYPERVISOR:
            rows = [Row(name=h) for h in self.hypervisors.get(query.zone_id, [])]
        else:
            rows = {
                Resource.TEMPLATE: self.templates,
                Resource.SERVICE_OFFERING: self.service_offerings,
                Resource.DISK_OFFERING: self.disk_offerings,
                Resource.NETWORK: self.networks,
                Resource.AFFINITY_GROUP: self.affinity_groups,
                Resource.SSH_KEY_PAIR: self.ssh_key_pairs,
            }[query.resource]
        return Lookup(tuple(row for row in rows if _matches(row, query)))

    def facts(
        self,
        inventories: Sequence[ClusterInventory],
        target: TargetVersion | None = None,
        *,
        secret: Callable[[check_facts.SecretFacts], check_facts.SecretFacts] = lambda s: s,
        connection: Callable[[check_facts.Connection], check_facts.Connection] = lambda c: c,
        denied: Iterable[check_facts.Access] = (),
    ) -> Facts:
        """Facts as `kubectl_capc.ops.validate.gather_facts` would collect them from this cloud."""
        domains = [fd for inv in inventories for fd in inv.failure_domains]
        found = check_facts.SecretState.FOUND
        keys = frozenset({"api-url", "api-key", "secret-key"})
        secrets = {
            fd.credentials: secret(check_facts.SecretFacts(fd.credentials, found, keys=keys, api_url=API_URL))
            for fd in domains
        }
        tenants = {check_facts.Tenant.of(fd) for fd in domains}
        connections = {t: connection(check_facts.Connection(t, check_facts.Reach.OK)) for t in tenants}
        refused = set(denied)
        access = {a: a not in refused for inv in inventories for a in required_access(inv)}
        known = Facts(secrets, connections, {}, access)
        return ask_in_rounds(inventories, known, target, lambda _tenant, query: self.answer(query))

    def check(self, objects: Objects, target: TargetVersion | None = None, **facts: Any) -> list[Finding]:
        inventory = inventory_of(objects)
        return run_checks(inventory, self.facts([inventory], target, **facts), target)


def _matches(row: Row, query: Query) -> bool:
    if query.id and row.id != query.id:
        return False
    if query.name and row.name.lower() != query.name.lower():
        return False
    return not (query.zone_id and row.zone_id and row.zone_id != query.zone_id)


def ids(findings: Iterable[Finding]) -> list[str]:
    return [f.check_id for f in findings]


def with_spec(objects: Objects, template_name: str, **changes: Any) -> Objects:
    """A copy of the scene with `spec.template.spec` fields of one machine template replaced."""
    out = copy.deepcopy(objects)
    machine_spec(out, template_name).update(changes)
    return out


__all__ = [
    "API_URL",
    "IMAGE_128",
    "IMAGE_129",
    "ZONE1",
    "ZONE2",
    "ZONES",
    "ZONE_IDS",
    "Cloud",
    "find",
    "ids",
    "inventory_of",
    "machine_spec",
    "render",
    "template_row",
    "with_spec",
]
