"""One upgrade at a time: the pure part of the per-cluster coordination.k8s.io/v1 Lease.

image-upgrade, rollback and cleanup hold the Lease while they write and wait, and renew it; a run that
finds it held by someone else stops, and one that finds it expired takes it over. The adapter reads and
writes the Lease (with its resourceVersion, so two takers cannot both win); this decides.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "LEASE_DURATION_SECONDS",
    "LeaseDecision",
    "LeaseRecord",
    "LeaseVerdict",
    "decide",
    "fleet_lease_seconds",
    "holder_identity",
    "holder_process",
    "lease_name",
    "renew_interval",
]

LEASE_DURATION_SECONDS = 60
_PREFIX = "kubectl-capc-upgrade-"
_MAX_NAME = 253  # a Lease name is a DNS subdomain


def lease_name(cluster: str) -> str:
    """`kubectl-capc-upgrade-<cluster>`; a name too long is cut and made unique by a hash suffix."""
    name = _PREFIX + cluster
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:10]
    return f"{name[: _MAX_NAME - len(digest) - 1].rstrip('-.')}-{digest}"


def holder_identity(user: str, host: str, pid: int) -> str:
    return f"{user}@{host}/{pid}"


def holder_process(holder: str) -> tuple[str, str, int] | None:
    """(user, host, pid) of an identity `holder_identity` made; None for any other form (another tool's)."""
    rest, slash, pid = holder.rpartition("/")
    user, at, host = rest.rpartition("@")
    if not slash or not at or not user or not host or not pid.isdigit():
        return None
    return user, host, int(pid)


def renew_interval(duration_seconds: int = LEASE_DURATION_SECONDS) -> float:
    """Renew three times per lease duration, so that two missed renewals still keep the Lease."""
    return duration_seconds / 3


def fleet_lease_seconds(concurrent: int) -> int:
    """The lease duration of each member of a fleet running `concurrent` clusters at once: as many times
    one cluster's, so that the fleet's renewals together come no more often than one cluster's run. A
    lock left by a dead fleet takes as many times longer to expire (a holder on this host known dead is
    taken over at once, and `--break-lock` remains)."""
    return LEASE_DURATION_SECONDS * max(concurrent, 1)


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec as read: holderIdentity, acquireTime, renewTime, leaseDurationSeconds."""

    holder: str = ""
    acquired: datetime | None = None
    renewed: datetime | None = None
    duration_seconds: int | None = None


class LeaseVerdict(str, enum.Enum):
    FREE = "free"  # no Lease, or no holder: take it
    OURS = "ours"  # held by this very process: renew it
    HELD = "held"  # held by another, still valid: refuse
    EXPIRED = "expired"  # held by another, not renewed in time: may be taken over


@dataclass(frozen=True)
class LeaseDecision:
    verdict: LeaseVerdict
    message: str = ""

    @property
    def may_take(self) -> bool:
        return self.verdict is not LeaseVerdict.HELD


def decide(lease: LeaseRecord | None, me: str, now: datetime) -> LeaseDecision:
    """What to do with the Lease found (None: there is none). A Lease with a holder but no renew or
    acquire time or no duration cannot expire: it stays held until released or broken (--break-lock)."""
    if lease is None or not lease.holder:
        return LeaseDecision(LeaseVerdict.FREE)
    if lease.holder == me:
        return LeaseDecision(LeaseVerdict.OURS)
    since = lease.acquired or lease.renewed
    since_text = f" since {since.isoformat()}" if since else ""
    last = lease.renewed or lease.acquired
    if last is not None and lease.duration_seconds is not None:
        expires = last + timedelta(seconds=lease.duration_seconds)
        if now >= expires:
            return LeaseDecision(
                LeaseVerdict.EXPIRED,
                f"the upgrade lock held by {lease.holder}{since_text} expired at {expires.isoformat()}",
            )
    return LeaseDecision(
        LeaseVerdict.HELD,
        f"another upgrade of this cluster is running: locked by {lease.holder}{since_text}",
    )
