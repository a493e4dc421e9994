"""Template checks (CAPC-T0xx) and `resolve_template`, CAPC's ResolveTemplate over one listing."""

from __future__ import annotations

import pytest

from kubectl_capc.domain.checks import Severity
from kubectl_capc.domain.checks.facts import Lookup, Row
from kubectl_capc.domain.checks.templates import names_version, resolve_template
from kubectl_capc.domain.model import CloudStackResource
from tests.support.checks_support import (
    IMAGE_128,
    ZONE_IDS,
    Cloud,
    find,
    ids,
    render,
    template_row,
    with_spec,
)

CP = "c1-control-plane"
MD = "c1-md-0"


def _cloud_with(rows: list[Row]) -> Cloud:
    cloud = Cloud()
    cloud.templates = rows
    return cloud


def test_template_in_every_zone_resolves() -> None:
    assert Cloud().check(render()) == []


def test_template_missing_in_one_zone() -> None:
    cloud = _cloud_with([template_row(IMAGE_128, "zone1")])
    findings = cloud.check(render())
    assert ids(findings) == ["CAPC-T001", "CAPC-T001"]
    assert {str(f.subject) for f in findings} == {
        f"CloudStackMachineTemplate/{CP}",
        f"CloudStackMachineTemplate/{MD}",
    }
    assert {f.failure_domain for f in findings} == {"fd-zone2"}
    assert "in fd-zone2 (zone zone2)" in findings[0].message


def test_two_templates_with_the_name_in_one_zone_are_ambiguous_even_by_case() -> None:
    rows = [*Cloud().templates, template_row(IMAGE_128.upper(), "zone1", template_id="other")]
    findings = _cloud_with(rows).check(render())
    assert ids(findings) == ["CAPC-T002", "CAPC-T002"]
    assert {f.failure_domain for f in findings} == {"fd-zone1"}
    assert "2 executable templates" in findings[0].message


def test_not_ready_template_names_its_status() -> None:
    rows = [
        template_row(IMAGE_128, "zone1"),
        template_row(IMAGE_128, "zone2", ready=False, status="40% Downloaded"),
    ]
    findings = _cloud_with(rows).check(render())
    assert ids(findings) == ["CAPC-T003", "CAPC-T003"]
    assert "40% Downloaded" in findings[0].message


def test_by_id_a_template_registered_in_one_zone_is_missing_from_the_other() -> None:
    objects = with_spec(render(), CP, template={"id": "tmpl-one"})
    rows = [*Cloud().templates, template_row("one-zone-image", "zone1", template_id="tmpl-one")]
    findings = _cloud_with(rows).check(objects)
    assert ids(findings) == ["CAPC-T001", "CAPC-T005"]
    assert findings[0].failure_domain == "fd-zone2"
    assert "registered only in zone zone1" in findings[0].message


def test_by_id_a_template_in_two_zones_is_ambiguous_for_capc() -> None:
    objects = with_spec(render(), CP, template={"id": f"tmpl-{IMAGE_128}"})
    findings = Cloud().check(objects)
    assert ids(findings) == ["CAPC-T002"]  # one finding: the lookup by id is the same in every zone
    assert findings[0].failure_domain == "fd-zone1, fd-zone2"
    assert "CAPC looks ids up without a zone" in findings[0].message
    assert "by name" in findings[0].hint


def test_by_id_unknown() -> None:
    objects = with_spec(render(), CP, template={"id": "no-such-id"})
    assert ids(Cloud().check(objects)) == ["CAPC-T001"]


def test_id_and_name_must_agree() -> None:
    rows = [*Cloud().templates, template_row("real-name-1.28", "zone1", template_id="tmpl-x")]
    objects = with_spec(render(), CP, template={"id": "tmpl-x", "name": "wrong-name-1.28"})
    findings = _cloud_with(rows).check(objects)
    assert "CAPC-T004" in ids(findings)
    [mismatch] = [f for f in findings if f.check_id == "CAPC-T004"]
    assert "template name wrong-name-1.28 does not match name real-name-1.28" in mismatch.message


def test_template_for_a_hypervisor_the_zone_does_not_run() -> None:
    cloud = Cloud()
    cloud.hypervisors[ZONE_IDS["zone2"]] = ["VMware"]
    findings = cloud.check(render())
    assert ids(findings) == ["CAPC-T006", "CAPC-T006"]
    assert "is for KVM, but fd-zone2 (zone zone2) runs VMware" in findings[0].message


def test_template_name_must_carry_the_version_of_its_user() -> None:
    objects = render()
    find(objects, "KubeadmControlPlane")["spec"]["version"] = "v1.28.9"
    findings = Cloud().check(objects)
    [warning] = [f for f in findings if f.check_id == "CAPC-T005"]
    assert warning.severity is Severity.WARNING
    assert str(warning.subject) == "KubeadmControlPlane/c1-control-plane"
    assert f"{IMAGE_128!r} is for v1.28.5" in warning.message


@pytest.mark.parametrize(
    ("name", "version", "carries"),
    [
        ("ubuntu-2204-kube-v1.28.5", "v1.28.5", True),
        ("ubuntu-2204-kube-v1.28.5-kvm", "v1.28.5", True),
        ("ubuntu-2204-kube-v1.28.5", "v1.28.6", False),
        ("rhel-8-k8s-1.28", "v1.28.5", True),
        ("rhel8-k8s-1-28-x", "v1.28.5", True),
        ("rhel8_k8s_128", "v1.28.5", True),
        ("rhel8-k8s-1.2", "v1.28.5", False),
        ("rhel8-k8s-11.28", "v1.28.5", False),
        ("golden-image", "v1.28.5", False),
    ],
)
def test_names_version(name: str, version: str, carries: bool) -> None:
    assert names_version(name, version) is carries


# -- resolve_template: the verdict CAPC reaches -------------------------------------------------


def _rows(*names: str, zone: str = "zone1") -> tuple[Row, ...]:
    return tuple(Row(f"id-{i}", n, ZONE_IDS[zone], zone) for i, n in enumerate(names))


def test_resolve_by_name_exactly_one() -> None:
    resolution = resolve_template(CloudStackResource(name="img"), Lookup(_rows("img")))
    assert (resolution.ok, resolution.count, resolution.row) == (True, 1, _rows("img")[0])


@pytest.mark.parametrize("count", [0, 2])
def test_resolve_by_name_otherwise_fails_as_capc(count: int) -> None:
    resolution = resolve_template(CloudStackResource(name="img"), Lookup(_rows(*["img"] * count)))
    assert (resolution.ok, resolution.count) == (False, count)
    assert resolution.error == f"expected 1 Template with name img, but got {count}"


def test_resolve_by_id_ignores_zone_and_cross_checks_the_name() -> None:
    lookup = Lookup(_rows("img", zone="zone2"))
    assert resolve_template(CloudStackResource(id="id-0"), lookup).ok
    assert resolve_template(CloudStackResource(id="id-0", name="img"), lookup).ok
    wrong = resolve_template(CloudStackResource(id="id-0", name="other"), lookup)
    assert (wrong.ok, wrong.count) == (False, 1)
    assert wrong.error == "template name other does not match name img returned using UUID id-0"


def test_a_failed_request_has_count_minus_one() -> None:
    resolution = resolve_template(CloudStackResource(name="img"), Lookup(error="HTTP 530"))
    assert (resolution.ok, resolution.count) == (False, -1)
