"""The krew release end to end: the packaged one-dir binary, the rendered manifest checked by krew-index's
own validator (which installs it from the URI, served here on 127.0.0.1), and `kubectl krew install`
into a temporary KREW_ROOT followed by `kubectl capc` through the real kubectl.

PATH holds only kubectl, kubectl-krew and KREW_ROOT/bin, so the installed plugin must run without a
Python interpreter or anything else from this machine.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from tests.krewtools import REPO, ensure_krew, ensure_plugin_archive
from tests.unit.cli.test_kubeconfig import kubeconfig_text, write

VERSION = "v" + metadata.version("kubectl-capc")
HOMEPAGE = "https://kubectl-capc.example/docs"


@dataclass
class ArchiveServer:
    """A static file server on 127.0.0.1 that remembers which paths were fetched."""

    base_url: str
    fetched: list[str]


@pytest.fixture(scope="module")
def archive() -> Path:
    return ensure_plugin_archive()


@pytest.fixture(scope="module")
def archive_server(archive: Path) -> Iterator[ArchiveServer]:
    fetched: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            fetched.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(archive.parent))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ArchiveServer(f"http://127.0.0.1:{server.server_address[1]}", fetched)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def tools_dir(tmp_path_factory: pytest.TempPathFactory, kubectl_binary: Path) -> Path:
    """kubectl and kubectl-krew (so `kubectl krew` works), and validate-krew-manifest."""
    directory = tmp_path_factory.mktemp("krew-tools")
    (directory / "kubectl").symlink_to(kubectl_binary)
    for name, path in ensure_krew().items():
        (directory / name).symlink_to(path)
    return directory


def render(archive: Path, out_dir: Path, base_url: str) -> Path:
    """`scripts/release.py manifest` for the archive, written as out_dir/capc.yaml."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "release.py"), "manifest", str(archive),
         "--homepage", HOMEPAGE, "--base-url", base_url, "--out", str(out_dir / "capc.yaml")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out_dir / "capc.yaml"


def isolated_env(tools: Path, home: Path, **extra: str) -> dict[str, str]:
    krew_root = home / "krew"
    return {
        "PATH": f"{tools}{os.pathsep}{krew_root / 'bin'}",
        "HOME": str(home),
        "KREW_ROOT": str(krew_root),
        "KREW_NO_UPGRADE_CHECK": "1",
        **extra,
    }


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_archive_holds_the_one_dir_tree_and_the_license_as_regular_files(archive: Path) -> None:
    assert archive.name == f"kubectl-capc_{VERSION}_linux_amd64.tar.gz"
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        license_text = tar.extractfile(members["kubectl-capc/LICENSE"]).read()  # type: ignore[union-attr]
    binary = members["kubectl-capc/kubectl-capc"]
    assert binary.isfile() and binary.mode & 0o111
    assert "kubectl-capc/_internal" in members
    assert all(name == "kubectl-capc" or name.startswith("kubectl-capc/") for name in members)
    # krew's extractor handles regular files and directories only.
    assert all(m.isfile() or m.isdir() for m in members.values())
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}
    assert license_text == (REPO / "LICENSE").read_bytes()
    assert b"Apache License" in license_text


