"""`image-upgrade`'s fleet flags: refused where they cannot apply, checked before anything is read; and
the fleet terminal's progress lines."""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from rich.console import Console

from kubectl_capc.__main__ import main
from kubectl_capc.cli.fleet import FleetTerminal
from kubectl_capc.cli.options import OutputFormat
from kubectl_capc.cli.progress import ProgressDisplay
from kubectl_capc.domain.errors import ExitCode
from kubectl_capc.domain.fleet import ClusterKey


@pytest.fixture(autouse=True)
def no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No kubeconfig at all: a command that got as far as reading one would fail with exit code 3."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["c1", "--canary", "1"], "--canary only apply to a fleet"),
        (["c1", "--max-concurrent", "3", "--skip-failing"], "--max-concurrent, --skip-failing only apply"),
        (["c1", "--continue-on-error"], "--continue-on-error only apply to a fleet"),
        ([], "name the cluster to upgrade"),
        (["c1", "c2", "--max-concurrent", "0"], "--max-concurrent must be at least 1"),
        (["-A", "--canary", "-1"], "--canary must be 0 or more"),
        (["-l", " "], "-l is empty"),
        (["c1", "c2", "-f", "x.yaml"], "-f works on one cluster"),
        (["-A", "--no-wait"], "--no-wait does not apply to a fleet"),
    ],
)
def test_fleet_flags_are_refused_before_anything_is_read(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["image-upgrade", *argv, "--to", "v1.29.3"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    assert message in err


def test_plain_progress_is_one_timestamped_line_per_change_of_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    display = ProgressDisplay("plain", now=lambda: datetime(2026, 12, 7, 2, 3, 4, tzinfo=timezone.utc))
    terminal = FleetTerminal(OutputFormat.TABLE, progress=display)
    key = ClusterKey("prod", "c1")
    terminal.member(key, "running")
    terminal.member(key, "note", "only logged")
    terminal.member(key, "start", "hop 1 Patch KubeadmControlPlane/c1-control-plane")
    terminal.member(key, "done", "hop 1 Patch KubeadmControlPlane/c1-control-plane")
    terminal.member(key, "failed", "it broke")
    assert capsys.readouterr().err.splitlines() == [
        "2026-12-07T02:03:04Z prod/c1: running",
        "2026-12-07T02:03:04Z prod/c1: hop 1 Patch KubeadmControlPlane/c1-control-plane",
        "2026-12-07T02:03:04Z prod/c1: failed: it broke",
    ]


def test_a_live_table_shows_every_cluster_s_latest_state() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80, color_system=None)
    terminal = FleetTerminal(OutputFormat.TABLE, progress=ProgressDisplay("auto", console=console))
    terminal.member(ClusterKey("prod", "c2"), "running")
    terminal.member(ClusterKey("prod", "c1"), "running")
    terminal.member(ClusterKey("prod", "c2"), "succeeded")
    terminal.flush()
    drawn = screen.getvalue()
    assert "\x1b[" in drawn  # drawn in place, with cursor movements
    last = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn).rsplit("CLUSTER", 1)[1]
    rows = [line.split() for line in last.splitlines()[1:] if line.strip()]
    assert [row[:2] for row in rows] == [["prod/c1", "running"], ["prod/c2", "succeeded"]]
