"""Kubeconfig discovery, merging and context resolution, including a comparison with the real kubectl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_capc.domain.errors import ConfigError, ExitCode
from kubectl_capc.kube.kubeconfig import (
    kubeconfig_paths,
    load_kubeconfig,
    merge_kubeconfigs,
    parse_kubeconfig,
)


def kubeconfig_text(
    *,
    current: str | None = None,
    clusters: dict[str, dict[str, Any]] | None = None,
    users: dict[str, dict[str, Any]] | None = None,
    contexts: dict[str, dict[str, Any]] | None = None,
) -> str:
    document: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    if current is not None:
        document["current-context"] = current
    for section, key, entries in (
        ("clusters", "cluster", clusters),
        ("users", "user", users),
        ("contexts", "context", contexts),
    ):
        if entries is not None:
            document[section] = [{"name": name, key: body} for name, body in entries.items()]
    return yaml.safe_dump(document)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- which files ---------------------------------------------------------------------------------


def test_flag_names_the_only_file_even_when_kubeconfig_is_set() -> None:
    paths, explicit = kubeconfig_paths("/x/flag", {"KUBECONFIG": "/a:/b"}, Path("/home/me"))
    assert paths == (Path("/x/flag"),)
    assert explicit


def test_kubeconfig_variable_is_split_with_empty_entries_and_repeats_dropped() -> None:
    listed = os.pathsep.join(["/a", "", "/b", "/a", "/c"])
    paths, explicit = kubeconfig_paths(None, {"KUBECONFIG": listed}, Path("/home/me"))
    assert paths == (Path("/a"), Path("/b"), Path("/c"))
    assert not explicit


def test_default_is_the_home_kube_config() -> None:
    assert kubeconfig_paths(None, {}, Path("/home/me")) == ((Path("/home/me/.kube/config"),), False)


# --- merging -------------------------------------------------------------------------------------


def test_first_file_defining_a_name_wins_with_its_whole_entry(tmp_path: Path) -> None:
    first = parse_kubeconfig(
        kubeconfig_text(clusters={"c": {"server": "https://first"}}, users={"u": {"username": "first"}}),
        tmp_path / "first",
    )
    second = parse_kubeconfig(
        kubeconfig_text(
            clusters={
                "c": {"server": "https://second", "insecure-skip-tls-verify": True},
                "d": {"server": "https://d"},
            },
            users={"u": {"username": "second", "password": "p"}},
        ),
        tmp_path / "second",
    )
    merged = merge_kubeconfigs([first, second])
    # No field-by-field merge: the second file's extra fields of "c" and "u" are dropped, as kubectl does.
    assert merged.clusters["c"] == {"server": "https://first"}
    assert merged.users["u"] == {"username": "first"}
    assert merged.clusters["d"] == {"server": "https://d"}
    assert merged.files == (tmp_path / "first", tmp_path / "second")


def test_current_context_comes_from_the_first_file_that_sets_it(tmp_path: Path) -> None:
    files = [
        parse_kubeconfig(kubeconfig_text(contexts={"a": {"cluster": "c"}}), tmp_path / "1"),
        parse_kubeconfig(kubeconfig_text(current="b"), tmp_path / "2"),
        parse_kubeconfig(kubeconfig_text(current="a"), tmp_path / "3"),
    ]
    assert merge_kubeconfigs(files).current_context == "b"


def test_relative_file_references_resolve_against_their_own_file(tmp_path: Path) -> None:
    parsed = parse_kubeconfig(
        kubeconfig_text(
            clusters={"c": {"server": "https://s", "certificate-authority": "pki/ca.crt"}},
            users={
                "rel": {"client-certificate": "u.crt", "client-key": "../k/u.key", "tokenFile": "tok"},
                "abs": {"client-certificate": "/etc/u.crt"},
                "exec-path": {"exec": {"command": "./bin/login", "apiVersion": "v1"}},
                "exec-bare": {"exec": {"command": "aws", "apiVersion": "v1"}},
            },
        ),
        tmp_path / "conf" / "config",
    )
    base = tmp_path / "conf"
    assert parsed.clusters["c"]["certificate-authority"] == str(base / "pki/ca.crt")
    assert parsed.users["rel"]["client-certificate"] == str(base / "u.crt")
    assert parsed.users["rel"]["client-key"] == str(base / "../k/u.key")
    assert parsed.users["rel"]["tokenFile"] == str(base / "tok")
    assert parsed.users["abs"]["client-certificate"] == "/etc/u.crt"
    assert parsed.users["exec-path"]["exec"]["command"] == str(base / "bin/login")
    assert parsed.users["exec-bare"]["exec"]["command"] == "aws"


def test_merged_config_keeps_the_entries_as_written(tmp_path: Path) -> None:
    parsed = parse_kubeconfig(
        kubeconfig_text(
            current="a",
            clusters={"c": {"server": "https://s"}},
            users={"u": {"token": "t"}},
            contexts={"a": {"cluster": "c", "user": "u"}},
        ),
        tmp_path / "config",
    )
    merged = merge_kubeconfigs([parsed])
    assert merged.current_context == "a"
    assert merged.clusters == {"c": {"server": "https://s"}}
    assert merged.users == {"u": {"token": "t"}}
    assert merged.contexts == {"a": {"cluster": "c", "user": "u"}}


# --- resolving a context -------------------------------------------------------------------------


@pytest.fixture
def two_contexts(tmp_path: Path) -> Path:
    return write(
        tmp_path / "config",
        kubeconfig_text(
            current="dev",
            clusters={"c-dev": {"server": "https://dev:6443"}, "c-prod": {"server": "https://prod:6443"}},
            users={"u": {"token": "s3cret-token"}},
            contexts={
                "dev": {"cluster": "c-dev", "user": "u", "namespace": "team"},
                "prod": {"cluster": "c-prod"},
            },
        ),
    )


def test_resolve_uses_current_context_and_its_namespace(two_contexts: Path) -> None:
    target = load_kubeconfig(str(two_contexts)).resolve()
    assert (target.context, target.cluster, target.server, target.user, target.namespace) == (
        "dev",
        "c-dev",
        "https://dev:6443",
        "u",
        "team",
    )


def test_namespace_flag_beats_context_namespace_and_default_is_default(two_contexts: Path) -> None:
    config = load_kubeconfig(str(two_contexts))
    assert config.resolve(namespace="flagged").namespace == "flagged"
    assert config.resolve(context="prod").namespace == "default"
    assert config.resolve(context="prod").server == "https://prod:6443"


def test_unknown_context_names_it_and_the_choices(two_contexts: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_kubeconfig(str(two_contexts)).resolve(context="staging")
    message = str(caught.value)
    assert "'staging' not found" in message
    assert str(two_contexts) in message
    assert "--context with one of: dev, prod" in message
    assert caught.value.exit_code == ExitCode.CONFIG


def test_missing_current_context_asks_for_context(tmp_path: Path) -> None:
    path = write(tmp_path / "config", kubeconfig_text(contexts={"a": {"cluster": "c"}}))
    with pytest.raises(ConfigError, match=r"no current-context is set.*pass --context NAME"):
        load_kubeconfig(str(path)).resolve()


def test_context_with_unknown_cluster_or_no_server_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config",
        kubeconfig_text(
            clusters={"empty": {}},
            contexts={"lost": {"cluster": "gone"}, "blank": {"cluster": "empty"}},
        ),
    )
    config = load_kubeconfig(str(path))
    with pytest.raises(ConfigError, match="refers to cluster 'gone', which is not in"):
        config.resolve(context="lost")
    with pytest.raises(ConfigError, match="cluster 'empty' of context 'blank' has no server"):
        config.resolve(context="blank")


# --- reading files -------------------------------------------------------------------------------


def test_explicit_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kubeconfig .*missing does not exist"):
        load_kubeconfig(str(tmp_path / "missing"))


def test_missing_files_in_kubeconfig_variable_are_skipped(tmp_path: Path, two_contexts: Path) -> None:
    listed = os.pathsep.join([str(tmp_path / "absent"), str(two_contexts)])
    config = load_kubeconfig(None, {"KUBECONFIG": listed}, tmp_path)
    assert config.files == (two_contexts,)
    assert config.resolve().context == "dev"


def test_no_file_at_all_is_reported_with_the_places_searched(tmp_path: Path) -> None:
    config = load_kubeconfig(None, {}, tmp_path)
    with pytest.raises(ConfigError, match=r"no kubeconfig found: looked for .*\.kube/config"):
        config.resolve()


def test_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load_kubeconfig(str(write(tmp_path / "config", "")))
    assert config.contexts == {} and config.files == (tmp_path / "config",)


def test_a_directory_is_not_a_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read kubeconfig"):
        load_kubeconfig(str(tmp_path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("users:\n- name: u\n  user: {token: s3cret: x}\n", r"not valid YAML: .* at line 3, column \d+"),
        ("- just\n- a list\n", "expected a mapping, got list"),
        ("clusters: {name: c}\n", "clusters must be a list"),
        ("contexts:\n- name: a\n- name: a\n", "two entries named 'a'"),
        ("users:\n- name: u\n  user: [1]\n", "needs a string name and a user mapping"),
        ("current-context: [a]\n", "current-context must be a string"),
    ],
)
def test_malformed_files_are_named_in_one_line_without_secrets(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path / "broken", text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_kubeconfig(str(path))
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message
    assert "s3cret" not in message


# --- the same answers as kubectl -----------------------------------------------------------------


def kubectl_path() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not found:
        pytest.fail("no kubectl: set KUBECTL or put kubectl on PATH")
    return found


CONTEXT_NAMES = ["x1", "x2", "x3"]
CLUSTER_NAMES = ["c1", "c2"]
USER_NAMES = ["u1", "u2"]


@st.composite
def kubeconfig_sets(draw: st.DrawFn) -> list[str]:
    """One to three files whose entries overlap by name, each entry's body telling which file it came from."""
    texts = []
    count = draw(st.integers(1, 3))
    for index in range(count):
        last = index == count - 1
        clusters = {
            name: {"server": f"https://127.0.0.{index + 1}:{6440 + number}"}
            for number, name in enumerate(CLUSTER_NAMES)
            if draw(st.booleans())
        }
        # Every user exists in the last file, so a context never names a missing user, which kubectl's
        # `config view --minify` refuses while it still connects (and prompts) with such a context.
        users = {name: {"username": f"f{index}-{name}"} for name in USER_NAMES if last or draw(st.booleans())}
        contexts = {
            name: {
                "cluster": draw(st.sampled_from(CLUSTER_NAMES)),
                "user": draw(st.sampled_from(USER_NAMES)),
                **({"namespace": f"ns-f{index}"} if draw(st.booleans()) else {}),
            }
            for name in CONTEXT_NAMES
            if draw(st.booleans())
        }
        current = draw(st.one_of(st.none(), st.sampled_from([*CONTEXT_NAMES, "x-undefined"])))
        texts.append(kubeconfig_text(current=current, clusters=clusters, users=users, contexts=contexts))
    return texts


