"""Zone and network checks (CAPC-Z0xx), and which questions depend on a resolved zone."""

from __future__ import annotations

import copy
from typing import Any

from kubectl_capc.domain.checks.facts import Resource, Row
from tests.support.checks_support import ZONE_IDS, Cloud, find, ids, render


def _fd(objects: list[dict[str, Any]], index: int) -> dict[str, Any]:
    failure_domain: dict[str, Any] = find(objects, "CloudStackCluster")["spec"]["failureDomains"][index]
    return failure_domain


def test_unknown_zone_is_an_error_and_nothing_is_asked_inside_it() -> None:
    objects = render()
    _fd(objects, 1)["zone"]["name"] = "zone9"
    cloud = Cloud()
    findings = cloud.check(objects)
    assert ids(findings) == ["CAPC-Z001"]
    assert findings[0].failure_domain == "fd-zone2"
    assert "'zone9'" in findings[0].message
    zone2 = ZONE_IDS["zone2"]
    assert not any(q.zone_id == zone2 for q in cloud.asked)


def test_the_zone_name_wins_over_the_id_as_in_capc() -> None:
    objects = render()
    _fd(objects, 0)["zone"] = {"id": ZONE_IDS["zone2"], "name": "zone1", "network": {"name": "net1"}}
    cloud = Cloud()
    assert cloud.check(objects) == []  # net1 is found in zone1: the id of zone2 is overwritten
    assert not any(q.resource is Resource.ZONE and q.id for q in cloud.asked)


def test_an_unknown_zone_name_fails_even_with_a_good_id() -> None:
    objects = render()
    _fd(objects, 0)["zone"] = {"id": ZONE_IDS["zone1"], "name": "zone9", "network": {"name": "net1"}}
    findings = Cloud().check(objects)
    assert ids(findings) == ["CAPC-Z001"] and "'zone9'" in findings[0].message


def test_zone_by_id_alone_resolves() -> None:
    objects = render()
    _fd(objects, 0)["zone"] = {"id": ZONE_IDS["zone1"], "network": {"name": "net1"}}
    assert Cloud().check(objects) == []


def test_missing_network_in_the_zone() -> None:
    objects = render()
    _fd(objects, 0)["zone"]["network"]["name"] = "net2"  # exists, but in zone2
    findings = Cloud().check(objects)
    assert ids(findings) == ["CAPC-Z002"]
    assert "'net2' in fd-zone1 (zone zone1)" in findings[0].message


def test_network_by_id_in_another_zone_is_not_found() -> None:
    objects = render()
    _fd(objects, 0)["zone"]["network"] = {"id": "net2-id", "name": "net2"}
    assert ids(Cloud().check(objects)) == ["CAPC-Z002"]


def test_duplicate_network_names_are_ambiguous() -> None:
    cloud = Cloud()
    cloud.networks.append(Row("net1-other", "NET1", ZONE_IDS["zone1"]))
    findings = cloud.check(render())
    assert ids(findings) == ["CAPC-Z002"]
    assert "2 networks" in findings[0].message


def test_a_failing_zone_listing_is_a_cloudstack_failure() -> None:
    cloud = Cloud(failing={Resource.ZONE: "list zones: CloudStack error 530: internal error"})
    findings = cloud.check(copy.deepcopy(render()))
    assert ids(findings) == ["CAPC-S008"]
    assert (findings[0].failure_domain, "530" in findings[0].message) == ("fd-zone1, fd-zone2", True)
