"""`kubectl capc rollback CLUSTER`: point objects back at the version and template of their last upgrade.

The plan goes to stdout (a table, or `-o json|yaml` as `kind: RollbackPlan`), then the server-checked
diff of every object it changes. Progress, refusals and questions go to stderr. Exit codes follow
`kubectl diff` for `--dry-run` (0 nothing to do, 1 changes pending); nothing that may go back is a
plan error (5), see docs/exit-codes.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from kubectl_capc.cli.options import (
    BreakLockOption,
    ClusterArgument,
    DryRunOption,
    GlobalOptions,
    NoWaitOption,
    ProgressOption,
    TimeoutOption,
    YesOption,
    apply_options,
    global_options,
)
from kubectl_capc.cli.terminal import PlanTerminal

if TYPE_CHECKING:
    from kubectl_capc.domain.plan import Step
    from kubectl_capc.domain.preview import ObjectPreview
    from kubectl_capc.ops.rollback import RollbackPlan

__all__ = ["RollbackTerminal", "rollback"]


@global_options()
def rollback(
    opts: GlobalOptions,
    cluster: ClusterArgument,
    *,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = None,
    break_lock: BreakLockOption = False,
    progress: ProgressOption = "auto",
) -> None:
    """Roll back the last upgrade recorded on a cluster's MachineDeployments, and on its control plane
    where Kubernetes allows it: after an image-only or same-minor change, or before its minor upgrade
    has completed. Safe to interrupt and run again."""
    from kubectl_capc.kube.client import api_client
    from kubectl_capc.ops.rollback import KubeRollbackIO, Rollback

    options = apply_options(dry_run=dry_run, yes=yes, no_wait=no_wait, timeout=timeout, break_lock=break_lock)
    console = RollbackTerminal(opts.output, progress=progress)
    io = KubeRollbackIO(api_client(opts.target), opts.target.resolve_context().namespace, cluster)
    console.exit_with(Rollback(io, options, console).run)


class RollbackTerminal(PlanTerminal["RollbackPlan"]):
    """`rollback`'s plan as a table with the reason for each object, refusals with their hints."""

    def print_plan(self, plan: RollbackPlan) -> None:
        from kubectl_capc.cli.printing import print_table

        typer.echo(
            f"Cluster {plan.namespace}/{plan.cluster} (CAPI {plan.capi_version}), "
            f"control plane {plan.control_plane_version}: roll back"
        )
        if plan.rolled_back:
            typer.echo(f"  already rolled back: {', '.join(plan.rolled_back)}")
        rows = plan.table_rows()
        if rows:
            typer.echo("")
            print_table(("ACTION", "OBJECT", "CHANGE", "WHY"), rows)
        for refusal in plan.refusals:
            if refusal.hint:
                typer.echo(f"refused {refusal.subject}: {refusal.hint}", err=True)
        for note in plan.notes:
            typer.echo(f"note: {note}")
        typer.echo("")

    def print_previews(self, previews: Sequence[ObjectPreview]) -> None:
        from kubectl_capc.domain.preview import semantic_summary, unified_diff

        for preview in previews:
            typer.echo(f"# {preview.step.subject} (roll back)")
            if preview.rejection:
                typer.echo(f"REJECTED by the API server: {preview.rejection}")
            else:
                typer.echo("accepted by the API server (dryRun=All)")
            for line in semantic_summary(preview.before, preview.after):
                typer.echo(f"  {line}")
            for line in unified_diff(
                preview.before, preview.after, label=preview.step.subject, color=self.color
            ):
                typer.echo(line)
            typer.echo("")

    def verdict(self, preview: ObjectPreview) -> dict[str, Any]:
        entry = {"object": preview.step.subject, "result": "rejected" if preview.rejection else "accepted"}
        return entry | ({"message": preview.rejection} if preview.rejection else {})

    def step(self, step: Step, state: str) -> None:
        self.announce("rollback", step, state)
