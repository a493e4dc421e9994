"""The entry point: help, `version`, `context`, and how failures reach the user and the exit code."""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from kubectl_capc.__main__ import main
from kubectl_capc.domain.errors import ExitCode
from kubectl_capc.kube.kubeconfig import Kubeconfig
from tests.unit.cli.test_kubeconfig import kubeconfig_text, write


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the user's own ~/.kube/config and KUBECONFIG out of every test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return home


@pytest.fixture
def kubeconfigs(tmp_path: Path) -> tuple[Path, Path]:
    """Two files as KUBECONFIG would list them: the first sets current-context, the second adds a cluster."""
    first = write(
        tmp_path / "a" / "config",
        kubeconfig_text(
            current="dev",
            clusters={"shared": {"server": "https://first:6443"}},
            users={"admin": {"token": "s3cret-token"}},
            contexts={"dev": {"cluster": "shared", "user": "admin", "namespace": "team"}},
        ),
    )
    second = write(
        tmp_path / "b" / "config",
        kubeconfig_text(
            current="prod",
            clusters={"shared": {"server": "https://second:6443"}, "prod": {"server": "https://prod:6443"}},
            contexts={"prod": {"cluster": "prod", "user": "admin"}},
        ),
    )
    return first, second


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_shows_usage_as_a_kubectl_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--help", "-h"):
        code, out, _ = run([flag], capsys)
        assert code == ExitCode.OK
        assert out.startswith("Usage: kubectl capc [OPTIONS] COMMAND [ARGS]...")
        assert "context" in out and "version" in out


def test_command_help_lists_the_global_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["context", "--help"], capsys)
    assert code == ExitCode.OK
    assert out.startswith("Usage: kubectl capc context [OPTIONS]")
    for flag in (
        "--kubeconfig",
        "--context",
        "-n, --namespace",
        "--request-timeout",
        "-v, --v",
        "-o, --output",
    ):
        assert flag in out


def test_version_reports_installed_versions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["version", "-o", "json"], capsys)
    assert code == ExitCode.OK
    assert json.loads(out) == {
        "kubectl-capc": metadata.version("kubectl-capc"),
        "python": ".".join(map(str, sys.version_info[:3])),
        "kubernetes": metadata.version("kubernetes"),
        "cs": metadata.version("cs"),
    }
    code, out, _ = run(["version"], capsys)
    assert code == ExitCode.OK
    assert out.splitlines()[0].split() == ["COMPONENT", "VERSION"]
    assert ["kubernetes", metadata.version("kubernetes")] in [line.split() for line in out.splitlines()]


def test_context_merges_kubeconfig_paths_like_kubectl(
    kubeconfigs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(str(path) for path in kubeconfigs))
    code, out, _ = run(["context"], capsys)
    assert code == ExitCode.OK
    assert out.splitlines() == [
        "CONTEXT   CLUSTER   SERVER               USER    NAMESPACE",
        "dev       shared    https://first:6443   admin   team",
    ]
    code, out, _ = run(["context", "--context", "prod", "-o", "yaml"], capsys)
    assert code == ExitCode.OK
    assert yaml.safe_load(out) == {
        "context": "prod",
        "cluster": "prod",
        "server": "https://prod:6443",
        "user": "admin",
        "namespace": "default",
        "kubeconfig": [str(path) for path in kubeconfigs],
    }


def test_context_takes_global_flags_after_the_command(
    kubeconfigs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = kubeconfigs
    code, out, _ = run(
        ["context", "--kubeconfig", str(first), "--context", "dev", "-n=other", "-o=json"], capsys
    )
    assert code == ExitCode.OK
    shown = json.loads(out)
    assert (shown["context"], shown["namespace"], shown["kubeconfig"]) == ("dev", "other", [str(first)])
    assert "s3cret" not in out


@pytest.mark.parametrize(
    ("argv_tail", "expected"),
    [
        (["--context", "staging"], "error: context 'staging' not found in kubeconfig"),
        (["--kubeconfig", "/nonexistent/config"], "error: kubeconfig /nonexistent/config does not exist"),
    ],
)
def test_config_errors_are_one_line_with_exit_code_3(
    kubeconfigs: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv_tail: list[str],
    expected: str,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfigs[0]))
    code, out, err = run(["context", *argv_tail], capsys)
    assert code == ExitCode.CONFIG == 3
    assert out == ""
    assert err.startswith(expected)
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_malformed_kubeconfig_is_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = write(tmp_path / "broken", "users:\n- name: u\n  user: {token: s3cret: x}\n")
    monkeypatch.setenv("KUBECONFIG", str(broken))
    code, _, err = run(["context"], capsys)
    assert code == ExitCode.CONFIG
    assert err.startswith(f"error: kubeconfig {broken} is not valid YAML")
    assert err.count("\n") == 1 and "s3cret" not in err and "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["context", "--no-such-flag"], capsys)
    assert code == ExitCode.USAGE == 2
    assert "No such option: --no-such-flag" in err


def test_a_bug_keeps_its_traceback_but_does_not_exit_1(
    monkeypatch: pytest.MonkeyPatch, kubeconfigs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(self: Kubeconfig, context: str | None = None, namespace: str | None = None) -> None:
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr(Kubeconfig, "resolve", broken)
    code, _, err = run(["context", "--kubeconfig", str(kubeconfigs[0])], capsys)
    assert code == ExitCode.INTERNAL == 70
    assert "Traceback" in err
    assert err.splitlines()[-1] == "error: internal error: resolver exploded"


def test_interrupt_exits_130(
    monkeypatch: pytest.MonkeyPatch, kubeconfigs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(self: Kubeconfig, context: str | None = None, namespace: str | None = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Kubeconfig, "resolve", interrupted)
    code, _, _ = run(["context", "--kubeconfig", str(kubeconfigs[0])], capsys)
    assert code == ExitCode.INTERRUPTED == 130
