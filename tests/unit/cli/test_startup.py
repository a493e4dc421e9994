"""Startup stays cheap: help and `version` import none of the heavy libraries."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

# Top-level packages that cost tens to hundreds of milliseconds each; none is needed to print help or
# versions. (typer's own option converter imports pydantic; the plugin's, in cli/lazy.py, does not.)
HEAVY = {"kubernetes", "cs", "deepdiff", "rich", "yaml", "urllib3", "requests", "aiohttp", "markdown_it"}
HEAVY |= {"pydantic"}


def imported_packages(argv: list[str], env: dict[str, str] | None = None) -> set[str]:
    """Top-level packages a fresh interpreter imports while running the CLI, from -X importtime."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            names.add(module.split(".")[0])
    return names


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "TYPER_USE_RICH"}


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "kubectl_capc", "--help"],
        ["-m", "kubectl_capc", "version"],
        ["-m", "kubectl_capc", "version", "-o", "json"],
        ["-m", "kubectl_capc", "context", "--help"],
        [str(REPO / "bin" / "kubectl-capc"), "--help"],
    ],
    ids=["help", "version", "version-json", "context-help", "bin-help"],
)
def test_help_and_version_import_nothing_heavy(argv: list[str]) -> None:
    packages = imported_packages(argv, clean_env())
    assert "kubectl_capc" in packages and "typer" in packages  # the measurement itself works
    assert packages & HEAVY == set()


def test_a_user_can_still_ask_for_rich_help() -> None:
    packages = imported_packages(["-m", "kubectl_capc", "--help"], {**clean_env(), "TYPER_USE_RICH": "1"})
    assert "rich" in packages


VERDICT = re.compile(
    r"^(?P<entry>kubectl-capc|bin/kubectl-capc) (?P<command>--help|version): (?P<ms>\d+\.\d) ms = "
    r"(?P<ratio>\d+\.\d\d) x python3 -c \"import typer\" \((?P<baseline>\d+\.\d) ms; target 1\.3 x\): "
    r"(?P<verdict>within|TARGET MISSED)$",
    re.MULTILINE,
)


def run_startup_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "startup"), "--runs", "2", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_startup_benchmark_measures_help_and_version_and_exits_1_only_on_a_missed_target(
    tmp_path: Path,
) -> None:
    kubectl = tmp_path / "kubectl"  # the bench compares with whatever --kubectl names
    kubectl.write_text("#!/bin/sh\nexit 0\n")
    kubectl.chmod(0o755)
    done = run_startup_bench("--kubectl", str(kubectl))

    assert done.stdout.startswith("machine: "), done.stdout
    rows = {line.split("  ")[0].rstrip() for line in done.stdout.splitlines() if "(median of 2)" in line}
    assert {"python3 -c pass", 'python3 -c "import typer"', "kubectl version --client",
            "bin/kubectl-capc --help", "bin/kubectl-capc version"} <= rows, done.stdout  # fmt: skip
    verdicts = [match.groupdict() for match in VERDICT.finditer(done.stdout)]
    assert sorted(v["command"] for v in verdicts) == ["--help", "version"], done.stdout
    assert len({v["entry"] for v in verdicts}) == 1
    for v in verdicts:  # the verdict follows the numbers, whatever this machine's load
        ratio = float(v["ms"]) / float(v["baseline"])
        assert abs(ratio - float(v["ratio"])) < 0.01, v
        if abs(ratio - 1.3) > 0.01:  # the printed numbers are rounded
            assert (v["verdict"] == "within") == (ratio <= 1.3), v
    missed = any(v["verdict"] == "TARGET MISSED" for v in verdicts)
    assert done.returncode == (1 if missed else 0), done.stdout + done.stderr


def test_startup_benchmark_refuses_a_kubectl_that_does_not_exist(tmp_path: Path) -> None:
    done = run_startup_bench("--kubectl", str(tmp_path / "missing"))
    assert done.returncode != 0
    assert f"error: no kubectl at {tmp_path / 'missing'}" in done.stderr


def test_version_reads_the_metadata_importlib_metadata_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib import metadata

    from kubectl_capc.cli.version import _installed_version

    first, second = tmp_path / "first", tmp_path / "second"
    header = "Metadata-Version: 2.1\nName: {}\n"
    for directory, name, text in (
        (first, "Demo_Dist-2.0.dist-info/METADATA", header.format("demo-dist") + "Version: 2.0\n"),
        (second, "demo_dist-1.0.dist-info/METADATA", header.format("demo_dist") + "Version: 1.0\n"),
        (second, "old.style.egg-info/PKG-INFO", header.format("old.style") + "Version: 0.3\n"),
        (first, "noversion-1.dist-info/METADATA", header.format("noversion") + "\nVersion: 9\n"),
    ):
        (directory / name).parent.mkdir(parents=True)
        (directory / name).write_text(text)
    monkeypatch.setattr(sys, "path", [str(first), str(second), *sys.path])
    for distribution in ("demo-dist", "DEMO.dist", "old-style", "kubernetes", "typer", "no-such-dist"):
        try:
            expected = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            expected = "not installed"
        assert _installed_version(distribution) == expected, distribution
    assert _installed_version("demo-dist") == "2.0"  # the first on sys.path, as importlib finds it
    assert _installed_version("noversion") == "not installed"  # no Version header
