"""`kubectl capc context`: the context, server and namespace the other commands would use."""

from __future__ import annotations

from dataclasses import asdict

from kubectl_capc.cli.options import GlobalOptions, OutputFormat, global_options
from kubectl_capc.cli.printing import print_document, print_table

__all__ = ["context"]


@global_options()
def context(opts: GlobalOptions) -> None:
    """Show the context, server and namespace that commands will use, without contacting the server."""
    kubeconfig = opts.target.load_kubeconfig()
    target = kubeconfig.resolve(opts.context, opts.namespace)
    if opts.output is OutputFormat.TABLE:
        print_table(
            ("CONTEXT", "CLUSTER", "SERVER", "USER", "NAMESPACE"),
            [(target.context, target.cluster, target.server, target.user, target.namespace)],
        )
    else:
        document = {**asdict(target), "kubeconfig": [str(path) for path in kubeconfig.files]}
        print_document(document, opts.output)
