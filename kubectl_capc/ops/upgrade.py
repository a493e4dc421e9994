"""Run a plan against the live cluster: preview with server dry runs, confirm, apply step by step, re-plan.

`PlanRun` is the loop that `image-upgrade` (`Upgrade`, here) and `rollback`
(`kubectl_capc.ops.rollback.Rollback`) share: read the cluster, plan, run the plan up to and including its
first wait, and read again. Every plan is made from the live state, so a run continues where any
earlier, interrupted run stopped, and a concurrent change (a 409 on a guarded write, or a different plan
after a re-read) is never overwritten: the new plan is shown, and if it does more than what was
approved, confirmed again. Every patch records itself in the object's history (`kubectl_capc.domain.records`).

I/O goes through a `ClusterIO` (Kubernetes reads and writes, CloudStack listings and the image pipeline;
`kubectl_capc.ops.cluster_io` has the real one) and everything shown goes through a `Console`, so the engine
is the same for the terminal and for tests that drive it in-process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from kubectl_capc.domain import testpoints
from kubectl_capc.domain.checks.gitops_owners import check_gitops_owners
from kubectl_capc.domain.completion import require_at_target
from kubectl_capc.domain.errors import PlanError, RolloutError, UsageError
from kubectl_capc.domain.model import ClusterInventory, ZoneTemplates, thaw
from kubectl_capc.domain.plan import (
    CreateMachineTemplate,
    EnsureImage,
    ImageSource,
    OnDeleteMode,
    PatchObject,
    PlanHop,
    RollOnDelete,
    Step,
    UpgradePlan,
    WaitRollout,
)
from kubectl_capc.domain.planner import PlanRequest, plan_upgrade
from kubectl_capc.domain.preview import ObjectPreview, clean, merge_patch
from kubectl_capc.domain.progress import RolloutUpdate
from kubectl_capc.domain.records import ACTION_UPGRADE, Rotation, rotation_annotations
from kubectl_capc.kube.conflicts import ConflictBudget, replan_on_conflict
from kubectl_capc.kube.write import Conflict, KubeWriter, OwnerProgress, Rejected, patch_body
from kubectl_capc.ops.lock import held_for_run
from kubectl_capc.ops.options import ApplyOptions

if TYPE_CHECKING:
    from kubectl_capc.kube.lease import ClusterLease

__all__ = [
    "ClusterIO",
    "Console",
    "PlanConsole",
    "PlanRun",
    "RunPlan",
    "Upgrade",
    "WriterIO",
    "reporting",
    "require_confirmation",
]


class RunPlan(Protocol):
    """What the loop needs of a plan (an `UpgradePlan` or a `RollbackPlan`)."""

    @property
    def namespace(self) -> str: ...

    @property
    def cluster(self) -> str: ...

    @property
    def done(self) -> bool:
        """Nothing to write and nothing to wait for."""

    @property
    def changes_pending(self) -> bool:
        """Some object would be created or changed (the `--dry-run` exit code 1)."""

    def covered_by(self, approved: Any) -> bool:
        """Every write of this plan was part of `approved` (so it needs no new confirmation)."""


class PlanConsole(Protocol):
    """What the loop shows and asks; each command's console adds its own step and progress lines."""

    def show_plan(self, plan: Any) -> None: ...

    def show_previews(self, previews: Sequence[ObjectPreview]) -> None: ...

    def confirm(self, question: str) -> bool: ...

    def note(self, message: str) -> None: ...


class WriterIO(Protocol):
    """Where the loop writes: the writer for the cluster last read."""

    @property
    def writer(self) -> KubeWriter: ...

    def lease(self) -> ClusterLease:
        """The cluster's upgrade lock, held while the run writes and waits."""


class Console(PlanConsole, Protocol):
    """Where an `image-upgrade` run shows what it does and asks for confirmation."""

    def step(self, hop: PlanHop, step: Step, state: str) -> None:
        """`state` is "start" or "done"."""

    def progress(self, update: RolloutUpdate) -> None:
        """How a wait for rollouts stands (called on every change, and about once a minute)."""


