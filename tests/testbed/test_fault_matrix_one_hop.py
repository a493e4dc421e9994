"""Fault matrix, one hop on both CAPI profiles: SIGKILL at every step boundary and in every rollout
wait, then the same command again (tests/support/fault_matrix.py says what each stop must show)."""

from __future__ import annotations

import pytest

from tests.support.fault_matrix import SINGLE_HOP, boundaries_and_waits, reference_run, report, run_matrix
from tests.support.fault_support import READY_EVERYWHERE, templates_per_zone
from tests.testenv.bed import TestBed

pytestmark = pytest.mark.timeout(600)


def test_sigkill_at_every_boundary_and_in_every_wait_of_one_hop(
    testenv: TestBed, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = reference_run(testenv, SINGLE_HOP)
    stops = [(point, "SIGKILL") for point in boundaries_and_waits(reference.points)]
    assert len(stops) == 9 + 3 + 1  # 3 templates, 3 patches, 3 waits; the waits' middles; the end
    title = f"{SINGLE_HOP.title}, CAPI {testenv.capi}"
    report(capsys, title, run_matrix(testenv, SINGLE_HOP, reference, stops))
    assert templates_per_zone(testenv, "ubuntu-2204-kube-v1.29.3") == READY_EVERYWHERE
