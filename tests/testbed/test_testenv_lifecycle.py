"""`python -m tests.testenv up/down` start a usable bed and leave no process behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.testenv.bed import REPO


def _testenv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.testenv", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def _port_open(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parsed.hostname or "127.0.0.1", parsed.port or 80)) == 0


def test_up_then_down_leaves_nothing_running(tmp_path: Path, kubectl_binary: Path) -> None:
    directory = tmp_path / "bed"
    started = _testenv("up", "--dir", str(directory), "--capi", "v1beta1", "--simulate-rollouts")
    assert started.returncode == 0, started.stderr
    pids = {p.stem: int(p.read_text()) for p in (directory / "pids").glob("*.pid")}
    assert set(pids) == {"apiserver", "cloudstack", "rollout"}
    assert all(_alive(pid) for pid in pids.values())

    # The bed is usable from outside: the real kubectl talks to it with the written kubeconfig.
    got = subprocess.run(
        [
            str(kubectl_binary),
            "--kubeconfig",
            str(directory / "kubeconfig"),
            "get",
            "secret",
            "cloudstack-credentials",
            "-n",
            "default",
            "-o",
            "jsonpath={.data.api-key}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 0 and got.stdout, got.stderr
    env = dict(line.split("=", 1) for line in (directory / "cloudstack.env").read_text().splitlines() if line)
    assert set(env) >= {"CLOUDSTACK_ENDPOINT", "CLOUDSTACK_KEY", "CLOUDSTACK_SECRET"}
    apiserver = (directory / "endpoint").read_text().strip()
    assert _port_open(apiserver) and _port_open(env["CLOUDSTACK_ENDPOINT"])

    again = _testenv("up", "--dir", str(directory))
    assert again.returncode == 1 and "already running" in again.stderr

    stopped = _testenv("down", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    assert not any(_alive(pid) for pid in pids.values())
    assert not _port_open(apiserver) and not _port_open(env["CLOUDSTACK_ENDPOINT"])
    assert list((directory / "pids").glob("*.pid")) == []
    assert "nothing was running" in _testenv("down", "--dir", str(directory)).stdout


def test_prepare_readies_every_program_the_suite_runs(kubectl_binary: Path) -> None:
    prepared = _testenv("prepare")
    assert prepared.returncode == 0, prepared.stderr
    ready = [line.split("  ")[1] for line in prepared.stdout.splitlines() if line.startswith("ready  ")]
    assert ready == [
        "upstream CAPI and CAPC modules (v1beta1)",
        "upstream CAPI and CAPC modules (v1beta2)",
        "kube-apiserver, etcd and kubectl",
        "workload control plane and KWOK",
        "cloudstack-go resolver",
        "krew",
        "plugin archive",
    ]


def test_prepare_without_go_is_one_error_naming_the_step(tmp_path: Path) -> None:
    prepared = subprocess.run(
        [sys.executable, "-m", "tests.testenv", "prepare"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": str(tmp_path)},  # no go on it
    )
    assert prepared.returncode == 1
    assert prepared.stderr.splitlines() == [
        "error: preparing the test bed: upstream CAPI and CAPC modules (v1beta1): "
        "the 'go' toolchain is not on PATH; install Go to fetch the upstream CRDs"
    ]
    assert "ready" not in prepared.stdout


def test_the_plugin_archive_key_is_the_same_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prepare` runs with the tree on sys.path; pytest's workers with "" (the working directory), which
    finds the tree's egg-info a second time. The archive `prepare` built must be the one tests find."""
    from tests.krewtools import plugin_source_key

    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry])  # as `prepare` has it
    from_prepare = plugin_source_key()
    monkeypatch.syspath_prepend("")
    monkeypatch.chdir(REPO)
    in_the_tree = plugin_source_key()
    monkeypatch.chdir(tmp_path)
    assert from_prepare == in_the_tree == plugin_source_key()
