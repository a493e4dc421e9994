"""`image-upgrade --image-source existing` waiting for template copies still downloading: one time budget
(`--timeout images=`) for all zones, counted from the start, and a timeout that names every zone not ready.

Runs `cluster_io.wait_for_copies` against the CloudStack double; a download that never completes is a
stall fault of the double, set through its admin endpoint before the template is added.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from typing import Any

import pytest

from kubectl_capc.cloudstack.client import CloudStackClient
from kubectl_capc.cloudstack.credentials import Credentials
from kubectl_capc.cloudstack.errors import CloudStackError
from kubectl_capc.cloudstack.rows import OwnerScope, Template
from kubectl_capc.domain.errors import ExitCode
from kubectl_capc.domain.plan import EnsureImage, ImageSource, ZoneImage, ZoneState
from kubectl_capc.domain.versions import parse_version
from kubectl_capc.ops.cluster_io import wait_for_copies
from kubectl_capc.ops.image_targets import ZoneTarget
from tests.csdouble.server import CloudStackDouble

pytestmark = pytest.mark.timeout(60)

NAME = "ubuntu-2204-kube-v1.31.4"
KEEP_WAITING = "re-run the same command to keep waiting, or raise --timeout"


class VirtualClock:
    """`time` for the waiting code: sleeping moves the clock on at once, so time is counted exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """The virtual clock in place of `time` where the waits count and sleep."""
    import kubectl_capc.cloudstack.client
    import kubectl_capc.ops.cluster_io

    virtual = VirtualClock()
    for module in (kubectl_capc.cloudstack.client, kubectl_capc.ops.cluster_io):
        monkeypatch.setattr(module, "time", virtual)
    return virtual


def admin(double: CloudStackDouble, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{double.base_url}/admin/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def downloading(double: CloudStackDouble, **faults: dict[str, Any]) -> str:
    """Add NAME, downloading in zone1 and zone2, with a download fault per zone named in `faults`."""
    admin(double, "faults", {"downloads": [{"zone": z, "template": NAME, **f} for z, f in faults.items()]})
    template = {
        "name": NAME,
        "ostype": "Ubuntu 22.04 LTS",
        "owner": {"account": "admin", "domain": "ROOT"},
        "zones": {"zone1": "downloading", "zone2": "downloading"},
    }
    template_id: str = admin(double, "templates", template)["id"]
    return template_id


def targets(double: CloudStackDouble, *, one_client: bool) -> tuple[ZoneTarget, ...]:
    """zone1 and zone2 as two failure domains, with one client (one Secret) or a client each."""

    def client() -> CloudStackClient:
        credentials = Credentials(double.endpoint, double.api_key, double.secret_key)
        return CloudStackClient(credentials, poll_interval=0.1)

    shared = client()
    zones = {zone.name: zone for zone in shared.zones()}
    return tuple(
        ZoneTarget(f"fd-{name}", zones[name], shared if one_client else client(), OwnerScope())
        for name in ("zone1", "zone2")
    )


def step(template_id: str) -> EnsureImage:
    zones = tuple(
        ZoneImage(f"fd-{name}", name, ZoneState.IN_PROGRESS, template_id, "0% Downloaded")
        for name in ("zone1", "zone2")
    )
    return EnsureImage(NAME, parse_version("v1.31.4"), zones, ImageSource.EXISTING)


def timed_out(
    double: CloudStackDouble, template_id: str, *, one_client: bool, timeout: float
) -> tuple[CloudStackError, list[list[str]]]:
    seen: list[list[str]] = []

    def progress(rows: Sequence[Template]) -> None:
        seen.append(sorted(row.zone_name for row in rows))

    with pytest.raises(CloudStackError) as raised:
        wait_for_copies(step(template_id), targets(double, one_client=one_client), timeout, progress)
    return raised.value, seen


@pytest.mark.parametrize("one_client", [True, False], ids=["one-secret", "a-secret-per-zone"])
def test_two_stuck_zones_share_one_budget_and_are_both_named(
    cloudstack: CloudStackDouble, clock: VirtualClock, one_client: bool
) -> None:
    stall = {"mode": "stall", "at_percent": 40}
    template_id = downloading(cloudstack, zone1=stall, zone2=stall)
    start = clock.now

    error, _ = timed_out(cloudstack, template_id, one_client=one_client, timeout=2)

    assert clock.now - start == pytest.approx(2.0)

    message = str(error)
    assert error.exit_code is ExitCode.KUBE_API
    assert f"template {NAME!r} ({template_id})" in message
    assert "zone1: 40% Downloaded" in message and "zone2: 40% Downloaded" in message
    # The time reported is counted from the start of the whole wait: a second zone given a budget of
    # its own would report about 4s.
    assert message.count("is not ready after 2s") == (1 if one_client else 2), message
    assert "after 3s" not in message and "after 4s" not in message, message
    assert message.endswith(f"; {KEEP_WAITING}"), message
    assert message.count(KEEP_WAITING) == 1, message


def test_time_spent_on_the_first_zone_is_not_given_again_to_the_second(
    cloudstack: CloudStackDouble, clock: VirtualClock
) -> None:
    template_id = downloading(cloudstack, zone2={"mode": "stall", "at_percent": 40})
    start = clock.now
    zone1_ready_at: list[float] = []

    def progress(rows: Sequence[Template]) -> None:
        if [(row.zone_name, row.ready) for row in rows] == [("zone1", True)]:
            zone1_ready_at.append(clock.now - start)

    with pytest.raises(CloudStackError) as raised:
        wait_for_copies(step(template_id), targets(cloudstack, one_client=False), 2, progress)

    assert zone1_ready_at and 0 < zone1_ready_at[0] < 2, zone1_ready_at  # zone1 used part of the time
    assert clock.now - start == pytest.approx(2.0)  # and zone2 only what was left
    message = str(raised.value)
    assert "zone1" not in message, message
    assert f"template {NAME!r} ({template_id}) is not ready after 2s (zone2: 40% Downloaded)" in message


def test_a_failed_copy_ends_the_wait_at_once_without_waiting_for_the_other_zones(
    cloudstack: CloudStackDouble,
) -> None:
    template_id = downloading(
        cloudstack,
        zone1={"mode": "error", "at_percent": 20},
        zone2={"mode": "stall", "at_percent": 40},
    )

    error, _ = timed_out(cloudstack, template_id, one_client=False, timeout=45)

    message = str(error)
    assert f"template {NAME!r} ({template_id}) failed in zone zone1" in message, message
    assert "zone2" not in message and "not ready" not in message, message


def test_copies_that_finish_in_time_end_the_wait(cloudstack: CloudStackDouble) -> None:
    template_id = downloading(cloudstack)
    seen: list[list[str]] = []

    def progress(rows: Sequence[Template]) -> None:
        seen.append(sorted(f"{row.zone_name}={row.ready}" for row in rows))

    wait_for_copies(step(template_id), targets(cloudstack, one_client=False), 30, progress)

    assert seen[-2:] == [["zone1=True"], ["zone2=True"]], seen
