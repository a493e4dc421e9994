"""Running the cloudstack-go template resolver (`tests/csgo`) against a CloudStack double.

The resolver looks a template up exactly as CAPC's ResolveTemplate does and prints one JSON line:
`{"id", "name", "count"}` when it resolves, `{"error", "count"}` (and exit code 1) when it does not.
Credentials reach it the way CAPC users keep them, in the environment.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.csdouble import CloudStackDouble
from tests.csgo.build import CsgoBuildError, ensure_binary

RUN_TIMEOUT_S = 60
NOT_READY_IN_ZONE = {
    "downloading": {"percent": 40},
    "download-error": {"error": "HTTP Server returned 404 (expected 200 OK)"},
    "not-uploaded": "not_uploaded",
}
"""Seed states of a template copy that is listed in its zone but cannot be deployed yet, by test id."""


def built_resolver() -> Path:
    """The built resolver; a missing Go toolchain or a failed build fails the calling test."""
    try:
        return ensure_binary()
    except CsgoBuildError as exc:
        pytest.fail(str(exc), pytrace=False)


def resolver_env(endpoint: str, api_key: str, secret_key: str) -> dict[str, str]:
    return {
        **os.environ,
        "CLOUDSTACK_ENDPOINT": endpoint,
        "CLOUDSTACK_KEY": api_key,
        "CLOUDSTACK_SECRET": secret_key,
    }


@dataclass(frozen=True)
class Outcome:
    """What the resolver printed: its exit code and its one JSON line."""

    exit_code: int
    doc: Mapping[str, Any]

    @property
    def error(self) -> str:
        return str(self.doc["error"])


def resolve(csgo: Path, double: CloudStackDouble, *args: str, secret: str | None = None) -> Outcome:
    """Run the resolver against `double` with its keys (or another `secret`); it must print one JSON line
    and exit 1 exactly when that line is an error."""
    env = resolver_env(double.endpoint, double.api_key, secret or double.secret_key)
    run = subprocess.run(
        [str(csgo), *args], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    lines = run.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line, got stdout={run.stdout!r} stderr={run.stderr!r}"
    doc = json.loads(lines[0])
    assert run.returncode == (1 if "error" in doc else 0), (run.returncode, doc)
    return Outcome(run.returncode, doc)
