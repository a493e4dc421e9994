"""`kubectl capc status`: how far each rollout got, and why a machine is not progressing.

Gathering costs a fixed number of requests however many machines there are: one LIST per kind on the
management cluster (`kube.rollouts`), per zone of the failure domains one listVirtualMachines and one
listTemplates as the failure domain's tenant (shared between clusters with the same credentials, zone
and tenant), and the workload cluster's Pods and PodDisruptionBudgets through its kubeconfig Secret
when it answers. What cannot be asked (a Secret missing, CloudStack down) becomes a note, and the
causes are found from what was read. `follow` re-gathers on every change a WATCH of Machines reports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from kubectl_capc.domain.checks.workload import WorkloadFacts
from kubectl_capc.domain.diagnosis import RolloutStatus, TemplateReadiness
from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.errors import CapcError, ExitCode, UsageError
from kubectl_capc.domain.model import ClusterInventory, FailureDomain, SecretRef
from kubectl_capc.domain.status_facts import (
    HealthCheck,
    VirtualMachineState,
    ZoneFacts,
    cluster_status,
    parse_health_check,
)

if TYPE_CHECKING:
    from kubectl_capc.kube.rollouts import RolloutObjects

__all__ = [
    "LIST_KIND",
    "TABLE_HEADERS",
    "CloudStackZones",
    "StatusOptions",
    "StatusReport",
    "build_report",
    "follow",
    "gather",
]

_log = logging.getLogger(__name__)

LIST_KIND = "RolloutStatusList"
TABLE_HEADERS = ("OWNER", "MACHINE", "VERSION", "PHASE", "CAUSE")

WorkloadReader = Callable[[str, str], "WorkloadFacts | None"]
"""(namespace, cluster) -> what the workload cluster says, None when it is not asked."""
ZoneReader = Callable[[ClusterInventory], "tuple[ZoneFacts, list[str]]"]
"""A cluster -> what CloudStack says in its zones, and notes on the zones that could not be asked."""


@dataclass(frozen=True)
class StatusOptions:
    """Which clusters: `cluster` in `namespace`, or those `label_selector` picks there (every namespace
    when `namespace` is None). `join_timeout`: how long a machine may go without a nodeRef."""

    namespace: str | None
    cluster: str | None = None
    label_selector: str | None = None
    join_timeout: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        if self.cluster is not None and self.namespace is None:
            raise UsageError(
                "a cluster name cannot be combined with -A", hint="drop -A or drop the cluster name"
            )
        if self.cluster is not None and self.label_selector:
            raise UsageError(
                "a cluster name cannot be combined with -l", hint="drop -l or drop the cluster name"
            )


@dataclass(frozen=True)
class StatusReport:
    """The doctor's verdict for each selected cluster, and notes on what could not be asked."""

    statuses: tuple[RolloutStatus, ...]
    notes: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        return any(status.blocked for status in self.statuses)

    @property
    def settled(self) -> bool:
        """Every machine runs its owner's version and none is held up: nothing left to follow."""
        return not self.blocked and all(
            owner.on_old == 0 for status in self.statuses for owner in status.owners
        )

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.FINDINGS if self.blocked else ExitCode.OK

    def to_document(self, *, as_list: bool) -> dict[str, Any]:
        """One `RolloutStatus` for a named cluster, else a `RolloutStatusList` of them."""
        if not as_list and len(self.statuses) == 1:
            return {**self.statuses[0].to_document(), "notes": list(self.notes)}
        return {
            "apiVersion": API_VERSION,
            "kind": LIST_KIND,
            "items": [status.to_document() for status in self.statuses],
            "notes": list(self.notes),
        }

    def rows(self, *, with_cluster: bool) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for status in self.statuses:
            for row in status.rows():
                out.append((f"{status.namespace}/{status.cluster}", *row) if with_cluster else row)
        return out


def build_report(
    objects: RolloutObjects,
    *,
    zones: ZoneReader,
    workload: WorkloadReader,
    now: datetime,
    join_timeout: timedelta = timedelta(minutes=10),
) -> StatusReport:
    """Diagnose every cluster of `objects`, asking CloudStack and the workload cluster per cluster."""
    checks: list[HealthCheck] = [
        check for check in (parse_health_check(raw) for raw in objects.health_checks) if check is not None
    ]
    statuses, notes = [], []
    for inventory in objects.inventories:
        zone_facts, zone_notes = zones(inventory)
        notes += zone_notes
        facts = workload(inventory.namespace, inventory.name)
        if facts is not None and facts.unreachable:
            notes.append(
                f"{inventory.namespace}/{inventory.name}: workload cluster not read ({facts.unreachable}); "
                "drain causes come from the Machines alone"
            )
        statuses.append(
            cluster_status(
                inventory,
                objects.machines,
                objects.cloudstack_machines,
                checks,
                zones=zone_facts,
                workload=facts,
                now=now,
                join_timeout=join_timeout,
            )
        )
    return StatusReport(tuple(statuses), tuple(notes))


# -- CloudStack: VMs and templates per zone --------------------------------------------------------

_TenantKey = tuple[SecretRef, str, str, str, str]