class ClusterIO(WriterIO, Protocol):
    """What an `image-upgrade` run reads and writes."""

    def read(self) -> tuple[ClusterInventory, ZoneTemplates | None]: ...

    def preflight(self, plan: UpgradePlan) -> list[str]:
        """Problems of the cluster last read that keep `plan` from starting: CloudStack capacity for the
        surge machines, and the permissions its Machine deletions need."""
        ...

    def ensure_image(self, step: EnsureImage, inventory: ClusterInventory, timeout: float | None) -> None:
        """Make the image ready; also called for a ready image with a source other than `existing`."""


def require_confirmation(
    question: str,
    *,
    yes: bool,
    interactive: bool,
    ask: Callable[[str], bool],
    verb: str = "apply",
    done: str = "applied",
) -> None:
    """Go on with `--yes`; else ask `question` on a terminal; without one, refuse with a hint."""
    if yes:
        return
    if not interactive:
        raise UsageError(
            "refusing to change the cluster without confirmation: the input is not a terminal",
            hint=f"pass --yes to {verb} without asking, or --dry-run to only preview",
        )
    if not ask(question):
        raise UsageError(f"not {done}: the plan was not confirmed")


def reporting(
    show: Callable[[RolloutUpdate], None], timeout: float | None
) -> Callable[[Sequence[OwnerProgress], float], None]:
    """The writer's progress callback for a wait limited to `timeout` seconds, as `RolloutUpdate`s."""

    def report(progress: Sequence[OwnerProgress], elapsed: float) -> None:
        show(RolloutUpdate(tuple(progress), elapsed, timeout))

    return report


# -- the loop image-upgrade and rollback share -----------------------------------------------------


