"""What a long-running command reports while it works: typed progress updates, with no way of showing them.

The workflows in `kubectl_capc.ops` and the adapters below them produce these values; the CLI decides how
they look (a live display on a terminal, timestamped lines in a log, or nothing). Each value is a
snapshot: the renderer compares it with the previous one to tell whether the state changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubectl_capc.domain.images import downloaded_percent

__all__ = [
    "CopyUpdate",
    "MachinePhase",
    "OwnerProgress",
    "RolloutUpdate",
    "UploadUpdate",
    "ZoneCopy",
    "clock",
]


def clock(seconds: float) -> str:
    """`M:SS`, or `H:MM:SS` from an hour on."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class MachinePhase:
    """The Machine an owner is replacing now (the newest one at the new version that is not ready yet),
    and its CAPI phase (`Pending`, `Provisioning`, `Provisioned`, `Running`, `Deleting`, ...)."""

    name: str
    phase: str

    def __str__(self) -> str:
        return f"{self.name} {self.phase}"


@dataclass(frozen=True)
class OwnerProgress:
    """Where one KubeadmControlPlane or MachineDeployment stands in its rollout."""

    kind: str
    name: str
    version: str
    desired: int
    up_to_date: int
    ready: int
    available: int
    observed: bool
    done: bool
    replacing: MachinePhase | None = None
    """Shown next to the counts, not part of them (`cli.progress.owner_text`)."""

    def __str__(self) -> str:
        if self.done:
            return f"{self.name}: done, {self.ready}/{self.desired} ready at {self.version}"
        if not self.observed:
            return f"{self.name}: waiting for the controller to pick up the change"
        return f"{self.name}: {self.up_to_date}/{self.desired} up to date, {self.ready} ready"


@dataclass(frozen=True)
class RolloutUpdate:
    """One wait for rollouts: every owner's progress, how long the wait has lasted and its limit."""

    owners: tuple[OwnerProgress, ...]
    elapsed: float
    timeout: float | None = None
    """Seconds the wait may last (None: no limit)."""

    @property
    def done(self) -> bool:
        return all(owner.done for owner in self.owners)


@dataclass(frozen=True)
class UploadUpdate:
    """Bytes of a local image sent to the secondary-storage VM so far."""

    sent: int
    total: int

    @property
    def done(self) -> bool:
        return self.sent >= self.total


@dataclass(frozen=True)
class ZoneCopy:
    """One zone's copy of a template, as listTemplates shows it."""

    zone: str
    template: str
    ready: bool
    status: str

    @property
    def percent(self) -> int | None:
        """How much CloudStack has downloaded or copied (`N% Downloaded`), 100 once ready; None when
        the status says no number."""
        return 100 if self.ready else downloaded_percent(self.status)

    @property
    def state(self) -> str:
        return "ready" if self.ready else (self.status or "waiting")


@dataclass(frozen=True)
class CopyUpdate:
    """A wait for template copies (downloads, uploads being installed, copies between zones)."""

    zones: tuple[ZoneCopy, ...]
    elapsed: float
    timeout: float | None = None

    @property
    def done(self) -> bool:
        return all(zone.ready for zone in self.zones)
