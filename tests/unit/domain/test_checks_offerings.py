"""Offering, affinity-group and SSH-key checks (CAPC-O0xx)."""

from __future__ import annotations

import pytest

from kubectl_capc.domain.checks.facts import Resource, Row
from tests.support.checks_support import ZONE_IDS, Cloud, ids, render, with_spec

CP = "c1-control-plane"
DISK = {"mountPath": "/data", "device": "/dev/vdb", "filesystem": "ext4", "label": "data"}


def test_offering_by_name_must_exist_in_the_zone() -> None:
    findings = Cloud().check(with_spec(render(), CP, offering={"name": "Huge Instance"}))
    assert ids(findings) == ["CAPC-O001", "CAPC-O001"]
    assert "'Huge Instance' in fd-zone1 (zone zone1)" in findings[0].message


def test_offering_by_id_with_a_wrong_name() -> None:
    findings = Cloud().check(with_spec(render(), CP, offering={"id": "so-large", "name": "Medium Instance"}))
    # Looked up by id, the answer is the same in every zone: one finding for both failure domains.
    assert ids(findings) == ["CAPC-O001"]
    assert findings[0].failure_domain == "fd-zone1, fd-zone2"
    assert "is named 'Large Instance', not 'Medium Instance'" in findings[0].message


def test_offering_by_id_alone() -> None:
    assert Cloud().check(with_spec(render(), CP, offering={"id": "so-large"})) == []


def test_offerings_not_offered_in_a_zone_are_missing_there() -> None:
    cloud = Cloud()
    cloud.service_offerings = [
        Row("so-large", "Large Instance", ZONE_IDS["zone1"]),
        Row("so-medium", "Medium Instance"),
    ]
    findings = cloud.check(render())
    assert ids(findings) == ["CAPC-O001"]
    assert findings[0].failure_domain == "fd-zone2"


@pytest.mark.parametrize(
    ("disk", "expected"),
    [
        ({"name": "Custom", "customSizeInGB": 50}, []),
        ({"name": "Small"}, []),
        ({"name": "Custom"}, ["CAPC-O003"]),
        ({"name": "Small", "customSizeInGB": 50}, ["CAPC-O003"]),
        ({"name": "Tiny"}, ["CAPC-O002", "CAPC-O002"]),  # looked up per zone: one finding per zone
        ({"name": "Small", "id": "do-custom"}, ["CAPC-O002"]),
        ({"id": "do-custom", "customSizeInGB": 10}, []),
    ],
)
def test_disk_offering(disk: dict[str, object], expected: list[str]) -> None:
    assert ids(Cloud().check(with_spec(render(), CP, diskOffering={**DISK, **disk}))) == expected


def test_affinity_groups_by_id() -> None:
    assert Cloud().check(with_spec(render(), CP, affinityGroupIDs=["ag-1"])) == []
    findings = Cloud().check(with_spec(render(), CP, affinityGroupIDs=["ag-1", "ag-gone"]))
    assert ids(findings) == ["CAPC-O004"]
    assert "ag-gone" in findings[0].message


def test_ssh_key_pair_by_name() -> None:
    assert Cloud().check(with_spec(render(), CP, sshKey="capc-key")) == []
    findings = Cloud().check(with_spec(render(), CP, sshKey="lost-key"))
    assert ids(findings) == ["CAPC-O005"]
    assert findings[0].failure_domain == "fd-zone1, fd-zone2"


def test_listing_failures_are_cloudstack_failures_not_missing_objects() -> None:
    cloud = Cloud(failing={Resource.SSH_KEY_PAIR: "list SSH key pairs: CloudStack error 530: boom"})
    findings = cloud.check(with_spec(render(), CP, sshKey="capc-key"))
    assert ids(findings) == ["CAPC-S008"]
