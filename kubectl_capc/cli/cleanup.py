"""`kubectl capc cleanup CLUSTER`: delete the cluster's CloudStackMachineTemplates that nothing uses.

The templates to delete go to stdout (a table, or `-o json|yaml` as `kind: MachineTemplateCleanup`);
what was deleted or kept, and the question, go to stderr. `--dry-run` lists them, checks each delete
with dryRun=All and exits 1 when there is something to delete, like `kubectl diff`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from kubectl_capc.cli.options import (
    BreakLockOption,
    ClusterArgument,
    DryRunOption,
    GlobalOptions,
    OutputFormat,
    YesOption,
    global_options,
)
from kubectl_capc.domain.errors import ExitCode

if TYPE_CHECKING:
    from kubectl_capc.domain.cleanup import CleanupPlan

__all__ = ["cleanup"]


@global_options()
def cleanup(
    opts: GlobalOptions,
    cluster: ClusterArgument,
    *,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    break_lock: BreakLockOption = False,
) -> None:
    """Delete the cluster's CloudStackMachineTemplates that no KubeadmControlPlane, MachineDeployment,
    MachineSet or Machine uses any more (e.g. those an upgrade replaced). No rollback to them afterwards."""
    from kubectl_capc.kube.client import api_client
    from kubectl_capc.ops.cleanup import CleanupOptions, KubeCleanupIO, run_cleanup

    namespace = opts.target.resolve_context().namespace
    console = _Console(opts.output)
    options = CleanupOptions(dry_run=dry_run, yes=yes, interactive=sys.stdin.isatty(), break_lock=break_lock)
    try:
        code = run_cleanup(KubeCleanupIO(api_client(opts.target), namespace, cluster), options, console)
    except KeyboardInterrupt:
        console.note(
            "interrupted: templates already deleted stay deleted; run the command again for the rest"
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    finally:
        console.flush()
    raise typer.Exit(code)


class _Console:
    """The list on stdout (printed at once, or as a document at the end); the rest on stderr."""

    def __init__(self, output: OutputFormat) -> None:
        self.output = output
        self._document: dict[str, Any] | None = None

    def show_plan(self, plan: CleanupPlan) -> None:
        if self.output is not OutputFormat.TABLE:
            self._document = plan.to_document()
            return
        from kubectl_capc.cli.printing import print_table

        if plan.unused:
            print_table(("NAME", "IMAGE", "VERSION", "NOTE"), plan.table_rows())
        for template in plan.in_use:
            typer.echo(f"keeping {template.name}: used by {', '.join(template.used_by)}", err=True)

    def confirm(self, question: str) -> bool:
        return typer.confirm(question, default=False, err=True)

    def note(self, message: str) -> None:
        typer.echo(message, err=True)

    def flush(self) -> None:
        if self._document is not None:
            from kubectl_capc.cli.printing import print_document

            print_document(self._document, self.output)
            self._document = None
