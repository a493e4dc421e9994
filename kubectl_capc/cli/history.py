"""`kubectl capc history CLUSTER`: the rotations recorded on the cluster's objects, newest first.

A table (TIME, ACTION, OBJECT, VERSION, TEMPLATE, IMAGE), or the typed `UpgradeHistory` with
`-o json|yaml`. Reads with LISTs only and changes nothing.
"""

from __future__ import annotations

import typer

from kubectl_capc.cli.options import ClusterArgument, GlobalOptions, OutputFormat, global_options

__all__ = ["history"]


@global_options()
def history(opts: GlobalOptions, cluster: ClusterArgument) -> None:
    """Show the upgrades and rollbacks recorded on a cluster's control plane and MachineDeployments,
    newest first."""
    from kubectl_capc.cli.printing import print_document, print_table
    from kubectl_capc.domain.history import cluster_history
    from kubectl_capc.kube.client import api_client
    from kubectl_capc.kube.read import read_inventories

    namespace = opts.target.resolve_context().namespace
    (inventory,) = read_inventories(api_client(opts.target), namespace=namespace, cluster=cluster)
    recorded = cluster_history(inventory)
    if opts.output is not OutputFormat.TABLE:
        print_document(recorded.to_document(), opts.output)
    elif not recorded.entries:
        typer.echo(f"No upgrades recorded on cluster {namespace}/{cluster}.", err=True)
    else:
        print_table(("TIME", "ACTION", "OBJECT", "VERSION", "TEMPLATE", "IMAGE"), recorded.table_rows())
