"""Get one node-image template ready in every failure-domain zone of a cluster, from a URL, CAPC's
prebuilt images or a local file, and safe to interrupt and re-run.

Every zone is looked at before anything is written: a ready template of the wanted name is reused, one
still downloading is waited for, and a failed one stops the run unless `replace` is set. Zones still
without the template get it by registerTemplate (URL), or by one upload followed by copyTemplate (file);
a copy that a previous, interrupted run already finished in one zone is copied instead of uploaded again.
So a re-run never creates a second template of the same name in a zone, which CAPC would refuse.

An upload is tagged with the host and process that sends it (`UPLOADER_TAG`): a re-run on the same host
that finds the upload still "in progress" while that process is gone (killed, interrupted) starts it
again, since no one else holds its one-time upload ticket. An upload from another host, or from a process
of this host still running, is waited for, also while it shows "NotUploaded" (ticket taken, file not yet
arrived); `--replace` deletes it instead.
A registered template is tagged in a second request. A run stopped between the two leaves it without
tags, so a re-run adds the tags it lacks to a template it reuses or waits for, when that template looks
like one this pipeline registered (the same display text, and no tag saying otherwise). An upload stopped
before its tags is still "NotUploaded" and is replaced, so it ends tagged like any other.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from kubectl_capc.cloudstack.client import CloudStackClient
from kubectl_capc.cloudstack.errors import CloudStackError, network_failure
from kubectl_capc.cloudstack.rows import OwnerScope, Template, TemplateSpec
from kubectl_capc.cloudstack.upload import UploadTLS
from kubectl_capc.domain.errors import UsageError
from kubectl_capc.domain.images import (
    Action,
    ExistingCopy,
    Hypervisor,
    ImageFormat,
    ZoneDecision,
    check_download_url,
    check_format,
    check_template_name,
    decide,
    describe_template,
    failed_while_waiting,
    format_from_url,
    prebuilt_url,
    upload_file_name,
)
from kubectl_capc.domain.naming import TemplateName, parse_template_name, template_name_for
from kubectl_capc.domain.versions import KubeVersion
from kubectl_capc.ops.image_targets import ZoneTarget

__all__ = [
    "CREATED_BY",
    "UPLOADER_TAG",
    "ImageSource",
    "Reporter",
    "ZoneOutcome",
    "complete_tags",
    "find_prebuilt",
    "missing_tags",
    "register_image",
    "template_spec_for",
    "template_tags",
]

_log = logging.getLogger(__name__)

CREATED_BY = "kubectl-capc"
UPLOADER_TAG = "uploaded-by"
"""Tag of an uploaded template: `HOST/PID` of the process that sent the file."""


class Reporter(Protocol):
    """Where progress goes (a terminal, a log, or nowhere)."""

    def step(self, message: str) -> None: ...

    def zones(self, rows: Sequence[Template]) -> None: ...

    def upload(self, sent: int, total: int) -> None: ...


@dataclass(frozen=True)
class ImageSource:
    """Where the image comes from: a URL CloudStack downloads, or a local file uploaded to it."""

    url: str | None = None
    path: Path | None = None
    checksum: str | None = None

    @property
    def image_format(self) -> ImageFormat:
        if self.path is not None:
            return format_from_url(self.path.name)
        return format_from_url(self.url or "")

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else str(self.url)


@dataclass(frozen=True)
class ZoneOutcome:
    """What happened in one failure domain's zone."""

    failure_domain: str
    zone: str
    zone_id: str
    template_id: str
    action: str


def template_spec_for(
    current: Template,
    version: KubeVersion,
    source: ImageSource,
    *,
    name: str | None = None,
    public: bool = False,
) -> TemplateSpec:
    """The new template: named like the current one for `version`, same hypervisor and OS type."""
    hypervisor = Hypervisor.parse(current.hypervisor)
    if source.url is not None:
        check_download_url(source.url)
    image_format = source.image_format
    check_format(image_format, hypervisor, str(source))
    if name is None and parse_template_name(current.name) is None:
        raise UsageError(
            f"cannot name the {version} template after {current.name!r}: that name does not follow "
            "<os>-kube-vX.Y.Z[-kvm|-xen|-vmware]",
            hint="choose the new template's name with --name",
        )
    new_name = template_name_for(current.name, version) if name is None else name
    check_template_name(new_name)
    return TemplateSpec(
        name=new_name,
        display_text=_display_text_for(new_name, version, hypervisor),
        hypervisor=hypervisor.value,
        format=image_format.value,
        os_type_id=current.os_type_id,
        public=public,
        checksum=source.checksum,
    )


