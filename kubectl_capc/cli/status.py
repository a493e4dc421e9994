"""`kubectl capc status [CLUSTER | -A | -l SELECTOR] [--watch]`: the rollout doctor.

Per control plane and MachineDeployment, how many machines run the new and the old version, and for
each machine that is not progressing the cause in one line. Prints a table (notes on what could not be
asked go to stderr), or the typed `RolloutStatus` (`RolloutStatusList` without a cluster name) with
`-o json|yaml`. Exits 0 when no machine is held up, 1 when one is (docs/exit-codes.md). `--watch`
prints it again whenever a Machine changes, until every machine runs its owner's version.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from kubectl_capc.cli.options import (
    GlobalOptions,
    OptionalClusterArgument,
    OutputFormat,
    SelectorOption,
    global_options,
    positive_seconds,
)
from kubectl_capc.domain.errors import ExitCode

if TYPE_CHECKING:
    from kubectl_capc.ops.status import StatusReport

__all__ = ["status"]

_CLEAR = "\x1b[H\x1b[2J"


@global_options(all_namespaces=True)
def status(
    opts: GlobalOptions,
    cluster: OptionalClusterArgument = None,
    selector: SelectorOption = None,
    watch: Annotated[
        bool,
        typer.Option(
            "-w", "--watch", help="Print again on every Machine change, until every machine is up to date."
        ),
    ] = False,
    join_timeout: Annotated[
        str,
        typer.Option(
            "--join-timeout",
            metavar="DURATION",
            help="How long a machine may go without a node before it counts as never joined.",
        ),
    ] = "10m",
) -> None:
    """Show how far each rollout got and, for every machine that is not progressing, why: a drain held
    by a PodDisruptionBudget, a VM in Error, a node that never joined, a template not ready in its zone,
    volumes not detached, MachineHealthCheck remediation."""
    from kubectl_capc.kube.client import api_client
    from kubectl_capc.ops.status import StatusOptions, follow, gather

    timeout = timedelta(seconds=positive_seconds(join_timeout, "--join-timeout"))
    namespace = None if opts.all_namespaces else opts.target.resolve_context().namespace
    options = StatusOptions(namespace, cluster, selector, timeout)
    api = api_client(opts.target)
    as_list = cluster is None
    if not watch:
        report, _ = gather(api, options, request_timeout=opts.request_timeout)
        _render(report, opts.output, as_list=as_list, namespace=namespace)
        raise typer.Exit(report.exit_code)
    clear = opts.output is OutputFormat.TABLE and sys.stdout.isatty()
    first = [True]

    def render(report: StatusReport) -> None:
        if clear:
            typer.echo(_CLEAR, nl=False)
        elif not first[0] and opts.output is OutputFormat.TABLE:
            typer.echo("")
        first[0] = False
        _render(report, opts.output, as_list=as_list, namespace=namespace)

    try:
        final = follow(api, options, render, request_timeout=opts.request_timeout)
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    raise typer.Exit(final.exit_code)


def _render(report: StatusReport, output: OutputFormat, *, as_list: bool, namespace: str | None) -> None:
    from kubectl_capc.cli.printing import print_document, print_table
    from kubectl_capc.ops.status import TABLE_HEADERS

    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    if output is not OutputFormat.TABLE:
        print_document(report.to_document(as_list=as_list), output)
    elif not report.statuses:
        typer.echo("No clusters found" + (f" in namespace {namespace}." if namespace else "."), err=True)
    else:
        rows = report.rows(with_cluster=as_list)
        print_table(("CLUSTER", *TABLE_HEADERS) if as_list else TABLE_HEADERS, rows)
