"""`kubectl capc rollback CLUSTER`: point objects back at the version and template of their last upgrade.

The plan goes to stdout (a table, or `-o json|yaml` as `kind: RollbackPlan`), then the server-checked
diff of every object it changes. Progress, refusals and questions go to stderr. Exit codes follow
`kubectl diff` for `--dry-run` (0 nothing to do, 1 changes pending); nothing that may go back is a
plan error (5), see docs/exit-codes.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from kubectl_capc.errors import ExitCode
from kubectl_capc.options import (
    ClusterArgument,
    DryRunOption,
    GlobalOptions,
    NoWaitOption,
    OutputFormat,
    TimeoutOption,
    YesOption,
    global_options,
)

if TYPE_CHECKING:
    from kubectl_capc.commands.upgrade import TerminalConsole
    from kubectl_capc.kube_write import OwnerProgress
    from kubectl_capc.plan import Step
    from kubectl_capc.preview import ObjectPreview
    from kubectl_capc.rollback import RollbackPlan

__all__ = ["rollback"]


@global_options()
def rollback(
    opts: GlobalOptions,
    cluster: ClusterArgument,
    *,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = None,
) -> None:
    """Roll back the last upgrade recorded on a cluster's MachineDeployments, and on its control plane
    where Kubernetes allows it: after an image-only or same-minor change, or before its minor upgrade
    has completed. Safe to interrupt and run again."""
    from kubectl_capc.apply import ApplyOptions
    from kubectl_capc.commands.upgrade import TerminalConsole, parse_timeouts
    from kubectl_capc.kube import api_client
    from kubectl_capc.rollback import KubeRollbackIO, Rollback

    options = ApplyOptions(
        dry_run=dry_run,
        yes=yes,
        no_wait=no_wait,
        interactive=sys.stdin.isatty(),
        timeouts=parse_timeouts(timeout or []),
    )
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    console = _Console(TerminalConsole(opts.output, color=color), opts.output, color=color)
    io = KubeRollbackIO(api_client(opts), opts.resolve_context().namespace, cluster)
    try:
        code = Rollback(io, options, console).run()
    except KeyboardInterrupt:
        console.note("interrupted: run the same command again to continue where it stopped")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    finally:
        console.flush()
    raise typer.Exit(code)


class _Console:
    """The plan and diffs on stdout; steps, progress and questions through image-upgrade's terminal."""

    def __init__(self, terminal: TerminalConsole, output: OutputFormat, *, color: bool) -> None:
        self.terminal = terminal
        self.output = output
        self.color = color
        self._document: dict[str, Any] | None = None

    def show_plan(self, plan: RollbackPlan) -> None:
        if self.output is not OutputFormat.TABLE:
            if self._document is None:
                self._document = plan.to_document()
            return
        from kubectl_capc.cli import print_table

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

    def show_previews(self, previews: Sequence[ObjectPreview]) -> None:
        if self.output is not OutputFormat.TABLE:
            if self._document is not None and "serverDryRun" not in self._document["status"]:
                self._document["status"]["serverDryRun"] = [
                    {"object": p.step.subject, "result": "rejected" if p.rejection else "accepted"}
                    | ({"message": p.rejection} if p.rejection else {})
                    for p in previews
                ]
            return
        from kubectl_capc.preview import semantic_summary, unified_diff

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

    def confirm(self, question: str) -> bool:
        return self.terminal.confirm(question)

    def step(self, step: Step, state: str) -> None:
        text = f"{step.summary()}" if state == "start" else "done"
        self.terminal.note(f"[rollback] {step.action} {step.subject}: {text}")

    def progress(self, progress: Sequence[OwnerProgress], elapsed: float) -> None:
        self.terminal.progress(progress, elapsed)

    def note(self, message: str) -> None:
        self.terminal.note(message)

    def flush(self) -> None:
        self.terminal.flush()
        if self._document is not None:
            from kubectl_capc.cli import print_document

            print_document(self._document, self.output)
            self._document = None
