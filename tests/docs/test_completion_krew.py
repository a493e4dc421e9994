"""Shell completion of the krew-installed plugin: the release archive holds `kubectl_complete-capc`, and
after the one link the README and the manifest's caveats give, kubectl completes `kubectl capc` with
the packaged binary (no Python on PATH)."""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.docs.test_krew import isolated_env, render, run
from tests.krewtools import REPO, ensure_krew, ensure_plugin_archive

LINK_COMMAND = re.compile(r"^ln -sf kubectl-capc .*kubectl_complete-capc\"?$", re.MULTILINE)


@pytest.fixture(scope="module")
def archive() -> Path:
    return ensure_plugin_archive()


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory, kubectl_binary: Path) -> Path:
    directory = tmp_path_factory.mktemp("krew-tools")
    (directory / "kubectl").symlink_to(kubectl_binary)
    (directory / "kubectl-krew").symlink_to(ensure_krew()["kubectl-krew"])
    # The link command runs under sh and needs ln; nothing else of this machine is on PATH.
    (directory / "ln").symlink_to("/bin/ln")
    return directory


def link_command() -> str:
    """The README's link command, which the manifest's caveats repeat."""
    (command,) = LINK_COMMAND.findall((REPO / "README.md").read_text())
    assert command in (REPO / "krew" / "capc.yaml").read_text()
    return command


def test_the_archive_holds_the_completion_executable(archive: Path) -> None:
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    completion, plugin = members["kubectl-capc/kubectl_complete-capc"], members["kubectl-capc/kubectl-capc"]
    assert completion.isfile() and completion.mode & 0o111
    assert completion.size == plugin.size


def test_after_the_link_kubectl_completes_the_krew_installed_plugin(
    archive: Path, tools: Path, tmp_path: Path
) -> None:
    env = isolated_env(tools, tmp_path)
    manifest = render(archive, tmp_path / "p", "http://127.0.0.1:9")
    installed = run(
        ["kubectl", "krew", "install", f"--manifest={manifest}", f"--archive={archive}"], env, tmp_path
    )
    assert installed.returncode == 0, installed.stderr
    assert "kubectl_complete-capc" in installed.stdout + installed.stderr  # the caveats say how

    before = run(["kubectl", "__complete", "capc", ""], env, tmp_path)
    assert "validate" not in before.stdout  # krew alone does not offer it
    linked = subprocess.run(["/bin/sh", "-c", link_command()], env=env, capture_output=True, text=True)
    assert linked.returncode == 0, linked.stderr
    assert (tmp_path / "krew" / "bin" / "kubectl_complete-capc").readlink() == Path("kubectl-capc")

    commands = run(["kubectl", "__complete", "capc", ""], env, tmp_path)
    assert commands.returncode == 0, commands.stderr
    names = [line.split("\t")[0] for line in commands.stdout.splitlines()]
    assert {"image-upgrade", "validate", "describe", "image", "version"} <= set(names)
    assert names[-1] == ":4"
    flags = run(["kubectl", "__complete", "capc", "validate", "-o", ""], env, tmp_path)
    assert flags.stdout.splitlines() == ["table", "json", "yaml", ":4"]


def test_the_archives_own_copy_answers_completion(archive: Path) -> None:
    copy = archive.parent / "kubectl-capc" / "kubectl_complete-capc"
    done = subprocess.run([str(copy), "image", ""], capture_output=True, text=True, timeout=60, env={})
    assert done.returncode == 0
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == ["list", "register", "build", ":4"]
    assert done.stderr == ""