def _display_text_for(name: str, version: KubeVersion, hypervisor: Hypervisor) -> str:
    """The display text a template registered here gets, e.g. `Ubuntu 22.04 Kubernetes v1.30.2 (KVM)`."""
    label = describe_template(name).os_name or name
    return f"{label} Kubernetes {version} ({hypervisor.value})"


def template_tags(spec: TemplateSpec, version: KubeVersion) -> dict[str, str]:
    """Tags recording what the template holds and what created it."""
    return _tags_for(spec.name, version)


def _tags_for(name: str, version: KubeVersion) -> dict[str, str]:
    tags = {"kubernetes-version": str(version), "created-by": CREATED_BY}
    parsed = parse_template_name(name)
    if parsed is not None:
        tags["os"] = parsed.os
    return tags


def find_prebuilt(
    base_url: str, current_name: str, version: KubeVersion, hypervisor: Hypervisor
) -> ImageSource:
    """The URL of CAPC's prebuilt image for the current template's OS at `version`, checked to exist;
    its published `.md5` becomes the checksum CloudStack verifies the download against."""
    import requests

    parsed = parse_template_name(current_name)
    if parsed is None:
        raise UsageError(
            f"cannot tell which prebuilt image matches {current_name!r}: the name does not follow "
            "<os>-kube-vX.Y.Z[-kvm|-xen|-vmware]",
            hint="pass --url or --file instead",
        )
    url = prebuilt_url(base_url, TemplateName(parsed.os, version), hypervisor)
    try:
        response = requests.head(url, allow_redirects=True, timeout=30)
    except requests.RequestException as err:
        raise UsageError(
            f"cannot check the prebuilt image {url}: {network_failure(err)}",
            hint="check the network, or point --prebuilt-base-url at a mirror",
        ) from None
    if response.status_code != 200:
        raise UsageError(
            f"no prebuilt image at {url} (HTTP {response.status_code})",
            hint="CAPC publishes images only for some versions and OSes: use --url, --file or "
            "`kubectl capc image build`",
        )
    return ImageSource(url=url, checksum=_published_md5(url))


def _published_md5(url: str) -> str | None:
    import requests

    try:
        response = requests.get(f"{url}.md5", timeout=30)
    except requests.RequestException:
        return None
    words = response.text.split() if response.status_code == 200 else []
    digest = words[0].lower() if words else ""
    if len(digest) == 32 and all(c in "0123456789abcdef" for c in digest):
        return digest
    return None


@dataclass(frozen=True)
class _Budget:
    """The time limit of one registration: when it began and when it ends (`time.monotonic()`)."""

    started: float
    deadline: float

    @classmethod
    def of(cls, timeout: float) -> _Budget:
        now = time.monotonic()
        return cls(now, now + timeout)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


@dataclass
class _Group:
    """The zones one client reaches as one owner: they share listings, registrations and copies."""

    client: CloudStackClient
    owner: OwnerScope
    targets: list[ZoneTarget]
    decisions: dict[str, ZoneDecision]
    found: dict[str, Template] = field(default_factory=dict)
    """The templates of the wanted name already there, by id."""


def register_image(
    targets: Sequence[ZoneTarget],
    spec: TemplateSpec,
    source: ImageSource,
    *,
    tags: dict[str, str],
    replace_failed: bool,
    timeout: float,
    reporter: Reporter,
    upload_tls: UploadTLS | None = None,
) -> tuple[ZoneOutcome, ...]:
    """Make template `spec.name` ready in every target zone; see the module docstring for the rules.
    `upload_tls` checks the secondary-storage VM's certificate when a local file is uploaded."""
    disabled = [t.zone.name for t in targets if not t.zone.enabled]
    if disabled:
        raise CloudStackError(
            f"zone(s) {', '.join(disabled)} are disabled: CloudStack would skip them",
            hint="enable the zones, or ask the CloudStack administrator",
        )
    budget = _Budget.of(timeout)
    groups = [_decide_group(group, spec.name, replace_failed) for group in _groups(targets)]
    blocked = [d.reason for g in groups for d in g.decisions.values() if d.action is Action.BLOCKED]
    if blocked:
        raise CloudStackError("; ".join(blocked), hint="nothing was changed")
    outcomes: dict[str, ZoneOutcome] = {}
    for group in groups:
        for outcome in _run_group(
            group,
            replace(spec, owner=group.owner),
            source=source,
            tags=tags,
            budget=budget,
            reporter=reporter,
            upload_tls=upload_tls or UploadTLS(),
        ):
            outcomes[outcome.failure_domain] = outcome
    return tuple(outcomes[t.failure_domain] for t in targets)


