"""The validation report: verdict and exit code, `--strict`, the summary line, the typed document, and
secret values scrubbed from every message."""

from __future__ import annotations

from typing import Any

import pytest

from kubectl_capc.domain.checks.facts import Connection, Reach
from kubectl_capc.domain.errors import ExitCode, UsageError
from kubectl_capc.domain.versions import parse_target
from kubectl_capc.ops.validate import ValidationReport, build_report, parse_to
from tests.support.checks_support import Cloud, find, inventory_of, render


def _report(objects: list[dict[str, Any]], strict: bool = False) -> ValidationReport:
    inventory = inventory_of(objects)
    return build_report([inventory], Cloud().facts([inventory]), strict=strict)


def _paused() -> list[dict[str, Any]]:
    objects = render()
    find(objects, "MachineDeployment")["metadata"]["annotations"] = {"cluster.x-k8s.io/paused": ""}
    return objects


def test_clean_report() -> None:
    report = _report(render())
    assert (report.passed, report.exit_code, report.errors, report.warnings) == (True, ExitCode.OK, 0, 0)
    assert report.summary() == "1 cluster validated: no problems found."
    assert report.rows(with_cluster=True) == []


def test_warnings_pass_unless_strict() -> None:
    assert _report(_paused()).exit_code == ExitCode.OK
    assert _report(_paused()).summary() == "1 cluster validated: 0 errors, 1 warning; passed."
    strict = _report(_paused(), strict=True)
    assert strict.exit_code == ExitCode.FINDINGS
    assert strict.summary() == "1 cluster validated: 0 errors, 1 warning; failed (--strict: warnings fail)."


def test_errors_fail() -> None:
    objects = render()
    find(objects, "CloudStackCluster")["spec"]["failureDomains"][0]["zone"]["name"] = "nowhere"
    report = _report(objects)
    assert (report.exit_code, report.errors) == (ExitCode.FINDINGS, 1)
    [row] = report.rows(with_cluster=True)
    assert row[:4] == ("ns/c1", "CAPC-Z001", "error", "CloudStackCluster/c1")


def test_document() -> None:
    inventory = inventory_of(_paused())
    target = parse_target("v1.29")
    document = build_report([inventory], Cloud().facts([inventory], target), target).to_document()
    assert document["apiVersion"] == "capc.kubectl.io/v1alpha1"
    assert (document["kind"], document["target"], document["strict"]) == ("ValidationReport", "v1.29", False)
    # With --to, a paused object is an error: image-upgrade refuses to start.
    assert document["summary"] == {"clusters": 1, "errors": 1, "warnings": 0, "passed": False}
    [cluster] = document["clusters"]
    assert (cluster["namespace"], cluster["name"], cluster["errors"], cluster["warnings"]) == (
        "ns",
        "c1",
        1,
        0,
    )
    assert cluster["findings"] == [
        {
            "id": "CAPC-U006",
            "severity": "error",
            "object": {"kind": "MachineDeployment", "namespace": "ns", "name": "c1-md-0"},
            "message": "paused: image-upgrade --to v1.29 refuses to start",
            "hint": cluster["findings"][0]["hint"],
        }
    ]


def test_secret_values_are_scrubbed_from_messages() -> None:
    inventory = inventory_of(render())
    leaked = "list zones: CloudStack rejected key AKIA-SECRET-123 signed with S3CR3T"
    facts = Cloud().facts([inventory], connection=lambda c: Connection(c.tenant, Reach.REJECTED, leaked))
    report = build_report([inventory], facts, secrets={"AKIA-SECRET-123", "S3CR3T"})
    [finding] = report.clusters[0].findings
    assert "AKIA-SECRET-123" not in finding.message and "S3CR3T" not in finding.message
    assert finding.message.startswith("list zones: CloudStack rejected key *** signed with ***")


@pytest.mark.parametrize("text", ["1.x", "v2.0", "v1.29.3-rc.1", ""])
def test_invalid_target_is_a_usage_error_with_the_check_id(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_to(text)
    assert str(caught.value).startswith("CAPC-U001: invalid target version")
