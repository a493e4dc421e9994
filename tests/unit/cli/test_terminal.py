"""The terminal that `image-upgrade` and `rollback` share: the typed document, step lines and Ctrl-C."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pytest
import typer

from kubectl_capc.cli.options import OutputFormat
from kubectl_capc.cli.terminal import PlanTerminal
from kubectl_capc.domain.errors import ExitCode
from kubectl_capc.domain.interrupts import StoppedAfterWrite
from kubectl_capc.domain.plan import WaitRollout
from kubectl_capc.domain.preview import ObjectPreview
from kubectl_capc.domain.progress import OwnerProgress, RolloutUpdate

HOW_TO_GO_ON = "run the same command again to continue where it stopped"


class Plan:
    def to_document(self) -> dict[str, Any]:
        return {"kind": "TestPlan", "status": {"steps": []}}


class Terminal(PlanTerminal[Plan]):
    def print_plan(self, plan: Plan) -> None:
        typer.echo("the plan as text")

    def print_previews(self, previews: Sequence[ObjectPreview]) -> None:
        typer.echo(f"{len(previews)} previews")

    def verdict(self, preview: ObjectPreview) -> dict[str, Any]:
        return {"object": preview.step.subject}


WAIT = WaitRollout("MachineDeployment", ("c1-md-0",), "v1.29.3")


def test_the_run_s_exit_code_is_the_command_s(capsys: pytest.CaptureFixture[str]) -> None:
    terminal = Terminal(OutputFormat.TABLE, color=False)

    def run() -> int:
        terminal.show_plan(Plan())
        return 1

    with pytest.raises(typer.Exit) as exited:
        terminal.exit_with(run)
    assert exited.value.exit_code == 1
    assert capsys.readouterr().out == "the plan as text\n"


def test_ctrl_c_after_a_write_names_the_write_and_still_prints_the_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    terminal = Terminal(OutputFormat.JSON, color=False)

    def run() -> int:
        terminal.show_plan(Plan())
        terminal.show_previews([ObjectPreview(1, WAIT, {}, {}, True)])
        raise StoppedAfterWrite("patch MachineDeployment/c1-md-0")

    with pytest.raises(typer.Exit) as exited:
        terminal.exit_with(run)
    assert exited.value.exit_code == ExitCode.INTERRUPTED
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "kind": "TestPlan",
        "status": {"steps": [], "serverDryRun": [{"object": "MachineDeployment/c1-md-0"}]},
    }
    assert err == f"interrupted after patch MachineDeployment/c1-md-0 had finished: {HOW_TO_GO_ON}\n"


def test_ctrl_c_during_a_step_names_the_step(capsys: pytest.CaptureFixture[str]) -> None:
    terminal = Terminal(OutputFormat.TABLE, color=False)

    def run() -> int:
        terminal.announce("rollback", WAIT, "start")
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as exited:
        terminal.exit_with(run)
    assert exited.value.exit_code == ExitCode.INTERRUPTED
    assert capsys.readouterr().err.splitlines() == [
        "[rollback] WaitRollout MachineDeployment/c1-md-0: rollout to v1.29.3",
        f"interrupted during WaitRollout MachineDeployment/c1-md-0: {HOW_TO_GO_ON}",
    ]


def test_a_finished_step_is_no_longer_named(capsys: pytest.CaptureFixture[str]) -> None:
    terminal = Terminal(OutputFormat.TABLE, color=False)

    def run() -> int:
        terminal.announce("hop 1", WAIT, "start")
        terminal.announce("hop 1", WAIT, "done")
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit):
        terminal.exit_with(run)
    assert capsys.readouterr().err.splitlines()[1:] == [
        "[hop 1] WaitRollout MachineDeployment/c1-md-0: done",
        f"interrupted: {HOW_TO_GO_ON}",
    ]


def test_with_json_stdout_holds_only_the_document_and_progress_goes_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    terminal = Terminal(OutputFormat.JSON, color=False, progress="plain")
    owner = OwnerProgress("MachineDeployment", "c1-md-0", "v1.29.3", 2, 1, 2, 2, True, False)

    def run() -> int:
        terminal.show_plan(Plan())
        terminal.progress(RolloutUpdate((owner,), 3.0, 1800.0))
        return 0

    with pytest.raises(typer.Exit):
        terminal.exit_with(run)
    out, err = capsys.readouterr()
    assert json.loads(out) == {"kind": "TestPlan", "status": {"steps": []}}
    (line,) = err.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ c1-md-0: 1/2 up to date, 2 ready \(0:03 of 30:00\)", line
    )
