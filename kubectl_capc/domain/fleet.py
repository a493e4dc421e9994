"""Fleet upgrades: many clusters to one target, the pure part (`kind: FleetUpgradePlan` and
`FleetUpgradeReport`).

Each selected cluster gets the same plan `image-upgrade` makes for it alone. The fleet plan adds what
only the fleet knows: which node images the clusters share (each found, registered or built once and
made ready in the union of their zones before any cluster rolls), which clusters are refused, and in
which order they run. `FleetSchedule` decides, from what has finished, which clusters may start next:
the canaries first and fully, then the rest with at most `max_concurrent` at a time, stopping new
starts at the first failure unless asked to go on.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.plan import (
    CreateMachineTemplate,
    EnsureImage,
    ImageSource,
    UpgradePlan,
    ZoneImage,
    ZoneState,
)

__all__ = [
    "PLAN_KIND",
    "REPORT_KIND",
    "ClusterKey",
    "FleetMember",
    "FleetPlan",
    "FleetPolicy",
    "FleetReport",
    "FleetSchedule",
    "MemberOutcome",
    "MemberResult",
    "MemberVerdict",
    "SharedImage",
    "shared_images",
]

PLAN_KIND = "FleetUpgradePlan"
REPORT_KIND = "FleetUpgradeReport"


@dataclass(frozen=True, order=True)
class ClusterKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class MemberVerdict(str, enum.Enum):
    """What the fleet plan intends for one cluster."""

    UPGRADE = "upgrade"
    DONE = "done"  # already at the target: a re-run's finished clusters are no-ops
    REFUSED = "refused"  # a blocker or a preflight error; skipped or refusing the run (--skip-failing)


@dataclass(frozen=True)
class FleetMember:
    """One selected cluster: its own plan, or the problems that stopped one from being made."""

    key: ClusterKey
    plan: UpgradePlan | None
    problems: tuple[str, ...] = ()

    @property
    def verdict(self) -> MemberVerdict:
        if self.problems or self.plan is None or self.plan.blockers:
            return MemberVerdict.REFUSED
        return MemberVerdict.DONE if self.plan.done else MemberVerdict.UPGRADE

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the cluster is refused, one line each."""
        blockers = tuple(str(b) for b in self.plan.blockers) if self.plan is not None else ()
        return (*self.problems, *blockers)

    @property
    def templates_to_create(self) -> tuple[str, ...]:
        if self.plan is None:
            return ()
        return tuple(
            step.name
            for _, step in self.plan.steps()
            if isinstance(step, CreateMachineTemplate) and step.writes
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "namespace": self.key.namespace,
            "name": self.key.name,
            "verdict": self.verdict.value,
            **({"reasons": list(self.reasons)} if self.reasons else {}),
            **({"plan": self.plan.to_document()} if self.plan is not None else {}),
        }


@dataclass(frozen=True)
class SharedImage:
    """A node image that one or more clusters need, over the union of their zones."""

    image: str
    version: str
    source: ImageSource
    zones: tuple[ZoneImage, ...]
    clusters: tuple[ClusterKey, ...]

    @property
    def ready(self) -> bool:
        return all(z.state in (ZoneState.READY, ZoneState.NOT_CHECKED) for z in self.zones)

    def to_document(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "kubernetesVersion": self.version,
            "source": self.source.value,
            "ready": self.ready,
            "zones": [{"zone": z.zone, "state": z.state.value} for z in self.zones],
            "clusters": [str(key) for key in self.clusters],
        }


def shared_images(members: Iterable[FleetMember]) -> tuple[SharedImage, ...]:
    """The images the clusters to upgrade need, each once. Zones are merged by zone name (two failure
    domains in one zone need one copy); the least ready state of a zone wins."""
    found: dict[str, tuple[EnsureImage, dict[str, ZoneImage], list[ClusterKey]]] = {}
    for member in members:
        if member.verdict is not MemberVerdict.UPGRADE or member.plan is None:
            continue
        for _, step in member.plan.steps():
            if not isinstance(step, EnsureImage):
                continue
            _, zones, users = found.setdefault(step.image, (step, {}, []))
            for zone in step.zones:
                known = zones.get(zone.zone)
                if known is None or _RANK[zone.state] > _RANK[known.state]:
                    zones[zone.zone] = zone
            if member.key not in users:
                users.append(member.key)
    return tuple(
        SharedImage(
            image,
            str(step.version),
            step.source,
            tuple(zones[name] for name in sorted(zones)),
            tuple(sorted(users)),
        )
        for image, (step, zones, users) in sorted(found.items())
    )


