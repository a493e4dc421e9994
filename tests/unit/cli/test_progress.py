"""The progress renderer: plain timestamped lines on a change of state, nothing with `none`, and a live
display (drawn on a forced-terminal rich Console) with bytes, rate, ETA, zones and machines."""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone

import pytest
from rich.console import Console

from kubectl_capc.cli.options import ProgressMode
from kubectl_capc.cli.progress import ProgressDisplay
from kubectl_capc.domain.progress import (
    CopyUpdate,
    MachinePhase,
    OwnerProgress,
    RolloutUpdate,
    UploadUpdate,
    ZoneCopy,
)
from kubectl_capc.ops.progress import PipelineReporter

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")
MIB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def owner(
    up_to_date: int, ready: int, *, replacing: MachinePhase | None = None, done: bool = False
) -> OwnerProgress:
    return OwnerProgress(
        "MachineDeployment", "c1-md-0", "v1.29.3", 3, up_to_date, ready, ready, True, done, replacing
    )


def plain(stream: io.StringIO, clock: Clock | None = None, mode: str = "plain") -> ProgressDisplay:
    at = datetime(2026, 12, 7, 2, 3, 4, tzinfo=timezone.utc)
    return ProgressDisplay(mode, stream=stream, now=lambda: at, monotonic=clock or Clock())


def live(clock: Clock | None = None) -> tuple[ProgressDisplay, io.StringIO]:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    return ProgressDisplay("auto", console=console, monotonic=clock or Clock()), screen


def visible(drawn: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)


def test_plain_rollout_lines_are_timestamped_and_printed_only_when_the_state_changes() -> None:
    stream = io.StringIO()
    display = plain(stream)
    display.rollout(RolloutUpdate((owner(0, 3),), 1.0, 1800.0))
    display.rollout(RolloutUpdate((owner(0, 3),), 61.0, 1800.0))  # only the time moved on
    display.rollout(
        RolloutUpdate((owner(1, 3, replacing=MachinePhase("c1-md-0-x1", "Provisioning")),), 65, 1800)
    )
    display.rollout(RolloutUpdate((owner(3, 3, done=True),), 125.0, 1800.0))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "2026-12-07T02:03:04Z c1-md-0: 0/3 up to date, 3 ready (0:01 of 30:00)",
        "2026-12-07T02:03:04Z c1-md-0: 1/3 up to date, 3 ready; replacing c1-md-0-x1 (Provisioning)"
        " (1:05 of 30:00)",
        "2026-12-07T02:03:04Z c1-md-0: done, 3/3 ready at v1.29.3 (2:05 of 30:00)",
    ]
    assert "\x1b" not in stream.getvalue()


def test_plain_zone_lines_name_each_zone_s_state_once_per_change() -> None:
    stream = io.StringIO()
    display = plain(stream)
    name = "ubuntu-2204-kube-v1.29.3"
    for percent in (20, 20, 40):
        zones = (ZoneCopy("zone1", name, False, f"{percent}% Downloaded"), ZoneCopy("zone2", name, True, ""))
        display.copies(CopyUpdate(zones, 10.0, None))
    text = stream.getvalue()
    assert text.splitlines() == [
        f"2026-12-07T02:03:04Z zone zone1: {name} 20% Downloaded (0:10)",
        f"2026-12-07T02:03:04Z zone zone2: {name} ready (0:10)",
        f"2026-12-07T02:03:04Z zone zone1: {name} 40% Downloaded (0:10)",
    ]


def test_plain_upload_lines_come_every_ten_percent_with_rate_and_eta() -> None:
    stream = io.StringIO()
    clock = Clock()
    display = plain(stream, clock)
    for sent in range(0, 101, 5):  # 5 MiB a second
        display.upload(UploadUpdate(sent * MIB, 100 * MIB))
        clock.now += 1.0
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11
    assert all(STAMP.match(line) for line in lines)
    assert lines[2].endswith("uploaded 20.0 MiB of 100.0 MiB (20%) at 5.0 MiB/s, ETA 0:16")
    assert lines[-1].endswith("uploaded 100.0 MiB of 100.0 MiB (100%)")


def test_a_pipe_gets_plain_lines_even_in_auto_mode() -> None:
    stream = io.StringIO()  # not a terminal
    display = plain(stream, mode="auto")
    assert display.mode is ProgressMode.PLAIN
    display.cluster("prod/c1", "running")
    assert STAMP.match(stream.getvalue()) and "\x1b" not in stream.getvalue()


def test_none_prints_no_progress_but_every_note() -> None:
    stream = io.StringIO()
    display = plain(stream, mode="none")
    display.rollout(RolloutUpdate((owner(1, 3),), 5.0, None))
    display.copies(CopyUpdate((ZoneCopy("zone1", "t", False, "5% Downloaded"),), 1.0))
    display.upload(UploadUpdate(MIB, 2 * MIB))
    display.upload(UploadUpdate(2 * MIB, 2 * MIB))
    display.status("building")
    display.cluster("prod/c1", "running")
    display.note("[hop 1] Patch MachineDeployment/c1-md-0: done")
    assert stream.getvalue() == "[hop 1] Patch MachineDeployment/c1-md-0: done\n"


