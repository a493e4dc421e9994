"""`scripts/release.py manifest`: the krew manifest rendered from krew/capc.yaml for a set of archives,
checked by krew's own validator (structure, selectors, overlaps) for all five platforms, and the CI
build matrix kept to exactly the platforms the manifest offers."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.krewtools import REPO, ensure_krew

VERSION = "v1.2.3"
HOMEPAGE = "https://github.com/example/kubectl-capc"
PLATFORMS = [
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
    ("windows", "amd64"),
]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def fake_archive(directory: Path, os_name: str, arch: str, version: str = VERSION) -> Path:
    """A small tar.gz named like a release archive; each one's content, and so its sha256, differs."""
    path = directory / f"kubectl-capc_{version}_{os_name}_{arch}.tar.gz"
    payload = f"kubectl-capc for {os_name}/{arch}\n".encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("kubectl-capc/kubectl-capc")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


def manifest_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "release.py"), "manifest", *map(str, args)],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def all_archives(tmp_path: Path) -> list[Path]:
    return [fake_archive(tmp_path, os_name, arch) for os_name, arch in PLATFORMS]


def test_manifest_for_every_platform_passes_krew_validation(all_archives: list[Path], tmp_path: Path) -> None:
    # Listed in reverse: the manifest keeps the template's order anyway.
    result = manifest_cli(*reversed(all_archives), "--homepage", HOMEPAGE, "--require-all")
    assert result.returncode == 0, result.stderr
    manifest_path = tmp_path / "capc.yaml"
    assert result.stdout.strip() == str(manifest_path)
    manifest = yaml.safe_load(manifest_path.read_text())

    spec = manifest["spec"]
    assert (manifest["kind"], manifest["metadata"]["name"]) == ("Plugin", "capc")
    assert (spec["version"], spec["homepage"]) == (VERSION, HOMEPAGE)
    assert "\n" not in spec["shortDescription"] and spec["description"] and spec["caveats"]
    # krew-index's line-length conventions (validate-krew-manifest used to warn about them).
    assert len(spec["shortDescription"]) <= 70
    assert max(len(line) for line in (spec["description"] + spec["caveats"]).splitlines()) <= 80
    selectors = [
        (p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"]) for p in spec["platforms"]
    ]
    assert selectors == PLATFORMS
    for platform, archive in zip(spec["platforms"], all_archives, strict=True):
        assert platform["uri"] == f"{HOMEPAGE}/releases/download/{VERSION}/{archive.name}"
        assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        assert platform["files"] == [{"from": "kubectl-capc/*", "to": "."}]
    assert [p["bin"] for p in spec["platforms"]] == ["kubectl-capc"] * 4 + ["kubectl-capc.exe"]

    # Structure, semver, lowercase sha256, selectors matching a supported platform, no overlaps.
    # (Installing is exercised with the real archive in test_krew.py.)
    validator = ensure_krew()["validate-krew-manifest"]
    checked = subprocess.run(
        [str(validator), "-manifest", str(manifest_path), "-skip-install"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert "no overlapping spec.platform[].selector" in checked.stderr


def test_krew_validation_catches_an_uppercase_sha256(all_archives: list[Path], tmp_path: Path) -> None:
    """The validator is strict about what the script must produce, so the test above can fail."""
    assert manifest_cli(all_archives[0], "--homepage", HOMEPAGE).returncode == 0
    manifest_path = tmp_path / "capc.yaml"
    manifest = yaml.safe_load(manifest_path.read_text())
    manifest["spec"]["platforms"][0]["sha256"] = manifest["spec"]["platforms"][0]["sha256"].upper()
    manifest_path.write_text(yaml.safe_dump(manifest))
    validator = ensure_krew()["validate-krew-manifest"]
    checked = subprocess.run(
        [str(validator), "-manifest", str(manifest_path), "-skip-install"], capture_output=True, text=True
    )
    assert checked.returncode != 0
    assert "sha256" in checked.stderr


def test_base_url_and_output_path_can_be_given(tmp_path: Path) -> None:
    archive = fake_archive(tmp_path, "linux", "amd64")
    out = tmp_path / "out" / "capc.yaml"
    out.parent.mkdir()
    result = manifest_cli(
        archive, "--homepage", HOMEPAGE, "--base-url", "http://127.0.0.1:8000/x/", "--out", out
    )
    assert result.returncode == 0, result.stderr
    (platform,) = yaml.safe_load(out.read_text())["spec"]["platforms"]
    assert platform["uri"] == f"http://127.0.0.1:8000/x/{archive.name}"
    assert out.read_text().startswith("# Generated by scripts/release.py from krew/capc.yaml for v1.2.3.\n")


@pytest.mark.parametrize(
    ("archives", "flags", "message"),
    [
        (
            [("linux", "amd64", VERSION), ("linux", "arm64", VERSION)],
            ["--require-all"],
            "no archive for darwin/amd64",
        ),
        ([("linux", "amd64", VERSION), ("linux", "386", VERSION)], [], "has no platform for linux/386"),
        ([("linux", "amd64", VERSION), ("linux", "arm64", "v1.2.4")], [], "different versions"),
    ],
)
def test_inconsistent_archives_are_refused(
    tmp_path: Path, archives: list[tuple[str, str, str]], flags: list[str], message: str
) -> None:
    paths = []
    for os_name, arch, version in archives:
        folder = tmp_path / version
        folder.mkdir(exist_ok=True)
        paths.append(fake_archive(folder, os_name, arch, version))
    result = manifest_cli(*paths, "--homepage", HOMEPAGE, *flags)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / VERSION / "capc.yaml").exists()


def test_misnamed_archive_and_wrong_version_are_refused(tmp_path: Path) -> None:
    stray = tmp_path / "plugin.tar.gz"
    stray.write_bytes(b"")
    assert (
        "not named kubectl-capc_<version>_<os>_<arch>.tar.gz"
        in manifest_cli(stray, "--homepage", HOMEPAGE).stderr
    )
    archive = fake_archive(tmp_path, "linux", "amd64")
    result = manifest_cli(archive, "--homepage", HOMEPAGE, "--version", "v9.9.9")
    assert result.returncode == 1
    assert "not all of version v9.9.9" in result.stderr


def test_ci_matrix_builds_exactly_the_manifest_platforms() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    template = yaml.safe_load((REPO / "krew" / "capc.yaml").read_text())
    template_platforms = [
        (p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"])
        for p in template["spec"]["platforms"]
    ]
    build = workflow["jobs"]["build"]
    matrix = [(entry["os"], entry["arch"]) for entry in build["strategy"]["matrix"]["include"]]
    assert sorted(matrix) == sorted(template_platforms) == sorted(PLATFORMS)
    # Each platform on its own native runner: PyInstaller cannot cross-build.
    assert len({entry["runner"] for entry in build["strategy"]["matrix"]["include"]}) == len(matrix)
    steps = " ".join(step.get("run", "") for step in build["steps"])
    assert "scripts/release.py build" in steps
    publish = " ".join(step.get("run", "") for step in workflow["jobs"]["publish"]["steps"])
    assert "scripts/release.py manifest" in publish and "--require-all" in publish
