"""pytest fixtures for the real test bed, one bed per CAPI profile, started once per session.

- `testenv_v1beta1` / `testenv_v1beta2`: a running bed (see `tests.testenv.bed.TestBed`) with the
  rollout simulator on; `testenv` runs a test once per profile. The Clusters of a namespace labelled
  `workload.OPT_IN_LABEL=true` get a workload control plane each (`tests.testenv.workload`): only the
  tests that ask for one pay for it, and a worker runs one bed per profile, not two.
- `kubectl_binary`: the real kubectl built from the pinned Kubernetes release; also exported as the
  KUBECTL environment variable for the whole session.
- `namespace`: a fresh namespace per test on the bed the test uses.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testenv import bed, gobuild, workload

SIMULATOR_SECONDS_PER_MACHINE = 0.2


@pytest.fixture(scope="session")
def kubectl_binary() -> Path:
    path = gobuild.ensure_binaries()["kubectl"]
    os.environ["KUBECTL"] = str(path)
    return path


def _bed(tmp_path_factory: pytest.TempPathFactory, capi: str) -> Iterator[bed.TestBed]:
    directory = tmp_path_factory.mktemp(f"testenv-{capi}")
    started = bed.up(
        directory,
        capi,
        simulate_rollouts=True,
        workload_clusters=True,
        workload_namespaces=f"{workload.OPT_IN_LABEL}=true",
        seconds_per_machine=SIMULATOR_SECONDS_PER_MACHINE,
        tie_to_caller=True,
    )
    try:
        yield started
    finally:
        bed.down(directory)


@pytest.fixture(scope="session")
def testenv_v1beta1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bed.TestBed]:
    yield from _bed(tmp_path_factory, "v1beta1")


@pytest.fixture(scope="session")
def testenv_v1beta2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bed.TestBed]:
    yield from _bed(tmp_path_factory, "v1beta2")


@pytest.fixture(params=["v1beta1", "v1beta2"])
def testenv(request: pytest.FixtureRequest) -> bed.TestBed:
    return request.getfixturevalue(f"testenv_{request.param}")  # type: ignore[no-any-return]


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the bed this test already uses (`testenv`, else the v1beta2 bed)."""
    from kubernetes import client

    names = request.fixturenames
    fixture = next(
        (f for f in ("testenv", "testenv_v1beta1", "testenv_v1beta2") if f in names), "testenv_v1beta2"
    )
    tb: bed.TestBed = request.getfixturevalue(fixture)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(tb.api_client())
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)