# How far a zone is from ready: the merged state of a zone is the one furthest from it.
_RANK = {
    ZoneState.READY: 0,
    ZoneState.NOT_CHECKED: 1,
    ZoneState.IN_PROGRESS: 2,
    ZoneState.MISSING: 3,
    ZoneState.DUPLICATE: 4,
    ZoneState.FAILED: 5,
}


@dataclass(frozen=True)
class FleetPolicy:
    """How the fleet runs: `--canary`, `--max-concurrent`, `--continue-on-error`, `--skip-failing`."""

    canary: int = 0
    max_concurrent: int = 1
    continue_on_error: bool = False
    skip_failing: bool = False

    def __post_init__(self) -> None:
        if self.canary < 0:
            raise ValueError("canary must be 0 or more")
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be 1 or more")


@dataclass(frozen=True)
class FleetPlan:
    """The fleet's members in run order (by namespace, then name), the images they share, the policy."""

    target: str
    members: tuple[FleetMember, ...]
    policy: FleetPolicy = field(default_factory=FleetPolicy)

    @property
    def images(self) -> tuple[SharedImage, ...]:
        return shared_images(self.members)

    def in_verdict(self, verdict: MemberVerdict) -> tuple[FleetMember, ...]:
        return tuple(m for m in self.members if m.verdict is verdict)

    @property
    def refused(self) -> bool:
        """The run as a whole is refused: a cluster cannot be upgraded and `--skip-failing` is off."""
        return bool(self.in_verdict(MemberVerdict.REFUSED)) and not self.policy.skip_failing

    @property
    def order(self) -> tuple[ClusterKey, ...]:
        """The clusters that will upgrade, in the order they start (the first `canary` are canaries)."""
        return tuple(sorted(m.key for m in self.in_verdict(MemberVerdict.UPGRADE)))

    def table_rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """NAMESPACE, CLUSTER, VERDICT, HOPS, NEW TEMPLATES, NOTE rows."""
        canaries = set(self.order[: self.policy.canary])
        rows = []
        for member in sorted(self.members, key=lambda m: m.key):
            hops = " → ".join(str(h.version) for h in member.plan.hops) if member.plan else ""
            note = "; ".join(member.reasons)
            if member.key in canaries:
                note = "canary" + (f"; {note}" if note else "")
            rows.append(
                (
                    member.key.namespace,
                    member.key.name,
                    member.verdict.value,
                    hops or "-",
                    str(len(member.templates_to_create)),
                    note,
                )
            )
        return rows

    def to_document(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": PLAN_KIND,
            "spec": {
                "target": self.target,
                "canary": self.policy.canary,
                "maxConcurrent": self.policy.max_concurrent,
                "continueOnError": self.policy.continue_on_error,
                "skipFailing": self.policy.skip_failing,
            },
            "status": {
                "refused": self.refused,
                "order": [str(key) for key in self.order],
                "images": [image.to_document() for image in self.images],
                "clusters": [m.to_document() for m in sorted(self.members, key=lambda m: m.key)],
            },
        }


class MemberOutcome(str, enum.Enum):
    """Where one cluster of a running fleet stands."""

    WAITING = "waiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_STARTED = "not-started"  # the run stopped before its turn (a failure or Ctrl-C)
    UNCHANGED = "unchanged"  # already at the target
    SKIPPED = "skipped"  # refused by the plan, left out with --skip-failing

    @property
    def final(self) -> bool:
        return self not in (MemberOutcome.WAITING, MemberOutcome.RUNNING)


@dataclass(frozen=True)
class MemberResult:
    key: ClusterKey
    outcome: MemberOutcome
    reason: str = ""


