"""The shared global options: value parsing, the decorator, and what verbosity turns on."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from kubectl_capc.cli.options import (
    GlobalOptions,
    OutputFormat,
    configure_logging,
    global_options,
    parse_duration,
    parse_output,
    parse_verbosity,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", None),
        ("0s", None),
        ("30", 30.0),
        ("30s", 30.0),
        ("=5s", 5.0),
        ("2m", 120.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("250us", 0.00025),
    ],
)
def test_request_timeout_reads_seconds_and_go_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5x", "s", "1m x", "-1s", "1d"])
def test_request_timeout_rejects_what_kubectl_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="is not a duration"):
        parse_duration(text)


def test_verbosity_and_output_accept_pflag_equals_spelling() -> None:
    assert parse_verbosity("=6") == 6
    assert parse_verbosity("4") == 4
    assert parse_output("=json") is OutputFormat.JSON
    assert parse_output("yaml") is OutputFormat.YAML
    with pytest.raises(typer.BadParameter, match="'-1' is not a log level"):
        parse_verbosity("-1")
    with pytest.raises(
        typer.BadParameter, match=r"'wide' is not an output format; use one of table\|json\|yaml"
    ):
        parse_output("wide")


def probe_app(*, all_namespaces: bool) -> tuple[typer.Typer, list[tuple[str, GlobalOptions]]]:
    """A one-command app recording what the decorator hands over."""
    seen: list[tuple[str, GlobalOptions]] = []
    app = typer.Typer()

    @app.command()
    @global_options(all_namespaces=all_namespaces)
    def probe(cluster: Annotated[str, typer.Argument()], opts: GlobalOptions) -> None:
        seen.append((cluster, opts))

    return app, seen


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    logger = logging.getLogger("kubectl_capc")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def test_global_options_are_parsed_after_the_command_argument() -> None:
    app, seen = probe_app(all_namespaces=True)
    argv = ["c1", "--kubeconfig", "/k", "--context", "x", "-n", "ns", "-A", "--request-timeout", "2m"]
    result = CliRunner().invoke(app, [*argv, "-v=6", "-o", "yaml"])
    assert result.exit_code == 0, result.output
    assert seen == [
        (
            "c1",
            GlobalOptions(
                kubeconfig="/k",
                context="x",
                namespace="ns",
                all_namespaces=True,
                request_timeout=120.0,
                verbosity=6,
                output=OutputFormat.YAML,
            ),
        )
    ]


def test_defaults_leave_everything_to_kubeconfig() -> None:
    app, seen = probe_app(all_namespaces=False)
    result = CliRunner().invoke(app, ["c1", "-n=ns"])
    assert result.exit_code == 0, result.output
    assert seen == [("c1", GlobalOptions(namespace="ns"))]


def test_all_namespaces_only_where_a_command_asks_for_it() -> None:
    app, seen = probe_app(all_namespaces=False)
    result = CliRunner().invoke(app, ["c1", "-A"])
    assert result.exit_code == 2
    assert "No such option: -A" in result.output
    assert seen == []


def test_decorator_refuses_commands_it_cannot_serve() -> None:
    def without_opts(cluster: str) -> None: ...

    def clashing(namespace: str, opts: GlobalOptions) -> None: ...

    with pytest.raises(TypeError, match="must take an `opts: GlobalOptions`"):
        global_options()(without_opts)
    with pytest.raises(TypeError, match=r"named like global options: \['namespace'\]"):
        global_options()(clashing)


@pytest.mark.parametrize(
    ("verbosity", "level"), [(0, logging.WARNING), (1, logging.INFO), (6, logging.DEBUG)]
)
def test_verbosity_sets_only_this_tools_log_level(verbosity: int, level: int) -> None:
    kubernetes_rest = logging.getLogger("kubernetes.client.rest")
    configure_logging(verbosity)
    assert logging.getLogger("kubectl_capc.kube.client").getEffectiveLevel() == level
    # The kubernetes client logs response bodies (possibly Secrets) at debug level: never turn that on.
    assert not kubernetes_rest.isEnabledFor(logging.DEBUG)


def test_on_delete_takes_leave_or_replace_and_replace_is_refused_for_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubectl_capc.__main__ import main

    code = main(["image-upgrade", "c1", "--to", "v1.29.3", "--on-delete", "recreate"])
    assert (
        code == 2
        and "'recreate' is not an OnDelete mode; use one of leave|replace" in capsys.readouterr().err
    )
    code = main(["image-upgrade", "c1", "--to", "v1.29.3", "-f", str(tmp_path), "--on-delete=replace"])
    err = capsys.readouterr().err
    assert code == 2 and "--on-delete=replace deletes Machines of a live cluster" in err
