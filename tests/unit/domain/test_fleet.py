"""The fleet plan and its schedule: shared images over the union of zones, refusals, canaries first and
fully, at most max-concurrent at a time, stopping at the first failure unless asked to go on."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from kubectl_capc.domain.fleet import (
    ClusterKey,
    FleetMember,
    FleetPlan,
    FleetPolicy,
    FleetSchedule,
    MemberOutcome,
    MemberVerdict,
)
from kubectl_capc.domain.model import FrozenDict
from kubectl_capc.domain.plan import (
    Blocker,
    CreateMachineTemplate,
    EnsureImage,
    ImageSource,
    PlanHop,
    UpgradePlan,
    ZoneImage,
    ZoneState,
)
from kubectl_capc.domain.versions import parse_version

IMAGE = "ubuntu-2204-kube-v1.29.3"


def plan(
    name: str,
    *,
    zones: dict[str, ZoneState] | None = None,
    done: bool = False,
    blockers: tuple[Blocker, ...] = (),
    image: str = IMAGE,
) -> UpgradePlan:
    version = parse_version("v1.29.3")
    steps = (
        EnsureImage(
            image,
            version,
            tuple(ZoneImage(f"fd-{z}", z, s) for z, s in (zones or {"zone1": ZoneState.READY}).items()),
            ImageSource.URL,
        ),
        CreateMachineTemplate(
            f"{name}-control-plane-v1-29-3", f"{name}-control-plane", "old", image, version, FrozenDict()
        ),
    )
    hops = () if done else (PlanHop(1, version, "target", steps),)
    return UpgradePlan(
        "default", name, "v1beta2", "v1.29", version, ImageSource.URL, None, "v1.28.5", (), hops, blockers
    )


def member(name: str, namespace: str = "default", **kwargs: object) -> FleetMember:
    return FleetMember(ClusterKey(namespace, name), plan(name, **kwargs))  # type: ignore[arg-type]


def fleet(*members: FleetMember, **policy: object) -> FleetPlan:
    return FleetPlan("v1.29.3", members, FleetPolicy(**policy))  # type: ignore[arg-type]


def key(name: str, namespace: str = "default") -> ClusterKey:
    return ClusterKey(namespace, name)


def test_an_image_needed_by_several_clusters_is_listed_once_over_the_union_of_their_zones() -> None:
    plan_ = fleet(
        member("a", zones={"zone1": ZoneState.READY}),
        member("b", zones={"zone1": ZoneState.MISSING, "zone2": ZoneState.READY}),
        member("c", zones={"zone3": ZoneState.IN_PROGRESS}),
    )
    (image,) = plan_.images
    assert image.image == IMAGE
    assert [(z.zone, z.state) for z in image.zones] == [
        ("zone1", ZoneState.MISSING),  # the state furthest from ready wins
        ("zone2", ZoneState.READY),
        ("zone3", ZoneState.IN_PROGRESS),
    ]
    assert image.clusters == (key("a"), key("b"), key("c")) and not image.ready


def test_clusters_already_at_the_target_or_refused_need_no_image() -> None:
    plan_ = fleet(member("done", done=True), member("bad", blockers=(Blocker("Cluster/bad", "paused"),)))
    assert plan_.images == ()
    assert [m.verdict for m in plan_.members] == [MemberVerdict.DONE, MemberVerdict.REFUSED]


def test_a_refused_cluster_refuses_the_run_unless_failing_ones_are_skipped() -> None:
    bad = member("bad", blockers=(Blocker("Cluster/bad", "is paused", "unpause it"),))
    assert fleet(member("a"), bad).refused
    skipping = fleet(member("a"), bad, skip_failing=True)
    assert not skipping.refused and skipping.order == (key("a"),)
    rows = {row[1]: row for row in skipping.table_rows()}
    assert rows["bad"][2:] == ("refused", "v1.29.3", "1", "Cluster/bad: is paused (unpause it)")
    unreadable = FleetMember(key("gone"), None, ("Cluster/gone: the kubeconfig Secret is missing",))
    assert unreadable.verdict is MemberVerdict.REFUSED and fleet(unreadable).refused


def test_the_order_is_by_namespace_then_name_and_the_first_ones_are_the_canaries() -> None:
    plan_ = fleet(member("b", "team-b"), member("z"), member("a", "team-b"), canary=2)
    assert plan_.order == (key("z"), key("a", "team-b"), key("b", "team-b"))
    notes = {row[1]: row[5] for row in plan_.table_rows()}
    assert notes == {"z": "canary", "a": "canary", "b": ""}


def test_the_plan_document_is_typed_and_names_every_cluster() -> None:
    document = fleet(member("a"), member("b", done=True), canary=1, max_concurrent=3).to_document()
    assert document["kind"] == "FleetUpgradePlan" and document["apiVersion"].startswith("capc.")
    assert document["spec"]["maxConcurrent"] == 3 and document["spec"]["canary"] == 1
    assert [c["verdict"] for c in document["status"]["clusters"]] == ["upgrade", "done"]
    assert document["status"]["images"][0]["clusters"] == ["default/a"]
    assert document["status"]["clusters"][0]["plan"]["kind"] == "UpgradePlan"


def run_to_end(schedule: FleetSchedule, fails: Collection[str] = ()) -> list[list[str]]:
    """Drive the schedule: everything started in one round finishes before the next round; returns
    the names started per round."""
    rounds = []
    while not schedule.over:
        started = schedule.next_to_start()
        for k in started:
            schedule.started(k)
        rounds.append([k.name for k in started])
        for k in schedule.running:
            schedule.finished(k, ok=k.name not in fails, reason="boom" if k.name in fails else "")
    return rounds


def test_canaries_finish_before_the_rest_start_and_the_rest_run_k_at_a_time() -> None:
    schedule = FleetSchedule(fleet(*(member(n) for n in "abcdefg"), canary=1, max_concurrent=3))
    assert run_to_end(schedule) == [["a"], ["b", "c", "d"], ["e", "f", "g"]]
    report = schedule.report()
    assert report.complete and report.summary() == "7 succeeded"


def test_no_other_cluster_starts_while_a_canary_runs_even_with_free_slots() -> None:
    schedule = FleetSchedule(fleet(*(member(n) for n in "abcd"), canary=2, max_concurrent=4))
    first = schedule.next_to_start()
    assert [k.name for k in first] == ["a", "b"]
    for k in first:
        schedule.started(k)
    schedule.finished(key("a"), ok=True)
    assert schedule.next_to_start() == []  # b, a canary, still runs
    schedule.finished(key("b"), ok=True)
    assert [k.name for k in schedule.next_to_start()] == ["c", "d"]


def test_the_first_failure_stops_new_starts_and_the_waiting_ones_do_not_start() -> None:
    schedule = FleetSchedule(fleet(*(member(n) for n in "abcde"), max_concurrent=2))
    assert run_to_end(schedule, fails={"b"}) == [["a", "b"]]
    report = schedule.report()
    outcomes = {r.key.name: r.outcome for r in report.results}
    assert outcomes == {
        "a": MemberOutcome.SUCCEEDED,
        "b": MemberOutcome.FAILED,
        "c": MemberOutcome.NOT_STARTED,
        "d": MemberOutcome.NOT_STARTED,
        "e": MemberOutcome.NOT_STARTED,
    }
    assert not report.complete and report.summary() == "1 succeeded, 1 failed, 3 not-started"


def test_continue_on_error_goes_on_after_a_failure_but_never_after_a_failed_canary() -> None:
    going_on = FleetSchedule(fleet(*(member(n) for n in "abc"), continue_on_error=True))
    assert run_to_end(going_on, fails={"a"}) == [["a"], ["b"], ["c"]]
    canary = FleetSchedule(fleet(*(member(n) for n in "abc"), canary=1, continue_on_error=True))
    assert run_to_end(canary, fails={"a"}) == [["a"]]


def test_stop_lets_the_running_finish_and_starts_nothing_more() -> None:
    schedule = FleetSchedule(fleet(*(member(n) for n in "abc"), max_concurrent=2))
    for k in schedule.next_to_start():
        schedule.started(k)
    schedule.stop()
    assert schedule.next_to_start() == [] and not schedule.over
    schedule.finished(key("a"), ok=True)
    schedule.finished(key("b"), ok=True)
    assert schedule.over
    assert [r.outcome for r in schedule.report().results][2] is MemberOutcome.NOT_STARTED


def test_a_rerun_treats_finished_clusters_as_no_ops_and_skipped_ones_as_reported() -> None:
    bad = member("bad", blockers=(Blocker("Cluster/bad", "is paused"),))
    schedule = FleetSchedule(fleet(member("a", done=True), member("b"), bad, skip_failing=True))
    assert run_to_end(schedule) == [["b"]]
    report = schedule.report()
    assert {r.key.name: r.outcome for r in report.results} == {
        "a": MemberOutcome.UNCHANGED,
        "b": MemberOutcome.SUCCEEDED,
        "bad": MemberOutcome.SKIPPED,
    }
    assert not report.complete  # a skipped cluster is not at the target
    document = report.to_document("v1.29.3")
    assert document["kind"] == "FleetUpgradeReport" and document["status"]["complete"] is False
    assert document["status"]["clusters"][2]["reason"] == "Cluster/bad: is paused"


def test_a_refused_run_starts_nothing() -> None:
    bad = member("bad", blockers=(Blocker("Cluster/bad", "is paused"),))
    schedule = FleetSchedule(fleet(member("a"), bad))
    assert schedule.over and schedule.next_to_start() == []


def test_the_schedule_refuses_a_finish_it_did_not_start() -> None:
    schedule = FleetSchedule(fleet(member("a")))
    with pytest.raises(ValueError, match="default/a is waiting, not running"):
        schedule.finished(key("a"), ok=True)


@pytest.mark.parametrize("policy", [{"canary": -1}, {"max_concurrent": 0}])
def test_a_policy_out_of_range_is_refused(policy: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        FleetPolicy(**policy)