class FleetSchedule:
    """Which clusters may start now. The caller reports each start and finish; nothing here waits.

    Canaries run first, at most `max_concurrent` at a time, and all of them finish before any other
    cluster starts. After a failure (unless `continue_on_error`) or `stop()` (Ctrl-C), nothing new
    starts; what runs is left to finish, and what waits ends as not started.
    """

    def __init__(self, plan: FleetPlan) -> None:
        self._policy = plan.policy
        self._order = plan.order
        self._canaries = frozenset(self._order[: plan.policy.canary])
        self._results: dict[ClusterKey, MemberResult] = {}
        for member in plan.members:
            verdict = member.verdict
            if verdict is MemberVerdict.DONE:
                self._results[member.key] = MemberResult(member.key, MemberOutcome.UNCHANGED)
            elif verdict is MemberVerdict.REFUSED:
                reason = "; ".join(member.reasons)
                self._results[member.key] = MemberResult(member.key, MemberOutcome.SKIPPED, reason)
            else:
                self._results[member.key] = MemberResult(member.key, MemberOutcome.WAITING)
        self._stopped = plan.refused

    def _in(self, outcome: MemberOutcome) -> list[ClusterKey]:
        return [key for key in self._order if self._results[key].outcome is outcome]

    def next_to_start(self) -> list[ClusterKey]:
        """The clusters to start now (in order), as many as the free slots allow."""
        if self._stopped:
            return []
        running = self._in(MemberOutcome.RUNNING)
        waiting = self._in(MemberOutcome.WAITING)
        canaries_waiting = [key for key in waiting if key in self._canaries]
        if canaries_waiting:
            candidates = canaries_waiting
        elif any(key in self._canaries for key in running):
            return []  # the rest start only when every canary has finished
        else:
            candidates = waiting
        return candidates[: max(0, self._policy.max_concurrent - len(running))]

    def started(self, key: ClusterKey) -> None:
        self._set(key, MemberOutcome.RUNNING, expect=MemberOutcome.WAITING)

    def finished(self, key: ClusterKey, *, ok: bool, reason: str = "") -> None:
        outcome = MemberOutcome.SUCCEEDED if ok else MemberOutcome.FAILED
        self._set(key, outcome, reason=reason, expect=MemberOutcome.RUNNING)
        if not ok and (key in self._canaries or not self._policy.continue_on_error):
            self._stopped = True  # a failed canary always stops the fleet: that is what it is for

    def stop(self) -> None:
        """Start nothing more (Ctrl-C): running clusters finish, waiting ones end as not started."""
        self._stopped = True

    def _set(
        self, key: ClusterKey, outcome: MemberOutcome, *, expect: MemberOutcome, reason: str = ""
    ) -> None:
        current = self._results[key].outcome
        if current is not expect:
            raise ValueError(f"cluster {key} is {current.value}, not {expect.value}")
        self._results[key] = MemberResult(key, outcome, reason)

    @property
    def running(self) -> tuple[ClusterKey, ...]:
        return tuple(self._in(MemberOutcome.RUNNING))

    @property
    def over(self) -> bool:
        """Nothing runs and nothing more will start."""
        return not self.running and not self.next_to_start()

    def report(self) -> FleetReport:
        """The final account; clusters still waiting when the run ended did not start."""
        results = []
        for key in sorted(self._results):
            result = self._results[key]
            if result.outcome is MemberOutcome.WAITING:
                result = MemberResult(key, MemberOutcome.NOT_STARTED, "the fleet run stopped first")
            results.append(result)
        return FleetReport(tuple(results))


@dataclass(frozen=True)
class FleetReport:
    """How each cluster of the fleet ended (`kind: FleetUpgradeReport`)."""

    results: tuple[MemberResult, ...]

    def in_outcome(self, *outcomes: MemberOutcome) -> tuple[MemberResult, ...]:
        return tuple(r for r in self.results if r.outcome in outcomes)

    @property
    def complete(self) -> bool:
        """Every selected cluster is at the target: upgraded now or already."""
        return all(r.outcome in (MemberOutcome.SUCCEEDED, MemberOutcome.UNCHANGED) for r in self.results)

    def summary(self) -> str:
        counts = [
            (outcome, len(self.in_outcome(outcome)))
            for outcome in (
                MemberOutcome.SUCCEEDED,
                MemberOutcome.UNCHANGED,
                MemberOutcome.FAILED,
                MemberOutcome.SKIPPED,
                MemberOutcome.NOT_STARTED,
            )
        ]
        return ", ".join(f"{n} {outcome.value}" for outcome, n in counts if n) or "no clusters"

    def to_document(self, target: str) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": REPORT_KIND,
            "spec": {"target": target},
            "status": {
                "complete": self.complete,
                "summary": self.summary(),
                "clusters": [
                    {
                        "namespace": r.key.namespace,
                        "name": r.key.name,
                        "outcome": r.outcome.value,
                        **({"reason": r.reason} if r.reason else {}),
                    }
                    for r in self.results
                ],
            },
        }
