"""Registering a node image in every zone, against the CloudStack API double: URL, prebuilt and file
sources, reuse and waits on re-runs, failed and duplicate templates, and runs interrupted mid-way."""

from __future__ import annotations

import bz2
import functools
import hashlib
import http.server
import os
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubectl_capc.cloudstack.client import CloudStackClient
from kubectl_capc.cloudstack.credentials import Credentials
from kubectl_capc.cloudstack.errors import CloudStackError, CloudStackUnreachable
from kubectl_capc.cloudstack.rows import OwnerScope, Template
from kubectl_capc.cloudstack.upload import UploadTLS
from kubectl_capc.domain.errors import UsageError
from kubectl_capc.domain.images import Hypervisor
from kubectl_capc.domain.versions import KubeVersion
from kubectl_capc.ops.image_register import (
    UPLOADER_TAG,
    ImageSource,
    ZoneOutcome,
    complete_tags,
    find_prebuilt,
    missing_tags,
    register_image,
    template_spec_for,
    template_tags,
)
from kubectl_capc.ops.image_targets import ZoneTarget
from tests.csdouble.faults import parse_faults
from tests.csdouble.seed import add_template
from tests.csdouble.server import CloudStackDouble
from tests.csdouble.tls import make_certificates

UBUNTU_2204 = "46f966f7-d8d7-461e-9b51-46642c22c1bc"
V1_30_2 = KubeVersion(1, 30, 2)
NAME = "ubuntu-2204-kube-v1.30.2"


class Recorder:
    """A reporter that remembers everything and can stop the run at a chosen moment, like Ctrl-C."""

    def __init__(self, interrupt_on_zones: int | None = None) -> None:
        self.steps: list[str] = []
        self.statuses: list[tuple[str, str]] = []
        self.uploads: list[tuple[int, int]] = []
        self.interrupt_on_zones = interrupt_on_zones
        self._zone_calls = 0

    def step(self, message: str) -> None:
        self.steps.append(message)

    def zones(self, rows: Sequence[Template]) -> None:
        self.statuses.extend((row.zone_name, "ready" if row.ready else row.status) for row in rows)
        self._zone_calls += 1
        if self.interrupt_on_zones is not None and self._zone_calls >= self.interrupt_on_zones:
            raise KeyboardInterrupt

    def upload(self, sent: int, total: int) -> None:
        self.uploads.append((sent, total))


def targets_for(double: CloudStackDouble) -> tuple[ZoneTarget, ...]:
    creds = Credentials(double.endpoint, double.api_key, double.secret_key, source="Secret default/creds")
    client = CloudStackClient(creds, poll_interval=0.01, job_timeout=10)
    return tuple(ZoneTarget(f"fd-{z.name}", z, client, OwnerScope()) for z in client.zones())


def current(double: CloudStackDouble) -> Template:
    (row, *_) = targets_for(double)[0].client.templates(name="ubuntu-2204-kube-v1.28.5")
    return row


def run(
    double: CloudStackDouble, source: ImageSource, reporter: Recorder | None = None, **kwargs: Any
) -> tuple[ZoneOutcome, ...]:
    spec = template_spec_for(current(double), V1_30_2, source)
    options: dict[str, Any] = {
        "replace_failed": False,
        "timeout": 20.0,
        "upload_tls": UploadTLS(double.upload_ca_file),
        **kwargs,
    }
    return register_image(
        targets_for(double),
        spec,
        source,
        tags=template_tags(spec, V1_30_2),
        reporter=reporter or Recorder(),
        **options,
    )


def calls(double: CloudStackDouble, command: str) -> list[dict[str, str]]:
    with double.state.lock:
        return [call.params for call in double.state.calls if call.command == command]


