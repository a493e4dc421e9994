"""The README's first two commands, run exactly as written in a fresh copy of the repository.

The first installs the plugin into a virtual environment and previews the bundled example offline; the
second runs the same upgrade against the test bed with the real kubectl. The copy has nothing beside it,
as a fresh clone has not: the test bed fetches its upstream files itself. The virtual environment sees
the already installed dependencies, so installing needs no network beyond pip's build backend.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IGNORED = (".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "build", "dist", "site")


def code_blocks() -> list[str]:
    return re.findall(r"(?ms)^```[^\n]*\n(.*?)^```", (REPO / "README.md").read_text())


FIRST, SECOND = code_blocks()[:2]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`root/checkout/repo`: a copy of the repository with nothing beside it; `root/venv`."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(
        REPO,
        root / "checkout" / "repo",
        ignore=shutil.ignore_patterns(*IGNORED, "*.egg-info", "__pycache__"),
        symlinks=True,
    )
    venv.create(root / "venv", system_site_packages=True, with_pip=True)
    return root


def shell(
    root: Path, script: str, *, path: tuple[Path, ...] = (), timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `script` with bash in the copy, with the virtual environment first on PATH (as if activated)."""
    env = {key: value for key, value in os.environ.items() if key not in ("KUBECONFIG", "KUBECTL")}
    bin_dir = root / "venv" / "bin"
    env.update(
        PATH=os.pathsep.join([str(bin_dir), *map(str, path), os.environ.get("PATH", "")]),
        VIRTUAL_ENV=str(root / "venv"),
        NO_COLOR="1",
    )
    return subprocess.run(
        ["bash", "-c", script],
        cwd=root / "checkout" / "repo",
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def installed(root: Path) -> bool:
    return (root / "venv" / "bin" / "kubectl-capc").exists()


def test_the_first_commands_are_the_offline_example_and_the_test_bed() -> None:
    assert FIRST.startswith("python3 -m pip install . && kubectl-capc image-upgrade mycluster --to v1.29.3")
    assert "-f examples/mycluster --dry-run" in FIRST
    assert "python3 -m tests.testenv up" in SECOND
    assert "kubectl apply -f examples/mycluster" in SECOND
    assert "kubectl capc image-upgrade mycluster --to v1.29.3 --dry-run" in SECOND


@pytest.mark.testbed  # builds a virtual environment and installs the plugin into it
def test_first_command_installs_the_plugin_and_previews_the_example_offline(checkout: Path) -> None:
    result = shell(checkout, FIRST)
    assert installed(checkout), result.stdout + result.stderr
    assert result.returncode == 1, result.stderr  # --dry-run with changes pending, as kubectl diff
    out = result.stdout
    assert "Cluster default/mycluster (CAPI v1beta1) → v1.29.3" in out
    assert "CloudStackMachineTemplate/mycluster-control-plane-v1-29-3" in out
    assert "--- a/examples/mycluster/control-plane.yaml" in out
    assert "+  version: v1.29.3" in out
    assert "assumed: CloudStack template ubuntu-2204-kube-v1.29.3" in result.stderr
    for path in (REPO / "examples" / "mycluster").glob("*.yaml"):
        assert (
            checkout / "checkout" / "repo" / "examples" / "mycluster" / path.name
        ).read_bytes() == path.read_bytes()


def test_second_command_previews_the_same_upgrade_on_the_test_bed(
    checkout: Path, kubectl_binary: Path
) -> None:
    if not installed(checkout):
        shell(checkout, "python3 -m pip install .")
    bed = re.search(r"--dir (\S+)", SECOND)
    assert bed is not None
    try:
        result = shell(checkout, SECOND, path=(kubectl_binary.parent,))
    finally:
        shell(checkout, f"python3 -m tests.testenv down --dir {bed.group(1)}")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "kubeadmcontrolplane.controlplane.cluster.x-k8s.io/mycluster-control-plane created" in out
    assert "Cluster default/mycluster (CAPI v1beta1) → v1.29.3" in out
    assert "CloudStack template ubuntu-2204-kube-v1.29.3                ready in fd-zone1, fd-zone2" in out
    assert out.count("accepted by the API server (dryRun=All)") == 6
    assert "+  version: v1.29.3" in out
    assert "stopped: " in out


def test_nothing_in_the_repository_reaches_outside_it() -> None:
    """No tracked file names a folder beside the repository, and no link leads out of it."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    beside = "shared"  # the folder a checkout may have next to it, which a clone does not
    outside = re.compile(
        rf"\.\./{beside}\b|/{beside}/upstream|(\.parent|parents\[[2-9]\])\s*/\s*[\"']{beside}"
    )
    offenders = []
    for name in filter(None, tracked):
        path = REPO / name
        if path.is_symlink():
            if not path.resolve().is_relative_to(REPO):
                offenders.append(f"{name} -> {os.readlink(path)}")
            continue
        if path.is_file() and outside.search(path.read_text(errors="replace")):
            offenders.append(name)
    assert offenders == []
