"""The machine-level model behind the rollout simulator: which machines exist and how a rollout advances.

CAPI replaces machines in batches its strategy allows (`Strategy`): with RollingUpdate, at most maxSurge
machines above and maxUnavailable below the desired count at any time (KubeadmControlPlane: maxSurge 1,
or 0 which deletes first); with OnDelete (MachineDeployments only), nothing until someone deletes an
out-of-date Machine, and then one replacement per deleted machine. Each batch passes through three stages
that an observer of the status can see, each lasting a third of `seconds_per_machine`:

    STEADY       N machines, k of them up to date
    PROVISIONING the batch's new machines exist, not ready yet; the old machines maxUnavailable allows
                 to go are already deleted
    REPLACING    the new machines are ready; next the batch's remaining out-of-date machines are deleted

A machine is "up to date" when it was built from the object's current Target (version plus the
infrastructure/bootstrap template it references), as CAPI decides by comparing a Machine with its owner.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ANNOTATION_PREFIX = "testenv.kubectl-capc.io/"
STALL_ANNOTATION = ANNOTATION_PREFIX + "stall-at"
"""Stop replacing machines once this many are up to date (the rollout stays in progress)."""
FAIL_ANNOTATION = ANNOTATION_PREFIX + "fail"
"""The next replacement machine never becomes ready; the value is reported as the failure reason."""

RefKey = tuple[str, str, str]
"""(API group, kind, name) of a referenced template: what CAPI compares, ignoring the API version."""


@dataclass(frozen=True)
class Target:
    """The spec a machine is built from."""

    version: str
    infrastructure: RefKey | None
    bootstrap: RefKey | None = None

    def __str__(self) -> str:
        refs = [f"{ref[1]}/{ref[2]}" for ref in (self.infrastructure, self.bootstrap) if ref]
        return " ".join([self.version or "(no version)", *refs])

    def outdated_reasons(self, machine: Target) -> list[str]:
        """Why `machine` is not up to date with this target, worded like CAPI's Machine UpToDate message."""
        reasons = []
        if machine.version != self.version:
            reasons.append(f"* Version {machine.version}, {self.version} required")
        if machine.infrastructure != self.infrastructure:
            reasons.append("* InfrastructureMachine is not up-to-date")
        if machine.bootstrap != self.bootstrap:
            reasons.append("* BootstrapConfig is not up-to-date")
        return reasons


def ref_key(ref: dict[str, Any] | None) -> RefKey | None:
    """Key of a v1beta1 ObjectReference ({apiVersion, kind, name}) or v1beta2 ref ({apiGroup, kind, name})."""
    if not ref:
        return None
    group = ref.get("apiGroup")
    if group is None:
        api_version = str(ref.get("apiVersion", ""))
        group = api_version.split("/", maxsplit=1)[0] if "/" in api_version else ""
    return (str(group), str(ref.get("kind", "")), str(ref.get("name", "")))


def version_key(version: str) -> tuple[tuple[int, ...], str]:
    """Sort key for Kubernetes versions ("v1.31.2", "v1.32.0-rc.1"); numeric core first."""
    core, _, rest = version.lstrip("v").partition("-")
    numbers = tuple(int(part) for part in re.findall(r"\d+", core))
    # A pre-release sorts before its release: "" (release) must compare greater than any suffix.
    return numbers, rest or "\uffff"


@dataclass(frozen=True)
class Strategy:
    """How many machines a rollout may replace at once, resolved to machine counts (CAPI's defaults:
    RollingUpdate, maxSurge 1, maxUnavailable 0)."""

    on_delete: bool = False
    max_surge: int = 1
    max_unavailable: int = 0