def copies_per_zone(double: CloudStackDouble, name: str = NAME) -> dict[str, list[tuple[str, str]]]:
    """zone name -> [(template id, status)] for every live template of that name (as the admin sees it)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for template in double.state.templates_named(name):
        for zone_id in template.zones:
            status = double.state.template_status(template.id)[double.state.zones[zone_id].name]
            found.setdefault(double.state.zones[zone_id].name, []).append((template.id, status))
    return found


def url_source() -> ImageSource:
    return ImageSource(url=f"http://images.example.com/kvm/{NAME}-kvm.qcow2.bz2")


def qcow2(path: Path) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "32M"], check=True)
    return path


def seed_template(double: CloudStackDouble, zones: dict[str, Any], name: str = NAME) -> str:
    return add_template(
        double.state, {"name": name, "ostype": UBUNTU_2204, "zones": zones, "url": "http://h/x.qcow2"}
    ).id


# --- the template to register ----------------------------------------------------------------------


def test_spec_copies_os_type_and_hypervisor_and_follows_the_name(cloudstack: CloudStackDouble) -> None:
    spec = template_spec_for(current(cloudstack), V1_30_2, url_source())
    assert (spec.name, spec.hypervisor, spec.format, spec.os_type_id, spec.public) == (
        NAME,
        "KVM",
        "QCOW2",
        UBUNTU_2204,
        False,
    )
    assert spec.display_text == "Ubuntu 22.04 Kubernetes v1.30.2 (KVM)"
    assert template_tags(spec, V1_30_2) == {
        "kubernetes-version": "v1.30.2",
        "created-by": "kubectl-capc",
        "os": "ubuntu-2204",
    }


def test_spec_needs_a_name_when_the_current_one_is_custom(cloudstack: CloudStackDouble) -> None:
    custom = replace(current(cloudstack), name="golden-image")
    with pytest.raises(UsageError, match="choose the new template's name with --name"):
        template_spec_for(custom, V1_30_2, url_source())
    assert template_spec_for(custom, V1_30_2, url_source(), name="golden-image-2").name == "golden-image-2"


def test_spec_refuses_an_image_format_the_hypervisor_cannot_use(cloudstack: CloudStackDouble) -> None:
    vmware = replace(current(cloudstack), hypervisor="VMware")
    with pytest.raises(UsageError, match="is a QCOW2 image but the zones run VMware"):
        template_spec_for(vmware, V1_30_2, url_source())


# --- by URL ---------------------------------------------------------------------------------------


def test_register_by_url_in_two_zones_then_a_rerun_reuses_it(cloudstack: CloudStackDouble) -> None:
    reporter = Recorder()
    outcomes = run(cloudstack, url_source(), reporter)
    assert [(o.zone, o.action) for o in outcomes] == [("zone1", "registered"), ("zone2", "registered")]
    assert ("zone1", "20% Downloaded") in reporter.statuses and ("zone2", "ready") in reporter.statuses
    (register,) = calls(cloudstack, "registerTemplate")
    assert register["zoneids"] == ",".join(o.zone_id for o in outcomes)
    assert register["url"] == url_source().url
    (template_id,) = {o.template_id for o in outcomes}
    tags = {t.key: t.value for t in cloudstack.state.tags if t.resource_id == template_id}
    assert tags["kubernetes-version"] == "v1.30.2"

    again = run(cloudstack, url_source())
    assert [(o.action, o.template_id) for o in again] == [("reused", template_id)] * 2
    assert len(calls(cloudstack, "registerTemplate")) == 1


def test_a_download_in_progress_is_waited_for_not_registered_again(cloudstack: CloudStackDouble) -> None:
    template_id = seed_template(cloudstack, {"zone1": {"percent": 40}, "zone2": "ready"})
    outcomes = run(cloudstack, url_source())
    assert [(o.action, o.template_id) for o in outcomes] == [("waited", template_id), ("reused", template_id)]
    assert calls(cloudstack, "registerTemplate") == []


def test_a_failed_template_blocks_until_replace_deletes_it(cloudstack: CloudStackDouble) -> None:
    template_id = seed_template(
        cloudstack, {"zone1": "ready", "zone2": {"error": "HTTP Server returned 404"}}
    )
    with pytest.raises(CloudStackError) as caught:
        run(cloudstack, url_source())
    assert f"({template_id}) failed in zone zone2: HTTP Server returned 404" in str(caught.value)
    assert str(caught.value).endswith("; nothing was changed")
    assert calls(cloudstack, "registerTemplate") == [] and calls(cloudstack, "deleteTemplate") == []

    outcomes = run(cloudstack, url_source(), replace_failed=True)
    assert [(o.zone, o.action) for o in outcomes] == [("zone1", "reused"), ("zone2", "replaced")]
    (delete,) = calls(cloudstack, "deleteTemplate")
    assert (delete["id"], delete["zoneid"]) == (template_id, outcomes[1].zone_id)
    per_zone = copies_per_zone(cloudstack)
    assert {zone: len(rows) for zone, rows in per_zone.items()} == {"zone1": 1, "zone2": 1}
    assert per_zone["zone2"][0][1] == "Download Complete"


def test_two_templates_of_the_name_in_a_zone_block_the_run(cloudstack: CloudStackDouble) -> None:
    seed_template(cloudstack, {"zone1": "ready"})
    seed_template(cloudstack, {"zone1": "ready", "zone2": "ready"})
    with pytest.raises(CloudStackError, match=f"2 templates named '{NAME}' exist in zone zone1"):
        run(cloudstack, url_source())
    assert calls(cloudstack, "registerTemplate") == []


def test_a_download_error_names_the_zone(cloudstack: CloudStackDouble) -> None:
    with cloudstack.state.lock:
        cloudstack.state.faults = parse_faults(
            {
                "downloads": [
                    {"zone": "zone2", "at_percent": 60, "message": "Failed to fetch: connection reset"}
                ]
            },
            cloudstack.state.zone_id,
        )
    with pytest.raises(CloudStackError, match="failed in zone zone2: Failed to fetch: connection reset"):
        run(cloudstack, url_source())


def test_interrupted_while_waiting_then_rerun_waits_for_the_same_template(
    cloudstack: CloudStackDouble,
) -> None:
    cloudstack.state.settings.download.poll_steps = 20  # still downloading when the re-run looks
    with pytest.raises(KeyboardInterrupt):
        run(cloudstack, url_source(), Recorder(interrupt_on_zones=2))
    (first,) = {tid for rows in copies_per_zone(cloudstack).values() for tid, _ in rows}
    outcomes = run(cloudstack, url_source())
    assert [(o.action, o.template_id) for o in outcomes] == [("waited", first)] * 2
    assert len(calls(cloudstack, "registerTemplate")) == 1


def test_a_disabled_zone_is_refused_before_anything_is_written(cloudstack: CloudStackDouble) -> None:
    targets = targets_for(cloudstack)
    disabled = (targets[0], replace(targets[1], zone=replace(targets[1].zone, allocation_state="Disabled")))
    spec = template_spec_for(current(cloudstack), V1_30_2, url_source())
    with pytest.raises(CloudStackError, match=r"zone\(s\) zone2 are disabled"):
        register_image(
            disabled, spec, url_source(), tags={}, replace_failed=False, timeout=5, reporter=Recorder()
        )
    assert calls(cloudstack, "registerTemplate") == []


# --- prebuilt -------------------------------------------------------------------------------------


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on loopback, standing in for the prebuilt image site."""
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/images", root
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def test_prebuilt_image_that_is_not_published_is_reported_before_registering(
    cloudstack: CloudStackDouble, image_server: tuple[str, Path]
) -> None:
    base, _ = image_server
    with pytest.raises(UsageError) as caught:
        find_prebuilt(base, "ubuntu-2204-kube-v1.28.5", KubeVersion(1, 33, 1), Hypervisor.KVM)
    assert str(caught.value).startswith(
        f"no prebuilt image at {base}/kvm/ubuntu-2204-kube-v1.33.1-kvm.qcow2.bz2 (HTTP 404)"
    )
    assert "kubectl capc image build" in str(caught.value)
    assert calls(cloudstack, "registerTemplate") == []