PlanT = TypeVar("PlanT", bound=RunPlan)
IOT = TypeVar("IOT", bound=WriterIO)
ConsoleT = TypeVar("ConsoleT", bound=PlanConsole)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class PlanRun(ABC, Generic[PlanT, IOT, ConsoleT]):
    """One run of a command that changes a cluster by plan: plan, preview, confirm, then apply a segment
    (the steps up to and including a wait) at a time, planning again after each segment and on each
    conflict. Subclasses say how to plan, preview and run a segment, and what to say when done."""

    action: ClassVar[str]
    """What the history records each patch as (`records.ACTION_UPGRADE` or `ACTION_ROLLBACK`)."""
    question: ClassVar[str]
    """The question before the first write."""
    new_question: ClassVar[str]
    """The question before a plan that does more than the approved one."""
    verb: ClassVar[tuple[str, str]] = ("apply", "applied")
    """How the refusal without confirmation words it: `--yes to <verb>`, `not <past>`."""

    def __init__(
        self, io: IOT, options: ApplyOptions, console: ConsoleT, clock: Callable[[], datetime] = _now
    ) -> None:
        self.io = io
        self.options = options
        self.console = console
        self.clock = clock

    @abstractmethod
    def _read(self) -> tuple[PlanT, Callable[[], bool]]:
        """Read the cluster and plan: the plan, and what runs its next segment (True when it ended with
        a wait, False when --no-wait stopped it at that wait)."""

    @abstractmethod
    def _previews(self, plan: PlanT) -> tuple[ObjectPreview, ...]:
        """The plan's writes, sent with dryRun=All (a `Conflict` when an object changed since it was read)."""

    def _blockers(self, plan: PlanT) -> list[str]:
        """What keeps the plan from being applied at all."""
        return []

    @abstractmethod
    def _nothing_to_do(self, plan: PlanT) -> None:
        """Say (or raise) why a run whose first plan is done does nothing."""

    @abstractmethod
    def _finished(self, plan: PlanT) -> str:
        """The note once a later plan is done."""

    def _needs_confirmation(self, plan: PlanT) -> bool:
        return True

    def run(self) -> int:
        """Plan, preview, confirm and apply under the cluster's upgrade lock (a dry run only reads it);
        returns the exit code (1: a dry run with changes pending)."""
        options = self.options
        # Read and plan first: input that cannot be planned is refused before the lock is written.
        # The previews are guarded by resourceVersion, so a change made before the lock is taken
        # still fails them with a conflict and the run plans again.
        plan, previews = replan_on_conflict(self._plan_and_preview)
        if not plan.done:
            problems = self._problems(plan, previews)  # asked once: the capacity check calls CloudStack
            if problems:
                self.console.show_plan(plan)
                self.console.show_previews(previews)
                raise _refusal(problems)  # a refused plan takes no lock
        lock = held_for_run(
            self.io.lease(), dry_run=options.dry_run, break_lock=options.break_lock, note=self.console.note
        )
        with lock:
            return self._run(plan, previews)

    def _run(self, plan: PlanT, previews: Sequence[ObjectPreview]) -> int:
        """The rest of `run` for a first plan already checked for problems."""
        self.console.show_plan(plan)
        if plan.done:
            self._nothing_to_do(plan)
            return 0
        self.console.show_previews(previews)
        if self.options.dry_run:
            return 1 if plan.changes_pending else 0
        if self._needs_confirmation(plan):
            self._confirm(self.question)
        return self._execute(plan)

    def _plan_and_preview(self) -> tuple[PlanT, tuple[ObjectPreview, ...]]:
        """Plan and preview; when an object changes in between (its controller updated it, say), the
        guarded dry run fails with 409 and `replan_on_conflict` plans again."""
        plan, _ = self._read()
        return plan, () if plan.done else self._previews(plan)

    def _problems(self, plan: PlanT, previews: Sequence[ObjectPreview]) -> list[str]:
        """Why the plan cannot be applied: its blockers and the previews the API server rejected."""
        return self._blockers(plan) + [f"{p.step.subject}: {p.rejection}" for p in previews if p.rejection]

    def _show_or_refuse(self, plan: PlanT, previews: Sequence[ObjectPreview]) -> None:
        self.console.show_previews(previews)
        problems = self._problems(plan, previews)
        if problems:
            raise _refusal(problems)

    def _confirm(self, question: str) -> None:
        verb, done = self.verb
        require_confirmation(
            question,
            yes=self.options.yes,
            interactive=self.options.interactive,
            ask=self.console.confirm,
            verb=verb,
            done=done,
        )

    def _execute(self, approved: PlanT) -> int:
        conflicts = ConflictBudget()
        while True:
            plan, run_segment = self._read()
            if plan.done:
                self.console.note(self._finished(plan))
                return 0
            blockers = self._blockers(plan)
            if blockers:
                raise PlanError(
                    "the plan cannot be continued: " + "; ".join(blockers),
                    hint="fix the above and run the same command again to continue",
                )
            try:
                if not plan.covered_by(approved):
                    previews = self._previews(plan)
                    self.console.note(
                        "the cluster changed since the plan was approved; this is the new plan:"
                    )
                    self.console.show_plan(plan)
                    self._show_or_refuse(plan, previews)
                    self._confirm(self.new_question)
                    approved = plan
                waited = run_segment()
            except Conflict as err:
                conflicts.spend(err)
                self.console.note(f"{err.message}: reading the cluster again and re-planning")
                continue
            conflicts.reset()
            if not waited:
                self.console.note(
                    "not waiting for the rollout (--no-wait): run the same command again to continue"
                )
                return 0

    def _record(self, step: PatchObject, current: Mapping[str, str]) -> dict[str, str]:
        """What the patch making `step` sets on an object annotated `current`: its record."""
        return rotation_annotations(Rotation.of(step, self.action, self.clock()), current)

    def _preview_patch(self, hop: int, step: PatchObject) -> ObjectPreview:
        """`step` sent with dryRun=All against the object as stored."""
        writer = self.io.writer
        before = writer.get(step.kind, step.name)
        annotations = self._record(step, _annotations(before))
        return _checked(hop, step, before, lambda: writer.patch_owner(step, annotations, dry_run=True))

    def _patch(self, step: PatchObject) -> None:
        self.io.writer.patch_owner(step, self._record(step, step.annotations), dry_run=False)


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _checked(
    hop: int, step: Step, before: Mapping[str, Any], send: Callable[[], dict[str, Any]]
) -> ObjectPreview:
    try:
        after = send()
    except Rejected as err:
        planned = thaw(step.manifest) if isinstance(step, CreateMachineTemplate) else dict(before)
        return ObjectPreview(hop, step, before, planned, True, rejection=err.message)
    return ObjectPreview(hop, step, before, after, True)


