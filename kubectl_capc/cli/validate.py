"""`kubectl capc validate [CLUSTER | -A | -l SELECTOR] [--to VERSION] [--strict]`: can it be upgraded?

Prints a table of findings (check ID, severity, object, message, fix) and a summary line, or the typed
`ValidationReport` with `-o json|yaml`. Exits 0 without errors, 1 with errors (or, with `--strict`,
warnings); usage, kubeconfig and API-server failures keep their own codes (docs/exit-codes.md).
"""

from __future__ import annotations

from typing import Annotated

import typer

from kubectl_capc.cli.options import (
    GlobalOptions,
    OptionalClusterArgument,
    OutputFormat,
    SelectorOption,
    global_options,
)
from kubectl_capc.domain.errors import UsageError

__all__ = ["validate"]


@global_options(all_namespaces=True)
def validate(
    opts: GlobalOptions,
    cluster: OptionalClusterArgument = None,
    selector: SelectorOption = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="VERSION",
            help="Also check an upgrade to this version: v1.MINOR or v1.MINOR.PATCH.",
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail (exit 1) on warnings too.")] = False,
) -> None:
    """Check that clusters can be upgraded: cluster state, credentials, CloudStack zones, templates,
    offerings, the target version and your permissions. See docs/checks.md for every check."""
    from kubectl_capc.cli.printing import print_document, print_table
    from kubectl_capc.kube.client import kube_client
    from kubectl_capc.kube.read import read_inventories
    from kubectl_capc.ops.validate import TABLE_HEADERS, build_report, gather_facts, parse_to

    target = parse_to(to) if to is not None else None
    if cluster is not None and (opts.all_namespaces or selector is not None):
        raise UsageError(
            "a cluster name cannot be combined with -A or -l", hint="drop -A and -l, or drop the cluster name"
        )
    namespace = None if opts.all_namespaces else opts.target.resolve_context().namespace
    api = kube_client(opts.target)
    inventories = read_inventories(api, namespace=namespace, cluster=cluster, label_selector=selector)
    gathered = gather_facts(api, inventories, target, request_timeout=opts.request_timeout)
    report = build_report(inventories, gathered.facts, target, strict=strict, secrets=gathered.secrets)
    if opts.output is not OutputFormat.TABLE:
        print_document(report.to_document(), opts.output)
    elif not inventories:
        where = f" in namespace {namespace}" if namespace else ""
        typer.echo(f"No clusters found{where}{f' matching {selector}' if selector else ''}.", err=True)
    else:
        listing = cluster is None
        rows = report.rows(with_cluster=listing)
        if rows:
            print_table(("CLUSTER", *TABLE_HEADERS) if listing else TABLE_HEADERS, rows)
            typer.echo("")
        typer.echo(report.summary())
    raise typer.Exit(report.exit_code)
