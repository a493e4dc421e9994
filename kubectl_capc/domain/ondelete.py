"""Rolling an OnDelete MachineDeployment by hand (`--on-delete=replace`): which Machine to delete next.

Cluster API replaces a Machine of an OnDelete MachineDeployment only once it is deleted. The plugin
deletes the old Machines one at a time -- those not at the wanted version, or built from another
CloudStackMachineTemplate than the wanted one (a change of image alone, `Machine.outdated`): the next
one only when no Machine of the deployment is being deleted, no replacement is still on its way (new
but not Ready), the ready count is back where it was when the replacing started, and one more
unavailable machine stays within maxUnavailable (at least one may always be, or nothing could ever be
replaced). Pure: the adapter feeds the Machines it watches, the decision says what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from kubectl_capc.domain.model import Machine

__all__ = ["Decision", "next_step"]


@dataclass(frozen=True)
class Decision:
    """`delete` names the Machine to delete now; else `done`, else `waiting` says what is awaited."""

    delete: str = ""
    done: bool = False
    waiting: str = ""
    old: int = 0
    """Machines still at another version or on another template (not being deleted)."""
    ready: int = 0
    up_to_date: int = 0


def next_step(
    machines: Sequence[Machine],
    *,
    version: str,
    template: str,
    desired: int,
    max_unavailable: int,
    baseline_ready: int,
) -> Decision:
    """What to do next for a deployment's `machines` (oldest first) that should all run `version`, built
    from CloudStackMachineTemplate `template`.

    `baseline_ready` is the ready count when the replacing started: the ready count never drops more
    than one below it.
    """
    live = [m for m in machines if not m.deleting]
    old = [m for m in live if m.outdated(version, template)]
    new = [m for m in live if not m.outdated(version, template)]
    ready = sum(1 for m in live if m.ready)
    counts = Decision(old=len(old), ready=ready, up_to_date=len(new))
    deleting = [m.name for m in machines if m.deleting]
    if deleting:
        return replace(counts, waiting=f"Machine {', '.join(deleting)} to be deleted and replaced")
    in_flight = [m.name for m in new if not m.ready]
    if in_flight:
        return replace(counts, waiting=f"the Node of Machine {', '.join(in_flight)} to be Ready")
    if not old:
        if len(new) < desired:
            return replace(counts, waiting=f"{desired - len(new)} replacement Machine(s) to be created")
        return replace(counts, done=True)
    if ready < baseline_ready:
        return replace(counts, waiting=f"{baseline_ready - ready} more Machine(s) to be Ready")
    unavailable = max(desired - ready, 0)
    if unavailable + 1 > max(max_unavailable, 1):
        return replace(
            counts,
            waiting=f"{unavailable} unavailable Machine(s) to be Ready (maxUnavailable {max_unavailable})",
        )
    return replace(counts, delete=old[0].name)
