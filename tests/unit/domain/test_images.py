"""Pure parts of the image pipeline: formats, hypervisors, names, zone decisions, upload file names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubectl_capc.domain.errors import UsageError
from kubectl_capc.domain.images import (
    Action,
    CopyState,
    ExistingCopy,
    Hypervisor,
    ImageFormat,
    check_format,
    classify_copy,
    decide,
    describe_template,
    failed_while_waiting,
    format_from_url,
    os_display_name,
    prebuilt_url,
    upload_file_name,
)
from kubectl_capc.domain.naming import TemplateName
from kubectl_capc.domain.versions import KubeVersion

# --- formats and hypervisors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h/kvm/ubuntu-2204-kube-v1.30.2-kvm.qcow2.bz2", ImageFormat.QCOW2),
        ("https://h/a/b.QCOW2", ImageFormat.QCOW2),
        ("http://h/img/jammy.img?sig=abc#frag", ImageFormat.QCOW2),
        ("http://h/xen/ubuntu-2204-kube-v1.31.7-xen.vhd.bz2", ImageFormat.VHD),
        ("http://h/x.vhd.gz", ImageFormat.VHD),
        ("http://h/vmware/ubuntu-2404-kube-v1.32.3-vmware.ova", ImageFormat.OVA),
        ("http://h/disk.raw.zip", ImageFormat.RAW),
        ("ubuntu-2204-kube-v1.29.3-kvm.qcow2", ImageFormat.QCOW2),
    ],
)
def test_format_from_url_reads_the_extension_under_a_compression_suffix(
    url: str, expected: ImageFormat
) -> None:
    assert format_from_url(url) == expected


@pytest.mark.parametrize("url", ["http://h/image", "http://h/image.bz2", "http://h/a.iso", "http://h/qcow2/"])
def test_format_from_url_refuses_names_cloudstack_would_refuse(url: str) -> None:
    with pytest.raises(UsageError, match="cannot tell the image format"):
        format_from_url(url)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("KVM", Hypervisor.KVM), ("kvm", Hypervisor.KVM), ("xenserver", Hypervisor.XENSERVER),
     ("xen", Hypervisor.XENSERVER), ("VMware", Hypervisor.VMWARE), ("vmware", Hypervisor.VMWARE)],
)  # fmt: skip
def test_hypervisor_parse_accepts_cloudstack_names_and_suffixes(text: str, expected: Hypervisor) -> None:
    assert Hypervisor.parse(text) is expected


def test_hypervisor_parse_names_the_choices() -> None:
    with pytest.raises(UsageError, match="hyperv") as caught:
        Hypervisor.parse("hyperv")
    assert "KVM, XenServer, VMware" in str(caught.value)


def test_check_format_refuses_an_image_the_hypervisor_cannot_boot() -> None:
    check_format(ImageFormat.QCOW2, Hypervisor.KVM, "x.qcow2")
    check_format(ImageFormat.RAW, Hypervisor.KVM, "x.raw")
    with pytest.raises(UsageError, match="QCOW2 image but the zones run VMware") as caught:
        check_format(ImageFormat.QCOW2, Hypervisor.VMWARE, "x.qcow2")
    assert "needs a OVA image" in str(caught.value)


def test_prebuilt_url_follows_the_published_layout() -> None:
    name = TemplateName("ubuntu-2204", KubeVersion(1, 30, 11))
    base = "http://packages.example.com/images/"
    assert prebuilt_url(base, name, Hypervisor.KVM) == (
        "http://packages.example.com/images/kvm/ubuntu-2204-kube-v1.30.11-kvm.qcow2.bz2"
    )
    assert prebuilt_url(base, name, Hypervisor.XENSERVER).endswith(
        "/xen/ubuntu-2204-kube-v1.30.11-xen.vhd.bz2"
    )
    assert prebuilt_url(base, name, Hypervisor.VMWARE).endswith(
        "/vmware/ubuntu-2204-kube-v1.30.11-vmware.ova"
    )


@pytest.mark.parametrize(
    ("build_name", "display"),
    [("ubuntu-2204", "Ubuntu 22.04"), ("ubuntu-2404-efi", "Ubuntu 24.04 (efi)"),
     ("rockylinux-9", "Rocky Linux 9"), ("centos-10", "CentOS 10"), ("custom", "custom")],
)  # fmt: skip
def test_os_display_name(build_name: str, display: str) -> None:
    assert os_display_name(build_name) == display


def test_describe_template_uses_the_shared_naming_convention() -> None:
    info = describe_template("rockylinux-9-kube-v1.29.3-xen")
    assert (info.os, info.os_name, info.version, info.hypervisor_suffix) == (
        "rockylinux-9",
        "Rocky Linux 9",
        KubeVersion(1, 29, 3),
        "xen",
    )
    assert describe_template("my-golden-image").version is None


# --- what a zone's status means, and what to do about it -------------------------------------------


@pytest.mark.parametrize(
    ("ready", "status", "state"),
    [(True, "Download Complete", CopyState.READY), (False, "0% Downloaded", CopyState.IN_PROGRESS),
     (False, "45% Downloaded", CopyState.IN_PROGRESS), (False, "Installing Template", CopyState.IN_PROGRESS),
     (False, "", CopyState.IN_PROGRESS), (False, "UploadInProgress", CopyState.IN_PROGRESS),
     (False, "NotUploaded", CopyState.ABANDONED_UPLOAD),
     (False, "UploadAbandoned", CopyState.ABANDONED_UPLOAD),
     (False, "HTTP Server returned 404 (expected 200 OK)", CopyState.FAILED),
     (False, "UploadError", CopyState.FAILED)],
)  # fmt: skip
def test_classify_copy(ready: bool, status: str, state: CopyState) -> None:
    assert classify_copy(ready, status) is state


def test_failed_while_waiting_tolerates_an_upload_cloudstack_has_not_noticed_yet() -> None:
    assert not failed_while_waiting(False, "NotUploaded")
    assert failed_while_waiting(False, "UploadAbandoned")
    assert failed_while_waiting(False, "checksum mismatch")
    assert not failed_while_waiting(True, "anything")


def copy(status: str, ready: bool = False, template_id: str = "t1") -> ExistingCopy:
    return ExistingCopy(template_id, ready, status)


@pytest.mark.parametrize(
    ("existing", "replace", "action"),
    [([], False, Action.CREATE), ([copy("Download Complete", True)], False, Action.REUSE),
     ([copy("30% Downloaded")], False, Action.WAIT), ([copy("NotUploaded")], False, Action.REPLACE),
     ([copy("HTTP 404")], False, Action.BLOCKED), ([copy("HTTP 404")], True, Action.REPLACE),
     ([copy("UploadInProgress")], False, Action.WAIT), ([copy("UploadInProgress")], True, Action.REPLACE),
     ([copy("5% Downloaded")], True, Action.WAIT),
     ([ExistingCopy("t1", False, "NotUploaded", uploader_running=True)], False, Action.WAIT),
     ([ExistingCopy("t1", False, "NotUploaded", uploader_running=True)], True, Action.REPLACE),
     ([ExistingCopy("t1", False, "NotUploaded", uploader_gone=True)], False, Action.REPLACE),
     ([copy("Download Complete", True), copy("1% Downloaded", template_id="t2")], True, Action.BLOCKED)],
)  # fmt: skip
def test_decide(existing: list[ExistingCopy], replace: bool, action: Action) -> None:
    decision = decide(existing, replace=replace, zone="zone1", name="n")
    assert decision.action is action
    if existing and action is not Action.BLOCKED:
        assert decision.template_id == existing[0].template_id


def test_decide_explains_a_failed_copy_and_duplicates() -> None:
    failed = decide([copy("HTTP Server returned 404")], replace=False, zone="zone1", name="img")
    assert "failed in zone zone1: HTTP Server returned 404" in failed.reason
    assert "--replace" in failed.reason
    twice = decide([copy("", True, "a"), copy("", True, "b")], replace=False, zone="zone2", name="img")
    assert "2 templates named 'img' exist in zone zone2 (a, b)" in twice.reason


STATUSES = st.sampled_from(["", "5% Downloaded", "NotUploaded", "UploadInProgress", "boom"])


@given(st.lists(st.tuples(st.booleans(), STATUSES), max_size=3), st.booleans())
def test_decide_never_leaves_two_templates_of_the_name_in_a_zone(
    rows: list[tuple[bool, str]], replace: bool
) -> None:
    existing = [ExistingCopy(f"t{i}", ready, status) for i, (ready, status) in enumerate(rows)]
    decision = decide(existing, replace=replace, zone="z", name="n")
    # Creating is only chosen for an empty zone; replacing deletes the single copy first.
    if decision.action is Action.CREATE:
        assert not existing
    if len(existing) > 1:
        assert decision.action is Action.BLOCKED


@pytest.mark.parametrize(
    ("name", "fmt", "local", "sent"),
    [
        ("ubuntu-2204-kube-v1.30.2-kvm", ImageFormat.QCOW2, "disk.img", "ubuntu-2204-kube-v1.30.2-kvm.qcow2"),
        (
            "ubuntu-2204-kube-v1.30.2-kvm",
            ImageFormat.QCOW2,
            "d.qcow2.BZ2",
            "ubuntu-2204-kube-v1.30.2-kvm.qcow2.bz2",
        ),
        (
            "ubuntu-2204-kube-v1.30.2-xen",
            ImageFormat.VHD,
            "x-xen.vhd.bz2",
            "ubuntu-2204-kube-v1.30.2-xen.vhd.bz2",
        ),
        ('rocky/9 "odd"', ImageFormat.OVA, "v.ova", "rocky_9 _odd_.ova"),
        ("n", ImageFormat.QCOW2, "n.qcow2.gz", "n.qcow2.gz"),
    ],
)
def test_uploads_are_named_for_their_format(name: str, fmt: ImageFormat, local: str, sent: str) -> None:
    assert upload_file_name(name, fmt, local) == sent