def test_prebuilt_image_is_registered_with_its_published_md5(
    cloudstack: CloudStackDouble, image_server: tuple[str, Path]
) -> None:
    base, root = image_server
    (root / "images" / "kvm").mkdir(parents=True)
    image = root / "images" / "kvm" / f"{NAME}-kvm.qcow2.bz2"
    image.write_bytes(b"BZh9 not really an image")
    digest = hashlib.md5(image.read_bytes()).hexdigest()
    Path(f"{image}.md5").write_text(f"{digest}  {image.name}\n")
    cloudstack.state.allow_loopback_urls = True
    source = find_prebuilt(base, "ubuntu-2204-kube-v1.28.5", V1_30_2, Hypervisor.KVM)
    assert (source.url, source.checksum) == (f"{base}/kvm/{image.name}", digest)
    outcomes = run(cloudstack, source)
    assert {o.action for o in outcomes} == {"registered"}
    (register,) = calls(cloudstack, "registerTemplate")
    assert register["checksum"] == digest


# --- from a file ----------------------------------------------------------------------------------


def test_file_is_uploaded_once_and_copied_to_the_other_zone(
    cloudstack: CloudStackDouble, tmp_path: Path
) -> None:
    image = qcow2(tmp_path / f"{NAME}-kvm.qcow2")
    reporter = Recorder()
    outcomes = run(cloudstack, ImageSource(path=image), reporter)
    assert [(o.zone, o.action) for o in outcomes] == [("zone1", "uploaded"), ("zone2", "copied")]
    assert len(calls(cloudstack, "getUploadParamsForTemplate")) == 1
    (copy,) = calls(cloudstack, "copyTemplate")
    assert copy["destzoneids"] == outcomes[1].zone_id
    assert reporter.uploads[-1] == (image.stat().st_size, image.stat().st_size)
    record = cloudstack.state.templates[outcomes[0].template_id].upload
    assert record is not None and record.sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
    assert any(step.startswith(f"copying {NAME} from zone zone1 to zone2") for step in reporter.steps)


