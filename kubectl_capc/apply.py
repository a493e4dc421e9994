"""Execute an `UpgradePlan`: preview with server dry runs, confirm, apply step by step, re-plan, finish.

The loop is: read the cluster, plan, run the plan up to and including its first wait, and read again.
Every plan is made from the live state, so a run continues where any earlier, interrupted run stopped,
and a concurrent change (a 409 on a guarded write, or a different plan after a re-read) is never
overwritten: the new plan is shown, and if it does more than what was approved, confirmed again.

I/O goes through a `ClusterIO` (Kubernetes reads and writes, CloudStack listings and the image pipeline;
`kubectl_capc.cluster_io` has the real one) and everything shown goes through a `Console`, so the engine
is the same for the terminal and for tests that drive it in-process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from kubectl_capc import testpoints
from kubectl_capc.conflicts import ConflictBudget, replan_on_conflict
from kubectl_capc.errors import PlanError, RolloutError, UsageError
from kubectl_capc.kube_write import Conflict, KubeWriter, OwnerProgress, Rejected, patch_body
from kubectl_capc.model import CapiVersion, ClusterInventory, ZoneTemplates, thaw
from kubectl_capc.plan import (
    CreateMachineTemplate,
    EnsureImage,
    ImageSource,
    PatchObject,
    PlanHop,
    Step,
    UpgradePlan,
    WaitRollout,
)
from kubectl_capc.planner import PlanRequest, plan_upgrade
from kubectl_capc.preview import ObjectPreview, clean, merge_patch
from kubectl_capc.records import ACTION_UPGRADE, Rotation, rotation_annotations, timestamp

__all__ = [
    "ApplyOptions",
    "ClusterIO",
    "Console",
    "ImageOptions",
    "Timeouts",
    "Upgrade",
    "require_confirmation",
    "server_preview",
]


@dataclass(frozen=True)
class Timeouts:
    """Seconds each phase may take; None waits without limit. Defaults follow EKS Anywhere's."""

    images: float | None = 60 * 60
    control_plane: float | None = 60 * 60
    machine_deployment: float | None = 30 * 60

    def for_wait(self, step: WaitRollout) -> float | None:
        return self.control_plane if step.is_control_plane else self.machine_deployment


@dataclass(frozen=True)
class ApplyOptions:
    dry_run: bool = False
    yes: bool = False
    no_wait: bool = False
    interactive: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class ImageOptions:
    """How missing CloudStack templates are obtained (`--image-source` and its companions)."""

    source: ImageSource = ImageSource.EXISTING
    url: str | None = None
    prebuilt_base_url: str | None = None
    image_builder_dir: Path | None = None
    cache_dir: Path | None = None


class Console(Protocol):
    """Where the run shows what it does and asks for confirmation."""

    def show_plan(self, plan: UpgradePlan) -> None: ...

    def show_previews(self, previews: Sequence[ObjectPreview]) -> None: ...

    def confirm(self, question: str) -> bool: ...

    def step(self, hop: PlanHop, step: Step, state: str) -> None:
        """`state` is "start" or "done"."""

    def progress(self, progress: Sequence[OwnerProgress], elapsed: float) -> None: ...

    def note(self, message: str) -> None: ...


class ClusterIO(Protocol):
    """What the engine reads and writes."""

    @property
    def writer(self) -> KubeWriter: ...

    def read(self) -> tuple[ClusterInventory, ZoneTemplates | None]: ...

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


# -- preview ---------------------------------------------------------------------------------------


def server_preview(plan: UpgradePlan, writer: KubeWriter, now: datetime) -> tuple[ObjectPreview, ...]:
    """Send every write the server can judge now with dryRun=All; predict the rest locally.

    New templates can always be checked. A patch can be checked when it is the first change of its
    object in the plan; later ones depend on earlier hops (the control plane would be two minors ahead
    of what is stored), so they are shown as predicted from the previous prediction.
    """
    previews = []
    predicted: dict[tuple[str, str], dict[str, Any]] = {}
    for hop, step in plan.steps():
        if isinstance(step, CreateMachineTemplate) and step.writes:
            previews.append(_preview_create(hop, step, writer))
        elif isinstance(step, PatchObject):
            key = (step.kind, step.name)
            preview = (
                _preview_later_patch(hop, step, predicted[key], writer.capi_version, now)
                if key in predicted
                else _preview_first_patch(hop, step, writer, now)
            )
            predicted[key] = dict(preview.after)
            previews.append(preview)
    return tuple(previews)


def _preview_first_patch(hop: PlanHop, step: PatchObject, writer: KubeWriter, now: datetime) -> ObjectPreview:
    before = writer.get(step.kind, step.name)
    annotations = rotation_annotations(_rotation(step, now), _annotations(before))
    return _checked(hop, step, before, lambda: writer.patch_owner(step, annotations, dry_run=True))


def _preview_later_patch(
    hop: PlanHop, step: PatchObject, before: Mapping[str, Any], capi_version: CapiVersion, now: datetime
) -> ObjectPreview:
    """A patch that follows an earlier one of the same object: predicted from the earlier prediction."""
    annotations = rotation_annotations(_rotation(step, now), _annotations(before))
    after = merge_patch(before, patch_body(step, capi_version, annotations))
    return ObjectPreview(
        hop.number, step, before, after, False, unchecked_reason=f"depends on hop {hop.number - 1}"
    )


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _preview_create(hop: PlanHop, step: CreateMachineTemplate, writer: KubeWriter) -> ObjectPreview:
    source = clean(thaw(step.source_manifest)) if step.source_manifest else {}
    return _checked(hop, step, source, lambda: writer.create_template(thaw(step.manifest), dry_run=True))


