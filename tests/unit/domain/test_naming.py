"""CloudStack template names and CloudStackMachineTemplate names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.naming import (
    MAX_NAME_LENGTH,
    TemplateName,
    machine_template_name,
    next_free_name,
    parse_template_name,
    template_name_for,
)
from kubectl_capc.domain.versions import KubeVersion, parse_version

# Written out from the Kubernetes rules, independently of the module under test.
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = re.compile(rf"{DNS_LABEL}(\.{DNS_LABEL})*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def assert_valid_name(name: str) -> None:
    assert DNS_SUBDOMAIN.fullmatch(name), name
    assert LABEL_VALUE.fullmatch(name), name
    assert len(name) <= MAX_NAME_LENGTH == 63


def v(text: str) -> KubeVersion:
    return parse_version(text)


# --- CloudStack template names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "os", "version", "hypervisor"),
    [
        ("ubuntu-2204-kube-v1.28.5", "ubuntu-2204", "v1.28.5", None),
        ("ubuntu-2004-kube-v1.24.14-kvm", "ubuntu-2004", "v1.24.14", "kvm"),
        ("ubuntu-2004-kube-v1.23.3-kvm", "ubuntu-2004", "v1.23.3", "kvm"),
        ("rockylinux-9-kube-v1.28.15-kvm", "rockylinux-9", "v1.28.15", "kvm"),
        ("rockylinux-8-kube-v1.27.4-xen", "rockylinux-8", "v1.27.4", "xen"),
        ("ubuntu-2404-kube-v1.32.3-vmware", "ubuntu-2404", "v1.32.3", "vmware"),
        ("ubuntu-2204-efi-kube-v1.30.11-kvm", "ubuntu-2204-efi", "v1.30.11", "kvm"),
        ("flatcar-stable-kube-v1.29.2", "flatcar-stable", "v1.29.2", None),
        ("flatcar-stable-3815.2.0-kube-v1.29.2-kvm", "flatcar-stable-3815.2.0", "v1.29.2", "kvm"),
    ],
)
def test_parse_template_name(name: str, os: str, version: str, hypervisor: str | None) -> None:
    parsed = parse_template_name(name)
    assert parsed == TemplateName(os, v(version), hypervisor)
    assert str(parsed) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "my-custom-template",
        "kube-v1.23.3/ubuntu-2004",
        "-kube-v1.28.5",
        "ubuntu-2204-kube-v1.28",
        "ubuntu-2204-kube-1.28.5",
        "ubuntu-2204-kube-v1.28.05",
        "ubuntu-2204-kube-v1.28.5-hyperv",
        "ubuntu-2204-kube-v1.28.5-kvm.qcow2",
        "ubuntu-2204-kube-v1.30.0-rc.1",
        "ubuntu-2204-v1.28.5",
    ],
)
def test_custom_template_names_are_not_parsed(name: str) -> None:
    assert parse_template_name(name) is None


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        ("ubuntu-2204-kube-v1.28.5", "v1.29.3", "ubuntu-2204-kube-v1.29.3"),
        ("ubuntu-2004-kube-v1.23.3-kvm", "v1.24.14", "ubuntu-2004-kube-v1.24.14-kvm"),
        ("rockylinux-9-kube-v1.28.15-kvm", "v1.29.0", "rockylinux-9-kube-v1.29.0-kvm"),
        ("ubuntu-2404-kube-v1.32.3-vmware", "v1.32.4", "ubuntu-2404-kube-v1.32.4-vmware"),
    ],
)
def test_template_name_for_keeps_os_and_hypervisor(current: str, target: str, expected: str) -> None:
    assert template_name_for(current, v(target)) == expected


def test_template_name_for_custom_name_points_to_image_flag() -> None:
    with pytest.raises(PlanError, match="does not follow") as caught:
        template_name_for("golden-image-2024", v("v1.29.3"))
    assert "--image" in str(caught.value)


def test_template_names_are_for_releases_only() -> None:
    parsed = parse_template_name("ubuntu-2204-kube-v1.28.5")
    assert parsed is not None
    with pytest.raises(ValueError, match="pre-release"):
        parsed.with_version(v("v1.30.0-rc.1"))


releases = st.builds(KubeVersion, st.just(1), st.integers(0, 120), st.integers(0, 120))
os_parts = st.from_regex(r"[a-z]+(-[0-9a-z.]+){0,2}", fullmatch=True)


@given(os_parts, releases, st.sampled_from([None, "kvm", "xen", "vmware"]), releases)
def test_template_names_round_trip_and_swap_only_the_version(
    os: str, version: KubeVersion, hypervisor: str | None, target: KubeVersion
) -> None:
    name = str(TemplateName(os, version, hypervisor))
    assert parse_template_name(name) == TemplateName(os, version, hypervisor)
    swapped = parse_template_name(template_name_for(name, target))
    assert swapped == TemplateName(os, target, hypervisor)


# --- CloudStackMachineTemplate names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ("mycluster-control-plane", "mycluster-control-plane-v1-29-3"),
        ("mycluster-control-plane-v1-28-5", "mycluster-control-plane-v1-29-3"),
        ("mycluster-control-plane-v1-29-3", "mycluster-control-plane-v1-29-3"),
        ("mycluster-md-0-v1-28-5-2", "mycluster-md-0-v1-29-3"),
        ("mycluster-md-0-v1.28.5", "mycluster-md-0-v1-29-3"),
        ("mycluster-md-0-v1-28", "mycluster-md-0-v1-29-3"),
        ("mycluster-md-1", "mycluster-md-1-v1-29-3"),
        ("mycluster-control-plane-1", "mycluster-control-plane-1-v1-29-3"),
        ("mycluster-control-plane-upgraded", "mycluster-control-plane-upgraded-v1-29-3"),
        ("app-v2-0-1", "app-v2-0-1-v1-29-3"),
        ("v1-28-5", "v1-28-5-v1-29-3"),
        ("my.cluster.md-0", "my.cluster.md-0-v1-29-3"),
    ],
)
def test_machine_template_name(current: str, expected: str) -> None:
    assert machine_template_name(current, v("v1.29.3")) == expected


def test_long_names_are_cut_with_a_stable_hash() -> None:
    long_a = "a-very-long-cluster-name-for-the-production-environment-east-md-workers-a"
    long_b = long_a[:-1] + "b"
    name_a = machine_template_name(long_a, v("v1.29.3"))
    name_b = machine_template_name(long_b, v("v1.29.3"))
    assert_valid_name(name_a)
    assert name_a.startswith("a-very-long-cluster-name")
    assert name_a.endswith("-v1-29-3")
    assert name_a != name_b
    assert machine_template_name(long_a, v("v1.29.3")) == name_a
    # Renaming the generated name again keeps the cut prefix and its hash.
    assert machine_template_name(name_a, v("v1.30.10")) == machine_template_name(long_a, v("v1.30.10"))


@pytest.mark.parametrize("separator", ["-", "."])
def test_cut_does_not_leave_a_dangling_separator(separator: str) -> None:
    # The stem is cut to 44 characters, right after the separator here.
    name = machine_template_name("x" * 43 + separator + "y" * 20, v("v1.29.3"))
    assert_valid_name(name)
    assert re.fullmatch(r"x{43}-[0-9a-f]{6}-v1-29-3", name), name


@pytest.mark.parametrize("bad", ["", "Upper-Case", "under_score", "-leading", "trailing-", "a..b", "x" * 254])
def test_machine_template_name_rejects_invalid_object_names(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid Kubernetes object name"):
        machine_template_name(bad, v("v1.29.3"))


def test_machine_template_name_refuses_pre_releases() -> None:
    with pytest.raises(ValueError, match="pre-release"):
        machine_template_name("mycluster-md-0", v("v1.30.0-rc.1"))


@pytest.mark.parametrize(
    ("name", "taken", "expected"),
    [
        ("mycluster-md-0-v1-29-3", set(), "mycluster-md-0-v1-29-3"),
        ("mycluster-md-0-v1-29-3", {"other"}, "mycluster-md-0-v1-29-3"),
        ("mycluster-md-0-v1-29-3", {"mycluster-md-0-v1-29-3"}, "mycluster-md-0-v1-29-3-2"),
        (
            "mycluster-md-0-v1-29-3",
            {"mycluster-md-0-v1-29-3", "mycluster-md-0-v1-29-3-2"},
            "mycluster-md-0-v1-29-3-3",
        ),
        ("plain", {"plain"}, "plain-2"),
    ],
)
def test_next_free_name(name: str, taken: set[str], expected: str) -> None:
    assert next_free_name(name, taken) == expected


def test_next_free_name_keeps_the_version_readable_at_the_limit() -> None:
    name = machine_template_name("c" * 51, v("v1.29.3"))
    assert len(name) == 59
    second = next_free_name(name, {name})
    assert_valid_name(second)
    assert second.endswith("-v1-29-3-2")
    tenth = next_free_name(name, {name, *(f"{name}-{n}" for n in range(2, 10))})
    assert tenth == f"{name}-10"
    assert_valid_name(tenth)
    full = "d" * 63
    assert_valid_name(next_free_name(full, {full}))
    assert next_free_name(full, {full}).endswith("-2")


names = st.from_regex(
    r"[a-z0-9]([-a-z0-9]{0,70}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?){0,2}", fullmatch=True
)
versions = st.builds(KubeVersion, st.just(1), st.integers(0, 99), st.integers(0, 99))


@given(names, versions)
def test_machine_template_names_are_valid_deterministic_and_idempotent(
    current: str, target: KubeVersion
) -> None:
    name = machine_template_name(current, target)
    assert_valid_name(name)
    assert name == machine_template_name(current, target)
    assert machine_template_name(name, target) == name
    assert name.endswith(f"-v1-{target.minor}-{target.patch}")


@given(names, versions, versions)
def test_machine_template_names_do_not_depend_on_the_path(
    current: str, first: KubeVersion, second: KubeVersion
) -> None:
    via_first = machine_template_name(machine_template_name(current, first), second)
    assert via_first == machine_template_name(current, second)


@given(names, versions, st.integers(0, 30))
def test_next_free_name_is_free_valid_and_keeps_the_version(
    current: str, target: KubeVersion, extra: int
) -> None:
    name = machine_template_name(current, target)
    taken = {name}
    for _ in range(extra):
        taken.add(next_free_name(name, taken))
    chosen = next_free_name(name, taken)
    assert chosen not in taken
    assert_valid_name(chosen)
    assert f"-v1-{target.minor}-{target.patch}-" in chosen
    assert len(taken) == extra + 1, "every pick was new"
