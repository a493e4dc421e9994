"""Checks that each machine template's CloudStack template resolves in every failure-domain zone.

`resolve_template` reproduces CAPC's `ResolveTemplate` (cloudstack-go `GetTemplateByID` /
`GetTemplateID`), so validate reaches the verdict CAPC would when it deploys a machine:
- by id (when `template.id` is set): `listTemplates id=… templatefilter=executable` with no zone filter
  must return exactly one row, and a `template.name`, if also set, must equal that row's name;
- by name: `listTemplates name=… templatefilter=executable zoneid=<failure domain zone>` must return
  exactly one row.
On top of CAPC's verdict, a resolved template must be ready and registered in the zone, and its
hypervisor must run in the zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from kubectl_capc.domain.checks.base import Check, Finding, Severity
from kubectl_capc.domain.checks.common import template_ref, template_users
from kubectl_capc.domain.checks.credentials import CLOUDSTACK_FAILED
from kubectl_capc.domain.checks.facts import Facts, Lookup, Query, Resource, Row
from kubectl_capc.domain.checks.zone import ZonedDomain, zoned_domains
from kubectl_capc.domain.model import (
    CloudStackResource,
    ClusterInventory,
    FailureDomain,
    MachineTemplate,
)
from kubectl_capc.domain.naming import parse_template_name
from kubectl_capc.domain.versions import parse_version

__all__ = [
    "AMBIGUOUS",
    "HYPERVISOR_MISSING",
    "NAME_MISMATCH",
    "NAME_WITHOUT_VERSION",
    "NOT_FOUND",
    "NOT_READY",
    "Resolution",
    "check_templates",
    "hypervisor_query",
    "resolve_template",
    "template_queries",
    "template_query",
]

NOT_FOUND = Check(
    "CAPC-T001",
    Severity.ERROR,
    "CloudStack template not found in a failure-domain zone",
    "register the template in that zone (kubectl capc image register), or fix the machine template's "
    "template name",
)
AMBIGUOUS = Check(
    "CAPC-T002",
    Severity.ERROR,
    "CloudStack template is ambiguous",
    "CAPC needs exactly one executable match: delete or rename the duplicates",
)
NOT_READY = Check(
    "CAPC-T003",
    Severity.ERROR,
    "CloudStack template is not ready",
    "wait for the download to finish (or fix its error) before machines use it",
)
NAME_MISMATCH = Check(
    "CAPC-T004",
    Severity.ERROR,
    "CloudStack template id and name disagree",
    "set template.name to the name CloudStack reports for template.id, or drop one of the two",
)
NAME_WITHOUT_VERSION = Check(
    "CAPC-T005",
    Severity.WARNING,
    "Template name does not carry the Kubernetes version that uses it",
    "use images named <os>-kube-vX.Y.Z[-hypervisor] whose version matches the object's version",
)
HYPERVISOR_MISSING = Check(
    "CAPC-T006",
    Severity.ERROR,
    "Template hypervisor not available in the zone",
    "register the template for a hypervisor the zone runs (listHypervisors)",
)


@dataclass(frozen=True)
class Resolution:
    """CAPC's verdict for one template reference as seen by one failure domain.

    `count` is the number of rows cloudstack-go reports (-1 when the request failed); `row` is the
    template CAPC would deploy, or None with the reason CAPC would give in `error`.
    """

    by_id: bool
    count: int
    row: Row | None
    error: str = ""
    rows: tuple[Row, ...] = ()

    @property
    def ok(self) -> bool:
        return self.row is not None


def template_query(template: CloudStackResource, zone_id: str) -> Query:
    """The listTemplates call CAPC makes (always with templatefilter=executable)."""
    if template.id:
        return Query(Resource.TEMPLATE, id=template.id)
    return Query(Resource.TEMPLATE, name=template.name, zone_id=zone_id)


def resolve_template(template: CloudStackResource, lookup: Lookup) -> Resolution:
    """CAPC's ResolveTemplate over the answer to `template_query`."""
    by_id = bool(template.id)
    wanted = f"UUID {template.id}" if by_id else f"name {template.name}"
    if lookup.failed:
        return Resolution(by_id, -1, None, f"could not list the template with {wanted}: {lookup.error}")
    rows = lookup.rows
    if len(rows) != 1:
        return Resolution(
            by_id, len(rows), None, f"expected 1 Template with {wanted}, but got {len(rows)}", rows
        )
    found = rows[0].name
    if by_id and template.name and template.name != found:
        mismatch = f"template name {template.name} does not match name {found} returned using {wanted}"
        return Resolution(by_id, 1, None, mismatch, rows)
    return Resolution(by_id, 1, rows[0], rows=rows)


def hypervisor_query(zone_id: str) -> Query:
    return Query(Resource.HYPERVISOR, zone_id=zone_id)


def template_queries(inventory: ClusterInventory, facts: Facts) -> Iterator[tuple[FailureDomain, Query]]:
    for zoned in zoned_domains(inventory, facts):
        fd = zoned.failure_domain
        yield fd, hypervisor_query(zoned.zone_id)
        for template in inventory.machine_templates_in_use():
            if template.cloudstack_template.is_set:
                yield fd, template_query(template.cloudstack_template, zoned.zone_id)