def _checked(
    hop: PlanHop, step: Step, before: Mapping[str, Any], send: Callable[[], dict[str, Any]]
) -> ObjectPreview:
    try:
        after = send()
    except Rejected as err:
        planned = thaw(step.manifest) if isinstance(step, CreateMachineTemplate) else dict(before)
        return ObjectPreview(hop.number, step, before, planned, True, rejection=err.message)
    return ObjectPreview(hop.number, step, before, after, True)


def _rotation(step: PatchObject, now: datetime) -> Rotation:
    return Rotation(
        at=timestamp(now),
        action=ACTION_UPGRADE,
        from_version=step.version_from,
        to_version=step.version_to,
        from_template=step.template_from,
        to_template=step.template_to,
        from_image=step.image_from,
        to_image=step.image_to,
    )


# -- the engine ------------------------------------------------------------------------------------


class Upgrade:
    """One `image-upgrade` run against one cluster."""

    def __init__(
        self,
        io: ClusterIO,
        request: PlanRequest,
        options: ApplyOptions,
        console: Console,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.io = io
        self.request = request
        self.options = options
        self.console = console
        self.clock = clock

    def plan(self) -> tuple[ClusterInventory, UpgradePlan]:
        inventory, templates = self.io.read()
        return inventory, plan_upgrade(inventory, self.request, templates)

    def run(self) -> int:
        """Plan, preview, confirm and apply; returns the exit code (1: a dry run with changes pending)."""
        plan, previews = self._plan_and_preview()
        self.console.show_plan(plan)
        if plan.done:
            self.console.note(f"cluster {plan.namespace}/{plan.cluster} is at {plan.target}: nothing to do")
            return 0
        self._show_or_refuse(plan, previews)
        if self.options.dry_run:
            return 1 if plan.changes_pending else 0
        self._confirm(plan, "Apply this plan?")
        return self._execute(plan)

    def _plan_and_preview(self) -> tuple[UpgradePlan, tuple[ObjectPreview, ...]]:
        """Plan and send the plan's writes with dryRun=All; when an object changes in between (its
        controller updated it, say), the guarded dry run fails with 409 and the plan is made again."""

        def attempt() -> tuple[UpgradePlan, tuple[ObjectPreview, ...]]:
            _, plan = self.plan()
            if plan.done:
                return plan, ()
            return plan, server_preview(plan, self.io.writer, self.clock())

        return replan_on_conflict(attempt)

    def _show_or_refuse(self, plan: UpgradePlan, previews: Sequence[ObjectPreview]) -> None:
        self.console.show_previews(previews)
        rejected = [p for p in previews if p.rejection]
        problems = [str(b) for b in plan.blockers] + [f"{p.step.subject}: {p.rejection}" for p in rejected]
        if problems:
            raise PlanError(
                f"the plan cannot be applied: {'; '.join(problems)}",
                hint="nothing was changed; fix the above and run the command again",
            )

    def _confirm(self, plan: UpgradePlan, question: str) -> None:
        require_confirmation(
            question, yes=self.options.yes, interactive=self.options.interactive, ask=self.console.confirm
        )

    def _execute(self, approved: UpgradePlan) -> int:
        conflicts = ConflictBudget()
        while True:
            inventory, plan = self.plan()
            if plan.done:
                self.console.note(f"cluster {plan.namespace}/{plan.cluster} is at {plan.target}")
                return 0
            if plan.blockers:
                raise PlanError(
                    "the plan cannot be continued: " + "; ".join(str(b) for b in plan.blockers),
                    hint="fix the above and run the same command again to continue",
                )
            try:
                if not plan.covered_by(approved):
                    previews = server_preview(plan, self.io.writer, self.clock())
                    self.console.note(
                        "the cluster changed since the plan was approved; this is the new plan:"
                    )
                    self.console.show_plan(plan)
                    self._show_or_refuse(plan, previews)
                    self._confirm(plan, "Apply the new plan?")
                    approved = plan
                waited = self._run_segment(plan, inventory)
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

    def _wait(self, plan: UpgradePlan, hop: PlanHop, step: WaitRollout) -> None:
        def progress(items: Sequence[OwnerProgress], elapsed: float) -> None:
            if not all(item.done for item in items):
                testpoints.reached(f"{hop.version} waiting {step.action} {step.subject}")
            self.console.progress(items, elapsed)

        try:
            self.io.writer.wait(step, timeout=self.options.timeouts.for_wait(step), on_progress=progress)
        except RolloutError as err:
            back = f"or go back with `kubectl capc rollback {plan.cluster} -n {plan.namespace}`"
            raise RolloutError(err.message, hint=f"{err.hint}; {back}" if err.hint else back) from None

    def _run_segment(self, plan: UpgradePlan, inventory: ClusterInventory) -> bool:
        """Run steps up to and including the first wait; False when --no-wait stopped at that wait."""
        for hop, step in plan.steps():
            if isinstance(step, WaitRollout) and self.options.no_wait:
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
                annotations = rotation_annotations(_rotation(step, self.clock()), step.annotations)
                self.io.writer.patch_owner(step, annotations, dry_run=False)
            elif isinstance(step, WaitRollout):
                self._wait(plan, hop, step)
            if acts:
                testpoints.reached(f"{hop.version} done {step.action} {step.subject}")
                self.console.step(hop, step, "done")
            if isinstance(step, WaitRollout):
                return True
        return True


def _acts(step: Step) -> bool:
    """Whether running `step` does anything (a ready image or a reused template is only checked)."""
    if isinstance(step, EnsureImage):
        return not step.ready
    return step.writes or isinstance(step, WaitRollout)
