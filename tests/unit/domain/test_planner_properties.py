"""Properties of the planner over generated clusters, targets and template catalogues. No servers.

Two kinds of input. Policy-conforming clusters with complete catalogues (`scenes()`): every plan converges
within CAPI's skew rules, also when a run is interrupted and re-run. Adversarial input (`cases()`):
targets below what runs, MachineDeployments ahead of or far behind the control plane, catalogues with
gaps, any parallelism; `plan_upgrade` then either refuses with a one-line PlanError or UsageError, or
returns a plan whose patches, taken in order, never downgrade an object, never move the control plane by
more than one minor, and never put a MachineDeployment ahead of the control plane.
tests/unit/domain/test_versions.py covers the hop arithmetic on its own.

Executing plans is modelled by `tests.support.planner_scenes` (creates add objects, patches change specs,
waits finish rollouts), with apply's loop: plan, run up to the first wait, re-plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kubectl_capc.domain.errors import PlanError, UsageError
from kubectl_capc.domain.model import ZoneTemplates
from kubectl_capc.domain.naming import MAX_NAME_LENGTH
from kubectl_capc.domain.plan import CreateMachineTemplate, PatchObject, Step, UpgradePlan
from kubectl_capc.domain.versions import KubeVersion, kubelet_max_lag, parse_version
from tests.support.planner_scenes import (
    all_steps,
    cluster,
    copy_objects,
    execute,
    first_segment,
    images,
    listing,
    named,
    of_kind,
    plan,
)

CONTROL_PLANE = ("KubeadmControlPlane", "c1-control-plane")


@dataclass(frozen=True)
class Scene:
    """A cluster `c1` (control plane and MachineDeployment versions), a target and the node images."""

    capi: str
    control_plane: str
    workers: tuple[str, ...]
    target: str
    available: tuple[str, ...]
    parallel: int = 1

    def objects(self) -> list[dict[str, Any]]:
        return cluster(
            self.capi, version=self.control_plane, md_count=len(self.workers), worker_versions=self.workers
        )

    def templates(self) -> ZoneTemplates:
        return listing(images(*self.available))

    def versions(self) -> dict[tuple[str, str], KubeVersion]:
        found = {CONTROL_PLANE: parse_version(self.control_plane)}
        for index, version in enumerate(self.workers):
            found[("MachineDeployment", f"c1-md-{index}")] = parse_version(version)
        return found

    def make_plan(self) -> UpgradePlan:
        return plan(self.objects(), self.target, self.templates(), parallel=self.parallel)


@st.composite
def scenes(draw: st.DrawFn) -> Scene:
    cp_minor = draw(st.integers(26, 30))
    cp_patch = draw(st.integers(0, 3))
    workers = []
    for _ in range(draw(st.integers(0, 3))):
        minor = draw(st.integers(cp_minor - kubelet_max_lag(cp_minor), cp_minor))
        patch = draw(st.integers(0, cp_patch if minor == cp_minor else 3))
        workers.append(f"v1.{minor}.{patch}")
    target_minor = draw(st.integers(cp_minor, cp_minor + 3))
    lowest_minor = min([cp_minor, *(int(w.split(".")[1]) for w in workers)])
    available = {f"v1.{cp_minor}.{cp_patch}"}
    for minor in range(lowest_minor, target_minor + 1):
        floor = cp_patch if minor == cp_minor else 0
        patches = draw(st.sets(st.integers(floor, floor + 4), min_size=1, max_size=3))
        available |= {f"v1.{minor}.{p}" for p in patches}
    exact = draw(st.booleans())
    target_patches = sorted(int(v.split(".")[2]) for v in available if v.startswith(f"v1.{target_minor}."))
    target = f"v1.{target_minor}.{draw(st.sampled_from(target_patches))}" if exact else f"v1.{target_minor}"
    capi = draw(st.sampled_from(["v1beta1", "v1beta2"]))
    return Scene(capi, f"v1.{cp_minor}.{cp_patch}", tuple(workers), target, tuple(sorted(available)))


def minor(version: str) -> int:
    return parse_version(version).minor


def check_skew_before(objects: list[dict[str, Any]], step: Step) -> None:
    """The rules CAPI enforces (webhooks, MachineSet preflights), checked before each patch."""
    if not isinstance(step, PatchObject):
        return
    kcp = named(objects, "KubeadmControlPlane", "c1-control-plane")
    cp_version = parse_version(kcp["spec"]["version"])
    if step.is_control_plane:
        assert parse_version(step.version_to).minor <= cp_version.minor + 1, "skips a minor"
        assert kcp["status"]["observedGeneration"] == kcp["metadata"]["generation"], "CP patched mid-rollout"
    else:
        assert kcp["status"]["observedGeneration"] == kcp["metadata"]["generation"], (
            "workers before CP settled"
        )
        assert kcp["status"]["version"] == kcp["spec"]["version"]
        assert parse_version(step.version_to).minor == cp_version.minor, "kubeadm skew"
        assert parse_version(step.version_to) <= cp_version, "worker newer than the control plane"


def run_to_end(
    objects: list[dict[str, Any]], scene: Scene, approved: UpgradePlan, budget: int | None = None
) -> int:
    """Apply's loop with the skew checks; stops after `budget` executed steps (an interruption)."""
    executed = 0
    for _ in range(60):
        current = plan(objects, scene.target, scene.templates())
        assert current.blockers == ()
        assert current.covered_by(approved), "a re-plan needs a new confirmation"
        if current.done:
            return executed
        for step in first_segment(current):
            if budget is not None and executed >= budget:
                return executed
            check_skew_before(objects, step)
            execute(objects, step)
            executed += 1
    raise AssertionError("does not converge")


