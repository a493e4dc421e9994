"""pytest plugin: `cloudstack` (a started CloudStackDouble seeded with the example scene) and
`cloudstack_api` (a `cs` client signed with its keys, polling async jobs quickly)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .seed import load_seed
from .server import CloudStackDouble

EXAMPLE_SEED = Path(__file__).resolve().parents[2] / "examples" / "cloudstack-seed.yaml"


@pytest.fixture
def cloudstack(tmp_path: Path) -> Iterator[CloudStackDouble]:
    """A fresh double per test (starting one takes milliseconds), uploads kept under tmp_path."""
    with CloudStackDouble(load_seed(EXAMPLE_SEED), data_dir=tmp_path / "cloudstack") as double:
        yield double


@pytest.fixture
def cloudstack_api(cloudstack: CloudStackDouble) -> Any:
    """cs.CloudStack for the double; `cs` is imported lazily because it is slow to import."""
    from cs import CloudStack

    return CloudStack(
        cloudstack.endpoint, cloudstack.api_key, cloudstack.secret_key, poll_interval=0.01, job_timeout=10
    )