def resolve_fencepost(value: Any, desired: int, *, round_up: bool, default: int) -> int:
    """An int-or-percentage strategy value as a machine count: "25%" of 10 is 3 for maxSurge (rounded
    up) and 2 for maxUnavailable (rounded down), as CAPI resolves them."""
    if value is None:
        return default
    text = str(value).strip()
    if text.endswith("%"):
        try:
            percent = int(text[:-1])
        except ValueError:
            raise ValueError(f"invalid percentage {value!r}") from None
        scaled = percent * desired
        return max(0, -(-scaled // 100) if round_up else scaled // 100)
    return max(0, int(text))


def rolling(max_surge: int, max_unavailable: int) -> Strategy:
    """A RollingUpdate strategy; both 0 would never progress, so (like CAPI) one may be unavailable."""
    if max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    return Strategy(max_surge=max_surge, max_unavailable=max_unavailable)


class Stage(enum.Enum):
    STEADY = 0
    PROVISIONING = 1
    REPLACING = 2


@dataclass(frozen=True)
class Controls:
    """What the test-bed annotations ask of one object."""

    stall_at: int | None = None
    fail_reason: str | None = None

    @classmethod
    def from_annotations(cls, annotations: dict[str, str] | None) -> Controls:
        annotations = annotations or {}
        stall_at = None
        raw = annotations.get(STALL_ANNOTATION)
        if raw is not None:
            try:
                stall_at = max(0, int(raw))
            except ValueError:
                raise ValueError(f"{STALL_ANNOTATION} must be an integer, got {raw!r}") from None
        fail = annotations.get(FAIL_ANNOTATION)
        return cls(stall_at=stall_at, fail_reason=fail or None)


@dataclass
class Rollout:
    """The machines of one KubeadmControlPlane or MachineDeployment and where its rollout stands."""

    target: Target
    desired: int
    machines: list[Target] = field(default_factory=list)
    """Existing ready machines, oldest first (the one deleted next comes first among the outdated)."""
    stage: Stage = Stage.STEADY
    next_step_at: float | None = None
    strategy: Strategy = field(default_factory=Strategy)
    batch: int = 1
    """New machines in flight while the stage is not STEADY."""
    retire: int = 1
    """Out-of-date machines the batch deletes once its new machines are ready."""
    deleting: Counter[str] = field(default_factory=Counter)
    """Versions of Machines deleted but still there (a drain in progress): CAPI counts them among the
    replicas until they are gone, as neither up to date nor ready."""

    @classmethod
    def completed(cls, target: Target, desired: int) -> Rollout:
        return cls(target=target, desired=desired, machines=[target] * desired)

    # -- what the status reports -------------------------------------------------------------------

    @property
    def surge(self) -> int:
        """New machines in flight (not yet counted in `machines`)."""
        return 0 if self.stage is Stage.STEADY else self.batch

    @property
    def replicas(self) -> int:
        return len(self.machines) + self.surge + sum(self.deleting.values())

    @property
    def up_to_date(self) -> int:
        return sum(1 for m in self.machines if m == self.target) + self.surge

    @property
    def ready(self) -> int:
        return len(self.machines) + (self.batch if self.stage is Stage.REPLACING else 0)

    @property
    def outdated(self) -> list[Target]:
        return [m for m in self.machines if m != self.target]

    @property
    def done(self) -> bool:
        return (
            self.stage is Stage.STEADY
            and not self.outdated
            and len(self.machines) == self.desired
            and not self.deleting
        )

    def all_versions(self) -> Counter[str]:
        """Machine count per Kubernetes version, the replacement machine included."""
        counts = Counter(m.version for m in self.machines)
        if self.surge:
            counts[self.target.version] += 1
        counts.update(self.deleting)
        return counts

    def lowest_version(self) -> str | None:
        versions = list(self.all_versions())
        return min(versions, key=version_key) if versions else None

    def outdated_reasons(self) -> list[str]:
        """Distinct reasons across outdated machines, version reasons first (as CAPI orders them)."""
        reasons = {r for m in self.outdated for r in self.target.outdated_reasons(m)}
        return sorted(reasons, key=lambda r: (not r.startswith("* Version"), r))

    def failing(self, controls: Controls) -> bool:
        return controls.fail_reason is not None and self.stage is Stage.PROVISIONING

    # -- how it changes -----------------------------------------------------------------------------

    def retarget(self, target: Target) -> None:
        """The owner's spec changed: a replacement built from the old spec is finished or dropped."""
        if target == self.target:
            return
        if self.stage is Stage.REPLACING:
            self._finish_replacement()
        self.stage = Stage.STEADY
        self.target = target
        self.next_step_at = None

    def machine_deleted(self) -> None:
        """Someone else deleted an out-of-date machine (OnDelete): one replacement from the current
        target comes up for it."""
        outdated = self.outdated
        if not outdated:
            return
        self.machines.remove(outdated[0])
        if self.stage is Stage.STEADY:
            self.stage, self.batch, self.retire, self.next_step_at = Stage.PROVISIONING, 1, 0, None
        else:
            self.batch += 1

    def resize(self, desired: int) -> None:
        """Scale to `desired` at once, dropping outdated machines first (scaling is not what we simulate)."""
        self.desired = desired
        if self.stage is not Stage.STEADY:
            return
        while len(self.machines) > desired:
            outdated = self.outdated
            self.machines.remove(outdated[0] if outdated else self.machines[0])
        self.machines.extend([self.target] * (desired - len(self.machines)))

    def advance(self, now: float, stage_seconds: float, controls: Controls) -> bool:
        """Take the next step if it is due by `now`; return whether one was taken. One step a call, so
        the caller reports each (CAPI's status shows every replacement); a late caller catches up
        through calls at once, as `next_step_at` keeps the schedule."""
        if not self._can_step(controls):
            self.next_step_at = None
            return False
        if self.next_step_at is None:
            self.next_step_at = now + stage_seconds
        if now < self.next_step_at:
            return False
        self._step()
        self.next_step_at += stage_seconds
        if not self._can_step(controls):
            self.next_step_at = None
        return True

    def _can_step(self, controls: Controls) -> bool:
        if self.stage is Stage.STEADY:
            if not self.outdated or self.strategy.on_delete:
                return False
            return controls.stall_at is None or self.up_to_date < controls.stall_at
        if self.stage is Stage.PROVISIONING:
            return controls.fail_reason is None
        return True

    def _step(self) -> None:
        if self.stage is Stage.STEADY:
            self._start_batch()
            self.stage = Stage.PROVISIONING
        elif self.stage is Stage.PROVISIONING:
            self.stage = Stage.REPLACING
        else:
            self._finish_replacement()
            self.stage = Stage.STEADY
            self.resize(self.desired)

    def _start_batch(self) -> None:
        """Replace as many machines as the strategy allows: up to maxSurge above and maxUnavailable
        below the desired count; the old machines maxUnavailable lets go are deleted at once."""
        outdated = len(self.outdated)
        surge, unavailable = self.strategy.max_surge, self.strategy.max_unavailable
        self.batch = max(1, min(outdated, surge + unavailable))
        dropped = min(unavailable, self.batch)
        for _ in range(dropped):
            self.machines.remove(self.outdated[0])
        self.retire = self.batch - dropped

    def _finish_replacement(self) -> None:
        for _ in range(self.retire):
            outdated = self.outdated
            if outdated:
                self.machines.remove(outdated[0])
        self.machines.extend([self.target] * self.batch)
        self.batch, self.retire = 1, 1
