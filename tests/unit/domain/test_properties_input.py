"""Properties of the input parsers over arbitrary text: each accepts exactly what its rules allow, and
refuses everything else with its documented error -- one line, bounded, never another exception.

The rules are written out here independently of the modules under test (no shared regular expressions).
Complements tests/unit/domain/test_versions.py and tests/unit/domain/test_naming.py, which check
well-formed inputs.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kubectl_capc.domain.errors import ConfigError, ExitCode, PlanError, UsageError
from kubectl_capc.domain.images import check_download_url, check_template_name
from kubectl_capc.domain.naming import machine_template_name, parse_template_name, template_name_for
from kubectl_capc.domain.versions import KubeVersion, TargetVersion, parse_target, parse_version
from kubectl_capc.kube.kubeconfig import Kubeconfig, merge_kubeconfigs, parse_kubeconfig
from kubectl_capc.kube.read import read_inventories

# Text that looks like what users type: digits, dots, letters, signs and some whitespace, often near
# a valid value; plus anything at all.
_NEAR = st.text(alphabet="v1.2903x-+ \t\nV", max_size=14)
_ANY = st.text(max_size=80)
texts = st.one_of(_NEAR, _ANY)


def assert_one_line(error: Exception, limit: int = 300) -> None:
    message = str(error)
    assert "\n" not in message
    assert len(message) <= limit, message


# -- --to ----------------------------------------------------------------------------------------------


def _small_number(part: str) -> bool:
    return part.isascii() and part.isdigit() and len(part) <= 3 and (part == "0" or not part.startswith("0"))


def target_rule(text: str) -> TargetVersion | None:
    """`--to` as documented: v1.MINOR or v1.MINOR.PATCH, with or without the v, minor and patch of at
    most three digits without leading zeros."""
    parts = text.removeprefix("v").split(".")
    if len(parts) not in (2, 3) or parts[0] != "1" or not all(_small_number(p) for p in parts[1:]):
        return None
    return TargetVersion(1, int(parts[1]), int(parts[2]) if len(parts) == 3 else None)


@given(texts)
@example("v1.29")
@example("1.29.3")
@example("v1.0")
@example("vv1.29")
@example("v1.29.3.")
@example("v1.٢٩")  # Arabic-Indic digits are digits to str.isdigit, not to --to
def test_parse_target_accepts_exactly_the_documented_forms(text: str) -> None:
    expected = target_rule(text)
    if expected is None:
        with pytest.raises(UsageError) as caught:
            parse_target(text)
        assert caught.value.exit_code == ExitCode.USAGE
        assert_one_line(caught.value)
    else:
        assert parse_target(text) == expected


# -- versions found on objects ----------------------------------------------------------------------------


@given(texts)
def test_parse_version_raises_only_value_error_and_round_trips(text: str) -> None:
    try:
        version = parse_version(text)
    except ValueError as error:
        assert_one_line(error)
        return
    assert parse_version(str(version)) == version
    assert str(version) == (text if text.startswith("v") else f"v{text}")


releases = st.builds(KubeVersion, st.integers(0, 3), st.integers(0, 40), st.integers(0, 40))
any_versions = st.one_of(
    releases,
    st.builds(
        KubeVersion,
        st.integers(0, 3),
        st.integers(0, 40),
        st.integers(0, 40),
        st.lists(st.sampled_from(["rc", "alpha", "beta", "1", "2", "10"]), min_size=1, max_size=2).map(tuple),
    ),
)


@given(any_versions, any_versions, any_versions)
def test_version_order_is_transitive_and_hash_follows_equality(
    a: KubeVersion, b: KubeVersion, c: KubeVersion
) -> None:
    if a <= b <= c:
        assert a <= c
    if a == b:
        assert hash(a) == hash(b)
    assert sorted([c, b, a]) == sorted([a, c, b])


# -- template and machine template names ------------------------------------------------------------------


@given(texts)
@example("ubuntu-2204-kube-v1.28.5-kvm")
def test_any_template_name_parses_to_itself_or_not_at_all(name: str) -> None:
    parsed = parse_template_name(name)
    if parsed is not None:
        assert str(parsed) == name
        assert parsed.version.is_release


@given(texts, releases)
def test_template_name_for_derives_or_points_at_image_flag(name: str, target: KubeVersion) -> None:
    try:
        derived = template_name_for(name, target)
    except PlanError as error:
        assert "--image" in str(error)
        assert_one_line(error, limit=400)
        return
    parsed = parse_template_name(derived)
    assert parsed is not None and parsed.version == target


@given(texts, releases)
@example("mycluster-md-0-v1-29-3-2", KubeVersion(1, 29, 3))
@example("mycluster-md-0-v1.28.5", KubeVersion(1, 28, 5))
def test_a_rotation_never_reuses_the_name_of_the_template_in_use(current: str, target: KubeVersion) -> None:
    """CloudStackMachineTemplates are immutable: the copy for a new version needs a name of its own."""
    try:
        name = machine_template_name(current, target)
    except ValueError as error:
        assert "not a valid Kubernetes object name" in str(error)
        return
    if name == current:
        assert current.endswith(f"-v{target.major}-{target.minor}-{target.patch}")


# -- CLUSTER and -n: refused before any request --------------------------------------------------------


class Touched(Exception):
    """The API client was used."""


class UntouchableClient:
    def __getattr__(self, name: str) -> Any:
        raise Touched(name)


_LABEL_CHARS = set(string.ascii_lowercase + string.digits + "-")


def is_label(text: str) -> bool:
    return 0 < len(text) <= 63 and set(text) <= _LABEL_CHARS and text[0].isalnum() and text[-1].isalnum()


def is_cluster_name(text: str) -> bool:
    return len(text) <= 63 and all(is_label(part) for part in text.split("."))


names = st.one_of(
    st.text(alphabet=string.ascii_lowercase + string.digits + "-.", min_size=0, max_size=70),
    st.text(max_size=70),
)


@given(names, names)
@example("default", "c1,metadata.name!=x")
@example("default", "c" * 64)
@example("n" * 64, "c1")
@example("default", "my.cluster-1")
def test_cluster_and_namespace_names_are_checked_before_any_request(namespace: str, cluster: str) -> None:
    if is_label(namespace) and is_cluster_name(cluster):
        with pytest.raises(Touched):
            read_inventories(UntouchableClient(), namespace=namespace, cluster=cluster)
        return
    with pytest.raises(UsageError) as caught:
        read_inventories(UntouchableClient(), namespace=namespace, cluster=cluster)
    message = str(caught.value)
    assert_one_line(caught.value, limit=400)
    refused, what = (namespace, "namespace") if not is_label(namespace) else (cluster, "Cluster name")
    assert f"is not a valid {what}" in message
    if len(refused) > 41:
        assert refused not in message, "a long name is cut"


# -- image URLs and template names for registerTemplate -----------------------------------------------------


hosts = st.from_regex(
    r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){0,2}|127\.0\.0\.1(:[1-9][0-9]{0,3})?", fullmatch=True
)
paths = st.from_regex(r"[A-Za-z0-9._~/%-]{0,60}", fullmatch=True)


@given(st.sampled_from(["http", "https", "HTTP", "Https"]), hosts, paths)
def test_http_urls_are_accepted(scheme: str, host: str, path: str) -> None:
    check_download_url(f"{scheme}://{host}/{path}")


@given(st.one_of(texts, st.builds("{}://{}".format, st.sampled_from(["http", "https", "ftp", "s3"]), texts)))
@example("ftp://127.0.0.1/x.qcow2")
@example("file:///etc/passwd.qcow2")
@example("http:///no-host.qcow2")
@example("http://[::1/x.qcow2")
@example("http://h/a b.qcow2")
@example("http://h/" + "x" * 2048)
def test_urls_are_accepted_only_over_http_and_refused_without_repeating_them(url: str) -> None:
    try:
        check_download_url(url)
    except UsageError as error:
        assert_one_line(error)
        if len(url) > 12:
            assert url not in str(error), "the URL may carry a signature"
        return
    assert url.lower().startswith(("http://", "https://")), url
    assert not any(char.isspace() for char in url)
    assert len(url) <= 2048
    assert url.split("://", 1)[1].split("/", 1)[0], "a host"


@given(st.text(max_size=300))
def test_template_names_are_refused_only_when_cloudstack_would(name: str) -> None:
    if name.strip() and len(name) <= 255:
        check_template_name(name)
    else:
        with pytest.raises(UsageError) as caught:
            check_template_name(name)
        assert_one_line(caught.value)


# -- kubeconfig server addresses ---------------------------------------------------------------------------


def _kubeconfig(server: str) -> Kubeconfig:
    document = {
        "apiVersion": "v1",
        "current-context": "x",
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }
    return merge_kubeconfigs([parse_kubeconfig(json.dumps(document), Path("/config"))])


@given(st.sampled_from(["https", "http"]), hosts, st.one_of(st.none(), st.integers(1, 65535)))
def test_server_urls_resolve(scheme: str, host: str, port: int | None) -> None:
    host = host.split(":", maxsplit=1)[0]
    server = f"{scheme}://{host}" + (f":{port}" if port else "")
    assert _kubeconfig(server).resolve().server == server


@given(texts)
@example("not a url")
@example("https://127.0.0.1:99999")
@example("ftp://127.0.0.1:6443")
def test_any_server_resolves_or_is_a_one_line_config_error(server: str) -> None:
    try:
        target = _kubeconfig(server).resolve()
    except ConfigError as error:
        assert error.exit_code == ExitCode.CONFIG
        assert_one_line(error, limit=1000)
        return
    assert not any(char.isspace() for char in target.server)
    if "://" in target.server:
        assert target.server.split("://")[0] in ("http", "https")
