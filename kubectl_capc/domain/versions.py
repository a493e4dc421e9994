"""Kubernetes versions and the skew policy that turns one requested target into ordered upgrade hops.

Pure: no I/O. The planner feeds in the versions found on the cluster objects and the versions for which
a node image can be had, and gets back the hops to perform, each with the reason it is needed.

Rules applied (see the Kubernetes version skew policy and the Cluster API upgrade guide):
- no downgrades, of the control plane or of any MachineDeployment;
- the control plane moves one minor at a time (the KubeadmControlPlane webhook rejects +2 minors), through
  the newest available patch of every intermediate minor;
- MachineDeployments follow the control plane after each hop, because kubeadm joins new machines only at
  the control plane's minor, and are never left newer than the control plane or further behind it than the
  kubelet skew allows (3 minors from v1.28 on, 2 before).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import total_ordering

from kubectl_capc.domain.errors import PlanError, UsageError

__all__ = [
    "Hop",
    "KubeVersion",
    "TargetVersion",
    "WorkerMove",
    "kubelet_max_lag",
    "parse_target",
    "parse_version",
    "plan_hops",
    "resolve_target",
    "version_or_none",
]

_NUM = r"0|[1-9][0-9]*"
_PRE_ID = r"0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*"
_BUILD_ID = r"[0-9A-Za-z-]+"
# Semantic Versioning 2.0.0 with an optional leading "v", as Cluster API's tolerant parser accepts.
_VERSION_RE = re.compile(
    rf"v?(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>(?:{_PRE_ID})(?:\.(?:{_PRE_ID}))*))?"
    rf"(?:\+(?P<build>{_BUILD_ID}(?:\.{_BUILD_ID})*))?"
)
# What --to accepts: Kubernetes 1.x only, minor and patch of at most three digits, no pre-releases.
_SMALL = r"0|[1-9][0-9]{0,2}"
_TARGET_RE = re.compile(rf"v?1\.(?P<minor>{_SMALL})(?:\.(?P<patch>{_SMALL}))?")
_TARGET_HELP = "expected v1.MINOR or v1.MINOR.PATCH, with or without the v (e.g. v1.29, v1.29.3 or 1.29.3)"


@total_ordering
@dataclass(frozen=True)
class KubeVersion:
    """A Kubernetes version, ordered by semantic-version precedence (build metadata is ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        text = f"v{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, KubeVersion):
            return NotImplemented
        return self._precedence() < other._precedence()

    @property
    def minor_line(self) -> str:
        """The minor this version belongs to, as people write it: `v1.29`."""
        return f"v{self.major}.{self.minor}"

    @property
    def is_release(self) -> bool:
        """True for plain MAJOR.MINOR.PATCH versions (no pre-release, no build metadata)."""
        return not self.prerelease and not self.build

    def _precedence(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric ones.
        identifiers = tuple(
            (0, int(part), "") if part.isdigit() else (1, 0, part) for part in self.prerelease
        )
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, identifiers)


@dataclass(frozen=True)
class TargetVersion:
    """What the user asked for: an exact version, or a minor whose newest available patch is meant."""

    major: int
    minor: int
    patch: int | None = None

    def __str__(self) -> str:
        if self.patch is None:
            return f"v{self.major}.{self.minor}"
        return f"v{self.major}.{self.minor}.{self.patch}"

    @property
    def exact(self) -> KubeVersion | None:
        """The exact version requested, or None when only a minor was given."""
        if self.patch is None:
            return None
        return KubeVersion(self.major, self.minor, self.patch)


def version_or_none(text: str) -> KubeVersion | None:
    """`parse_version` of `text` (surrounding space ignored); None for what is not a version."""
    try:
        return parse_version(text.strip())
    except ValueError:
        return None


def parse_target(text: str) -> TargetVersion:
    """Parse a `--to` value: `v1.29`, `v1.29.3` or `1.29.3`; anything else is a usage error."""
    match = _TARGET_RE.fullmatch(text)
    if match is None:
        raise UsageError(f"invalid target version {_quote(text)}", hint=_TARGET_HELP)
    patch = match["patch"]
    return TargetVersion(1, int(match["minor"]), None if patch is None else int(patch))


def parse_version(text: str) -> KubeVersion:
    """Parse a version as found on cluster objects (`v1.28.5`, `1.28.5`, `v1.30.0-rc.1+abc`).

    Raises ValueError when `text` is not a semantic version.
    """
    match = _VERSION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{_quote(text)} is not a Kubernetes version (expected vMAJOR.MINOR.PATCH)")
    pre, build = match["pre"], match["build"]
    return KubeVersion(
        int(match["major"]),
        int(match["minor"]),
        int(match["patch"]),
        tuple(pre.split(".")) if pre else (),
        tuple(build.split(".")) if build else (),
    )


def kubelet_max_lag(control_plane_minor: int) -> int:
    """How many minors a kubelet may trail the API server (3 since Kubernetes 1.28, 2 before)."""
    return 3 if control_plane_minor >= 28 else 2


@dataclass(frozen=True)
class WorkerMove:
    """A MachineDeployment that a hop moves, with the version it runs before that hop."""

    name: str
    current: KubeVersion


@dataclass(frozen=True)
class Hop:
    """One upgrade step: the control plane (if it moves) first, then the listed MachineDeployments.

    Every object the hop touches ends on `version`.
    """

    version: KubeVersion
    control_plane_from: KubeVersion | None
    workers: tuple[WorkerMove, ...]
    reason: str

    @property
    def moves_control_plane(self) -> bool:
        return self.control_plane_from is not None


def resolve_target(target: TargetVersion, available: Iterable[KubeVersion]) -> KubeVersion:
    """The exact version a target means: itself, or the newest available release patch of its minor."""
    exact = target.exact
    if exact is not None:
        return exact
    best = _newest_patch(available, target.major, target.minor)
    if best is None:
        raise PlanError(
            f"no {target} patch release is available to upgrade to",
            hint="make a node image for one available or ask for an exact version",
        )
    return best


def plan_hops(
    current_cp: KubeVersion,
    current_workers: Mapping[str, KubeVersion],
    target: TargetVersion,
    available_patches: Iterable[KubeVersion],
) -> tuple[Hop, ...]:
    """Order the hops that take the control plane and MachineDeployments from their versions to `target`.

    `current_workers` maps MachineDeployment names to their versions. `available_patches` are the versions
    for which a node image exists or can be obtained; versions already running count as available too.
    Returns no hops when everything is already at the target. Raises PlanError for a downgrade, a change
    of major version, or a minor with no available patch.
    """
    candidates = {*available_patches, current_cp, *current_workers.values()}
    goal = resolve_target(target, candidates)
    _refuse_impossible(current_cp, current_workers, goal)

    hops: list[Hop] = []
    workers = dict(current_workers)
    cp = current_cp
    first_minor = cp.minor + 1
    if first_minor <= goal.minor:
        catch_up = _skew_catch_up(cp, workers, first_minor)
        if catch_up is not None:
            hops.append(catch_up)
            workers.update({move.name: cp for move in catch_up.workers})
    while cp < goal:
        if cp.minor < goal.minor - 1:
            step = _newest_patch(candidates, cp.major, cp.minor + 1)
            if step is None:
                raise PlanError(
                    f"cannot upgrade from {cp} to {goal}: Kubernetes upgrades the control plane one minor "
                    f"at a time and no v{cp.major}.{cp.minor + 1} patch release is available for the "
                    f"intermediate hop",
                    hint=f"make a node image for a v{cp.major}.{cp.minor + 1} patch available",
                )
            why = (
                f"the control plane moves one minor at a time, so {cp} → {goal} goes through "
                f"{step.minor_line}; {step} is its newest available patch"
            )
        else:
            step = goal
            why = (
                f"patch upgrade of the control plane within {goal.minor_line}: {cp} → {goal}"
                if cp.minor == goal.minor
                else f"control plane {cp} → {goal}, the next minor"
            )
            if target.patch is None:
                why += f" ({goal} is the newest available {goal.minor_line} patch)"
        moves = _workers_below(workers, step)
        hops.append(Hop(step, cp, moves, why + _follow_reason(moves, step)))
        workers.update({move.name: step for move in moves})
        cp = step
    stragglers = _workers_below(workers, goal)
    if stragglers:
        hops.append(
            Hop(
                goal,
                None,
                stragglers,
                f"the control plane is already at {goal}; MachineDeployments {_names(stragglers)} catch up",
            )
        )
    return tuple(hops)


def _refuse_impossible(cp: KubeVersion, workers: Mapping[str, KubeVersion], goal: KubeVersion) -> None:
    for name, version in {"the control plane": cp, **_labelled(workers)}.items():
        if version.major != goal.major:
            raise PlanError(f"cannot upgrade {name} from {version} to {goal}: the major version differs")
        if version > goal:
            raise PlanError(
                f"refusing to downgrade {name} from {version} to {goal}: "
                "Kubernetes does not support downgrades",
                hint=f"pass a --to of {version} or newer (`kubectl capc rollback` undoes a recent upgrade)",
            )


def _skew_catch_up(cp: KubeVersion, workers: Mapping[str, KubeVersion], next_minor: int) -> Hop | None:
    """Bring MachineDeployments to the control plane first if its next minor would leave them out of skew."""
    lag = kubelet_max_lag(next_minor)
    behind = tuple(
        WorkerMove(name, version)
        for name, version in sorted(workers.items())
        if version.minor < next_minor - lag
    )
    if not behind:
        return None
    reason = (
        f"MachineDeployments {_names(behind)} first move to the control plane's {cp}: once the control "
        f"plane is on v{cp.major}.{next_minor} they would trail it by more than the {lag} minors the kubelet "
        f"skew policy allows"
    )
    return Hop(cp, None, behind, reason)


def _workers_below(workers: Mapping[str, KubeVersion], version: KubeVersion) -> tuple[WorkerMove, ...]:
    return tuple(WorkerMove(name, current) for name, current in sorted(workers.items()) if current < version)


def _follow_reason(moves: tuple[WorkerMove, ...], version: KubeVersion) -> str:
    if not moves:
        return "; no MachineDeployment needs to change"
    return (
        f"; then MachineDeployments {_names(moves)} follow to {version}, since kubeadm joins new machines "
        f"only at the control plane's minor"
    )


def _newest_patch(versions: Iterable[KubeVersion], major: int, minor: int) -> KubeVersion | None:
    releases = [v for v in versions if v.major == major and v.minor == minor and v.is_release]
    return max(releases, default=None)


def _labelled(workers: Mapping[str, KubeVersion]) -> dict[str, KubeVersion]:
    return {f"MachineDeployment {name}": version for name, version in workers.items()}


def _names(moves: tuple[WorkerMove, ...]) -> str:
    return ", ".join(f"{move.name} ({move.current})" for move in moves)


def _quote(text: str, limit: int = 40) -> str:
    """Quote user input for a one-line message: escaped, and cut when long."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    return repr(shown)
