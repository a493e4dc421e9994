"""Download progress like CloudStack's simulator, and the double's fault knobs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cs import CloudStack, CloudStackApiException, CloudStackException

from tests.csdouble import CloudStackDouble, load_seed
from tests.csdouble.faults import DEFAULT_DOWNLOAD_ERROR, DownloadFault, LatencyFault, parse_faults
from tests.csdouble.fixtures import EXAMPLE_SEED

UBUNTU_2204 = "46f966f7-d8d7-461e-9b51-46642c22c1bc"


def register_in_both_zones(api: Any, double: CloudStackDouble, name: str = "ubuntu-2404-kube-v1.30.1") -> str:
    rows = api.registerTemplate(
        name=name,
        displaytext=name,
        format="QCOW2",
        hypervisor="KVM",
        ostypeid=UBUNTU_2204,
        url=f"http://images.example.com/{name}.qcow2",
        zoneids=[double.state.zone_id("zone1"), double.state.zone_id("zone2")],
    )["template"]
    return str(rows[0]["id"])


def statuses(api: Any, template_id: str) -> dict[str, tuple[str, bool]]:
    rows = api.listTemplates(templatefilter="self", id=template_id)["template"]
    return {r["zonename"]: (r["status"], r["isready"]) for r in rows}


def test_progress_steps_with_each_list_poll(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    template_id = register_in_both_zones(cloudstack_api, cloudstack)
    seen = [statuses(cloudstack_api, template_id)["zone1"] for _ in range(6)]
    assert seen == [
        ("20% Downloaded", False),
        ("40% Downloaded", False),
        ("60% Downloaded", False),
        ("80% Downloaded", False),
        ("Download Complete", True),
        ("Download Complete", True),
    ]


def test_progress_with_time(tmp_path: Path) -> None:
    with CloudStackDouble(
        load_seed(EXAMPLE_SEED), poll_steps=1000, download_seconds=0.2, data_dir=tmp_path
    ) as d:
        api = CloudStack(d.endpoint, d.api_key, d.secret_key)
        template_id = register_in_both_zones(api, d)
        assert statuses(api, template_id)["zone1"][1] is False
        time.sleep(0.25)
        assert statuses(api, template_id) == {
            "zone1": ("Download Complete", True),
            "zone2": ("Download Complete", True),
        }


def test_zero_poll_steps_makes_registration_ready_at_once(tmp_path: Path) -> None:
    with CloudStackDouble(load_seed(EXAMPLE_SEED), poll_steps=0, data_dir=tmp_path) as d:
        api = CloudStack(d.endpoint, d.api_key, d.secret_key)
        template_id = register_in_both_zones(api, d)
        assert d.state.template_status(template_id) == {
            "zone1": "Download Complete",
            "zone2": "Download Complete",
        }


def test_stalled_download_in_one_zone(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    zone2 = cloudstack.state.zone_id("zone2")
    cloudstack.state.faults.downloads.append(DownloadFault(zone_id=zone2, mode="stall", at_percent=40))
    template_id = register_in_both_zones(cloudstack_api, cloudstack)
    for _ in range(8):
        current = statuses(cloudstack_api, template_id)
    assert current == {"zone1": ("Download Complete", True), "zone2": ("40% Downloaded", False)}
    cloudstack.state.faults.downloads.clear()
    assert statuses(cloudstack_api, template_id)["zone2"] == ("60% Downloaded", False)


def test_failed_download_in_one_zone(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    zone2 = cloudstack.state.zone_id("zone2")
    cloudstack.state.faults.downloads.append(DownloadFault(zone_id=zone2, mode="error", at_percent=60))
    template_id = register_in_both_zones(cloudstack_api, cloudstack)
    history = [statuses(cloudstack_api, template_id)["zone2"] for _ in range(6)]
    assert history[:2] == [("20% Downloaded", False), ("40% Downloaded", False)]
    assert history[2:] == [(DEFAULT_DOWNLOAD_ERROR, False)] * 4
    assert statuses(cloudstack_api, template_id)["zone1"] == ("Download Complete", True)
    executable = cloudstack_api.listTemplates(templatefilter="executable", id=template_id)["template"]
    assert {r["zonename"]: r["isready"] for r in executable} == {"zone1": True, "zone2": False}


def test_download_fault_for_one_template_only(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    cloudstack.state.faults = parse_faults(
        {"downloads": [{"zone": "zone1", "template": "broken", "message": "Failed post download script"}]},
        cloudstack.state.zone_id,
    )
    broken = register_in_both_zones(cloudstack_api, cloudstack, name="broken")
    fine = register_in_both_zones(cloudstack_api, cloudstack, name="fine")
    assert statuses(cloudstack_api, broken)["zone1"] == ("Failed post download script", False)
    assert statuses(cloudstack_api, fine)["zone1"][0].endswith("% Downloaded")


def test_faults_from_the_seed(tmp_path: Path) -> None:
    seed = load_seed(EXAMPLE_SEED)
    seed["faults"] = {
        "errors": [{"command": "listZones", "times": 1, "errorcode": 530}],
        "latency": [{"seconds": 0.2, "commands": ["listNetworks"]}],
    }
    with CloudStackDouble(seed, data_dir=tmp_path) as d:
        api = CloudStack(d.endpoint, d.api_key, d.secret_key)
        with pytest.raises(CloudStackApiException):
            api.listZones()
        assert api.listZones()["count"] == 2
        started = time.monotonic()
        api.listNetworks()
        assert time.monotonic() - started >= 0.2
        d.reset()  # back to the seed, one-shot fault included
        with pytest.raises(CloudStackApiException):
            api.listZones()
        assert api.listZones()["count"] == 2


def test_latency_applies_to_the_chosen_commands(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    cloudstack.state.faults.latency.append(LatencyFault(seconds=0.3, commands=["listTemplates"]))
    started = time.monotonic()
    cloudstack_api.listZones()
    assert time.monotonic() - started < 0.3
    started = time.monotonic()
    cloudstack_api.listTemplates(templatefilter="featured")
    assert time.monotonic() - started >= 0.3


def test_latency_makes_client_timeouts_observable(cloudstack: CloudStackDouble) -> None:
    cloudstack.state.faults.latency.append(LatencyFault(seconds=1.5))
    api = CloudStack(cloudstack.endpoint, cloudstack.api_key, cloudstack.secret_key, timeout=1)
    with pytest.raises(Exception, match="timed out"):
        api.listZones()


def test_copy_into_a_failing_zone_fails_the_job(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    template_id = cloudstack.state.templates_named("ubuntu-2204-kube-v1.29.3")[0].id
    cloudstack.state.templates[template_id].zones.pop(cloudstack.state.zone_id("zone2"))
    cloudstack.state.faults = parse_faults({"downloads": [{"zone": "zone2"}]}, cloudstack.state.zone_id)
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.copyTemplate(
            id=template_id, destzoneid=cloudstack.state.zone_id("zone2"), fetch_result=True
        )
    assert caught.value.error["errorcode"] == 530
    assert DEFAULT_DOWNLOAD_ERROR in caught.value.error["errortext"]


def test_copy_into_a_stalled_zone_never_finishes(cloudstack: CloudStackDouble) -> None:
    template_id = cloudstack.state.templates_named("ubuntu-2204-kube-v1.29.3")[0].id
    cloudstack.state.templates[template_id].zones.pop(cloudstack.state.zone_id("zone2"))
    cloudstack.state.faults = parse_faults(
        {"downloads": [{"zone": "zone2", "mode": "stall"}]}, cloudstack.state.zone_id
    )
    api = CloudStack(
        cloudstack.endpoint, cloudstack.api_key, cloudstack.secret_key, poll_interval=0.05, job_timeout=1
    )
    with pytest.raises(CloudStackException, match="Timeout waiting for async job result"):
        api.copyTemplate(id=template_id, destzoneid=cloudstack.state.zone_id("zone2"), fetch_result=True)


def test_unknown_fault_kinds_and_zones_are_refused(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(ValueError, match="unknown fault kinds"):
        parse_faults({"disk_full": True}, cloudstack.state.zone_id)
    with pytest.raises(ValueError, match="unknown zone"):
        parse_faults({"downloads": [{"zone": "zone9"}]}, cloudstack.state.zone_id)