def _preview_create(hop: int, step: CreateMachineTemplate, writer: KubeWriter) -> ObjectPreview:
    source = clean(thaw(step.source_manifest)) if step.source_manifest else {}
    return _checked(hop, step, source, lambda: writer.create_template(thaw(step.manifest), dry_run=True))


# -- image-upgrade ---------------------------------------------------------------------------------


class Upgrade(PlanRun[UpgradePlan, ClusterIO, Console]):
    """One `image-upgrade` run against one cluster."""

    action = ACTION_UPGRADE
    question = "Apply this plan?"
    new_question = "Apply the new plan?"

    def __init__(
        self,
        io: ClusterIO,
        request: PlanRequest,
        options: ApplyOptions,
        console: Console,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        super().__init__(io, options, console, clock)
        self.request = request
        self._preflighted = False
        self._inventory: ClusterInventory | None = None

    def _read(self) -> tuple[UpgradePlan, Callable[[], bool]]:
        inventory, templates = self.io.read()
        self._inventory = inventory
        self._preflight(inventory)
        plan = plan_upgrade(inventory, self.request, templates)
        return plan, lambda: self._run_segment(plan, inventory)

    def _preflight(self, inventory: ClusterInventory) -> None:
        """Warn, once per run, of what would undo the upgrade: GitOps controllers that own its objects."""
        if self._preflighted:
            return
        self._preflighted = True
        for finding in check_gitops_owners(inventory):
            self.console.note(f"warning: {finding.check_id}: {finding.message}; {finding.hint}")

    def _previews(self, plan: UpgradePlan) -> tuple[ObjectPreview, ...]:
        """Send every write the server can judge now with dryRun=All; predict the rest locally.

        New templates can always be checked. A patch can be checked when it is the first change of its
        object in the plan; later ones depend on earlier hops (the control plane would be two minors
        ahead of what is stored), so they are shown as predicted from the previous prediction.
        """
        writer = self.io.writer
        previews = []
        predicted: dict[tuple[str, str], dict[str, Any]] = {}
        for hop, step in plan.steps():
            if isinstance(step, CreateMachineTemplate) and step.writes:
                previews.append(_preview_create(hop.number, step, writer))
            elif isinstance(step, PatchObject):
                key = (step.kind, step.name)
                preview = (
                    self._predict_patch(hop, step, predicted[key])
                    if key in predicted
                    else self._preview_patch(hop.number, step)
                )
                predicted[key] = dict(preview.after)
                previews.append(preview)
        return tuple(previews)

    def _predict_patch(self, hop: PlanHop, step: PatchObject, before: Mapping[str, Any]) -> ObjectPreview:
        """A patch that follows an earlier one of the same object: predicted from the earlier prediction."""
        annotations = self._record(step, _annotations(before))
        after = merge_patch(before, patch_body(step, self.io.writer.capi_version, annotations))
        return ObjectPreview(
            hop.number, step, before, after, False, unchecked_reason=f"depends on hop {hop.number - 1}"
        )

    def _blockers(self, plan: UpgradePlan) -> list[str]:
        return [str(blocker) for blocker in plan.blockers] + self.io.preflight(plan)

    def _nothing_to_do(self, plan: UpgradePlan) -> None:
        self.console.note(f"{self._finished(plan)}: nothing to do")

    def _finished(self, plan: UpgradePlan) -> str:
        done = f"cluster {plan.namespace}/{plan.cluster} is at {plan.target}"
        left = {name for entry in plan.old_machines for name in entry.names}
        if self._inventory is not None:  # never "at the target" while a Machine runs an older version
            # ... except the old Machines of OnDelete deployments, left on purpose and named below
            others = tuple(m for m in self._inventory.machines if m.name not in left)
            require_at_target(replace(self._inventory, machines=others), plan.target)
        for entry in plan.old_machines:
            names = " ".join(entry.names)
            done += (
                f"; MachineDeployment/{entry.deployment} (OnDelete) still has Machines {entry.what()}: "
                f"{names}. Cluster API replaces each only once it is deleted: roll them one at a time "
                f"with `kubectl delete machine -n {plan.namespace} NAME`, waiting for each replacement's "
                f"Node to be Ready, or with `kubectl capc image-upgrade {plan.cluster} -n {plan.namespace} "
                f"--to {plan.target} --on-delete=replace`"
            )
        return done

    def _wait(self, plan: UpgradePlan, hop: PlanHop, step: WaitRollout) -> None:
        timeout = self.options.timeouts.for_wait(step)

        def progress(update: RolloutUpdate) -> None:
            if not update.done:
                testpoints.reached(f"{hop.version} waiting {step.action} {step.subject}")
            self.console.progress(update)

        with _rollback_offered(plan):
            self.io.writer.wait(step, timeout=timeout, on_progress=reporting(progress, timeout))

    def _replace(self, plan: UpgradePlan, step: RollOnDelete) -> None:
        timeout = self.options.timeouts.machine_deployment  # the MachineDeployment wait's limit

        def deleting(name: str, decision: Any) -> None:
            testpoints.reached(f"{step.version} deleting Machine {name}")
            self.console.note(
                f"{step.subject}: deleting Machine {name} ({decision.old} at another version than "
                f"{step.version} or on another template than {step.template}); Cluster API replaces it"
            )

        with _rollback_offered(plan):
            self.io.writer.replace_on_delete(
                step,
                timeout=timeout,
                on_progress=reporting(self.console.progress, timeout),
                on_delete=deleting,
            )

    def _run_segment(self, plan: UpgradePlan, inventory: ClusterInventory) -> bool:
        """Run steps up to and including the first wait; False when --no-wait stopped at that wait."""
        for hop, step in plan.steps():
            if _waits(step) and self.options.no_wait:
                return False
            acts = _acts(step)
            if acts:
                self.console.step(hop, step, "start")
                testpoints.reached(f"{hop.version} start {step.action} {step.subject}")
            if isinstance(step, EnsureImage):
                if not step.ready or step.source is not ImageSource.EXISTING:
                    self.io.ensure_image(step, inventory, self.options.timeouts.images)
            elif isinstance(step, CreateMachineTemplate):
                if step.writes:
                    self.io.writer.create_template(thaw(step.manifest), dry_run=False)
            elif isinstance(step, PatchObject):
                self._patch(step)
            elif isinstance(step, WaitRollout):
                self._wait(plan, hop, step)
            elif isinstance(step, RollOnDelete) and step.mode is OnDeleteMode.REPLACE:
                self._replace(plan, step)
            if acts:
                testpoints.reached(f"{hop.version} done {step.action} {step.subject}")
                self.console.step(hop, step, "done")
            if _waits(step):
                return True
        return True


@contextmanager
def _rollback_offered(plan: UpgradePlan) -> Iterator[None]:
    """A rollout that fails or stalls says how to go back, besides how to go on."""
    try:
        yield
    except RolloutError as err:
        back = f"or go back with `kubectl capc rollback {plan.cluster} -n {plan.namespace}`"
        raise RolloutError(err.message, hint=f"{err.hint}; {back}" if err.hint else back) from None


def _waits(step: Step) -> bool:
    """Whether `step` waits for machines (a segment ends with it, and --no-wait stops before it)."""
    return isinstance(step, WaitRollout) or (
        isinstance(step, RollOnDelete) and step.mode is OnDeleteMode.REPLACE
    )


def _acts(step: Step) -> bool:
    """Whether running `step` does anything (a ready image or a reused template is only checked)."""
    if isinstance(step, EnsureImage):
        return not step.ready
    return step.writes or isinstance(step, WaitRollout)


def _refusal(problems: Sequence[str]) -> PlanError:
    return PlanError(
        f"the plan cannot be applied: {'; '.join(problems)}",
        hint="nothing was changed; fix the above and run the command again",
    )
