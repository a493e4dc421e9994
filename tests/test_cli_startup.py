"""Startup stays cheap: help and `version` import none of the heavy libraries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Top-level packages that cost tens to hundreds of milliseconds each; none is needed to print help or
# versions. (typer itself pulls in pydantic to convert option values once a command runs.)
HEAVY = {"kubernetes", "cs", "deepdiff", "rich", "yaml", "urllib3", "requests", "aiohttp", "markdown_it"}


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
        ["-m", "kubectl_capc", "context", "--help"],
        [str(REPO / "bin" / "kubectl-capc"), "--help"],
    ],
    ids=["help", "version", "context-help", "bin-help"],
)
def test_help_and_version_import_nothing_heavy(argv: list[str]) -> None:
    packages = imported_packages(argv, clean_env())
    assert "kubectl_capc" in packages and "typer" in packages  # the measurement itself works
    assert packages & HEAVY == set()


def test_a_user_can_still_ask_for_rich_help() -> None:
    packages = imported_packages(["-m", "kubectl_capc", "--help"], {**clean_env(), "TYPER_USE_RICH": "1"})
    assert "rich" in packages


def test_startup_benchmark_reports_both_medians() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "startup"), "--runs", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "python3 -c pass" in done.stdout
    assert "kubectl-capc --help" in done.stdout
    assert "target 250 ms:" in done.stdout
