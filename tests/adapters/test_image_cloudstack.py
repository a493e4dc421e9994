"""The CloudStack adapter against the CloudStack API double: reads, writes, uploads, waits and errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kubectl_capc.cloudstack.client import CloudStackClient
from kubectl_capc.cloudstack.credentials import (
    Credentials,
    credentials_from_config,
    credentials_from_secret_data,
)
from kubectl_capc.cloudstack.errors import CloudStackError
from kubectl_capc.cloudstack.rows import OwnerScope, Template, TemplateSpec
from kubectl_capc.cloudstack.upload import UploadTLS
from kubectl_capc.domain.errors import ConfigError
from tests.csdouble.faults import parse_faults
from tests.csdouble.seed import add_template
from tests.csdouble.server import CloudStackDouble

UBUNTU_2204 = "46f966f7-d8d7-461e-9b51-46642c22c1bc"  # os type in examples/cloudstack-seed.yaml


def client_for(double: CloudStackDouble, **kwargs: Any) -> CloudStackClient:
    credentials = Credentials(
        double.endpoint, double.api_key, double.secret_key, source="Secret default/creds"
    )
    return CloudStackClient(credentials, poll_interval=0.01, job_timeout=10, **kwargs)


def spec(name: str, **kwargs: Any) -> TemplateSpec:
    return TemplateSpec(name, f"{name} display", "KVM", "QCOW2", UBUNTU_2204, **kwargs)


def zone_ids(client: CloudStackClient) -> list[str]:
    return [zone.id for zone in client.zones()]


def calls(double: CloudStackDouble, command: str) -> list[dict[str, str]]:
    with double.state.lock:
        return [call.params for call in double.state.calls if call.command == command]


def set_faults(double: CloudStackDouble, faults: dict[str, Any]) -> None:
    with double.state.lock:
        double.state.faults = parse_faults(faults, double.state.zone_id)


def qcow2(path: Path, size: str = "64M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


# --- credentials ----------------------------------------------------------------------------------


def test_secret_credentials_follow_capc_keys_and_verify_ssl_rule() -> None:
    """Values are used verbatim, as CAPC uses them: a padded key stays padded, "false\\n" is not false."""
    data = {"api-url": "https://cloud.example.com/client/api", "api-key": "KEY-1\n", "secret-key": "SECRET-1"}
    creds = credentials_from_secret_data(data, "Secret ns/c")
    assert (creds.endpoint, creds.api_key, creds.verify_ssl) == (
        "https://cloud.example.com/client/api",
        "KEY-1\n",
        True,
    )
    assert credentials_from_secret_data({**data, "verify-ssl": "False"}, "x").verify_ssl is True
    assert credentials_from_secret_data({**data, "verify-ssl": "false\n"}, "x").verify_ssl is True
    assert credentials_from_secret_data({**data, "verify-ssl": "false"}, "x").verify_ssl is False
    assert "KEY-1" not in repr(creds) and "SECRET-1" not in repr(creds)


def test_secret_credentials_name_missing_keys_and_bad_urls() -> None:
    with pytest.raises(ConfigError, match="Secret ns/c lacks api-key, secret-key"):
        credentials_from_secret_data({"api-url": "https://h/client/api"}, "Secret ns/c")
    with pytest.raises(ConfigError, match=r"'cloud\.example\.com' in Secret ns/c is not an http"):
        credentials_from_secret_data(
            {"api-url": "cloud.example.com", "api-key": "k", "secret-key": "s"}, "Secret ns/c"
        )


def test_config_credentials_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDSTACK_ENDPOINT", "https://cloud.example.com/client/api")
    monkeypatch.setenv("CLOUDSTACK_KEY", "key")
    monkeypatch.setenv("CLOUDSTACK_SECRET", "secret")
    creds = credentials_from_config()
    assert (creds.endpoint, creds.api_key, creds.secret_key) == (
        "https://cloud.example.com/client/api",
        "key",
        "secret",
    )
    assert creds.source == "$CLOUDSTACK_* variables"


def test_config_credentials_from_ini_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("CLOUDSTACK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".cloudstack.ini").write_text(
        "[cloudstack]\nendpoint = http://127.0.0.1:8080/client/api\nkey = k1\nsecret = s1\n"
        "dangerous_no_tls_verify = true\n"
    )
    creds = credentials_from_config()
    assert (creds.endpoint, creds.api_key, creds.secret_key, creds.verify_ssl) == (
        "http://127.0.0.1:8080/client/api",
        "k1",
        "s1",
        False,
    )


def test_missing_config_is_a_config_error_not_an_exit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [n for n in os.environ if n.startswith("CLOUDSTACK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no CloudStack client configuration found") as caught:
        credentials_from_config()
    assert "--cluster" in str(caught.value)


# --- reads ----------------------------------------------------------------------------------------


def test_zones_and_templates(cloudstack: CloudStackDouble) -> None:
    client = client_for(cloudstack)
    assert [z.name for z in client.zones()] == ["zone1", "zone2"]
    assert client.zone("zone2").id == "91ee1720-0680-47e6-a518-486afd2b5856"
    rows = client.templates(name="ubuntu-2204-kube-v1.29.3")
    assert sorted(r.zone_name for r in rows) == ["zone1", "zone2"]
    row = rows[0]
    assert (row.ready, row.status, row.hypervisor, row.format, row.os_type_id) == (
        True,
        "Download Complete",
        "KVM",
        "QCOW2",
        UBUNTU_2204,
    )
    assert row.tag("capc.k8s-version") == "v1.29.3"
    assert row.as_row().zone_name == row.zone_name
    assert client.templates(name="no-such-template") == ()


def test_unknown_zone_names_the_zones_that_exist(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(CloudStackError, match=r"zone 'zone9' does not exist .* \(zones: zone1, zone2\)"):
        client_for(cloudstack).zone("zone9")


def test_templates_follow_every_page(cloudstack: CloudStackDouble) -> None:
    for index in range(260):  # 520 (template, zone) rows: more than one page of 500
        add_template(
            cloudstack.state,
            {"name": f"bulk-{index:03d}", "ostype": UBUNTU_2204, "zones": ["zone1", "zone2"]},
        )
    rows = client_for(cloudstack).templates(template_filter="self")
    assert len([r for r in rows if r.name.startswith("bulk-")]) == 520
    pages = [params.get("page") for params in calls(cloudstack, "listTemplates")]
    assert pages[:2] == ["1", "2"]


def test_owner_scope_resolves_projects_and_account_domains(cloudstack: CloudStackDouble) -> None:
    client = client_for(cloudstack)
    assert client.owner_scope() == OwnerScope()
    assert client.owner_scope(project="capc-clusters").project_id == "a6c6aaac-f9f9-4199-ae6a-3dae12c44dec"
    scope = client.owner_scope(account="dev-team", domain="ROOT/capc")
    assert (scope.account, scope.domain_id) == ("dev-team", "427fe23e-7dd6-4b05-a497-081ace9310a5")
    assert client.owner_scope(account="dev-team", domain="capc") == scope
    with pytest.raises(CloudStackError, match="project 'nope' is not visible"):
        client.owner_scope(project="nope")


# --- writes and waits -----------------------------------------------------------------------------


def test_register_in_two_zones_and_wait_with_progress(cloudstack: CloudStackDouble) -> None:
    client = client_for(cloudstack)
    rows = client.register_template(
        spec("ubuntu-2204-kube-v1.30.2"), "http://img.example.com/a.qcow2", zone_ids(client)
    )
    assert {r.id for r in rows} == {rows[0].id} and len(rows) == 2
    client.tag_template(rows[0].id, {"kubernetes-version": "v1.30.2", "created-by": "kubectl-capc"})
    seen: list[tuple[str, str]] = []
    ready = client.wait_until_ready(
        rows[0].id,
        zone_ids(client),
        timeout=10,
        failed=lambda row: False,
        on_progress=lambda batch: seen.extend((r.zone_name, r.status) for r in batch),
    )
    assert all(r.ready for r in ready) and len(ready) == 2
    assert ("zone1", "40% Downloaded") in seen and ("zone2", "80% Downloaded") in seen
    assert dict(ready[0].tags) == {"kubernetes-version": "v1.30.2", "created-by": "kubectl-capc"}
    (register,) = calls(cloudstack, "registerTemplate")
    assert register["ispublic"] == "false" and register["displaytext"] == "ubuntu-2204-kube-v1.30.2 display"


def test_a_url_with_a_tilde_still_signs_like_cloudstack(cloudstack: CloudStackDouble) -> None:
    client = client_for(cloudstack)
    url = "http://img.example.com/~builder/ubuntu-2204-kube-v1.30.2.qcow2"
    (row, _) = client.register_template(spec("tilde"), url, zone_ids(client))
    (register,) = calls(cloudstack, "registerTemplate")
    assert register["url"] == "http://img.example.com/%7Ebuilder/ubuntu-2204-kube-v1.30.2.qcow2"
    assert row.name == "tilde"


def test_wait_fails_naming_the_zone_whose_download_failed(cloudstack: CloudStackDouble) -> None:
    set_faults(cloudstack, {"downloads": [{"zone": "zone2", "mode": "error", "at_percent": 40}]})
    client = client_for(cloudstack)
    (row, _) = client.register_template(spec("broken"), "http://img.example.com/b.qcow2", zone_ids(client))
    with pytest.raises(CloudStackError) as caught:
        client.wait_until_ready(
            row.id, zone_ids(client), timeout=10, failed=lambda r: r.status.startswith("HTTP")
        )
    assert str(caught.value).startswith(
        f"template 'broken' ({row.id}) failed in zone zone2: HTTP Server returned 404 (expected 200 OK)"
    )


def test_wait_times_out_with_each_zone_status(cloudstack: CloudStackDouble) -> None:
    set_faults(cloudstack, {"downloads": [{"zone": "zone1", "mode": "stall", "at_percent": 60}]})
    client = client_for(cloudstack)
    (row, _) = client.register_template(spec("stuck"), "http://img.example.com/s.qcow2", zone_ids(client))
    with pytest.raises(CloudStackError, match=r"not ready after 0.3s \(zone1: 60% Downloaded\)") as caught:
        client.wait_until_ready(row.id, zone_ids(client), timeout=0.3, failed=lambda r: False)
    assert "re-run the same command to keep waiting" in str(caught.value)


def test_a_timeout_states_the_time_waited_since_the_callers_limit_began(cloudstack: CloudStackDouble) -> None:
    client = client_for(cloudstack)
    (row, _) = client.register_template(spec("late"), "http://img.example.com/l.qcow2", zone_ids(client))
    started = time.monotonic() - 7.2  # the caller's 7 s ran out before this wait: no time left
    with pytest.raises(CloudStackError, match=r"is not ready after 7s \(zone1: 20% Downloaded; zone2: "):
        client.wait_until_ready(row.id, zone_ids(client), timeout=0, failed=lambda r: False, started=started)


def test_upload_streams_the_file_with_its_checksum_then_copy_and_delete(
    cloudstack: CloudStackDouble, tmp_path: Path
) -> None:
    client = client_for(cloudstack)
    zone1, zone2 = zone_ids(client)
    image = qcow2(tmp_path / "ubuntu-2204-kube-v1.30.3-kvm.qcow2")
    with image.open("r+b") as handle:  # some real data after the header
        handle.seek(1 << 20)
        handle.write(os.urandom(3 << 20))
    ticket = client.upload_ticket(spec("uploaded"), zone1)
    assert "metadata" not in repr(ticket) and ticket.metadata not in repr(ticket)
    progress: list[int] = []
    client.upload(
        ticket, image, lambda sent, total: progress.append(sent), tls=UploadTLS(cloudstack.upload_ca_file)
    )
    assert progress[-1] == image.stat().st_size
    record = cloudstack.state.templates[ticket.template_id].upload
    assert record is not None
    assert (record.size, record.sha256) == (
        image.stat().st_size,
        hashlib.sha256(image.read_bytes()).hexdigest(),
    )
    client.wait_until_ready(ticket.template_id, [zone1], timeout=10, failed=lambda r: False)
    client.copy_template(ticket.template_id, zone1, client.zones()[1:], timeout=10)
    assert {r.zone_name: r.ready for r in client.templates(template_id=ticket.template_id)} == {
        "zone1": True,
        "zone2": True,
    }
    client.delete_template(ticket.template_id, zone2)
    assert [r.zone_name for r in client.templates(template_id=ticket.template_id)] == ["zone1"]


def ready_in_zone1(double: CloudStackDouble, name: str) -> str:
    spec = {"name": name, "ostype": UBUNTU_2204, "zones": {"zone1": "ready"}, "url": "http://h/x.qcow2"}
    return add_template(double.state, spec).id


def test_a_copy_takes_time_and_reports_each_poll_of_the_destination(cloudstack: CloudStackDouble) -> None:
    client = client_for(cloudstack)
    template_id = ready_in_zone1(cloudstack, "slow-copy")
    zone1, zone2 = client.zones()
    seen: list[tuple[str, str]] = []
    client.copy_template(
        template_id, zone1.id, [zone2], timeout=10,
        on_progress=lambda rows: seen.extend((r.zone_name, r.status) for r in rows),
    )  # fmt: skip
    assert {r.zone_name: r.ready for r in client.templates(template_id=template_id)} == {
        "zone1": True,
        "zone2": True,
    }
    assert [z for z, _ in seen] == ["zone2"] * len(seen)
    assert any(status.endswith("% Downloaded") for _, status in seen), seen
    assert len(calls(cloudstack, "queryAsyncJobResult")) >= 3


def test_ctrl_c_while_a_copy_is_followed_says_cloudstack_goes_on(cloudstack: CloudStackDouble) -> None:
    from kubectl_capc.domain.interrupts import StoppedAfterWrite

    client = client_for(cloudstack)
    template_id = ready_in_zone1(cloudstack, "followed-copy")
    zone1, zone2 = client.zones()

    def ctrl_c(rows: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(StoppedAfterWrite) as stopped:
        client.copy_template(template_id, zone1.id, [zone2], timeout=10, on_progress=ctrl_c)
    assert stopped.value.done == (
        f"copy template {template_id} to zone zone2 was sent (CloudStack goes on copying; the next run "
        "waits for the copy instead of copying again)"
    )
    assert [r.zone_name for r in client.templates(template_id=template_id)] == ["zone1", "zone2"]
    assert len(calls(cloudstack, "copyTemplate")) == 1


def test_a_stalled_copy_ends_with_the_budget_naming_the_zone_and_its_progress(
    cloudstack: CloudStackDouble,
) -> None:
    set_faults(cloudstack, {"downloads": [{"zone": "zone2", "mode": "stall", "at_percent": 40}]})
    client = client_for(cloudstack)
    template_id = ready_in_zone1(cloudstack, "stalled-copy")
    zone1, zone2 = client.zones()
    started = time.monotonic()
    with pytest.raises(CloudStackError) as caught:
        client.copy_template(template_id, zone1.id, [zone2], timeout=0.5, started=started - 3)
    assert time.monotonic() - started < 5  # the budget, not the client's job timeout (10 s here)
    assert str(caught.value) == (
        f"the copy of template 'stalled-copy' ({template_id}) to zone zone2 is not done after 4s "
        "(zone2: 40% Downloaded); CloudStack keeps copying: re-run the same command to keep waiting, "
        "or raise --timeout"
    )


def test_a_failed_copy_names_the_zone_and_cloudstacks_error(cloudstack: CloudStackDouble) -> None:
    set_faults(
        cloudstack,
        {"downloads": [{"zone": "zone2", "mode": "error", "at_percent": 20, "message": "No space left"}]},
    )
    client = client_for(cloudstack)
    template_id = ready_in_zone1(cloudstack, "failed-copy")
    zone1, zone2 = client.zones()
    with pytest.raises(CloudStackError) as caught:
        client.copy_template(template_id, zone1.id, [zone2], timeout=10)
    assert str(caught.value).startswith(
        f"the copy of template {template_id} to zone zone2 failed: CloudStack error 530: "
        "Failed to copy Template to zone zone2: No space left; "
    )


def test_a_second_upload_for_the_same_ticket_is_refused(cloudstack: CloudStackDouble, tmp_path: Path) -> None:
    client = client_for(cloudstack)
    image = qcow2(tmp_path / "a.qcow2")
    ticket = client.upload_ticket(spec("once"), zone_ids(client)[0])
    tls = UploadTLS(cloudstack.upload_ca_file)
    client.upload(ticket, image, tls=tls)
    with pytest.raises(CloudStackError, match="answered HTTP 400: an upload for this template has already"):
        client.upload(ticket, image, tls=tls)


# --- errors ---------------------------------------------------------------------------------------


def test_wrong_keys_give_a_one_line_error_without_secrets(cloudstack: CloudStackDouble) -> None:
    creds = Credentials(cloudstack.endpoint, "wrong-key", "wrong-secret", source="Secret default/creds")
    with pytest.raises(CloudStackError) as caught:
        CloudStackClient(creds).zones()
    message = str(caught.value)
    assert message.startswith("list zones: CloudStack at http://127.0.0.1:")
    assert "rejected the credentials from Secret default/creds" in message
    assert "check api-key and secret-key in Secret default/creds" in message
    assert "wrong-key" not in message and "wrong-secret" not in message and "\n" not in message


def test_parameter_errors_carry_cloudstacks_text(cloudstack: CloudStackDouble) -> None:
    client = client_for(cloudstack)
    with pytest.raises(
        CloudStackError, match=r"register template 'x' from http://h/x.vhd: CloudStack error 431"
    ):
        client.register_template(spec("x"), "http://h/x.vhd", zone_ids(client))


def test_injected_internal_error_and_failed_job(
    cloudstack: CloudStackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubectl_capc.cloudstack import errors as cloudstack_errors
    from kubectl_capc.domain.backoff import Backoff

    monkeypatch.setattr(cloudstack_errors, "RETRIES", Backoff(attempts=3, base=0.01, cap=0.01))
    client = client_for(cloudstack)
    set_faults(cloudstack, {"errors": [{"command": "listZones", "times": 3}]})
    with pytest.raises(CloudStackError, match=r"list zones: CloudStack error 530.*management server log"):
        client.zones()  # a read is tried 3 times, then the error stays
    set_faults(cloudstack, {"errors": [{"command": "listZones", "times": 2}]})
    assert client.zones()  # the third try succeeds
    with pytest.raises(
        CloudStackError, match=r"copy of template .* to zone zone2 failed: CloudStack error 431.*not ready"
    ):
        (row, _) = client.register_template(spec("nc"), "http://h/nc.qcow2", zone_ids(client))
        client.copy_template(row.id, zone_ids(client)[0], client.zones()[1:], timeout=10)


def test_unreachable_cloudstack_names_the_endpoint_and_secret(tmp_path: Path) -> None:
    creds = Credentials("http://127.0.0.1:9/client/api", "k", "s", source="Secret default/creds")
    with pytest.raises(CloudStackError) as caught:
        CloudStackClient(creds, request_timeout=2).zones()
    message = str(caught.value)
    assert message.startswith("list zones: cannot reach CloudStack at http://127.0.0.1:9/client/api")
    assert "check api-url in Secret default/creds" in message
    assert "apiKey" not in message and "signature" not in message


def test_template_from_api_tolerates_missing_fields() -> None:
    row = Template.from_api({"id": "t", "name": "n", "tags": [{"key": "a", "value": "b"}, "junk"]})
    assert (row.ready, row.status, row.zone_id, row.tags) == (False, "", "", (("a", "b"),))