def complete_tags(
    targets: Sequence[ZoneTarget], name: str, version: KubeVersion, hypervisor: Hypervisor
) -> None:
    """Add the tags a run stopped between registering and tagging left off the ready templates named
    `name` (see `missing_tags` for which templates count as registered here)."""
    display_text = _display_text_for(name, version, hypervisor)
    wanted = _tags_for(name, version)
    for group in _groups(targets):
        rows = group.client.templates(template_filter="self", name=name, owner=group.owner)
        for row in {r.id: r for r in rows}.values():
            missing = missing_tags(row, display_text, wanted)
            if missing:
                group.client.tag_template(row.id, missing)


def missing_tags(row: Template, display_text: str, tags: Mapping[str, str]) -> dict[str, str]:
    """The tags of `tags` that `row` lacks, if `row` looks registered by this pipeline: it has the
    display text given here and none of its tags contradicts `tags`. Otherwise none: a template someone
    else registered under the name is not relabelled."""
    if row.display_text != display_text or any(row.tag(k) not in (None, v) for k, v in tags.items()):
        return {}
    return {key: value for key, value in tags.items() if row.tag(key) is None}


def _groups(targets: Sequence[ZoneTarget]) -> list[_Group]:
    groups: list[_Group] = []
    for target in targets:
        group = next((g for g in groups if g.client is target.client and g.owner == target.owner), None)
        if group is None:
            groups.append(_Group(target.client, target.owner, [target], {}))
        else:
            group.targets.append(target)
    return groups


def _decide_group(group: _Group, name: str, replace_failed: bool) -> _Group:
    # `self` shows the owner's templates also while they download; `executable` adds public ones, which
    # CAPC would find too. Together they are every template of this name that CAPC could trip over.
    rows: dict[tuple[str, str], Template] = {}
    for template_filter in ("self", "executable"):
        for row in group.client.templates(template_filter=template_filter, name=name, owner=group.owner):
            rows[(row.id, row.zone_id)] = row
            group.found[row.id] = row
    for target in group.targets:
        here = [_existing_copy(r) for r in rows.values() if r.zone_id == target.zone.id]
        group.decisions[target.failure_domain] = decide(
            here, replace=replace_failed, zone=target.zone.name, name=name
        )
    return group


def _run_group(
    group: _Group,
    spec: TemplateSpec,
    *,
    source: ImageSource,
    tags: dict[str, str],
    budget: _Budget,
    reporter: Reporter,
    upload_tls: UploadTLS,
) -> list[ZoneOutcome]:
    client = group.client
    actions: dict[str, str] = {}
    template_of: dict[str, str] = {}
    to_create: list[ZoneTarget] = []
    for target in group.targets:
        decision = group.decisions[target.failure_domain]
        if decision.action is Action.REPLACE:
            reporter.step(
                f"deleting template {decision.template_id} in zone {target.zone.name} ({decision.reason})"
            )
            client.delete_template(decision.template_id, target.zone.id)
            actions[target.failure_domain] = "replaced"
            to_create.append(target)
        elif decision.action is Action.CREATE:
            to_create.append(target)
        else:
            actions[target.failure_domain] = "reused" if decision.action is Action.REUSE else "waited"
            template_of[target.failure_domain] = decision.template_id
    for template_id in dict.fromkeys(template_of.values()):
        missing = missing_tags(group.found[template_id], spec.display_text, tags)
        if missing:  # registered by a run stopped before it tagged it
            client.tag_template(template_id, missing)

    if to_create and source.path is not None:
        created = _upload_and_copy(
            group,
            spec,
            path=source.path,
            to_create=to_create,
            existing=template_of,
            tags=tags,
            budget=budget,
            reporter=reporter,
            upload_tls=upload_tls,
        )
        for domain, (template_id, action) in created.items():
            template_of[domain] = template_id
            actions.setdefault(domain, action)
    elif to_create:
        zone_names = ", ".join(t.zone.name for t in to_create)
        reporter.step(f"registering {spec.name} from {source} in {zone_names}")
        rows = client.register_template(spec, str(source.url), [t.zone.id for t in to_create])
        if not rows:
            raise CloudStackError(f"registering {spec.name} in {zone_names} returned no template")
        client.tag_template(rows[0].id, tags)
        for target in to_create:
            template_of[target.failure_domain] = rows[0].id
            actions.setdefault(target.failure_domain, "registered")

    _wait_all(client, group.targets, template_of, budget, reporter)
    return [
        ZoneOutcome(
            t.failure_domain, t.zone.name, t.zone.id, template_of[t.failure_domain], actions[t.failure_domain]
        )
        for t in group.targets
    ]


