"""`kubectl capc history CLUSTER | -A | -l SELECTOR`: the rotations recorded on clusters' objects, newest
first.

A table (TIME, ACTION, OBJECT, VERSION, TEMPLATE, IMAGE; NAMESPACE and CLUSTER first when several
clusters are shown), or the typed `UpgradeHistory` (`UpgradeHistoryList` for several) with
`-o json|yaml`. Reads with LISTs only and changes nothing.
"""

from __future__ import annotations

import typer

from kubectl_capc.cli.options import (
    GlobalOptions,
    OptionalClusterArgument,
    OutputFormat,
    SelectorOption,
    global_options,
)
from kubectl_capc.domain.errors import UsageError

__all__ = ["history"]

_HEADERS = ("TIME", "ACTION", "OBJECT", "VERSION", "TEMPLATE", "IMAGE")


@global_options(all_namespaces=True)
def history(
    opts: GlobalOptions,
    cluster: OptionalClusterArgument = None,
    selector: SelectorOption = None,
) -> None:
    """Show the upgrades and rollbacks recorded on a cluster's control plane and MachineDeployments,
    newest first; without CLUSTER, of every cluster in the namespace (-A: in all), or those -l selects."""
    from kubectl_capc.cli.printing import print_document, print_table
    from kubectl_capc.domain.history import cluster_history, histories_document
    from kubectl_capc.kube.client import kube_client
    from kubectl_capc.kube.read import read_inventories

    if cluster is not None and (opts.all_namespaces or selector is not None):
        raise UsageError(
            "a cluster name cannot be combined with -A or -l", hint="drop -A and -l, or drop the cluster name"
        )
    namespace = None if opts.all_namespaces else opts.target.resolve_context().namespace
    if cluster is not None:
        assert namespace is not None
        (inventory,) = read_inventories(kube_client(opts.target), namespace=namespace, cluster=cluster)
        recorded = cluster_history(inventory)
        if opts.output is not OutputFormat.TABLE:
            print_document(recorded.to_document(), opts.output)
        elif not recorded.entries:
            typer.echo(f"No upgrades recorded on cluster {namespace}/{cluster}.", err=True)
        else:
            print_table(_HEADERS, recorded.table_rows())
        return
    inventories = read_inventories(kube_client(opts.target), namespace=namespace, label_selector=selector)
    histories = [cluster_history(inventory) for inventory in inventories]
    if opts.output is not OutputFormat.TABLE:
        print_document(histories_document(histories), opts.output)
        return
    rows = [(h.namespace, h.cluster, *row) for h in histories for row in h.table_rows()]
    if not rows:
        where = f"namespace {namespace}" if namespace else "any namespace"
        typer.echo(f"No upgrades recorded on the clusters of {where}.", err=True)
    else:
        print_table(("NAMESPACE", "CLUSTER", *_HEADERS), rows)