def end_state(objects: list[dict[str, Any]]) -> tuple[Any, ...]:
    def version(obj: dict[str, Any]) -> str:
        spec = obj["spec"]
        return (
            spec["version"] if obj["kind"] == "KubeadmControlPlane" else spec["template"]["spec"]["version"]
        )

    owners = sorted(
        (o["metadata"]["name"], version(o))
        for o in objects
        if o["kind"] in ("KubeadmControlPlane", "MachineDeployment")
    )
    templates = sorted(o["metadata"]["name"] for o in of_kind(objects, "CloudStackMachineTemplate"))
    return tuple(owners), tuple(templates)


@settings(max_examples=60, deadline=None)
@given(scenes())
def test_plans_converge_within_the_skew_rules(scene: Scene) -> None:
    objects = scene.objects()
    initial = plan(objects, scene.target, scene.templates())
    goal = initial.target
    for step in all_steps(initial):
        if isinstance(step, CreateMachineTemplate):
            assert len(step.name) <= MAX_NAME_LENGTH
    run_to_end(objects, scene, initial)
    (owners, templates) = end_state(objects)
    assert {version for _, version in owners} == {str(goal)}
    assert len(templates) == len(set(templates))
    for csmt in of_kind(objects, "CloudStackMachineTemplate"):
        image = csmt["spec"]["template"]["spec"]["template"]["name"]
        assert image.startswith("ubuntu-2204-kube-v1.")
    assert plan(objects, scene.target, scene.templates()).done


@settings(max_examples=60, deadline=None)
@given(scenes(), st.integers(0, 40))
def test_an_interrupted_run_resumes_to_the_same_end_without_duplicates(scene: Scene, stop_after: int) -> None:
    straight = scene.objects()
    initial = plan(straight, scene.target, scene.templates())
    interrupted = copy_objects(straight)
    run_to_end(straight, scene, initial)
    run_to_end(interrupted, scene, initial, budget=stop_after)
    run_to_end(interrupted, scene, initial)  # the re-run; `execute` refuses to create a template twice
    assert end_state(interrupted) == end_state(straight)


# -- adversarial input ---------------------------------------------------------------------------------


@st.composite
def image_patches(draw: st.DrawFn) -> list[int]:
    """The patches of one minor that have a node image: some in three minors of four, maybe none else."""
    has_images = draw(st.integers(0, 3)) > 0
    return sorted(draw(st.sets(st.integers(0, 5), min_size=1 if has_images else 0, max_size=3)))