def check_templates(inventory: ClusterInventory, facts: Facts) -> list[Finding]:
    findings: list[Finding] = []
    resolved_names: dict[str, str] = {}
    for zoned in zoned_domains(inventory, facts):
        for template in inventory.machine_templates_in_use():
            if not template.cloudstack_template.is_set:
                continue
            lookup = facts.lookup(
                zoned.failure_domain, template_query(template.cloudstack_template, zoned.zone_id)
            )
            if lookup is None:
                continue
            findings.extend(_zone_findings(template, zoned, lookup, facts))
            resolution = resolve_template(template.cloudstack_template, lookup)
            if resolution.row is not None:
                resolved_names.setdefault(template.name, resolution.row.name)
    findings.extend(_version_findings(inventory, resolved_names))
    return findings


def _zone_findings(
    template: MachineTemplate, zoned: ZonedDomain, lookup: Lookup, facts: Facts
) -> list[Finding]:
    ref = template.cloudstack_template
    subject = template_ref(template)
    fd = zoned.failure_domain.name
    resolution = resolve_template(ref, lookup)
    if resolution.count < 0:
        return [
            CLOUDSTACK_FAILED.finding(subject, f"listing templates failed: {lookup.error}", failure_domain=fd)
        ]
    if resolution.row is None:
        return [_unresolved(template, zoned, resolution)]
    row = resolution.row
    if ref.id and row.zone_id not in ("", zoned.zone_id):
        return [
            NOT_FOUND.finding(
                subject,
                f"template {ref} is registered only in zone {row.zone_name or row.zone_id}, "
                f"not in {zoned.label}",
                failure_domain=fd,
            )
        ]
    findings = []
    if not row.ready:
        status = row.status or "not ready"
        findings.append(
            NOT_READY.finding(
                subject, f"template {ref} in {zoned.label} is not ready: {status}", failure_domain=fd
            )
        )
    findings.extend(_hypervisor_findings(template, zoned, row, facts))
    return findings


def _unresolved(template: MachineTemplate, zoned: ZonedDomain, resolution: Resolution) -> Finding:
    """Why CAPC cannot resolve the template. A lookup by id does not depend on the zone: its message
    names none, so the findings of several failure domains merge into one."""
    ref = template.cloudstack_template
    subject = template_ref(template)
    fd = zoned.failure_domain.name
    if resolution.count == 0:
        where = "" if ref.id else f" in {zoned.label}"
        return NOT_FOUND.finding(
            subject,
            f"no executable template {ref.id or ref.name!r}{where}",
            failure_domain=fd,
        )
    if resolution.count > 1:
        ids = sorted({row.id for row in resolution.rows})
        if ref.id:
            zones = sorted({row.zone_name or row.zone_id for row in resolution.rows})
            return AMBIGUOUS.finding(
                subject,
                f"template id {ref.id} lists {resolution.count} rows (zones {', '.join(zones)}); "
                "CAPC looks ids up without a zone and needs exactly one",
                hint="reference the template by name, which CAPC resolves within each zone",
                failure_domain=fd,
            )
        return AMBIGUOUS.finding(
            subject,
            f"{resolution.count} executable templates named {ref.name!r} in {zoned.label}: "
            f"ids {', '.join(ids)}",
            failure_domain=fd,
        )
    return NAME_MISMATCH.finding(subject, resolution.error, failure_domain=fd)


def _hypervisor_findings(
    template: MachineTemplate, zoned: ZonedDomain, row: Row, facts: Facts
) -> list[Finding]:
    hypervisor = row.hypervisor
    lookup = facts.lookup(zoned.failure_domain, hypervisor_query(zoned.zone_id))
    if not hypervisor or lookup is None:
        return []
    subject = template_ref(template)
    fd = zoned.failure_domain.name
    if lookup.failed:
        return [
            CLOUDSTACK_FAILED.finding(
                subject, f"listing hypervisors failed: {lookup.error}", failure_domain=fd
            )
        ]
    available = sorted({r.name for r in lookup.rows})
    if hypervisor.lower() in {name.lower() for name in available}:
        return []
    return [
        HYPERVISOR_MISSING.finding(
            subject,
            f"template {template.cloudstack_template} is for {hypervisor}, but {zoned.label} runs "
            f"{', '.join(available) or 'no hypervisor'}",
            failure_domain=fd,
        )
    ]


def names_version(name: str, version: str) -> bool:
    """Whether a template name is for `version`: exactly for conventional names, by minor for others."""
    try:
        wanted = parse_version(version)
    except ValueError:
        return True
    parsed = parse_template_name(name)
    if parsed is not None:
        return (parsed.version.major, parsed.version.minor, parsed.version.patch) == (
            wanted.major,
            wanted.minor,
            wanted.patch,
        )
    return re.search(rf"(?<!\d){wanted.major}[._-]?{wanted.minor}(?!\d)", name) is not None


def _version_findings(inventory: ClusterInventory, resolved_names: dict[str, str]) -> list[Finding]:
    findings = []
    for user in template_users(inventory):
        name = user.template.cloudstack_template.name or resolved_names.get(user.template.name, "")
        if not name or not user.version or names_version(name, user.version):
            continue
        parsed = parse_template_name(name)
        carries = f"is for {parsed.version}" if parsed is not None else f"does not mention {user.version}"
        findings.append(
            NAME_WITHOUT_VERSION.finding(
                user.subject,
                f"runs {user.version} from CloudStackMachineTemplate/{user.template.name}, whose template "
                f"{name!r} {carries}",
            )
        )
    return findings
