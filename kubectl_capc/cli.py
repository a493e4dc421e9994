"""The `kubectl capc` command tree: commands register on `app`.

Keep module-level imports to typer and this package's light modules: the kubernetes client, cs and
deepdiff each cost hundreds of milliseconds, so commands import them where they use them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Annotated

import typer

from kubectl_capc.commands.cleanup import cleanup
from kubectl_capc.commands.history import history
from kubectl_capc.commands.image import image_app
from kubectl_capc.commands.rollback import rollback
from kubectl_capc.commands.upgrade import image_upgrade
from kubectl_capc.commands.validate import validate
from kubectl_capc.options import (
    GlobalOptions,
    OptionalClusterArgument,
    OutputFormat,
    OutputOption,
    global_options,
)

__all__ = ["PROG_NAME", "app", "print_document", "print_table"]

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
    kubeconfig = opts.load_kubeconfig()
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
    zones: Annotated[
        bool,
        typer.Option(
            "--zones/--no-zones",
            help="Check each failure domain's zone for the images (reads its credentials Secret).",
        ),
    ] = True,
) -> None:
    """Show clusters as a tree: control plane, MachineDeployments, versions, images, failure domains."""
    from kubectl_capc.describe import run

    text, notes = run(opts, cluster, zones=zones)
    for note in notes:
        typer.echo(note, err=True)
    typer.echo(text, nl=False)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows in kubectl's plain column style: upper-case headers, columns three spaces apart."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for line in (headers, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)]
        typer.echo("   ".join(cells).rstrip())


def print_document(document: Mapping[str, object], output: OutputFormat) -> None:
    """Print a JSON or YAML document for `-o json` / `-o yaml`."""
    if output is OutputFormat.JSON:
        typer.echo(json.dumps(document, indent=2))
    else:
        import yaml

        typer.echo(yaml.safe_dump(dict(document), sort_keys=False), nl=False)
