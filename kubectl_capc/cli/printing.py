"""Everything a command prints as data: kubectl-style tables and `-o json|yaml` documents."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import typer

from kubectl_capc.cli.options import OutputFormat

__all__ = ["print_document", "print_table"]


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