def test_the_upload_is_named_for_its_format_whatever_the_local_file_is_called(
    cloudstack: CloudStackDouble, tmp_path: Path
) -> None:
    """The SSVM refuses a qcow2 sent as `.img`: the file goes as `<template name>.qcow2`."""
    image = qcow2(tmp_path / "node-image.img")
    outcomes = run(cloudstack, ImageSource(path=image))
    assert [o.action for o in outcomes] == ["uploaded", "copied"]
    record = cloudstack.state.templates[outcomes[0].template_id].upload
    assert record is not None and record.filename == f"{NAME}.qcow2"


def test_a_compressed_file_keeps_its_compression_suffix(cloudstack: CloudStackDouble, tmp_path: Path) -> None:
    plain = qcow2(tmp_path / "disk.qcow2")
    packed = tmp_path / "disk.qcow2.bz2"
    packed.write_bytes(bz2.compress(plain.read_bytes()))
    outcomes = run(cloudstack, ImageSource(path=packed))
    record = cloudstack.state.templates[outcomes[0].template_id].upload
    assert record is not None and record.filename == f"{NAME}.qcow2.bz2"


def test_an_unverifiable_upload_certificate_fails_at_once_naming_the_flags(
    cloudstack: CloudStackDouble, tmp_path: Path
) -> None:
    image = qcow2(tmp_path / f"{NAME}-kvm.qcow2")
    started = time.monotonic()
    with pytest.raises(CloudStackUnreachable) as caught:
        run(cloudstack, ImageSource(path=image), upload_tls=UploadTLS())
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "certificate of the secondary-storage VM at https://127.0.0.1:" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message and "\n" not in message
    assert "--upload-ca-file FILE" in (caught.value.hint or "")
    assert "--upload-insecure" in (caught.value.hint or "")
    assert "signature" not in message.lower()
    assert len(calls(cloudstack, "getUploadParamsForTemplate")) == 1
    (template,) = cloudstack.state.templates_named(NAME)
    assert template.upload is None and not cloudstack.state.tickets[template.id].used
    # A CA file that did not sign the certificate is refused too, and named.
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(make_certificates().ca_pem)
    with pytest.raises(CloudStackUnreachable, match=f"not signed by the CA in {other_ca}"):
        cloudstack.reset()
        run(cloudstack, ImageSource(path=image), upload_tls=UploadTLS(other_ca))


