"""`--to` checks (CAPC-U0xx): downgrades, hops, and a template for every hop in every zone."""

from __future__ import annotations

from typing import Any

import pytest

from kubectl_capc.domain.checks import Finding, Severity
from kubectl_capc.domain.checks.facts import Resource
from kubectl_capc.domain.versions import parse_target
from tests.support.checks_support import IMAGE_129, Cloud, find, ids, render, template_row, with_spec


def _check(cloud: Cloud, target: str, objects: list[dict[str, Any]] | None = None) -> list[Finding]:
    return cloud.check(objects or render(), parse_target(target))


@pytest.mark.parametrize("target", ["v1.29", "v1.29.3", "1.29.3", "v1.28", "v1.28.5"])
def test_targets_with_templates_everywhere_are_clean(target: str) -> None:
    assert _check(Cloud(), target) == []


def test_without_a_target_no_catalogue_is_listed() -> None:
    cloud = Cloud()
    cloud.check(render())
    assert not any(q.resource is Resource.TEMPLATE and not (q.name or q.id) for q in cloud.asked)


def test_downgrade_is_an_error_for_each_object_ahead_of_the_target() -> None:
    findings = _check(Cloud(), "v1.28.1")
    assert ids(findings) == ["CAPC-U002", "CAPC-U002"]
    assert [str(f.subject) for f in findings] == [
        "KubeadmControlPlane/c1-control-plane",
        "MachineDeployment/c1-md-0",
    ]
    assert ids(_check(Cloud(), "v1.27")) == ["CAPC-U002", "CAPC-U002"]


def test_two_minors_take_two_hops_and_each_needs_its_template() -> None:
    findings = _check(Cloud(), "v1.30.2")
    hops = [f for f in findings if f.check_id == "CAPC-U003"]
    [hop] = hops
    assert hop.severity is Severity.WARNING
    assert "v1.28.5 → v1.29.3 → v1.30.2" in hop.message
    missing = [f for f in findings if f.check_id == "CAPC-U004"]
    assert {(str(f.subject), f.failure_domain) for f in missing} == {
        ("KubeadmControlPlane/c1-control-plane", "fd-zone1"),
        ("KubeadmControlPlane/c1-control-plane", "fd-zone2"),
        ("MachineDeployment/c1-md-0", "fd-zone1"),
        ("MachineDeployment/c1-md-0", "fd-zone2"),
    }
    assert "needs template 'ubuntu-2204-kube-v1.30.2', which is not registered" in missing[0].message


def test_a_minor_target_needs_a_patch_present_in_every_zone() -> None:
    cloud = Cloud()
    cloud.templates.append(template_row("ubuntu-2204-kube-v1.30.1", "zone1"))
    findings = _check(cloud, "v1.30")
    assert "CAPC-U004" in ids(findings)
    assert any("no v1.30 patch release is available" in f.message for f in findings)
    cloud.templates.append(template_row("ubuntu-2204-kube-v1.30.1", "zone2"))
    assert ids(_check(cloud, "v1.30")) == ["CAPC-U003"]


def test_hop_template_that_is_not_ready() -> None:
    cloud = Cloud()
    cloud.templates = [t for t in cloud.templates if not (t.name == IMAGE_129 and t.zone_name == "zone2")]
    cloud.templates.append(template_row(IMAGE_129, "zone2", ready=False, status="Installing Template"))
    findings = _check(cloud, "v1.29.3")
    assert ids(findings) == ["CAPC-U004", "CAPC-U004"]
    assert "is not ready (Installing Template) in fd-zone2" in findings[0].message


def test_hop_template_registered_twice() -> None:
    cloud = Cloud()
    cloud.templates.append(template_row(IMAGE_129, "zone1", template_id="dup"))
    findings = _check(cloud, "v1.29.3")
    assert ids(findings) == ["CAPC-U004", "CAPC-U004"]
    assert "registered 2 times" in findings[0].message


def test_unconventional_template_names_cannot_be_followed() -> None:
    cloud = Cloud()
    cloud.templates += [template_row("golden-1.28", zone) for zone in ("zone1", "zone2")]
    objects = with_spec(render(), "c1-md-0", template={"name": "golden-1.28"})
    findings = _check(cloud, "v1.29.3", objects)
    assert ids(findings) == ["CAPC-U005"]
    assert str(findings[0].subject) == "CloudStackMachineTemplate/c1-md-0"


def test_workers_behind_catch_up_within_the_plan() -> None:
    objects = render()
    find(objects, "MachineDeployment")["spec"]["template"]["spec"]["version"] = "v1.27.3"
    cloud = Cloud()
    findings = _check(cloud, "v1.29.3", objects)
    # The worker still runs an image named for v1.28.5 (T005) and one minor behind (C006); the
    # v1.29.3 hop moves both objects onto the existing v1.29.3 template.
    assert ids(findings) == ["CAPC-C006", "CAPC-T005"]


def test_a_paused_object_is_an_error_when_an_upgrade_is_asked_for() -> None:
    objects = render()
    find(objects, "Cluster")["spec"]["paused"] = True
    find(objects, "MachineDeployment")["metadata"]["annotations"] = {"cluster.x-k8s.io/paused": ""}
    findings = _check(Cloud(), "v1.29.3", objects)
    paused = [f for f in findings if f.check_id == "CAPC-U006"]
    assert [(str(f.subject), f.severity) for f in paused] == [
        ("Cluster/c1", Severity.ERROR),
        ("MachineDeployment/c1-md-0", Severity.ERROR),
    ]
    assert paused[0].message == "paused: image-upgrade --to v1.29.3 refuses to start"
    assert "CAPC-C002" not in ids(findings)  # the upgrade's error replaces the general warning
    assert ids(Cloud().check(objects)) == ["CAPC-C002", "CAPC-C002"]  # without --to: warnings only
