"""validate's template verdict agrees with CAPC's own client (cloudstack-go, `tests/csgo`).

For each scene the same template reference is resolved twice against the same CloudStack double:
by the cloudstack-go program, exactly as CAPC's ResolveTemplate does, and by validate (its CloudStack
question through the real adapter, then `resolve_template`). Both must agree on whether the template
resolves, on the template id and on the number of rows; validate's zone findings then add what CAPC
leaves to the deployment (readiness, registration in the zone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubectl_capc.cloudstack.client import CloudStackClient
from kubectl_capc.cloudstack.credentials import Credentials
from kubectl_capc.cloudstack.rows import OwnerScope
from kubectl_capc.domain.checks import run_checks
from kubectl_capc.domain.checks.facts import Connection, Facts, Reach, Tenant
from kubectl_capc.domain.checks.templates import resolve_template, template_query
from kubectl_capc.domain.model import CloudStackResource
from kubectl_capc.ops.validate import Session, ask_in_rounds
from tests.csdouble import CloudStackDouble
from tests.csdouble.seed import add_template
from tests.support.checks_support import inventory_of
from tests.support.csgo_support import NOT_READY_IN_ZONE, built_resolver, resolve
from tests.support.fixtures_capc import Zone, render_cluster, with_settled_status

KUBE_128 = "ubuntu-2204-kube-v1.28.5"


@pytest.fixture(scope="session")
def csgo() -> Path:
    return built_resolver()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    template_id: str
    count: int


def capc_verdict(csgo: Path, double: CloudStackDouble, ref: CloudStackResource, zone_id: str) -> Verdict:
    args = ["-id", ref.id] if ref.id else ["-zone-id", zone_id]
    if ref.name:
        args += ["-name", ref.name]
    doc = resolve(csgo, double, *args).doc
    return Verdict("error" not in doc, str(doc.get("id", "")), int(doc["count"]))


def session(double: CloudStackDouble) -> Session:
    client = CloudStackClient(Credentials(double.endpoint, double.api_key, double.secret_key, source="test"))
    return Session(client, OwnerScope(), client.zones())


def validate_verdict(double: CloudStackDouble, ref: CloudStackResource, zone_id: str) -> Verdict:
    resolution = resolve_template(ref, session(double).ask(template_query(ref, zone_id)))
    row_id = resolution.row.id if resolution.row is not None else ""
    return Verdict(resolution.ok, row_id, resolution.count)


def zone_ids(double: CloudStackDouble) -> dict[str, str]:
    return {zone.name: zone.id for zone in double.state.zones.values()}


def add(double: CloudStackDouble, name: str, zones: Mapping[str, Any]) -> str:
    ostype = next(iter(double.state.ostypes))
    return add_template(double.state, {"name": name, "ostype": ostype, "zones": dict(zones)}).id


def by_name(name: str) -> CloudStackResource:
    return CloudStackResource(name=name)


def test_agreement_on_one_match_none_duplicates_and_copies_in_other_zones(
    csgo: Path, cloudstack: CloudStackDouble
) -> None:
    zones = zone_ids(cloudstack)
    add(cloudstack, "only-zone1-kube-v1.28.5", {"zone1": "ready"})
    add(cloudstack, "dup-kube-v1.28.5", {"zone1": "ready", "zone2": "ready"})
    add(cloudstack, "DUP-kube-v1.28.5", {"zone1": "ready"})
    scenes = [
        (by_name(KUBE_128), "zone1", True, 1),
        (by_name("missing-kube-v1.28.5"), "zone1", False, 0),
        (by_name("only-zone1-kube-v1.28.5"), "zone1", True, 1),
        (by_name("only-zone1-kube-v1.28.5"), "zone2", False, 0),
        (by_name("dup-kube-v1.28.5"), "zone1", False, 2),  # duplicate in one zone (case-insensitive)
        (by_name("dup-kube-v1.28.5"), "zone2", True, 1),
    ]
    for ref, zone, ok, count in scenes:
        capc = capc_verdict(csgo, cloudstack, ref, zones[zone])
        ours = validate_verdict(cloudstack, ref, zones[zone])
        assert ours == capc, (ref, zone)
        assert (ours.ok, ours.count) == (ok, count), (ref, zone)


def test_agreement_by_id(csgo: Path, cloudstack: CloudStackDouble) -> None:
    zones = zone_ids(cloudstack)
    single = add(cloudstack, "single-kube-v1.28.5", {"zone1": "ready"})
    both = next(t.id for t in cloudstack.state.templates.values() if t.name == KUBE_128)
    scenes = [
        (CloudStackResource(id=single), True, 1),
        (CloudStackResource(id=single, name="single-kube-v1.28.5"), True, 1),
        (CloudStackResource(id=single, name="other-name"), False, 1),  # name cross-check
        (CloudStackResource(id=both), False, 2),  # one row per zone: CAPC cannot use it by id
        (CloudStackResource(id="0d7ee2b5-0000-4000-8000-000000000000"), False, 0),  # unknown id
    ]
    for ref, ok, count in scenes:
        for zone in ("zone1", "zone2"):  # by id, the zone plays no part in the lookup
            capc = capc_verdict(csgo, cloudstack, ref, zones[zone])
            ours = validate_verdict(cloudstack, ref, zones[zone])
            assert ours == capc, ref
            assert (ours.ok, ours.count) == (ok, count), ref


@pytest.mark.parametrize("state", list(NOT_READY_IN_ZONE.values()), ids=list(NOT_READY_IN_ZONE))
def test_not_ready_resolves_for_both_and_validate_reports_it(
    csgo: Path, cloudstack: CloudStackDouble, state: object
) -> None:
    zones = zone_ids(cloudstack)
    name = "slow-kube-v1.28.5"
    template_id = add(cloudstack, name, {"zone1": state, "zone2": "ready"})
    capc = capc_verdict(csgo, cloudstack, by_name(name), zones["zone1"])
    assert capc == Verdict(True, template_id, 1)  # CAPC would pick it and fail at deployment
    assert validate_verdict(cloudstack, by_name(name), zones["zone1"]) == capc

    # validate's findings for a cluster using it: not ready in zone1 only.
    objects = with_settled_status(
        render_cluster(
            "c1",
            "ns",
            capi="v1beta2",
            image=name,
            zones=(Zone("zone1", "capc-net-zone1"), Zone("zone2", "capc-net-zone2")),
            control_plane_offering="Large Instance",
            worker_offering="Medium Instance",
        )
    )
    inventory = inventory_of(objects)
    facts = _facts_from_double(cloudstack, inventory)
    findings = [f for f in run_checks(inventory, facts) if f.check_id.startswith("CAPC-T")]
    assert {(f.check_id, f.failure_domain) for f in findings} == {("CAPC-T003", "fd-zone1")}


def _facts_from_double(double: CloudStackDouble, inventory: Any) -> Facts:
    """Facts as gather_facts collects them, with the double's session in place of the Secret read."""
    connections = {Tenant.of(fd): Connection(Tenant.of(fd), Reach.OK) for fd in inventory.failure_domains}
    ask = session(double).ask
    return ask_in_rounds([inventory], Facts({}, connections, {}, {}), None, lambda _tenant, query: ask(query))
