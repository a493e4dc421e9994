"""One upgrade at a time: how `image-upgrade`, `rollback` and `cleanup` use the cluster's upgrade lock.

A run that changes the cluster holds its Lease (`kubectl_capc.kube.lease`) from before its first read
to its end; a `--dry-run` only reads it and says when another run holds it (it never writes it, and the
exit code stays that of the plan). GitOps mode (`-f`) writes files only and takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from kubectl_capc.domain.lease import LeaseVerdict

if TYPE_CHECKING:
    from kubectl_capc.kube.lease import ClusterLease

__all__ = ["held_for_run"]


def held_for_run(
    lease: ClusterLease, *, dry_run: bool, break_lock: bool, note: Callable[[str], None]
) -> AbstractContextManager[None]:
    """Hold `lease` for the body of a run; for a dry run, only report what a run would find."""
    if not dry_run:
        return lease.holding(break_lock=break_lock, note=note)
    decision = lease.decision(lease.read())
    if decision.verdict is LeaseVerdict.HELD:
        unless = "" if break_lock else " (unless --break-lock is given)"
        note(f"note: {decision.message} ({lease.subject}): a run without --dry-run would be refused{unless}")
    elif decision.verdict is LeaseVerdict.EXPIRED:
        note(f"note: {decision.message} ({lease.subject}): a run without --dry-run would take it over")
    return nullcontext()