@dataclass
class CloudStackZones:
    """Asks each failure domain's zone, as its tenant, for its VMs and templates: two calls per zone,
    shared by every cluster whose failure domains use the same credentials, zone and tenant."""

    api_client: Any
    make_client: Callable[[Any], Any] | None = None
    _clients: dict[SecretRef, Any] = field(default_factory=dict)
    _answers: dict[_TenantKey, tuple[ZoneFacts, str] | CapcError] = field(default_factory=dict)

    def __call__(self, inventory: ClusterInventory) -> tuple[ZoneFacts, list[str]]:
        checked: set[str] = set()
        vms: list[VirtualMachineState] = []
        templates: dict[tuple[str, str], TemplateReadiness] = {}
        notes = []
        for fd in inventory.failure_domains:
            key = (fd.credentials, fd.zone.id or fd.zone.name, fd.account, fd.domain, fd.project)
            if key not in self._answers:
                try:
                    self._answers[key] = self._ask(fd)
                except CapcError as err:
                    self._answers[key] = err
            answer = self._answers[key]
            if isinstance(answer, CapcError):
                notes.append(
                    f"{inventory.namespace}/{inventory.name} failure domain {fd.name}: CloudStack not asked "
                    f"({answer.message})"
                )
                continue
            facts, zone = answer
            checked.add(zone)
            vms += facts.vms
            templates.update(facts.templates)
        # A template the cluster's machine templates name that a zone asked does not list at all.
        for template in inventory.namespace_templates:
            wanted = template.cloudstack_template.name or template.cloudstack_template.id
            for zone in checked:
                if wanted:
                    templates.setdefault(
                        (wanted, zone), TemplateReadiness(False, "not registered in this zone")
                    )
        return ZoneFacts(frozenset(checked), tuple(vms), templates), notes

    def _ask(self, fd: FailureDomain) -> tuple[ZoneFacts, str]:
        from kubectl_capc.cloudstack.client import CloudStackClient
        from kubectl_capc.ops.image_targets import read_secret_credentials

        if fd.credentials not in self._clients:
            factory = self.make_client or CloudStackClient
            self._clients[fd.credentials] = factory(
                read_secret_credentials(self.api_client, fd.credentials, fd.name)
            )
        client = self._clients[fd.credentials]
        zone = client.zone(fd.zone.id or fd.zone.name)
        owner = client.owner_scope(project=fd.project, account=fd.account, domain=fd.domain)
        vms = tuple(
            VirtualMachineState(vm.id, vm.name, vm.state, zone.name)
            for vm in client.virtual_machines(zone_id=zone.id, owner=owner)
        )
        return ZoneFacts(
            frozenset({zone.name}), vms, _readiness(client.templates(zone_id=zone.id, owner=owner), zone.name)
        ), zone.name


def _readiness(rows: Iterable[Any], zone: str) -> dict[tuple[str, str], TemplateReadiness]:
    """Per template name and id in `zone`: ready when any of its rows is (CloudStack lists one row per
    template and zone; a name may have several templates)."""
    found: dict[tuple[str, str], TemplateReadiness] = {}
    for row in rows:
        for key in ((row.name, zone), (row.id, zone)):
            known = found.get(key)
            if known is None or (row.ready and not known.ready):
                found[key] = TemplateReadiness(
                    bool(row.ready), "" if row.ready else row.status or "not ready"
                )
    return found


# -- the workload cluster --------------------------------------------------------------------------


def workload_reader(api_client: Any, request_timeout: float | None) -> WorkloadReader:
    """Reads each workload cluster through its `<cluster>-kubeconfig` Secret; never raises for it."""

    def read(namespace: str, cluster: str) -> WorkloadFacts | None:
        from kubectl_capc.kube.workload import read_workload

        return read_workload(api_client, namespace, cluster, request_timeout=request_timeout).facts

    return read


# -- the command -----------------------------------------------------------------------------------


def gather(
    api_client: Any,
    options: StatusOptions,
    *,
    zones: ZoneReader | None = None,
    workload: WorkloadReader | None = None,
    request_timeout: float | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> tuple[StatusReport, RolloutObjects]:
    """Read the selected clusters and diagnose them; the objects read come back too (a watch of the
    Machines starts from their list's resourceVersion)."""
    from kubectl_capc.kube.rollouts import read_rollout_objects

    objects = read_rollout_objects(
        api_client,
        namespace=options.namespace,
        cluster=options.cluster,
        label_selector=options.label_selector,
    )
    asked = zones or CloudStackZones(api_client)
    report = build_report(
        objects,
        zones=asked,
        workload=workload or workload_reader(api_client, request_timeout),
        now=now(),
        join_timeout=options.join_timeout,
    )
    return report, objects


Render = Callable[[StatusReport], None]
WATCH_SECONDS = 300
SETTLE_SECONDS = 0.5
"""After a Machine event, wait this long for more before reading again: a rollout step changes several
objects at once."""


def follow(
    api_client: Any,
    options: StatusOptions,
    render: Render,
    *,
    zones: ZoneReader | None = None,
    workload: WorkloadReader | None = None,
    request_timeout: float | None = None,
    until_settled: bool = True,
) -> StatusReport:
    """Render the status, then again after every change a WATCH of Machines reports, until the
    rollouts have settled (every machine on its owner's version, none held up).

    One LIST per kind per change, never one request per machine; CloudStack answers are shared within
    one reading only, so a VM that changes state is seen at the next change."""
    from kubectl_capc.kube.rollouts import watch_machines

    last: StatusReport | None = None
    while True:
        report, objects = gather(
            api_client, options, zones=zones, workload=workload, request_timeout=request_timeout
        )
        if last is None or report != last:
            render(report)
            last = report
        if until_settled and report.settled:
            return report
        namespaces = sorted({i.namespace for i in objects.inventories})
        scope = options.namespace
        events = watch_machines(
            api_client,
            objects.capi_version,
            namespace=scope,
            resource_version=objects.resource_version,
            seconds=WATCH_SECONDS,
            namespaces=namespaces,
        )
        try:
            changed = next(events, None)
        finally:
            events.close()
        if changed is not None:
            _log.debug("Machine %s changed: reading again", changed)
            time.sleep(SETTLE_SECONDS)
