"""Fault matrix, Ctrl-C: SIGINT between writes, inside a write and in a wait of the rollout and of the
image pipeline exits 130 with one line that says how to continue, and the same command then converges
(tests/support/fault_matrix.py says what each stop must show). Inside the copy to zone2 and while it is
followed, the copy goes on in CloudStack: the re-run waits for it and never copies twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fault_matrix import (
    SINGLE_HOP,
    build_scenario,
    image_steps,
    reference_run,
    report,
    run_matrix,
    standin_checkout_in,
)
from tests.testenv.bed import TestBed

pytestmark = pytest.mark.timeout(600)


def test_sigint_stops_between_writes_and_says_how_to_resume(
    testenv_v1beta2: TestBed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bed = testenv_v1beta2
    reference = reference_run(bed, SINGLE_HOP)
    one_hop = [
        "writing create CloudStackMachineTemplate/c1-md-0-v1-29-3",
        "writing patch KubeadmControlPlane/c1-control-plane",
        "v1.29.3 waiting WaitRollout KubeadmControlPlane/c1-control-plane",
        "v1.29.3 start Patch MachineDeployment/c1-md-0",
        "v1.29.3 done WaitRollout MachineDeployment/c1-md-1",
    ]
    assert set(one_hop) <= set(reference.points)
    rows = run_matrix(bed, SINGLE_HOP, reference, [(p, "SIGINT") for p in one_hop])
    scenario = build_scenario(standin_checkout_in(tmp_path), tmp_path / "cache", bed.upload_ca_file)
    image_reference = reference_run(bed, scenario)
    # Inside the copy's request and while it is followed, the copy goes on in CloudStack either way.
    kinds = (
        "writing prepare the upload",
        "uploading ",
        "waiting for template",
        "writing copy",
        "copying template",
    )
    in_pipeline = [p for p in image_steps(image_reference.points) if p.startswith(kinds)]
    assert [next(k for k in kinds if p.startswith(k)) for p in in_pipeline] == list(kinds), in_pipeline
    rows += run_matrix(bed, scenario, image_reference, [(p, "SIGINT") for p in in_pipeline])
    report(capsys, "Ctrl-C", rows)
