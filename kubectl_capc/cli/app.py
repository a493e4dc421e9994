"""The `kubectl capc` command tree: commands register on `app`.

Keep module-level imports to typer and this package's light modules: the kubernetes client, cs and
deepdiff each cost hundreds of milliseconds, so commands import them where they use them.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Annotated

import typer

from kubectl_capc.cli.cleanup import cleanup
from kubectl_capc.cli.history import history
from kubectl_capc.cli.image import image_app
from kubectl_capc.cli.options import (
    GlobalOptions,
    OptionalClusterArgument,
    OutputFormat,
    OutputOption,
    SelectorOption,
    global_options,
)
from kubectl_capc.cli.printing import print_document, print_table
from kubectl_capc.cli.rollback import rollback
from kubectl_capc.cli.status import status
from kubectl_capc.cli.upgrade import image_upgrade
from kubectl_capc.cli.validate import validate

__all__ = ["PROG_NAME", "app"]

# How users call the plugin; help and errors show this instead of the script's path.
PROG_NAME = "kubectl capc"

app = typer.Typer(
    help=(
        "Upgrade Cluster API Provider CloudStack (CAPC) workload clusters safely.\n\n"
        "Flags go after the command name, e.g. `kubectl capc context --context NAME -n NAMESPACE`: "
        "kubectl rejects flags placed before a plugin's name."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(image_app, name="image")
app.command(name="image-upgrade")(image_upgrade)
app.command(name="validate")(validate)
app.command(name="status")(status)
app.command(name="rollback")(rollback)
app.command(name="history")(history)
app.command(name="cleanup")(cleanup)


@app.command()
def version(output: OutputOption = OutputFormat.TABLE) -> None:
    """Print the versions of the plugin, Python, and the Kubernetes and CloudStack client libraries."""
    report = {
        "kubectl-capc": _installed_version("kubectl-capc"),
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "kubernetes": _installed_version("kubernetes"),
        "cs": _installed_version("cs"),
    }
    if output is OutputFormat.TABLE:
        print_table(("COMPONENT", "VERSION"), list(report.items()))
    else:
        print_document(report, output)


def _installed_version(distribution: str) -> str:
    # Package metadata, not an import: importing kubernetes or cs would cost half a second.
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


@app.command()
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


@app.command()
@global_options(all_namespaces=True)
def describe(
    opts: GlobalOptions,
    cluster: OptionalClusterArgument = None,
    selector: SelectorOption = None,
    zones: Annotated[
        bool,
        typer.Option(
            "--zones/--no-zones",
            help="Check each failure domain's zone for the images (reads its credentials Secret).",
        ),
    ] = True,
) -> None:
    """Show clusters as a tree: control plane, MachineDeployments, versions, images, failure domains."""
    from kubectl_capc.ops.describe import run

    output = "tree" if opts.output is OutputFormat.TABLE else opts.output.value
    text, notes = run(
        opts.target,
        cluster,
        all_namespaces=opts.all_namespaces,
        output=output,
        zones=zones,
        label_selector=selector,
    )
    for note in notes:
        typer.echo(note, err=True)
    typer.echo(text, nl=False)
