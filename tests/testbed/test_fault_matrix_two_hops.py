"""Fault matrix, two hops (v1.28 -> v1.30): SIGKILL at every step boundary and in every rollout wait of
both hops, then the same command again (tests/support/fault_matrix.py says what each stop must show)."""

from __future__ import annotations

import pytest

from tests.support.fault_matrix import TWO_HOPS, boundaries_and_waits, reference_run, report, run_matrix
from tests.support.upgrade_support import ensure_cloudstack_template
from tests.testenv.bed import TestBed

pytestmark = pytest.mark.timeout(600)


def test_sigkill_at_every_boundary_and_in_every_wait_of_two_hops(
    testenv_v1beta2: TestBed, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_cloudstack_template(testenv_v1beta2, "ubuntu-2204-kube-v1.30.2")
    reference = reference_run(testenv_v1beta2, TWO_HOPS)
    stops = [(point, "SIGKILL") for point in boundaries_and_waits(reference.points)]
    assert len(stops) == 18 + 6 + 1
    report(capsys, TWO_HOPS.title, run_matrix(testenv_v1beta2, TWO_HOPS, reference, stops))
