"""The planner's safety invariants on adversarial inputs: targets below what runs, MachineDeployments
ahead of or far behind the control plane, node-image catalogues with gaps, any parallelism.

Whatever the input, `plan_upgrade` either refuses with a one-line PlanError or UsageError, or returns a
plan whose patches, taken in order, never downgrade an object, never move the control plane by more than
one minor, and never put a MachineDeployment ahead of the control plane. tests/test_planner_properties.py
covers convergence for policy-conforming clusters and complete catalogues; tests/test_versions.py the
hop arithmetic on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kubectl_capc.errors import PlanError, UsageError
from kubectl_capc.plan import PatchObject, UpgradePlan
from kubectl_capc.versions import KubeVersion, parse_version
from tests.planner_scenes import all_steps, cluster, images, listing, plan

CONTROL_PLANE = ("KubeadmControlPlane", "c1-control-plane")


@dataclass(frozen=True)
class Case:
    capi: str
    control_plane: str
    workers: tuple[str, ...]
    target: str
    available: tuple[str, ...]
    parallel: int

    def versions(self) -> dict[tuple[str, str], KubeVersion]:
        found = {CONTROL_PLANE: parse_version(self.control_plane)}
        for index, version in enumerate(self.workers):
            found[("MachineDeployment", f"c1-md-{index}")] = parse_version(version)
        return found

    def make_plan(self) -> UpgradePlan:
        objects = cluster(
            self.capi, version=self.control_plane, md_count=len(self.workers), worker_versions=self.workers
        )
        return plan(objects, self.target, listing(images(*self.available)), parallel=self.parallel)


@st.composite
def image_patches(draw: st.DrawFn) -> list[int]:
    """The patches of one minor that have a node image: some in three minors of four, maybe none else."""
    has_images = draw(st.integers(0, 3)) > 0
    return sorted(draw(st.sets(st.integers(0, 5), min_size=1 if has_images else 0, max_size=3)))


@st.composite
def cases(draw: st.DrawFn) -> Case:
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
    return Case(capi, f"v1.{cp_minor}.{cp_patch}", workers, target, available, draw(st.integers(1, 3)))


def exact_target_below_something(case: Case) -> bool:
    target = case.target.removeprefix("v").split(".")
    if len(target) != 3:
        return False
    wanted = KubeVersion(1, int(target[1]), int(target[2]))
    return any(version > wanted for version in case.versions().values())


@settings(max_examples=150, deadline=None)
@given(cases())
@example(Case("v1beta2", "v1.29.3", ("v1.29.3",), "v1.28.9", ("v1.28.9",), 1))  # below the control plane
@example(Case("v1beta1", "v1.28.5", ("v1.28.6",), "v1.28.5", (), 1))  # below a MachineDeployment
@example(Case("v1beta2", "v1.27.4", ("v1.27.4", "v1.24.1"), "v1.30", ("v1.28.2", "v1.29.1", "v1.30.0"), 2))
def test_every_plan_only_moves_up_one_control_plane_minor_at_a_time_with_workers_behind(case: Case) -> None:
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
def test_a_refused_downgrade_is_a_plan_error_naming_the_object(case: Case) -> None:
    if not exact_target_below_something(case):
        return
    try:
        case.make_plan()
    except PlanError as error:
        assert "downgrade" in str(error)
        assert "the control plane" in str(error) or "MachineDeployment c1-md-" in str(error)
        return
    raise AssertionError(f"{case} was planned")
