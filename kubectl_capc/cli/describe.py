"""`kubectl capc describe [CLUSTER | -A]`: clusters as a tree, with their templates, images and zones."""

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

__all__ = ["describe"]


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
