"""Version parsing, ordering and the hop planner's skew policy."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubectl_capc.domain.errors import ExitCode, PlanError, UsageError
from kubectl_capc.domain.versions import (
    Hop,
    KubeVersion,
    TargetVersion,
    kubelet_max_lag,
    parse_target,
    parse_version,
    plan_hops,
    resolve_target,
)


def v(text: str) -> KubeVersion:
    return parse_version(text)


def vs(*texts: str) -> list[KubeVersion]:
    return [parse_version(t) for t in texts]


# --- parse_target -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1.29", TargetVersion(1, 29)),
        ("1.29", TargetVersion(1, 29)),
        ("v1.29.3", TargetVersion(1, 29, 3)),
        ("1.29.3", TargetVersion(1, 29, 3)),
        ("v1.29.0", TargetVersion(1, 29, 0)),
        ("v1.0", TargetVersion(1, 0)),
        ("v1.999.999", TargetVersion(1, 999, 999)),
    ],
)
def test_parse_target_accepts(text: str, expected: TargetVersion) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "latest",
        "stable",
        "v2",
        "v1",
        "1",
        "1.29.x",
        "v1.29.*",
        "v1.x",
        " v1.29",
        "v1.29 ",
        "v1.29.3\n",
        "v1.29.3 junk",
        "junk v1.29.3",
        "x1.29",
        "vv1.29",
        "V1.29",
        "=v1.29",
        ">=1.29",
        "-1.29",
        "v1.-29",
        "v1.29.-3",
        "v1..29",
        "1.29.",
        ".1.29",
        "v1.29.3.4",
        "v01.29",
        "v1.029",
        "v1.29.03",
        "v1.1000",
        "v1.29.1000",
        "v1.99999999999999999999",
        "v2.0.0",
        "v0.29.1",
        "v1.29.3-rc.1",
        "v1.29.3+build.1",
        "v\uff11.\uff12\uff19",  # full-width digits
    ],
)
def test_parse_target_rejects_with_a_one_line_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_target(text)
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "\n" not in message
    assert "v1.MINOR or v1.MINOR.PATCH" in message


def test_parse_target_error_does_not_echo_huge_input() -> None:
    with pytest.raises(UsageError) as caught:
        parse_target("v1." + "9" * 10_000)
    assert len(str(caught.value)) < 250


@given(st.integers(0, 999), st.one_of(st.none(), st.integers(0, 999)), st.booleans())
def test_parse_target_round_trips(minor: int, patch: int | None, with_v: bool) -> None:
    target = TargetVersion(1, minor, patch)
    text = str(target)
    assert text.startswith("v")
    assert parse_target(text if with_v else text[1:]) == target


def test_target_exact() -> None:
    assert TargetVersion(1, 29).exact is None
    assert TargetVersion(1, 29, 3).exact == KubeVersion(1, 29, 3)


# --- parse_version and ordering ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "printed"),
    [
        ("v1.28.5", KubeVersion(1, 28, 5), "v1.28.5"),
        ("1.28.5", KubeVersion(1, 28, 5), "v1.28.5"),
        ("v1.30.0-rc.1", KubeVersion(1, 30, 0, ("rc", "1")), "v1.30.0-rc.1"),
        ("v1.28.5+build.7", KubeVersion(1, 28, 5, (), ("build", "7")), "v1.28.5+build.7"),
        ("v1.31.0-alpha.0+a1b2", KubeVersion(1, 31, 0, ("alpha", "0"), ("a1b2",)), "v1.31.0-alpha.0+a1b2"),
        ("v0.0.0", KubeVersion(0, 0, 0), "v0.0.0"),
    ],
)
def test_parse_version(text: str, expected: KubeVersion, printed: str) -> None:
    parsed = parse_version(text)
    assert parsed == expected
    assert parsed.build == expected.build
    assert str(parsed) == printed


@pytest.mark.parametrize(
    "text",
    [
        "",
        "v1.28",
        "v1",
        "latest",
        "v1.28.05",
        "v1.28.5-",
        "v1.28.5+",
        "v1.28.5-01",
        "v1.28.5-rc..1",
        " v1.28.5",
    ],
)
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        parse_version(text)


def test_semver_precedence_chain() -> None:
    # The example chain from the Semantic Versioning 2.0.0 specification, section 11.
    chain = vs(
        "v1.0.0-alpha",
        "v1.0.0-alpha.1",
        "v1.0.0-alpha.beta",
        "v1.0.0-beta",
        "v1.0.0-beta.2",
        "v1.0.0-beta.11",
        "v1.0.0-rc.1",
        "v1.0.0",
        "v1.0.1",
        "v1.1.0",
        "v1.10.0",
        "v2.0.0",
    )
    for lower, higher in itertools.pairwise(chain):
        assert lower < higher
        assert higher > lower
        assert not higher < lower
    assert sorted(reversed(chain)) == chain


def test_build_metadata_is_ignored_by_comparison() -> None:
    assert v("v1.28.5+a") == v("v1.28.5+b") == v("v1.28.5")
    assert not v("v1.28.5+a") < v("v1.28.5")
    assert len({v("v1.28.5+a"), v("v1.28.5")}) == 1


def test_is_release_and_minor_line() -> None:
    assert v("v1.28.5").is_release
    assert not v("v1.29.0-rc.1").is_release
    assert not v("v1.28.5+b").is_release
    assert v("v1.28.5").minor_line == "v1.28"


_identifier = st.one_of(
    st.integers(0, 10_000).map(str),
    st.from_regex(r"[0-9]*[A-Za-z-][0-9A-Za-z-]*", fullmatch=True).filter(lambda s: len(s) < 12),
)
versions = st.builds(
    KubeVersion,
    st.integers(0, 3),
    st.integers(0, 200),
    st.integers(0, 200),
    st.lists(_identifier, max_size=3).map(tuple),
    st.lists(st.from_regex(r"[0-9A-Za-z-]{1,8}", fullmatch=True), max_size=2).map(tuple),
)


@given(versions)
def test_parse_version_round_trips(version: KubeVersion) -> None:
    parsed = parse_version(str(version))
    assert parsed == version
    assert parsed.build == version.build
    assert str(parsed) == str(version)


@given(versions, versions)
def test_ordering_is_total_and_consistent_with_equality(a: KubeVersion, b: KubeVersion) -> None:
    assert sum([a < b, a == b, a > b]) == 1
    if a.is_release and b.is_release:
        assert (a < b) == ((a.major, a.minor, a.patch) < (b.major, b.minor, b.patch))


def test_kubelet_skew_widened_in_1_28() -> None:
    assert kubelet_max_lag(27) == 2
    assert kubelet_max_lag(28) == 3
    assert kubelet_max_lag(31) == 3


# --- resolve_target -----------------------------------------------------------------------------------


def test_resolve_minor_picks_newest_release_patch() -> None:
    available = vs("v1.29.0", "v1.29.10", "v1.29.3", "v1.30.0", "v1.29.11-rc.0")
    assert resolve_target(TargetVersion(1, 29), available) == v("v1.29.10")


def test_resolve_exact_needs_no_availability() -> None:
    assert resolve_target(TargetVersion(1, 29, 7), []) == v("v1.29.7")


def test_resolve_minor_without_release_fails() -> None:
    with pytest.raises(PlanError, match=r"no v1\.30 patch release is available"):
        resolve_target(TargetVersion(1, 30), vs("v1.30.0-rc.1", "v1.29.3"))


# --- plan_hops: table ---------------------------------------------------------------------------------

AVAILABLE = vs("v1.26.15", "v1.27.16", "v1.28.3", "v1.28.9", "v1.29.0", "v1.29.3", "v1.30.1")


def summary(hops: tuple[Hop, ...]) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """Each hop as (version, control plane from, moved MachineDeployments)."""
    return [
        (
            str(hop.version),
            None if hop.control_plane_from is None else str(hop.control_plane_from),
            tuple(f"{m.name}@{m.current}" for m in hop.workers),
        )
        for hop in hops
    ]


@pytest.mark.parametrize(
    ("cp", "workers", "target", "expected"),
    [
        pytest.param(
            "v1.28.5",
            {"md-0": "v1.28.5", "md-1": "v1.28.5"},
            "v1.29.3",
            [("v1.29.3", "v1.28.5", ("md-0@v1.28.5", "md-1@v1.28.5"))],
            id="next-minor",
        ),
        pytest.param(
            "v1.27.4",
            {"md-1": "v1.27.4", "md-0": "v1.27.4"},
            "v1.29",
            [
                ("v1.28.9", "v1.27.4", ("md-0@v1.27.4", "md-1@v1.27.4")),
                ("v1.29.3", "v1.28.9", ("md-0@v1.28.9", "md-1@v1.28.9")),
            ],
            id="two-hops-minor-target",
        ),
        pytest.param(
            "v1.27.4",
            {"md-0": "v1.27.4"},
            "v1.29.1",
            [("v1.28.9", "v1.27.4", ("md-0@v1.27.4",)), ("v1.29.1", "v1.28.9", ("md-0@v1.28.9",))],
            id="two-hops-exact-target-not-listed",
        ),
        pytest.param(
            "v1.26.0",
            {"md-0": "v1.26.0"},
            "v1.30.1",
            [
                ("v1.27.16", "v1.26.0", ("md-0@v1.26.0",)),
                ("v1.28.9", "v1.27.16", ("md-0@v1.27.16",)),
                ("v1.29.3", "v1.28.9", ("md-0@v1.28.9",)),
                ("v1.30.1", "v1.29.3", ("md-0@v1.29.3",)),
            ],
            id="four-hops",
        ),
        pytest.param(
            "v1.28.3", {"md-0": "v1.28.3"}, "v1.28.9", [("v1.28.9", "v1.28.3", ("md-0@v1.28.3",))], id="patch"
        ),
        pytest.param(
            "v1.28.3", {}, "v1.28", [("v1.28.9", "v1.28.3", ())], id="patch-minor-target-no-workers"
        ),
        pytest.param("v1.29.3", {"md-0": "v1.29.3"}, "v1.29.3", [], id="already-at-exact-target"),
        pytest.param("v1.29.3", {"md-0": "v1.29.3"}, "v1.29", [], id="already-at-minor-target"),
        pytest.param("v1.29.5", {"md-0": "v1.29.5"}, "1.29", [], id="running-patch-newer-than-available"),
        pytest.param(
            "v1.29.3",
            {"md-0": "v1.29.3", "md-1": "v1.28.9"},
            "v1.29.3",
            [("v1.29.3", None, ("md-1@v1.28.9",))],
            id="workers-catch-up-to-cp-at-target",
        ),
        pytest.param(
            "v1.28.9",
            {"md-0": "v1.28.9", "md-1": "v1.29.0"},
            "v1.29.3",
            [("v1.29.3", "v1.28.9", ("md-0@v1.28.9", "md-1@v1.29.0"))],
            id="worker-ahead-of-cp-is-not-downgraded",
        ),
        pytest.param(
            "v1.29.0",
            {"old": "v1.26.0", "new": "v1.29.0"},
            "v1.30",
            [("v1.29.0", None, ("old@v1.26.0",)), ("v1.30.1", "v1.29.0", ("new@v1.29.0", "old@v1.29.0"))],
            id="kubelet-skew-catch-up-first",
        ),
        pytest.param(
            "v1.29.0",
            {"md-0": "v1.27.0"},
            "v1.30.1",
            [("v1.30.1", "v1.29.0", ("md-0@v1.27.0",))],
            id="three-minors-behind-is-within-skew",
        ),
        pytest.param(
            "v1.26.15",
            {"md-0": "v1.24.17"},
            "v1.27.16",
            [("v1.26.15", None, ("md-0@v1.24.17",)), ("v1.27.16", "v1.26.15", ("md-0@v1.26.15",))],
            id="pre-1.28-skew-is-two-minors",
        ),
        pytest.param(
            "v1.29.0-rc.1",
            {},
            "v1.29",
            [("v1.29.3", "v1.29.0-rc.1", ())],
            id="release-after-release-candidate",
        ),
    ],
)
def test_plan_hops(
    cp: str, workers: dict[str, str], target: str, expected: list[tuple[str, str | None, tuple[str, ...]]]
) -> None:
    hops = plan_hops(v(cp), {name: v(ver) for name, ver in workers.items()}, parse_target(target), AVAILABLE)
    assert summary(hops) == expected


def test_hop_reasons_explain_the_policy() -> None:
    hops = plan_hops(v("v1.27.4"), {"md-0": v("v1.27.4")}, parse_target("v1.29"), AVAILABLE)
    first, last = hops
    assert "one minor at a time" in first.reason
    assert "v1.28.9 is its newest available patch" in first.reason
    assert "md-0 (v1.27.4) follow to v1.28.9" in first.reason
    assert "kubeadm" in first.reason
    assert "v1.28.9 → v1.29.3" in last.reason
    assert "newest available v1.29 patch" in last.reason
    assert first.moves_control_plane


def test_catch_up_reason_names_the_skew() -> None:
    (catch_up, _) = plan_hops(v("v1.29.0"), {"old": v("v1.26.0")}, parse_target("v1.30.1"), AVAILABLE)
    assert not catch_up.moves_control_plane
    assert "kubelet skew" in catch_up.reason
    assert "3 minors" in catch_up.reason


def test_patch_hop_reason() -> None:
    (hop,) = plan_hops(v("v1.28.3"), {}, parse_target("v1.28.9"), AVAILABLE)
    assert "patch upgrade" in hop.reason
    assert "no MachineDeployment needs to change" in hop.reason


@pytest.mark.parametrize(
    ("cp", "workers", "target", "pattern"),
    [
        ("v1.29.3", {}, "v1.28.9", r"downgrade the control plane from v1\.29\.3 to v1\.28\.9"),
        ("v1.29.3", {}, "v1.29.1", r"downgrade the control plane from v1\.29\.3 to v1\.29\.1"),
        ("v1.29.3", {}, "v1.28", r"downgrade the control plane from v1\.29\.3"),
        ("v1.28.5", {"md-7": "v1.28.6"}, "v1.28.5", r"downgrade MachineDeployment md-7 from v1\.28\.6"),
        ("v1.28.5", {}, "v1.31", r"no v1\.31 patch release is available"),
        ("v1.30.1", {}, "v1.32.0", r"no v1\.31 patch release .* intermediate hop"),
        ("v1.25.1", {}, "v1.27.16", r"no v1\.26 patch release .* intermediate hop"),
    ],
)
def test_plan_hops_refuses(cp: str, workers: dict[str, str], target: str, pattern: str) -> None:
    available = [a for a in AVAILABLE if a.minor != 26]
    with pytest.raises(PlanError, match=pattern) as caught:
        plan_hops(v(cp), {name: v(ver) for name, ver in workers.items()}, parse_target(target), available)
    assert caught.value.exit_code == ExitCode.PLAN


def test_plan_hops_refuses_a_major_change() -> None:
    with pytest.raises(PlanError, match="major version differs"):
        plan_hops(v("v1.29.3"), {}, TargetVersion(2, 0, 0), AVAILABLE)


# --- plan_hops: properties ----------------------------------------------------------------------------


@st.composite
def upgrade_cases(
    draw: st.DrawFn, *, complete: bool
) -> tuple[KubeVersion, dict[str, KubeVersion], TargetVersion, list[KubeVersion]]:
    """A cluster state, a target at or above it, and image availability (complete: every minor covered)."""
    patch = st.integers(0, 12)
    cp = KubeVersion(1, draw(st.integers(22, 32)), draw(patch))
    names = draw(st.lists(st.from_regex(r"md-[a-z0-9]{1,4}", fullmatch=True), max_size=4, unique=True))
    workers = {}
    for name in names:
        minor = draw(st.integers(cp.minor - 4, cp.minor))
        workers[name] = KubeVersion(1, minor, draw(patch if minor < cp.minor else st.integers(0, cp.patch)))
    target_minor = draw(st.integers(cp.minor, cp.minor + 4))
    target = TargetVersion(1, target_minor, draw(st.one_of(st.none(), patch)))
    minors = range(cp.minor - 4, target_minor + 2)
    available = [KubeVersion(1, m, p) for m in minors for p in draw(st.sets(patch, min_size=int(complete)))]
    return cp, workers, target, available


def check_hops(
    cp: KubeVersion, workers: dict[str, KubeVersion], goal: KubeVersion, hops: tuple[Hop, ...]
) -> None:
    state = dict(workers)
    for hop in hops:
        assert hop.control_plane_from is not None or hop.workers, "a hop must change something"
        if hop.control_plane_from is not None:
            assert hop.control_plane_from == cp
            assert hop.version > cp, "never a control-plane downgrade"
            assert hop.version.minor - cp.minor <= 1, "never +2 minors for the control plane"
            if hop.version.minor != cp.minor:
                lag = kubelet_max_lag(hop.version.minor)
                assert all(hop.version.minor - w.minor <= lag for w in state.values()), "kubelet skew"
            cp = hop.version
        for move in hop.workers:
            assert state[move.name] == move.current
            assert hop.version > move.current, "never a worker downgrade"
            assert hop.version <= cp, "workers never ahead of the control plane"
            state[move.name] = hop.version
    assert cp == goal
    assert all(version == goal for version in state.values())


@given(upgrade_cases(complete=True))
def test_hops_reach_the_target_within_policy(
    case: tuple[KubeVersion, dict[str, KubeVersion], TargetVersion, list[KubeVersion]],
) -> None:
    cp, workers, target, available = case
    goal = target.exact or max(
        a for a in [*available, cp, *workers.values()] if a.minor == target.minor and a.is_release
    )
    if goal < cp:
        with pytest.raises(PlanError, match="downgrade"):
            plan_hops(cp, workers, target, available)
        return
    hops = plan_hops(cp, workers, target, available)
    check_hops(cp, workers, goal, hops)
    assert hops == plan_hops(cp, dict(reversed(workers.items())), target, list(reversed(available)))
    middle = [hop.version for hop in hops if hop.moves_control_plane and hop.version != goal]
    for version in middle:
        assert version == max(a for a in available if a.minor == version.minor), "newest patch per hop"


@given(upgrade_cases(complete=False))
def test_hops_with_gaps_either_plan_within_policy_or_say_what_is_missing(
    case: tuple[KubeVersion, dict[str, KubeVersion], TargetVersion, list[KubeVersion]],
) -> None:
    cp, workers, target, available = case
    try:
        hops = plan_hops(cp, workers, target, available)
    except PlanError as error:
        assert "downgrade" in str(error) or "patch release is available" in str(error)
        return
    goal = resolve_target(target, [*available, cp, *workers.values()])
    check_hops(cp, workers, goal, hops)