@st.composite
def cases(draw: st.DrawFn) -> Scene:
    cp_minor = draw(st.integers(25, 31))
    cp_patch = draw(st.integers(0, 4))
    # Mostly at or behind the control plane (up to out of skew), sometimes ahead of it.
    worker_minors = st.one_of(st.integers(cp_minor - 4, cp_minor), st.just(cp_minor + 1))
    workers = tuple(
        f"v1.{draw(worker_minors)}.{draw(st.integers(0, 4))}" for _ in range(draw(st.integers(1, 3)))
    )
    target_minor = draw(st.one_of(st.integers(cp_minor, cp_minor + 3), st.integers(cp_minor - 2, cp_minor)))
    exact = draw(st.booleans())
    target = f"v1.{target_minor}.{draw(st.integers(0, 5))}" if exact else f"v1.{target_minor}"
    available = tuple(
        f"v1.{minor}.{patch}"
        for minor in range(cp_minor - 4, cp_minor + 5)
        for patch in draw(image_patches())
    )
    capi = draw(st.sampled_from(["v1beta1", "v1beta2"]))
    return Scene(capi, f"v1.{cp_minor}.{cp_patch}", workers, target, available, draw(st.integers(1, 3)))


def exact_target_below_something(case: Scene) -> bool:
    target = case.target.removeprefix("v").split(".")
    if len(target) != 3:
        return False
    wanted = KubeVersion(1, int(target[1]), int(target[2]))
    return any(version > wanted for version in case.versions().values())


@settings(max_examples=150, deadline=None)
@given(cases())
@example(Scene("v1beta2", "v1.29.3", ("v1.29.3",), "v1.28.9", ("v1.28.9",), 1))  # below the control plane
@example(Scene("v1beta1", "v1.28.5", ("v1.28.6",), "v1.28.5", (), 1))  # below a MachineDeployment
@example(Scene("v1beta2", "v1.27.4", ("v1.27.4", "v1.24.1"), "v1.30", ("v1.28.2", "v1.29.1", "v1.30.0"), 2))
def test_every_plan_only_moves_up_one_control_plane_minor_at_a_time_with_workers_behind(case: Scene) -> None:
    try:
        made = case.make_plan()
    except (PlanError, UsageError) as error:
        assert "\n" not in str(error)
        return
    assert not exact_target_below_something(case), "a downgrade was planned instead of refused"
    versions = case.versions()
    assert all(version <= made.target for version in versions.values()), "the goal is below a current version"
    for step in all_steps(made):
        if not isinstance(step, PatchObject):
            continue
        key = (step.kind, step.name)
        before, after = parse_version(step.version_from), parse_version(step.version_to)
        assert versions[key] == before, f"{step.subject} is patched from a version it is not at"
        assert after >= before, f"{step.subject}: downgrade {before} → {after}"
        if step.is_control_plane:
            assert (after.major, after.minor) <= (before.major, before.minor + 1), "+2 minors"
        else:
            assert after <= versions[CONTROL_PLANE], f"{step.subject} ahead of the control plane"
        versions[key] = after
    if made.hops:
        assert set(versions.values()) == {made.target}, "the plan stops short of its target"


@settings(max_examples=60, deadline=None)
@given(cases())
@example(Scene("v1beta2", "v1.29.3", ("v1.29.3",), "v1.28.9", ("v1.28.9",)))  # below the control plane
@example(Scene("v1beta1", "v1.28.5", ("v1.28.6",), "v1.28.5", ()))  # below a MachineDeployment
def test_a_refused_downgrade_is_a_plan_error_naming_the_object(case: Scene) -> None:
    if not exact_target_below_something(case):
        return
    try:
        case.make_plan()
    except PlanError as error:
        assert "downgrade" in str(error)
        assert "the control plane" in str(error) or "MachineDeployment c1-md-" in str(error)
        return
    raise AssertionError(f"{case} was planned")
