"""`kubectl capc <TAB>` through the real kubectl on the test bed: kubectl finds `kubectl_complete-capc` on
PATH next to the plugin and relays its answer (`kubectl __complete capc ...` is what the shell scripts
run). Subcommands and flags, Cluster names from a namespace, namespaces, `--to` versions from the
CloudStack double's templates, and nothing, quickly, from a server that does not answer."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from kubectl_capc.cli.app import app
from kubectl_capc.cli.completion import BUDGET_ENV, BUDGET_SECONDS
from kubectl_capc.domain.versions import parse_version
from tests.e2e.test_kubectl_plugin import installed_console_script
from tests.support.fault_support import admin
from tests.support.fixtures_capc import create_objects, render_cluster
from tests.support.upgrade_support import TWO_ZONES
from tests.testenv.bed import TestBed
from tests.unit.cli.test_kubeconfig import kubeconfig_text, write


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A directory that, alone on PATH, offers kubectl the plugin and its completion executable."""
    directory = tmp_path / "plugins"
    directory.mkdir()
    plugin = installed_console_script()
    (directory / "kubectl-capc").symlink_to(plugin)
    (directory / "kubectl_complete-capc").symlink_to(plugin.parent / "kubectl_complete-capc")
    return directory


def complete(
    kubectl: Path, plugin_dir: Path, kubeconfig: Path, *words: str, budget: str = "10s"
) -> tuple[list[str], str, subprocess.CompletedProcess[str]]:
    """`kubectl __complete capc WORDS...`: the candidates' values, the directive line, and the run.

    The lookups get `budget`: by default ample, so that a busy machine cannot make them late; ""
    leaves the built-in one.
    """
    env = {
        **os.environ,
        "PATH": str(plugin_dir),
        "HOME": str(plugin_dir.parent),
        "KUBECONFIG": str(kubeconfig),
        BUDGET_ENV: budget,
    }
    done = subprocess.run(
        [str(kubectl), "__complete", "capc", *words], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    *candidates, directive = done.stdout.splitlines()
    return [line.split("\t")[0] for line in candidates], directive, done


def stderr_of_plugin(done: subprocess.CompletedProcess[str]) -> str:
    """What reached stderr besides kubectl's own `[Debug] ...` and `Completion ended with ...` lines."""
    own = ("[Debug] ", "Completion ended with directive: ")
    return "".join(line for line in done.stderr.splitlines(True) if not line.startswith(own))


def test_kubectl_completes_the_plugins_commands_subcommands_and_flags(
    testenv_v1beta2: TestBed, kubectl_binary: Path, plugin_dir: Path
) -> None:
    kubeconfig = testenv_v1beta2.kubeconfig
    commands, directive, done = complete(kubectl_binary, plugin_dir, kubeconfig, "")
    assert commands == list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert directive == ":4"
    assert "validate\tCheck that clusters can be upgraded" in done.stdout
    assert stderr_of_plugin(done) == ""

    assert complete(kubectl_binary, plugin_dir, kubeconfig, "image", "")[0] == ["list", "register", "build"]
    flags, _, _ = complete(kubectl_binary, plugin_dir, kubeconfig, "image-upgrade", "c1", "--")
    assert {"--to", "--dry-run", "--namespace", "--context", "--kubeconfig", "--output"} <= set(flags)
    assert complete(kubectl_binary, plugin_dir, kubeconfig, "validate", "-o", "")[0] == [
        "table",
        "json",
        "yaml",
    ]


def test_cluster_names_come_from_the_namespace_on_the_line_or_the_contexts(
    testenv_v1beta2: TestBed, namespace: str, kubectl_binary: Path, plugin_dir: Path, tmp_path: Path
) -> None:
    api = testenv_v1beta2.api_client()
    for name in ("alpha", "beta"):
        create_objects(api, render_cluster(name, namespace, capi="v1beta2"))
    kubeconfig = testenv_v1beta2.kubeconfig

    names, directive, done = complete(kubectl_binary, plugin_dir, kubeconfig, "validate", "-n", namespace, "")
    assert (names, directive) == (["alpha", "beta"], ":4")
    assert stderr_of_plugin(done) == ""
    assert complete(kubectl_binary, plugin_dir, kubeconfig, "describe", f"--namespace={namespace}", "b")[
        0
    ] == ["beta"]
    assert complete(kubectl_binary, plugin_dir, kubeconfig, "validate", "")[0] == []  # none in "default"

    document: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    for entry in document["contexts"]:
        entry["context"]["namespace"] = namespace
    in_namespace = tmp_path / "kubeconfig"
    in_namespace.write_text(yaml.safe_dump(document))
    assert complete(kubectl_binary, plugin_dir, in_namespace, "rollback", "")[0] == ["alpha", "beta"]
    assert complete(
        kubectl_binary, plugin_dir, kubeconfig, "history", "--kubeconfig", str(in_namespace), "a"
    )[0] == ["alpha"]


def test_namespaces_complete_after_n(
    testenv_v1beta2: TestBed, namespace: str, kubectl_binary: Path, plugin_dir: Path
) -> None:
    names, directive, _ = complete(
        kubectl_binary, plugin_dir, testenv_v1beta2.kubeconfig, "validate", "-n", ""
    )
    assert namespace in names and "default" in names and directive == ":4"
    assert complete(kubectl_binary, plugin_dir, testenv_v1beta2.kubeconfig, "validate", "-n", namespace[:8])[
        0
    ] == [namespace]


def test_to_offers_the_template_versions_in_the_clusters_zones_and_the_known_minors_newest_first(
    testenv_v1beta2: TestBed, namespace: str, kubectl_binary: Path, plugin_dir: Path
) -> None:
    name = f"c-{uuid.uuid4().hex[:6]}"
    create_objects(
        testenv_v1beta2.api_client(), render_cluster(name, namespace, capi="v1beta2", zones=TWO_ZONES)
    )
    number = int(uuid.uuid4().hex[:8], 16)
    # Minors 100-199: test_image.py's templates take 40-99, and a typed `--to=v1.<minor>.` below must find
    # this test's template alone.
    version = f"v1.{100 + number % 100}.{number // 100 % 1000}"
    template = {
        "name": f"ubuntu-2204-kube-{version}",
        "ostype": "Ubuntu 22.04 LTS",
        "owner": {"account": "admin", "domain": "ROOT"},
        "zones": {"zone1": "ready", "zone2": "ready"},
    }
    admin(testenv_v1beta2, "templates", template)

    values, directive, done = complete(
        kubectl_binary,
        plugin_dir,
        testenv_v1beta2.kubeconfig,
        "image-upgrade",
        name,
        "-n",
        namespace,
        "--to",
        "",
    )
    assert directive == ":36"  # no file names, keep this order
    assert {version, parse_version(version).minor_line, "v1.29.3", "v1.29", "v1.28.5", "v1.37"} <= set(values)
    assert "v1.27" not in values  # the cluster runs v1.28.5: older would be a downgrade
    keys = [_order(value) for value in values]
    assert keys == sorted(keys, reverse=True)
    assert f"{version}\tubuntu-2204-kube-{version}" in done.stdout
    for secret in (
        testenv_v1beta2.cloudstack["CLOUDSTACK_KEY"],
        testenv_v1beta2.cloudstack["CLOUDSTACK_SECRET"],
    ):
        assert secret not in done.stdout + done.stderr

    typed, _, _ = complete(
        kubectl_binary,
        plugin_dir,
        testenv_v1beta2.kubeconfig,
        "validate",
        name,
        "-n",
        namespace,
        f"--to={parse_version(version).minor_line}.",
    )
    # This test's own minor: the shared double may hold other tests' v1.29 patches.
    assert typed == [f"--to={version}"]


def _order(value: str) -> tuple[int, float]:
    minor, _, patch = value.removeprefix("v1.").partition(".")
    return int(minor), float(patch) if patch else float("inf")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An address that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_server_that_does_not_answer_gets_nothing_offered_by_the_deadline(
    kubectl_binary: Path, plugin_dir: Path, silent_server: str, tmp_path: Path
) -> None:
    kubeconfig = write(
        tmp_path / "config",
        kubeconfig_text(
            current="silent",
            clusters={"silent": {"server": silent_server, "insecure-skip-tls-verify": True}},
            users={"admin": {"token": "s3cret-token"}},
            contexts={"silent": {"cluster": "silent", "user": "admin"}},
        ),
    )

    def timed(*words: str, budget: str) -> tuple[float, list[str], str, subprocess.CompletedProcess[str]]:
        started = time.monotonic()
        values, directive, done = complete(kubectl_binary, plugin_dir, kubeconfig, *words, budget=budget)
        return time.monotonic() - started, values, directive, done

    # What kubectl and Python take to start on this machine now, asking no server: the waits below are
    # measured above it, so a busy machine does not make them look late.
    start_up = min(timed("", budget="0.3s")[0] for _ in range(2))
    for words in (["validate", ""], ["validate", "-n", ""], ["image-upgrade", "c1", "--to", "v1.4"]):
        seconds, values, directive, done = timed(*words, budget="0.3s")
        assert seconds - start_up < 0.3 + 0.4, words
        assert values == [] and directive in (":4", ":36"), words
        assert stderr_of_plugin(done) == ""
        assert "s3cret-token" not in done.stdout + done.stderr
    seconds, values, directive, _ = timed("describe", "", budget="")  # the built-in budget
    assert (values, directive) == ([], ":4")
    assert seconds >= BUDGET_SECONDS and seconds - start_up < BUDGET_SECONDS + 0.4


def test_completion_leaves_no_file_behind_even_when_a_lookup_is_cut_off(
    testenv_v1beta2: TestBed, namespace: str, silent_server: str, tmp_path: Path
) -> None:
    """The client libraries keep certificate data in temporary files while they run; none may stay, and
    nothing else is written (no discovery cache under HOME)."""
    pki = testenv_v1beta2.dir / "pki"

    def data(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    silent = write(
        tmp_path / "silent",
        kubeconfig_text(
            current="silent",
            clusters={"silent": {"server": silent_server, "certificate-authority-data": data("ca.crt")}},
            users={
                "admin": {"client-certificate-data": data("admin.crt"), "client-key-data": data("admin.key")}
            },
            contexts={"silent": {"cluster": "silent", "user": "admin"}},
        ),
    )
    scratch, home = tmp_path / "tmp", tmp_path / "home"
    scratch.mkdir()
    home.mkdir()
    executable = installed_console_script().parent / "kubectl_complete-capc"
    runs = [
        (silent, ["validate", ""], "0.5s", ":4\n"),
        (silent, ["image-upgrade", "c1", "--to", "v1.4"], "0.5s", ":36\n"),
        (testenv_v1beta2.kubeconfig, ["validate", "-n", namespace[:8]], "10s", f"{namespace}\n:4\n"),
    ]
    for kubeconfig, words, budget, expected in runs:
        env = {**os.environ, "TMPDIR": str(scratch), "HOME": str(home), "KUBECONFIG": str(kubeconfig)}
        done = subprocess.run(
            [str(executable), "__completeNoDesc", *words],
            env={**env, BUDGET_ENV: budget},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, expected, ""), words
    assert sorted(scratch.iterdir()) == [] and sorted(home.iterdir()) == []
