"""`kubectl capc cleanup CLUSTER`: delete the cluster's CloudStackMachineTemplates that nothing uses.

Which ones is `kubectl_capc.domain.cleanup.plan_cleanup`. Deleting is guarded twice: the references are
read again right before deleting, and every delete carries the template's uid and resourceVersion as
preconditions, so a template that was re-created or changed since it was listed is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kubectl_capc.domain.cleanup import (
    CleanupPlan,
    References,
    UnusedTemplate,
    plan_cleanup,
    template_references,
)
from kubectl_capc.domain.model import CLOUDSTACK_MACHINE_TEMPLATE_KIND, ClusterInventory
from kubectl_capc.kube.write import Conflict, Gone, KubeWriter
from kubectl_capc.ops.cluster_io import ClusterAccess
from kubectl_capc.ops.lock import held_for_run
from kubectl_capc.ops.upgrade import require_confirmation

if TYPE_CHECKING:
    from kubectl_capc.kube.lease import ClusterLease

__all__ = [
    "CleanupConsole",
    "CleanupIO",
    "CleanupOptions",
    "KubeCleanupIO",
    "run_cleanup",
]


@dataclass(frozen=True)
class CleanupOptions:
    dry_run: bool = False
    yes: bool = False
    interactive: bool = False
    break_lock: bool = False


class CleanupConsole(Protocol):
    def show_plan(self, plan: CleanupPlan) -> None: ...

    def confirm(self, question: str) -> bool: ...

    def note(self, message: str) -> None: ...


class CleanupIO(Protocol):
    @property
    def writer(self) -> KubeWriter: ...

    def read(self) -> tuple[ClusterInventory, References]: ...

    def lease(self) -> ClusterLease: ...


class KubeCleanupIO(ClusterAccess):
    """Reads the cluster and everything in its namespace that uses templates (LISTs only)."""

    def read(self) -> tuple[ClusterInventory, References]:
        from kubectl_capc.kube.read import read_template_referrers

        inventory = self.read_inventory()
        referrers = read_template_referrers(self.api_client, namespace=self.namespace)
        return inventory, template_references(referrers)


def run_cleanup(io: CleanupIO, options: CleanupOptions, console: CleanupConsole) -> int:
    """List, check with dryRun=All, confirm, re-check the references, delete, under the cluster's
    upgrade lock (a dry run only reads it); returns the exit code (1: a dry run with templates to delete)."""
    plan = plan_cleanup(*io.read())  # a cluster that cannot be read is refused before the lock is written
    lock = held_for_run(io.lease(), dry_run=options.dry_run, break_lock=options.break_lock, note=console.note)
    with lock:
        return _run_cleanup(io, options, console, plan)


def _run_cleanup(io: CleanupIO, options: CleanupOptions, console: CleanupConsole, plan: CleanupPlan) -> int:
    console.show_plan(plan)
    if not plan.unused:
        console.note(f"cluster {plan.namespace}/{plan.cluster}: no unused CloudStackMachineTemplates")
        return 0
    for template in plan.unused:
        _delete(io.writer, template, dry_run=True)
    if options.dry_run:
        console.note(f"{len(plan.unused)} unused CloudStackMachineTemplates would be deleted (dryRun=All)")
        return 1
    require_confirmation(
        f"Delete {len(plan.unused)} CloudStackMachineTemplates?",
        yes=options.yes,
        interactive=options.interactive,
        ask=console.confirm,
        verb="delete",
        done="deleted",
    )
    fresh = plan_cleanup(*io.read())
    still_unused = {t.name: t for t in fresh.unused}
    used = {t.name: t.used_by for t in fresh.in_use}
    for template in plan.unused:
        if template.name not in still_unused:
            reason = f"now used by {', '.join(used[template.name])}" if template.name in used else "gone"
            console.note(f"{CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{template.name} kept: {reason}")
            continue
        try:
            _delete(io.writer, template, dry_run=False)
        except Gone:
            console.note(f"{CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{template.name} was already deleted")
            continue
        except Conflict as err:
            console.note(f"{CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{template.name} kept: changed since listed")
            console.note(f"  {err.message}")
            continue
        console.note(f"{CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{template.name} deleted")
    return 0


def _delete(writer: KubeWriter, template: UnusedTemplate, *, dry_run: bool) -> None:
    writer.delete_template(
        template.name, uid=template.uid, resource_version=template.resource_version, dry_run=dry_run
    )