def _upload_and_copy(
    group: _Group,
    spec: TemplateSpec,
    *,
    path: Path,
    to_create: list[ZoneTarget],
    existing: dict[str, str],
    tags: dict[str, str],
    budget: _Budget,
    reporter: Reporter,
    upload_tls: UploadTLS,
) -> dict[str, tuple[str, str]]:
    """Upload once (unless a zone already holds the template), then copy it to the other zones.

    Returns failure domain -> (template id, "uploaded" or "copied").
    """
    client = group.client
    by_domain = {t.failure_domain: t for t in group.targets}
    source = next(iter(existing.items()), None)
    created: dict[str, tuple[str, str]] = {}
    remaining = list(to_create)
    if source is None:
        first = remaining.pop(0)
        reporter.step(f"uploading {path} as {spec.name} to zone {first.zone.name}")
        ticket = client.upload_ticket(spec, first.zone.id)
        uploader = f"{socket.gethostname()}/{os.getpid()}"
        client.tag_template(ticket.template_id, {**tags, UPLOADER_TAG: uploader})
        client.upload(
            ticket,
            path,
            reporter.upload,
            filename=upload_file_name(spec.name, ImageFormat(spec.format), path.name),
            tls=upload_tls,
        )
        created[first.failure_domain] = (ticket.template_id, "uploaded")
        source = (first.failure_domain, ticket.template_id)
    if remaining:
        source_target = by_domain[source[0]]
        _wait_all(client, [source_target], {source[0]: source[1]}, budget, reporter)
        names = ", ".join(t.zone.name for t in remaining)
        reporter.step(f"copying {spec.name} from zone {source_target.zone.name} to {names}")
        client.copy_template(
            source[1],
            source_target.zone.id,
            [t.zone for t in remaining],
            timeout=budget.remaining(),
            on_progress=reporter.zones,
            started=budget.started,
        )
        for target in remaining:
            created[target.failure_domain] = (source[1], "copied")
    return created


def _existing_copy(row: Template) -> ExistingCopy:
    gone = _uploader_gone(row)
    running = bool(row.tag(UPLOADER_TAG)) and not gone
    return ExistingCopy(row.id, row.ready, row.status, uploader_gone=gone, uploader_running=running)


def _uploader_gone(row: Template) -> bool:
    """Whether `row`'s upload was sent by a process of this host that has ended."""
    host, _, pid = (row.tag(UPLOADER_TAG) or "").rpartition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, as another user
    return False


def _wait_all(
    client: CloudStackClient,
    targets: Sequence[ZoneTarget],
    template_of: dict[str, str],
    budget: _Budget,
    reporter: Reporter,
) -> None:
    zones_by_template: dict[str, list[str]] = {}
    for target in targets:
        zones_by_template.setdefault(template_of[target.failure_domain], []).append(target.zone.id)
    for template_id, zone_ids in zones_by_template.items():
        client.wait_until_ready(
            template_id,
            zone_ids,
            timeout=budget.remaining(),
            failed=lambda row: failed_while_waiting(row.ready, row.status),
            on_progress=reporter.zones,
            started=budget.started,
        )