def test_upload_insecure_uploads_without_checking_and_warns(
    cloudstack: CloudStackDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = qcow2(tmp_path / f"{NAME}-kvm.qcow2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # urllib3's per-request warning is not repeated
        outcomes = run(cloudstack, ImageSource(path=image), upload_tls=UploadTLS(insecure=True))
    assert [o.action for o in outcomes] == ["uploaded", "copied"]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    host = cloudstack.upload_base_url.removeprefix("https://")
    assert warned == [
        f"--upload-insecure: the certificate of the secondary-storage VM at {host} is not checked"
    ]


def test_interrupted_after_the_upload_then_rerun_copies_without_uploading_again(
    cloudstack: CloudStackDouble, tmp_path: Path
) -> None:
    image = qcow2(tmp_path / f"{NAME}-kvm.qcow2")
    with pytest.raises(KeyboardInterrupt):
        run(cloudstack, ImageSource(path=image), Recorder(interrupt_on_zones=1))
    assert set(copies_per_zone(cloudstack)) == {"zone1"}
    outcomes = run(cloudstack, ImageSource(path=image))
    assert [o.action for o in outcomes] == ["waited", "copied"]
    assert len(calls(cloudstack, "getUploadParamsForTemplate")) == 1
    assert len(calls(cloudstack, "copyTemplate")) == 1
    per_zone = copies_per_zone(cloudstack)
    assert {zone: [status for _, status in rows] for zone, rows in per_zone.items()} == {
        "zone1": ["Download Complete"],
        "zone2": ["Download Complete"],
    }


def test_an_upload_that_never_arrived_is_replaced(cloudstack: CloudStackDouble, tmp_path: Path) -> None:
    stale = seed_template(cloudstack, {"zone1": "not_uploaded"})
    image = qcow2(tmp_path / f"{NAME}-kvm.qcow2")
    outcomes = run(cloudstack, ImageSource(path=image))
    assert [o.action for o in outcomes] == ["replaced", "copied"]
    assert stale not in {o.template_id for o in outcomes}
    assert {zone: len(rows) for zone, rows in copies_per_zone(cloudstack).items()} == {"zone1": 1, "zone2": 1}


def seed_upload(double: CloudStackDouble, uploader: str) -> str:
    """A template whose upload ticket was taken by `uploader` (HOST/PID) and whose file has not arrived."""
    return add_template(
        double.state,
        {"name": NAME, "ostype": UBUNTU_2204, "zones": {"zone1": "not_uploaded"}, "url": "http://h/x.qcow2",
         "tags": {**ALL_TAGS, UPLOADER_TAG: uploader}},
    ).id  # fmt: skip


@pytest.mark.parametrize(
    "uploader",
    [f"{socket.gethostname()}/{os.getpid()}", "another-host.example/4242"],
    ids=["alive-here", "other-host"],
)
def test_an_upload_another_process_may_still_send_is_waited_for_not_replaced(
    cloudstack: CloudStackDouble, tmp_path: Path, uploader: str
) -> None:
    """Between its upload ticket and the file's arrival a template shows "NotUploaded": replacing it
    would pull the ticket from under a run still sending the file, so it is waited for."""
    stale = seed_upload(cloudstack, uploader)
    image = qcow2(tmp_path / f"{NAME}-kvm.qcow2")
    with pytest.raises(CloudStackError) as caught:
        run(cloudstack, ImageSource(path=image), timeout=0.5)
    assert f"({stale}) is not ready after" in str(caught.value)
    assert "zone1: NotUploaded" in str(caught.value)
    assert "--replace" in (caught.value.hint or "")
    assert calls(cloudstack, "deleteTemplate") == []
    assert calls(cloudstack, "getUploadParamsForTemplate") == []

    outcomes = run(cloudstack, ImageSource(path=image), replace_failed=True)
    assert [o.action for o in outcomes] == ["replaced", "copied"]
    assert stale not in {o.template_id for o in outcomes}


def test_an_upload_whose_process_is_gone_is_replaced(cloudstack: CloudStackDouble, tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now names no process (reused only after the kernel wraps around)
    stale = seed_upload(cloudstack, f"{socket.gethostname()}/{gone.pid}")
    outcomes = run(cloudstack, ImageSource(path=qcow2(tmp_path / f"{NAME}-kvm.qcow2")))
    assert [o.action for o in outcomes] == ["replaced", "copied"]
    assert stale not in {o.template_id for o in outcomes}


# --- a run stopped between creating the template and tagging it -------------------------------------

DISPLAY = "Ubuntu 22.04 Kubernetes v1.30.2 (KVM)"
ALL_TAGS = {"kubernetes-version": "v1.30.2", "created-by": "kubectl-capc", "os": "ubuntu-2204"}


def fail_next(double: CloudStackDouble, command: str) -> None:
    with double.state.lock:
        double.state.faults = parse_faults(
            {"errors": [{"command": command, "times": 1}]}, double.state.zone_id
        )


def tags_of(double: CloudStackDouble, template_id: str) -> dict[str, str]:
    with double.state.lock:
        return {t.key: t.value for t in double.state.tags if t.resource_id == template_id}


def test_tags_left_off_by_a_stopped_run_are_added_by_the_rerun(cloudstack: CloudStackDouble) -> None:
    fail_next(cloudstack, "createTags")
    with pytest.raises(CloudStackError, match=r"^tag template .*CloudStack error 530"):
        run(cloudstack, url_source())
    (template,) = cloudstack.state.templates_named(NAME)
    assert tags_of(cloudstack, template.id) == {}

    outcomes = run(cloudstack, url_source())
    assert {o.template_id for o in outcomes} == {template.id}
    assert tags_of(cloudstack, template.id) == ALL_TAGS  # what an uninterrupted run leaves
    assert len(calls(cloudstack, "registerTemplate")) == 1
    again = run(cloudstack, url_source())
    assert [o.action for o in again] == ["reused", "reused"]
    assert len(calls(cloudstack, "createTags")) == 2  # the failed one, the one that completed them


def test_only_the_missing_tags_are_added(cloudstack: CloudStackDouble) -> None:
    # CloudStack refuses a second tag with the same key: sending all of them again would fail.
    template_id = add_template(
        cloudstack.state,
        {"name": NAME, "displaytext": DISPLAY, "ostype": UBUNTU_2204, "zones": ["zone1", "zone2"],
         "tags": {"created-by": "kubectl-capc", "owner": "platform-team"}},
    ).id  # fmt: skip
    outcomes = run(cloudstack, url_source())
    assert [o.action for o in outcomes] == ["reused", "reused"]
    assert tags_of(cloudstack, template_id) == {**ALL_TAGS, "owner": "platform-team"}
    (tagging,) = calls(cloudstack, "createTags")
    assert "created-by" not in tagging.values()


@pytest.mark.parametrize(
    ("displaytext", "tags"),
    [("Golden image", {}), (DISPLAY, {"created-by": "someone-else"}), (DISPLAY, {"os": "rockylinux-9"})],
)
def test_a_template_registered_by_someone_else_is_not_relabelled(
    cloudstack: CloudStackDouble, displaytext: str, tags: dict[str, str]
) -> None:
    template_id = add_template(
        cloudstack.state,
        {"name": NAME, "displaytext": displaytext, "ostype": UBUNTU_2204, "zones": ["zone1", "zone2"],
         "tags": tags},
    ).id  # fmt: skip
    assert [o.action for o in run(cloudstack, url_source())] == ["reused", "reused"]
    assert tags_of(cloudstack, template_id) == tags
    assert calls(cloudstack, "createTags") == []


def test_an_upload_stopped_before_its_tags_is_uploaded_again_and_tagged(
    cloudstack: CloudStackDouble, tmp_path: Path
) -> None:
    image = qcow2(tmp_path / f"{NAME}-kvm.qcow2")
    fail_next(cloudstack, "createTags")
    with pytest.raises(CloudStackError, match=r"^tag template "):
        run(cloudstack, ImageSource(path=image))
    (stale,) = cloudstack.state.templates_named(NAME)
    assert copies_per_zone(cloudstack) == {"zone1": [(stale.id, "NotUploaded")]}

    outcomes = run(cloudstack, ImageSource(path=image))
    assert [o.action for o in outcomes] == ["replaced", "copied"]
    (template_id,) = {o.template_id for o in outcomes}
    assert template_id != stale.id
    assert {zone: [s for _, s in rows] for zone, rows in copies_per_zone(cloudstack).items()} == {
        "zone1": ["Download Complete"],
        "zone2": ["Download Complete"],
    }
    tags = tags_of(cloudstack, template_id)
    assert tags.pop(UPLOADER_TAG) == f"{socket.gethostname()}/{os.getpid()}"
    assert tags == ALL_TAGS


def test_complete_tags_finishes_a_ready_template_once(cloudstack: CloudStackDouble) -> None:
    untagged = add_template(
        cloudstack.state,
        {"name": NAME, "displaytext": DISPLAY, "ostype": UBUNTU_2204, "zones": ["zone1", "zone2"],
         "tags": {"os": "ubuntu-2204"}},
    ).id  # fmt: skip
    targets = targets_for(cloudstack)
    complete_tags(targets, NAME, V1_30_2, Hypervisor.KVM)
    assert tags_of(cloudstack, untagged) == ALL_TAGS
    complete_tags(targets, NAME, V1_30_2, Hypervisor.KVM)
    assert len(calls(cloudstack, "createTags")) == 1


def test_missing_tags_keeps_to_templates_that_look_registered_here(cloudstack: CloudStackDouble) -> None:
    row = replace(current(cloudstack), display_text=DISPLAY, tags=(("created-by", "kubectl-capc"),))
    assert missing_tags(row, DISPLAY, ALL_TAGS) == {"kubernetes-version": "v1.30.2", "os": "ubuntu-2204"}
    assert missing_tags(replace(row, tags=tuple(ALL_TAGS.items())), DISPLAY, ALL_TAGS) == {}
    assert missing_tags(row, "Another display text", ALL_TAGS) == {}
    assert missing_tags(replace(row, tags=(("kubernetes-version", "v1.29.0"),)), DISPLAY, ALL_TAGS) == {}


# --- the time limit ---------------------------------------------------------------------------------


def test_a_timeout_states_the_whole_time_waited_not_what_was_left(cloudstack: CloudStackDouble) -> None:
    with cloudstack.state.lock:
        cloudstack.state.faults = parse_faults(
            {
                "latency": [{"seconds": 1.6, "commands": ["registerTemplate"], "times": 1}],
                "downloads": [{"zone": "zone2", "mode": "stall", "at_percent": 40}],
            },
            cloudstack.state.zone_id,
        )
    with pytest.raises(CloudStackError) as caught:
        run(cloudstack, url_source(), timeout=2.0)
    # 1.6 s of the 2 s went on registering; the wait had the rest, and the message states the 2 s.
    assert f"template '{NAME}' (" in str(caught.value)
    assert "is not ready after 2s (" in str(caught.value)
    assert "zone2: 40% Downloaded" in str(caught.value)


def test_a_stalled_copy_ends_within_the_runs_budget_naming_the_zone(
    cloudstack: CloudStackDouble, tmp_path: Path
) -> None:
    image = qcow2(tmp_path / f"{NAME}-kvm.qcow2")
    with cloudstack.state.lock:
        cloudstack.state.faults = parse_faults(
            {"downloads": [{"zone": "zone2", "mode": "stall", "at_percent": 60}]}, cloudstack.state.zone_id
        )
    reporter = Recorder()
    started = time.monotonic()
    with pytest.raises(CloudStackError) as caught:
        run(cloudstack, ImageSource(path=image), reporter, timeout=3.0)
    # The upload, its wait and the copy share the 3 s: the copy job's own timeout (10 s) never comes.
    assert time.monotonic() - started < 6
    message = str(caught.value)
    assert message.startswith(f"the copy of template '{NAME}' (")
    assert "to zone zone2 is not done after 3s (zone2: 60% Downloaded); CloudStack keeps copying" in message
    assert ("zone2", "60% Downloaded") in reporter.statuses  # the copy's progress was shown meanwhile


def test_a_failed_copy_names_the_zone_and_cloudstacks_error(
    cloudstack: CloudStackDouble, tmp_path: Path
) -> None:
    image = qcow2(tmp_path / f"{NAME}-kvm.qcow2")
    with cloudstack.state.lock:
        cloudstack.state.faults = parse_faults(
            {"downloads": [{"zone": "zone2", "mode": "error", "at_percent": 40, "message": "Disk full"}]},
            cloudstack.state.zone_id,
        )
    with pytest.raises(CloudStackError) as caught:
        run(cloudstack, ImageSource(path=image))
    assert (
        "to zone zone2 failed: CloudStack error 530: Failed to copy Template to zone zone2: Disk full"
        in str(caught.value)
    )
    assert set(copies_per_zone(cloudstack)) == {"zone1", "zone2"}
