"""`ops.fleet.FleetRun.execute`: members run as the schedule allows, in a pool of max-concurrent
threads; a failure is reported with its reason; Ctrl-C starts nothing new, lets the running members
finish, and a second Ctrl-C stops them at their next step. The members' own runs are stand-ins."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from kubectl_capc.domain.fleet import ClusterKey, FleetMember, FleetPlan, FleetPolicy, FleetReport
from kubectl_capc.domain.planner import PlanRequest
from kubectl_capc.domain.progress import RolloutUpdate
from kubectl_capc.domain.versions import parse_target
from kubectl_capc.ops import fleet
from kubectl_capc.ops.options import ImageOptions
from tests.unit.domain.test_fleet import plan

pytestmark = pytest.mark.timeout(30)

NO_LOCK = SimpleNamespace(held_lease=None)
"""A member's I/O, as its console sees it, before the run took its lock."""


class Console:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.reports: list[FleetReport] = []
        self.lock = threading.Lock()

    def show_fleet_plan(self, plan: FleetPlan) -> None: ...

    def confirm(self, question: str) -> bool:
        return True

    def note(self, message: str) -> None:
        with self.lock:
            self.lines.append(message)

    def member(self, key: ClusterKey, state: str, detail: str = "") -> None:
        with self.lock:
            self.lines.append(f"{key.name} {state}")

    def show_report(self, plan: FleetPlan, report: FleetReport) -> None:
        self.reports.append(report)


def fleet_of(names: list[str], policy: FleetPolicy, run: Any) -> tuple[fleet.FleetRun, FleetPlan, Console]:
    console = Console()
    request = PlanRequest(target=parse_target("v1.29.3"), requested="v1.29.3")
    runner = fleet.FleetRun(None, fleet.FleetSelection(), request, ImageOptions(), fleet.FleetOptions(policy),
                            console=console)  # fmt: skip
    members = tuple(FleetMember(ClusterKey("default", name), plan(name)) for name in names)
    for member in members:
        runner._members[member.key] = fleet._Member(member.key, None, None, member)  # type: ignore[arg-type]
    runner._upgrade_one = lambda key: run(runner, key)  # type: ignore[method-assign]
    return runner, FleetPlan("v1.29.3", members, policy), console


def test_at_most_max_concurrent_run_at_once_and_a_failure_stops_new_starts() -> None:
    running, most = set(), [0]
    lock = threading.Lock()

    def run(runner: fleet.FleetRun, key: ClusterKey) -> str | None:
        with lock:
            running.add(key)
            most[0] = max(most[0], len(running))
        time.sleep(0.2)
        with lock:
            running.discard(key)
        return "it broke" if key.name == "c" else None

    runner, fleet_plan, console = fleet_of(list("abcdefg"), FleetPolicy(max_concurrent=3), run)
    report = runner.execute(fleet_plan)

    outcomes = {r.key.name: (r.outcome.value, r.reason) for r in report.results}
    assert most[0] == 3
    assert outcomes["c"] == ("failed", "it broke")
    assert {outcomes[name][0] for name in "ab"} == {"succeeded"}
    assert {outcomes[name][0] for name in "defg"} <= {"succeeded", "not-started"}
    assert outcomes["g"][0] == "not-started"
    assert fleet.exit_code_of(report) == 8
    assert "c failed" in console.lines


def test_ctrl_c_starts_nothing_new_and_the_running_members_finish() -> None:
    def run(runner: fleet.FleetRun, key: ClusterKey) -> str | None:
        if key.name == "a":
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        return None

    runner, fleet_plan, console = fleet_of(list("abcd"), FleetPolicy(max_concurrent=2), run)
    with pytest.raises(KeyboardInterrupt):
        runner.execute(fleet_plan)

    (report,) = console.reports
    outcomes = {r.key.name: r.outcome.value for r in report.results}
    assert outcomes == {"a": "succeeded", "b": "succeeded", "c": "not-started", "d": "not-started"}
    assert any(line.startswith("stopping: no more clusters start") for line in console.lines)


def test_a_second_ctrl_c_stops_the_running_members_at_their_next_step() -> None:
    def run(runner: fleet.FleetRun, key: ClusterKey) -> str | None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)
        step = fleet._MemberConsole(runner.console, key, runner._halt, NO_LOCK)  # type: ignore[arg-type]
        deadline = time.monotonic() + 5
        try:
            while time.monotonic() < deadline:
                step.progress(RolloutUpdate((), 0.0))  # a wait reporting progress: where a member stops
                time.sleep(0.01)
        except fleet._Halted as halted:
            return str(halted)
        return None

    runner, fleet_plan, console = fleet_of(["a", "b"], FleetPolicy(max_concurrent=1), run)
    with pytest.raises(KeyboardInterrupt):
        runner.execute(fleet_plan)

    (report,) = console.reports
    outcomes = {r.key.name: (r.outcome.value, r.reason) for r in report.results}
    assert outcomes == {"a": ("failed", fleet.STOPPED), "b": ("not-started", "the fleet run stopped first")}


def test_a_member_whose_lock_was_lost_stops_at_its_next_step_or_progress_report() -> None:
    from kubectl_capc.kube.lease import LeaseLost

    lost = LeaseLost("cluster default/a: the upgrade lock was taken by bob@host/1 during this run")
    io = SimpleNamespace(held_lease=SimpleNamespace(lost=None))
    member = fleet._MemberConsole(Console(), ClusterKey("default", "a"), threading.Event(), io)  # type: ignore[arg-type]
    member.progress(RolloutUpdate((), 1.0))  # held: the wait goes on
    io.held_lease.lost = lost
    with pytest.raises(LeaseLost) as raised:
        member.progress(RolloutUpdate((), 2.0))
    assert raised.value is lost
    with pytest.raises(LeaseLost):
        member.step(plan("a").hops[0], plan("a").hops[0].steps[0], "start")
