"""The plugin through the real kubectl: discovery on PATH, help, version, flags and exit codes.

kubectl is taken from $KUBECTL (the test bed exports the one it builds) or else from PATH; a missing
kubectl fails these tests rather than skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from tests.unit.cli.test_kubeconfig import kubeconfig_text, write

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kubectl() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not found:
        pytest.fail("no kubectl: set KUBECTL or put kubectl on PATH")
    return found


def installed_console_script() -> Path:
    for scheme in (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")):
        candidate = Path(sysconfig.get_path("scripts", scheme)) / "kubectl-capc"
        if candidate.is_file():
            return candidate
    pytest.fail("the kubectl-capc console script is not installed; run `pip install -e .`")


@pytest.fixture(params=["bin-script", "console-script"])
def plugin_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A directory that, alone on PATH, offers kubectl exactly one `kubectl-capc`.

    bin/kubectl-capc starts with `#!/usr/bin/env python3`, so the directory also gets a `python3` that
    runs this test's interpreter; the console script names its interpreter itself.
    """
    directory = tmp_path / "plugins"
    directory.mkdir()
    if request.param == "bin-script":
        (directory / "kubectl-capc").symlink_to(REPO / "bin" / "kubectl-capc")
        python3 = directory / "python3"
        python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        python3.chmod(0o755)
    else:
        (directory / "kubectl-capc").symlink_to(installed_console_script())
    return directory


@pytest.fixture
def kubeconfig_env(tmp_path: Path) -> str:
    """KUBECONFIG listing two files: current-context from the first, the `prod` context from the second."""
    first = write(
        tmp_path / "a" / "config",
        kubeconfig_text(
            current="dev",
            clusters={"dev": {"server": "https://127.0.0.1:6443"}},
            users={"admin": {"token": "s3cret-token"}},
            contexts={"dev": {"cluster": "dev", "user": "admin"}},
        ),
    )
    second = write(
        tmp_path / "b" / "config",
        kubeconfig_text(
            clusters={"prod": {"server": "https://127.0.0.2:6443"}},
            contexts={"prod": {"cluster": "prod", "user": "admin", "namespace": "ops"}},
        ),
    )
    return os.pathsep.join([str(first), str(second)])


def run_kubectl(
    kubectl: str, plugin_dir: Path, *args: str, kubeconfig: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": str(plugin_dir), "HOME": str(plugin_dir.parent)}
    env.pop("KUBECONFIG", None)
    if kubeconfig is not None:
        env["KUBECONFIG"] = kubeconfig
    return subprocess.run([kubectl, *args], env=env, capture_output=True, text=True, timeout=60)


def test_plugin_list_finds_kubectl_capc_on_path(kubectl: str, plugin_dir: Path) -> None:
    done = run_kubectl(kubectl, plugin_dir, "plugin", "list")
    assert done.returncode == 0, done.stderr
    assert str(plugin_dir / "kubectl-capc") in done.stdout.split()
    assert "warning" not in done.stderr.lower()


def test_help_through_kubectl_shows_kubectl_capc_usage(kubectl: str, plugin_dir: Path) -> None:
    done = run_kubectl(kubectl, plugin_dir, "capc", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: kubectl capc [OPTIONS] COMMAND [ARGS]...")


def test_version_through_kubectl(kubectl: str, plugin_dir: Path) -> None:
    done = run_kubectl(kubectl, plugin_dir, "capc", "version")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert ["kubectl-capc", metadata.version("kubectl-capc")] in rows
    assert ["kubernetes", metadata.version("kubernetes")] in rows
    assert ["cs", metadata.version("cs")] in rows


def test_context_flags_after_the_plugin_name_with_merged_kubeconfig(
    kubectl: str, plugin_dir: Path, kubeconfig_env: str
) -> None:
    done = run_kubectl(kubectl, plugin_dir, "capc", "context", kubeconfig=kubeconfig_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split() == ["dev", "dev", "https://127.0.0.1:6443", "admin", "default"]

    done = run_kubectl(
        kubectl, plugin_dir, "capc", "context", "--context", "prod", "-n", "ns", kubeconfig=kubeconfig_env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split() == ["prod", "prod", "https://127.0.0.2:6443", "admin", "ns"]
    assert "s3cret" not in done.stdout + done.stderr


def test_flags_before_the_plugin_name_are_refused_by_kubectl(
    kubectl: str, plugin_dir: Path, kubeconfig_env: str
) -> None:
    done = run_kubectl(kubectl, plugin_dir, "--context", "prod", "capc", "context", kubeconfig=kubeconfig_env)
    assert done.returncode != 0
    assert "flags cannot be placed before plugin name" in done.stderr


def test_exit_code_and_one_line_error_pass_through_kubectl(
    kubectl: str, plugin_dir: Path, kubeconfig_env: str
) -> None:
    done = run_kubectl(kubectl, plugin_dir, "capc", "context", "--context", "nope", kubeconfig=kubeconfig_env)
    assert done.returncode == 3
    assert done.stderr.startswith("error: context 'nope' not found in kubeconfig")
    assert done.stderr.count("\n") == 1