def kubectl_view(kubeconfig: str, context: str | None) -> dict[str, Any] | None:
    command = [kubectl_path(), "config", "view", "--minify", "-o", "json"]
    if context:
        command += ["--context", context]
    done = subprocess.run(
        command, env={**os.environ, "KUBECONFIG": kubeconfig}, capture_output=True, text=True, timeout=60
    )
    return json.loads(done.stdout) if done.returncode == 0 else None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=kubeconfig_sets(), context=st.one_of(st.none(), st.sampled_from([*CONTEXT_NAMES, "x-undefined"]))
)
def test_merge_and_resolve_agree_with_kubectl(
    tmp_path_factory: pytest.TempPathFactory, texts: list[str], context: str | None
) -> None:
    directory = tmp_path_factory.mktemp("merge")
    paths = [str(write(directory / f"config-{index}", text)) for index, text in enumerate(texts)]
    listed = os.pathsep.join(paths)

    view = kubectl_view(listed, context)
    config = load_kubeconfig(None, {"KUBECONFIG": listed}, directory)
    if view is None:
        with pytest.raises(ConfigError):
            config.resolve(context=context)
        return
    target = config.resolve(context=context)
    kube_context = view["contexts"][0]
    assert target.context == view["current-context"] == kube_context["name"]
    assert target.cluster == kube_context["context"]["cluster"]
    assert target.server == view["clusters"][0]["cluster"]["server"]
    assert target.user == kube_context["context"]["user"]
    assert config.users[target.user] == view["users"][0]["user"]
    assert target.namespace == kube_context["context"].get("namespace", "default")