def test_validate_krew_manifest_accepts_the_rendered_manifest_and_installs_it_from_its_uri(
    archive: Path, archive_server: ArchiveServer, tools_dir: Path, tmp_path: Path
) -> None:
    manifest = render(archive, tmp_path / "plugins", archive_server.base_url)
    fetched_before = len(archive_server.fetched)
    result = run(
        [str(tools_dir / "validate-krew-manifest"), "-manifest", str(manifest)],
        {"PATH": str(tools_dir), "HOME": str(tmp_path)},
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "structural validation OK" in result.stderr
    assert "all 1 spec.platforms installed fine" in result.stderr
    # The install check downloaded the archive from the manifest's URI.
    assert f"/{archive.name}" in archive_server.fetched[fetched_before:]


def test_validate_krew_manifest_rejects_an_archive_whose_sha256_differs(
    archive: Path, archive_server: ArchiveServer, tools_dir: Path, tmp_path: Path
) -> None:
    manifest = render(archive, tmp_path / "plugins", archive_server.base_url)
    document = yaml.safe_load(manifest.read_text())
    document["spec"]["platforms"][0]["sha256"] = "0" * 64
    manifest.write_text(yaml.safe_dump(document))
    result = run(
        [str(tools_dir / "validate-krew-manifest"), "-manifest", str(manifest)],
        {"PATH": str(tools_dir), "HOME": str(tmp_path)},
        tmp_path,
    )
    assert result.returncode != 0
    assert "checksum does not match" in result.stderr


def test_krew_install_then_kubectl_capc_runs_the_packaged_binary(
    archive: Path, archive_server: ArchiveServer, tools_dir: Path, tmp_path: Path
) -> None:
    manifest = render(archive, tmp_path / "plugins", archive_server.base_url)
    env = isolated_env(tools_dir, tmp_path)
    installed = run(
        ["kubectl", "krew", "install", f"--manifest={manifest}", f"--archive={archive}"], env, tmp_path
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "Installed plugin: capc" in installed.stderr

    store = tmp_path / "krew" / "store" / "capc" / VERSION
    link = tmp_path / "krew" / "bin" / "kubectl-capc"
    assert link.is_symlink() and link.resolve() == (store / "kubectl-capc").resolve()
    assert (store / "LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()
    receipt = yaml.safe_load((tmp_path / "krew" / "receipts" / "capc.yaml").read_text())
    assert receipt["spec"]["version"] == VERSION

    listed = run(["kubectl", "plugin", "list"], env, tmp_path)
    assert str(link) in listed.stdout

    helped = run(["kubectl", "capc", "--help"], env, tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("Usage: kubectl capc ")
    for command in ("image-upgrade", "validate", "describe", "version"):
        assert f"  {command} " in helped.stdout

    versions = run(["kubectl", "capc", "version", "-o", "json"], env, tmp_path)
    assert versions.returncode == 0, versions.stderr
    report = json.loads(versions.stdout)
    assert report["kubectl-capc"] == VERSION.removeprefix("v")
    assert report["kubernetes"] == metadata.version("kubernetes")
    assert report["cs"] == metadata.version("cs")

    table = run(["kubectl", "capc", "version"], env, tmp_path)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["COMPONENT", "VERSION"]


def test_packaged_binary_reaches_for_the_api_server_and_keeps_its_exit_code(
    archive: Path, tools_dir: Path, tmp_path: Path
) -> None:
    """A command that loads the kubernetes client inside the bundle; kubectl passes its exit code on."""
    env = isolated_env(tools_dir, tmp_path)
    installed = run(
        ["kubectl", "krew", "install", f"--manifest={render(archive, tmp_path / 'p', 'http://127.0.0.1:9')}",
         f"--archive={archive}"],
        env, tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    kubeconfig = write(
        tmp_path / "kubeconfig",
        kubeconfig_text(
            current="dead",
            clusters={"dead": {"server": "https://127.0.0.1:9"}},
            users={"admin": {"token": "s3cret-token"}},
            contexts={"dead": {"cluster": "dead", "user": "admin", "namespace": "ns"}},
        ),
    )
    result = run(["kubectl", "capc", "describe", "--kubeconfig", str(kubeconfig)], env, tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and "cannot reach the API server" in result.stderr
    assert "s3cret-token" not in result.stdout + result.stderr


def test_startup_benchmark_reports_the_packaged_binary(archive: Path) -> None:
    packaged = archive.parent / "kubectl-capc" / "kubectl-capc"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "startup"), "--runs", "2", "--packaged", str(packaged)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Whether the targets are met is the benchmark's verdict on this machine (exit 1), not this test's:
    # here it must measure the packaged binary and report on it.
    assert done.returncode in (0, 1), done.stderr
    assert "packaged --help" in done.stdout
