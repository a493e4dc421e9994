"""`kubectl capc image-upgrade --to VERSION` for many clusters: by name, `-A` and/or `-l SELECTOR`.

1. Read: the selected clusters with one LIST per kind (as `validate -A` reads), then the templates of
   each failure domain's zone, one CloudStack client per endpoint and key for the whole fleet.
2. Plan: each cluster's own plan (the planner `image-upgrade` uses for one cluster) and its preflight
   (the checks of `validate --to`); a cluster with a blocker, a preflight error or an unreadable part is
   refused. The `FleetPlan` lists them all; with refusals the run stops there unless `--skip-failing`.
3. Images: each node image the fleet needs is found, registered or built once and made ready in the
   union of the zones of the clusters that use it, before any cluster rolls.
4. Run: each cluster's upgrade is the same `Upgrade` plan-run as for one cluster (server-side dry run
   first, history annotations), started as `FleetSchedule` allows (canaries first, then at most
   `max_concurrent` at a time) in a thread pool. The waits of all running clusters share one watch per
   kind (`kube.watches.WatchHub`).

Ctrl-C during the run starts no new cluster and lets the running ones finish; a second Ctrl-C stops
those at their next step, between two writes, so a re-run continues them. A re-run of the same command
finds the finished clusters at the target: they are no-ops.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from kubectl_capc.domain.errors import CapcError, PlanError, UsageError
from kubectl_capc.domain.fleet import (
    ClusterKey,
    FleetMember,
    FleetPlan,
    FleetPolicy,
    FleetReport,
    FleetSchedule,
    MemberVerdict,
    SharedImage,
)
from kubectl_capc.domain.lease import fleet_lease_seconds
from kubectl_capc.domain.model import ClusterInventory
from kubectl_capc.domain.plan import EnsureImage, ImageSource, PlanHop, Step
from kubectl_capc.domain.planner import PlanRequest, plan_upgrade
from kubectl_capc.domain.preview import ObjectPreview
from kubectl_capc.domain.progress import RolloutUpdate
from kubectl_capc.ops.cluster_io import KubeClusterIO
from kubectl_capc.ops.options import ApplyOptions, ImageOptions
from kubectl_capc.ops.progress import ImageProgress, NoteProgress, PipelineReporter
from kubectl_capc.ops.upgrade import Upgrade, require_confirmation

if TYPE_CHECKING:
    from kubectl_capc.cloudstack.client import CloudStackClient
    from kubectl_capc.cloudstack.credentials import Credentials
    from kubectl_capc.kube.lease import ClusterLease
    from kubectl_capc.kube.watches import WatchHub
    from kubectl_capc.ops.image_targets import ZoneTarget

__all__ = [
    "FleetConsole",
    "FleetOptions",
    "FleetRun",
    "FleetSelection",
    "SharedClients",
    "exit_code_of",
    "read_selection",
]

_log = logging.getLogger(__name__)

STOPPED = "stopped by Ctrl-C between two writes; run the same command again to continue"
LEFT_TO_THE_PLANNER = frozenset({"CAPC-C003"})
"""Preflight errors that do not refuse a cluster: a rollout in progress is judged by the planner, as for
one cluster, so that a re-run continues the rollouts an earlier run started (or stopped waiting for)."""
OBTAINED = frozenset({"CAPC-U004"})
"""Also left to the planner when the run obtains images (`--image-source` other than existing) or pins
one (`--image`): a template not registered yet is what the run registers, or not the one it uses."""


@dataclass(frozen=True)
class FleetSelection:
    """Which clusters: `names` (any namespace with `namespace` None), all of `namespace` (None: all
    namespaces), narrowed by `label_selector`."""

    names: tuple[str, ...] = ()
    namespace: str | None = None
    label_selector: str | None = None

    def describe(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace else "all namespaces"
        label = f" with labels {self.label_selector}" if self.label_selector else ""
        return f"{where}{label}"


@dataclass(frozen=True)
class FleetOptions:
    policy: FleetPolicy = field(default_factory=FleetPolicy)
    apply: ApplyOptions = field(default_factory=ApplyOptions)
    preflight: bool = True
    """Run the checks of `validate --to` on every cluster and refuse those with errors."""


class FleetConsole(Protocol):
    """What a fleet run shows and asks."""

    def show_fleet_plan(self, plan: FleetPlan) -> None: ...

    def confirm(self, question: str) -> bool: ...

    def note(self, message: str) -> None: ...

    def member(self, key: ClusterKey, state: str, detail: str = "") -> None:
        """A cluster changed state (`running`, `succeeded`, `failed`, or a step it started)."""

    def show_report(self, plan: FleetPlan, report: FleetReport) -> None: ...


def read_selection(api_client: Any, selection: FleetSelection) -> tuple[ClusterInventory, ...]:
    """The selected clusters: one LIST per kind over the namespace (or all), then filtered by name."""
    from kubectl_capc.kube.read import read_inventories

    inventories = read_inventories(
        api_client, namespace=selection.namespace, label_selector=selection.label_selector
    )
    if not selection.names:
        return inventories
    wanted = set(selection.names)
    chosen = tuple(inv for inv in inventories if inv.name in wanted)
    missing = sorted(wanted - {inv.name for inv in chosen})
    if missing:
        raise UsageError(
            f"cluster(s) {', '.join(missing)} not found in {selection.describe()}",
            hint="list them with `kubectl get clusters" + (" -A`" if selection.namespace is None else "`"),
        )
    return chosen


class SharedClients:
    """One CloudStack client per endpoint and key pair, for every cluster of the fleet: the templates
    they share are listed, registered and copied through the same client, so once per tenant."""

    def __init__(self, make_client: Callable[[Credentials], CloudStackClient] | None = None) -> None:
        self._make = make_client
        self._clients: dict[tuple[Any, ...], CloudStackClient] = {}
        self._lock = threading.Lock()

    def __call__(self, credentials: Credentials) -> CloudStackClient:
        key = (
            credentials.endpoint,
            credentials.api_key,
            credentials.secret_key,
            credentials.verify_ssl,
            credentials.ca_bundle,
        )
        with self._lock:
            if key not in self._clients:
                if self._make is None:
                    from kubectl_capc.cloudstack.client import CloudStackClient

                    self._clients[key] = CloudStackClient(credentials)
                else:
                    self._clients[key] = self._make(credentials)
            return self._clients[key]


class _MemberIO(KubeClusterIO):
    """One member's `ClusterIO`: its writer waits through the fleet's hub, and images the fleet has
    made ready are not made ready again."""

    def __init__(self, *args: Any, hub: WatchHub | None, ready: set[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hub = hub
        self._ready = ready
        self.held_lease: ClusterLease | None = None
        """The lock of the member's run: its renewal cannot interrupt a worker thread, so the member's
        console asks it at each step and progress report."""

    def lease(self) -> ClusterLease:
        self.held_lease = super().lease()
        return self.held_lease

    def read_inventory(self) -> ClusterInventory:
        inventory = super().read_inventory()
        if self._hub is not None and self.writer.shared_wait is None:
            self.writer.shared_wait = self._hub.wait
        return inventory

    def ensure_image(self, step: EnsureImage, inventory: ClusterInventory, timeout: float | None) -> None:
        if step.image not in self._ready:
            super().ensure_image(step, inventory, timeout)

    def targets(self, inventory: ClusterInventory) -> tuple[ZoneTarget, ...]:
        return self._zone_targets(inventory)

    def image_source(self, step: EnsureImage, current: Any) -> Any:
        return self._source(step, current)


class _Halted(Exception):
    """A member run stopped at a step boundary after the second Ctrl-C."""


class _MemberConsole:
    """The `ops.upgrade.Console` of one member: its steps become fleet progress lines."""

    def __init__(self, fleet: FleetConsole, key: ClusterKey, halt: threading.Event, io: _MemberIO) -> None:
        self.fleet = fleet
        self.key = key
        self.halt = halt
        self.io = io

    def _go_on(self) -> None:
        """Stop the member between two writes after the second Ctrl-C, or once its lock is lost."""
        if self.halt.is_set():
            raise _Halted(STOPPED)
        lease = self.io.held_lease
        if lease is not None and lease.lost is not None:
            raise lease.lost

    def show_plan(self, plan: Any) -> None:
        pass  # the fleet plan has shown it

    def show_previews(self, previews: Sequence[ObjectPreview]) -> None:
        for preview in previews:
            if preview.rejection:
                self.fleet.member(self.key, "rejected", f"{preview.step.subject}: {preview.rejection}")

    def confirm(self, question: str) -> bool:
        return False  # never asked: the fleet was confirmed as a whole (the member runs have --yes)

    def note(self, message: str) -> None:
        self.fleet.member(self.key, "note", message)

    def step(self, hop: PlanHop, step: Step, state: str) -> None:
        if state == "start":
            self._go_on()
        self.fleet.member(self.key, state, f"hop {hop.number} {step.action} {step.subject}")

    def progress(self, update: RolloutUpdate) -> None:
        self._go_on()


@dataclass
class _Member:
    key: ClusterKey
    inventory: ClusterInventory
    io: _MemberIO
    plan_member: FleetMember
    started: float = 0.0
    seconds: float = 0.0


class FleetRun:
    """One fleet `image-upgrade`: plan, confirm, make the images ready, then run the members."""

    def __init__(
        self,
        api_client: Any,
        selection: FleetSelection,
        request: PlanRequest,
        images: ImageOptions,
        options: FleetOptions,
        *,
        console: FleetConsole,
        make_client: Callable[[Credentials], CloudStackClient] | None = None,
        progress: ImageProgress | None = None,
    ) -> None:
        """`progress` shows the progress of making the node images ready (default: as notes)."""
        self.api_client = api_client
        self.selection = selection
        self.request = request
        self.images = images
        self.options = options
        self.console = console
        self.image_progress: ImageProgress = progress or NoteProgress(console.note)
        self.clients = SharedClients(make_client)
        self.ready_images: set[str] = set()
        self.hub: WatchHub | None = None
        self._members: dict[ClusterKey, _Member] = {}
        self._halt = threading.Event()
        self._interrupts = 0
        self.plan_result: FleetPlan | None = None
        self.report_result: FleetReport | None = None

    # -- plan -------------------------------------------------------------------------------------

    def plan(self) -> FleetPlan:
        inventories = read_selection(self.api_client, self.selection)
        if not inventories:
            raise UsageError(
                f"no clusters found in {self.selection.describe()}",
                hint="check -n/-A and -l, or list them with `kubectl get clusters -A --show-labels`",
            )
        capi = {inv.capi_version for inv in inventories}
        namespaces = {inv.namespace for inv in inventories}
        from kubectl_capc.kube.watches import WatchHub

        self.hub = WatchHub.for_cluster(self.api_client, next(iter(capi)), namespaces)
        problems = self._preflight(inventories) if self.options.preflight else {}
        members = []
        for inventory in inventories:
            key = ClusterKey(inventory.namespace, inventory.name)
            io = _MemberIO(
                self.api_client, inventory.namespace, inventory.name, self.images, _Quiet(),
                make_client=self.clients, hub=self.hub, ready=self.ready_images,
                progress=self.image_progress,
            )  # fmt: skip
            member = self._plan_one(key, inventory, io, problems.get(key, ()))
            self._members[key] = _Member(key, inventory, io, member)
            members.append(member)
        plan = FleetPlan(str(self.request.target), tuple(members), self.options.policy)
        # As many clusters as run at once hold a lock each: each lasts as many times longer.
        running = min(self.options.policy.max_concurrent, len(plan.in_verdict(MemberVerdict.UPGRADE)))
        for held in self._members.values():
            held.io.lease_seconds = fleet_lease_seconds(running)
        self.plan_result = plan
        return plan

    def _plan_one(
        self, key: ClusterKey, inventory: ClusterInventory, io: _MemberIO, problems: Sequence[str]
    ) -> FleetMember:
        try:
            templates = io.zone_templates(inventory)
            plan = plan_upgrade(inventory, self.request, templates)
        except CapcError as err:
            return FleetMember(key, None, (*problems, str(err)))
        return FleetMember(key, plan, tuple(problems))

    def _preflight(self, inventories: Sequence[ClusterInventory]) -> dict[ClusterKey, tuple[str, ...]]:
        """The errors `validate --to` finds, per cluster, each as `CHECK-ID: message`."""
        from kubectl_capc.domain.checks import Severity
        from kubectl_capc.ops.validate import build_report, gather_facts

        target = self.request.target
        ignored = LEFT_TO_THE_PLANNER
        if self.images.source is not ImageSource.EXISTING or self.request.image is not None:
            ignored = ignored | OBTAINED
        gathered = gather_facts(self.api_client, inventories, target, make_client=self.clients)
        report = build_report(inventories, gathered.facts, target, secrets=gathered.secrets)
        return {
            ClusterKey(result.namespace, result.name): tuple(
                f"{f.check_id}: {f.message}"
                for f in result.findings
                if f.severity is Severity.ERROR and f.check_id not in ignored
            )
            for result in report.clusters
        }

    # -- run --------------------------------------------------------------------------------------

    def run(self) -> FleetReport | None:
        """Plan, show, confirm, make images ready, run; None for a dry run (nothing was changed)."""
        plan = self.plan()
        try:
            self.console.show_fleet_plan(plan)
            if plan.refused:
                refused = plan.in_verdict(MemberVerdict.REFUSED)
                raise PlanError(
                    f"{len(refused)} cluster(s) cannot be upgraded: "
                    + "; ".join(f"{m.key}: {'; '.join(m.reasons)}" for m in refused),
                    hint="nothing was changed; fix them, or pass --skip-failing to upgrade the others",
                )
            if self.options.apply.dry_run:
                self.check_with_server(plan)
                return None
            if plan.order:
                apply = self.options.apply
                require_confirmation(
                    f"Upgrade {len(plan.order)} cluster(s) to {plan.target}?",
                    yes=apply.yes,
                    interactive=apply.interactive,
                    ask=self.console.confirm,
                )
                self.prepare_images(plan)
            return self.execute(plan)
        finally:
            if self.hub is not None:
                self.hub.close()

    def check_with_server(self, plan: FleetPlan) -> None:
        """`--dry-run`: every cluster's writes go to the API server with dryRun=All, as one cluster's dry
        run sends them (its lock is only read); the writes it rejects refuse the run, by cluster."""
        rejected = []
        for key in plan.order:
            self.console.member(key, "checking", "server-side dry run")
            failure = self._run_member(key, dry_run=True)
            if failure is None:
                self.console.member(key, "checked", "the API server accepts every write (dryRun=All)")
            else:
                rejected.append(f"{key}: {failure}")
                self.console.member(key, "failed", failure)
        if rejected:
            raise PlanError(
                f"{len(rejected)} cluster(s) cannot be upgraded: " + "; ".join(rejected),
                hint="nothing was changed; fix them, or leave them out of the selection",
            )

    def prepare_images(self, plan: FleetPlan) -> None:
        """Make every shared image ready once, over the union of its clusters' zones."""
        for shared in plan.images:
            if shared.ready and self.images.source is ImageSource.EXISTING:
                self.ready_images.add(shared.image)
                continue
            users = [self._members[key] for key in shared.clusters]
            self.console.note(
                f"node image {shared.image}: {'checking' if shared.ready else 'making it ready'} in "
                f"zone(s) {', '.join(z.zone for z in shared.zones)} for {len(users)} cluster(s)"
            )
            if self.images.source is ImageSource.EXISTING:
                # Nothing to register: wait for the copies on their way, cluster by cluster (the
                # later ones find them ready).
                for member in users:
                    member.io.ensure_image(_ensure_step(member), member.inventory, self._image_timeout)
            else:
                self._register_shared(shared, users)
            self.ready_images.add(shared.image)

    @property
    def _image_timeout(self) -> float | None:
        return self.options.apply.timeouts.images

    def _register_shared(self, shared: SharedImage, users: Sequence[_Member]) -> None:
        from kubectl_capc.domain.images import Hypervisor
        from kubectl_capc.ops.image_register import (
            complete_tags,
            register_image,
            template_spec_for,
            template_tags,
        )
        from kubectl_capc.ops.image_targets import current_template

        first = users[0]
        own = first.io.targets(first.inventory)
        current = current_template(first.inventory, own)
        step = _ensure_step(first)
        targets = _union_targets(users)
        hypervisor = Hypervisor.parse(current.hypervisor)
        if shared.ready:
            complete_tags(targets, step.image, step.version, hypervisor)
            return
        source = first.io.image_source(step, current)
        spec = template_spec_for(current, step.version, source, name=step.image)
        timeout = self._image_timeout
        register_image(
            targets,
            spec,
            source,
            tags=template_tags(spec, step.version),
            replace_failed=False,
            timeout=timeout if timeout is not None else float("inf"),
            reporter=PipelineReporter(self.image_progress, timeout=timeout),
            upload_tls=self.images.upload_tls(),
        )

    def execute(self, plan: FleetPlan) -> FleetReport:
        """Run the members as the schedule allows; Ctrl-C as the module docstring says."""
        schedule = FleetSchedule(plan)
        policy = self.options.policy
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self._interrupted) if in_main else None
        futures: dict[Future[str | None], ClusterKey] = {}
        try:
            with ThreadPoolExecutor(max_workers=policy.max_concurrent, thread_name_prefix="fleet") as pool:
                while True:
                    if self._interrupts:
                        schedule.stop()
                    for key in schedule.next_to_start():
                        schedule.started(key)
                        self._members[key].started = time.monotonic()
                        self.console.member(key, "running")
                        futures[pool.submit(self._upgrade_one, key)] = key
                    if not futures:
                        break
                    done, _ = wait(list(futures), timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        key = futures.pop(future)
                        failure = future.result()
                        member = self._members[key]
                        member.seconds = time.monotonic() - member.started
                        schedule.finished(key, ok=failure is None, reason=failure or "")
                        self.console.member(key, "failed" if failure else "succeeded", failure or "")
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        report = schedule.report()
        self.report_result = report
        self.console.show_report(plan, report)
        if self._interrupts:
            raise KeyboardInterrupt
        return report

    def _interrupted(self, signum: int, frame: FrameType | None) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            self.console.note(
                "stopping: no more clusters start; the running ones finish "
                "(press Ctrl-C again to stop them at their next step)"
            )
        else:
            self._halt.set()
            self.console.note("stopping the running clusters at their next step, between two writes")

    def _upgrade_one(self, key: ClusterKey) -> str | None:
        """One member's plan-run; the reason it failed, or None."""
        return self._run_member(key, dry_run=False)

    def _run_member(self, key: ClusterKey, *, dry_run: bool) -> str | None:
        """One member's `Upgrade` (confirmed with the fleet); the reason it failed, or None."""
        member = self._members[key]
        options = replace(self.options.apply, yes=True, dry_run=dry_run, interactive=False)
        console = _MemberConsole(self.console, key, self._halt, member.io)
        member.io.console = console
        try:
            Upgrade(member.io, self.request, options, console).run()
        except _Halted as halted:
            return str(halted)
        except CapcError as err:
            return str(err)
        except Exception as err:  # a bug in one member must not take the others down
            _log.exception("upgrade of %s failed", key)
            return f"internal error: {type(err).__name__}: {err}"
        return None

    def durations(self) -> dict[ClusterKey, float]:
        """Seconds each member's run took (members that ran)."""
        return {key: m.seconds for key, m in self._members.items() if m.seconds}


def exit_code_of(report: FleetReport) -> int:
    """0 when every selected cluster is at the target, else `ExitCode.FLEET_INCOMPLETE`."""
    from kubectl_capc.domain.errors import ExitCode

    return int(ExitCode.OK if report.complete else ExitCode.FLEET_INCOMPLETE)


def _ensure_step(member: _Member) -> EnsureImage:
    plan = member.plan_member.plan
    assert plan is not None
    return next(step for _, step in plan.steps() if isinstance(step, EnsureImage))


def _union_targets(users: Sequence[_Member]) -> list[ZoneTarget]:
    """Every zone of every user, once per (client, owner, zone): failure domains are renamed after
    their cluster, since two clusters may name theirs alike."""
    seen: set[tuple[int, Any, str]] = set()
    union = []
    for member in users:
        for target in member.io.targets(member.inventory):
            key = (id(target.client), target.owner, target.zone.id)
            if key in seen:
                continue
            seen.add(key)
            union.append(replace(target, failure_domain=f"{member.key}/{target.failure_domain}"))
    return union


class _Quiet:
    """The console of a member before it runs (planning says nothing)."""

    def show_plan(self, plan: Any) -> None: ...

    def show_previews(self, previews: Sequence[ObjectPreview]) -> None: ...

    def confirm(self, question: str) -> bool:
        return False

    def note(self, message: str) -> None: ...

    def step(self, hop: PlanHop, step: Step, state: str) -> None: ...

    def progress(self, update: RolloutUpdate) -> None: ...