def test_live_upload_shows_bytes_rate_and_eta() -> None:
    clock = Clock()
    display, screen = live(clock)
    for sent in (0, 10, 20, 30):  # 10 MiB a second
        display.upload(UploadUpdate(sent * MIB, 100 * MIB))
        clock.now += 1.0
    clock.now -= 1.0
    display.close()
    drawn = visible(screen.getvalue())
    assert "uploaded 30.0 MiB of 100.0 MiB (30%) at 10.0 MiB/s, ETA 0:07" in drawn
    assert "━" in drawn  # the bar


def test_live_zones_show_their_percentage_and_the_wait_against_its_limit() -> None:
    clock = Clock()
    display, screen = live(clock)
    name = "ubuntu-2204-kube-v1.29.3"
    zones = (ZoneCopy("zone1", name, False, "40% Downloaded"), ZoneCopy("zone2", name, False, "Processing"))
    display.copies(CopyUpdate(zones, 12.0, 3600.0))
    clock.now += 3.0  # the elapsed time moves on between updates
    display.close()
    drawn = visible(screen.getvalue())
    assert "zone zone1" in drawn and f"{name} 40% Downloaded" in drawn and f"{name} Processing" in drawn
    assert "waiting 0:15 of 1:00:00" in drawn


def test_live_rollouts_show_machines_updated_and_ready_and_the_phase_being_replaced() -> None:
    display, screen = live()
    cp = OwnerProgress("KubeadmControlPlane", "c1-control-plane", "v1.29.3", 3, 1, 2, 2, True, False,
                       MachinePhase("c1-control-plane-abcde", "Provisioned"))  # fmt: skip
    display.rollout(RolloutUpdate((cp,), 95.0, 3600.0))
    display.close()
    drawn = visible(screen.getvalue())
    assert "c1-control-plane" in drawn
    assert "1/3 updated, 2/3 ready; c1-control-plane-abcde Provisioned" in drawn
    assert "waiting 1:35 of 1:00:00" in drawn


def test_live_notes_print_above_the_display_and_a_finished_wait_leaves_its_result() -> None:
    display, screen = live()
    display.rollout(RolloutUpdate((owner(1, 3),), 1.0, None))
    display.note("warning: something to know")
    display.rollout(RolloutUpdate((owner(3, 3, done=True),), 9.0, None))
    assert display._live is None  # nothing left to show: the display stopped
    drawn = visible(screen.getvalue())
    assert "warning: something to know" in drawn
    assert "c1-md-0: done, 3/3 ready at v1.29.3" in drawn


def test_the_pipeline_reporter_passes_typed_updates_with_the_wait_s_limit() -> None:
    clock = Clock()
    seen: list[object] = []

    class Sink:
        def note(self, message: str) -> None:
            seen.append(message)

        def upload(self, update: UploadUpdate) -> None:
            seen.append(update)

        def copies(self, update: CopyUpdate) -> None:
            seen.append(update)

    from types import SimpleNamespace

    template = "ubuntu-2204-kube-v1.29.3"
    row = SimpleNamespace(zone_name="zone2", name=template, ready=False, status="45% Downloaded")
    reporter = PipelineReporter(Sink(), clock=clock)
    clock.now += 7.0
    reporter.step("uploading")
    reporter.upload(5, 10)
    reporter.zones([row])  # type: ignore[list-item]
    copy = ZoneCopy("zone2", template, False, "45% Downloaded")
    assert seen == ["uploading", UploadUpdate(5, 10), CopyUpdate((copy,), 7.0, None)]
    limited = PipelineReporter(Sink(), timeout=60.0, clock=clock)
    clock.now += 2.0
    limited.zones([row])  # type: ignore[list-item]
    assert seen[-1] == CopyUpdate((copy,), 2.0, 60.0)  # elapsed since this wait began, against its limit


@pytest.mark.parametrize(
    ("ready", "status", "percent"),
    [(False, "45% Downloaded", 45), (True, "Download Complete", 100), (False, "Processing", None)],
)
def test_a_zone_s_percentage_comes_from_cloudstack_s_status(
    ready: bool, status: str, percent: int | None
) -> None:
    assert ZoneCopy("zone1", "t", ready, status).percent == percent


def test_live_mode_keeps_the_result_of_a_wait_that_was_over_at_its_first_update() -> None:
    display, screen = live()
    display.upload(UploadUpdate(512, 512))  # a file sent in one chunk
    display.copies(CopyUpdate((ZoneCopy("zone1", "t", True, "Download Complete"),), 1.0))
    drawn = visible(screen.getvalue())
    assert "uploaded 512 B of 512 B (100%)" in drawn and "zone zone1: t ready" in drawn


def test_updates_from_other_threads_never_deadlock_with_the_display_s_own_refreshes() -> None:
    """rich redraws from a thread of its own, holding its lock while it asks for the frame; fleet members
    report from theirs. Updates for 2 s while it redraws: every one of them returns."""
    import threading
    import time

    display, _ = live()
    stop = time.monotonic() + 2
    sent = [0]

    def report() -> None:
        while time.monotonic() < stop:
            display.rollout(RolloutUpdate((owner(sent[0] % 3, 2),), 1.0, 60.0))
            display.cluster("prod/c1", f"running {sent[0]}")
            sent[0] += 1

    workers = [threading.Thread(target=report, daemon=True) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(worker.is_alive() for worker in workers), f"stuck after {sent[0]} updates"
    display.close()
    assert sent[0] > 0
