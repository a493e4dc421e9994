"""Fault matrix, the image pipeline: SIGKILL at every CloudStack write and in the middle of the download
wait and the upload, for an image registered from a URL and one built and uploaded, then the same
command again (tests/support/fault_matrix.py says what each stop must show)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fault_matrix import (
    build_scenario,
    image_steps,
    reference_run,
    report,
    run_matrix,
    standin_checkout_in,
    url_scenario,
)
from tests.testenv.bed import TestBed

pytestmark = pytest.mark.timeout(600)


def test_sigkill_in_the_image_pipeline(
    testenv_v1beta2: TestBed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout = standin_checkout_in(tmp_path)
    rows = []
    built = build_scenario(checkout, tmp_path / "cache", testenv_v1beta2.upload_ca_file)
    for scenario in (url_scenario(), built):
        reference = reference_run(testenv_v1beta2, scenario)
        stops = [(p, "SIGKILL") for p in image_steps(reference.points)]
        middles = [p for p, _ in stops if p.startswith(("waiting for template", "uploading "))]
        assert middles, reference.points  # a download wait (and an upload) is among the stops
        rows += run_matrix(testenv_v1beta2, scenario, reference, stops)
    report(capsys, "the image pipeline: registration, download wait, upload, copy", rows)
