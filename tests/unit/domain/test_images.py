"""Pure parts of the image pipeline: formats, hypervisors, names, zone decisions, build inputs."""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubectl_capc.cloudstack.credentials import Credentials
from kubectl_capc.cloudstack.upload import MultipartFileBody, UploadTLS
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
from kubectl_capc.imagebuilder.build import (
    BuildRequest,
    ImageBuildError,
    build_environment,
    check_tools,
    packer_variables,
    read_build_name,
    required_tools,
    vmx_document,
)

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


# --- build inputs --------------------------------------------------------------------------------


def test_packer_variables_pin_kubernetes_and_enable_the_cloudstack_provider() -> None:
    assert packer_variables(KubeVersion(1, 29, 3)) == {
        "kubernetes_semver": "v1.29.3",
        "kubernetes_series": "v1.29",
        "kubernetes_deb_version": "1.29.3-1.1",
        "kubernetes_rpm_version": "1.29.3",
        "crictl_version": "1.29.0",
        "ansible_user_vars": "provider=cloudstack",
    }


def test_required_tools_per_hypervisor() -> None:
    names = {h: [t.name for t in required_tools(h)] for h in Hypervisor}
    assert names == {
        Hypervisor.KVM: ["make", "qemu-img"],
        Hypervisor.VMWARE: ["make", "qemu-img", "ovftool"],
        Hypervisor.XENSERVER: ["make", "qemu-img", "vhd-util", "faketime"],
    }


def test_check_tools_names_the_missing_tool_and_why() -> None:
    present = {"make", "qemu-img"}
    check_tools(Hypervisor.KVM, which=lambda name: f"/usr/bin/{name}" if name in present else None)
    with pytest.raises(UsageError) as caught:
        check_tools(Hypervisor.XENSERVER, which=lambda name: f"/usr/bin/{name}" if name in present else None)
    message = str(caught.value)
    assert message.startswith("vhd-util is not on PATH: a XenServer image needs it")
    assert "(also missing: faketime)" in message
    assert "qemu-img's vpc output is not" in message
    with pytest.raises(UsageError, match=r"make is not on PATH.*also missing: qemu-img, ovftool"):
        check_tools(Hypervisor.VMWARE, which=lambda name: None)


def test_build_environment_drops_cloudstack_credentials() -> None:
    env = build_environment(
        {"PATH": "/bin", "CLOUDSTACK_KEY": "k", "CLOUDSTACK_SECRET": "s", "HOME": "/root"},
        Path("/c/vars.json"),
    )
    assert env == {"PATH": "/bin", "HOME": "/root", "PACKER_VAR_FILES": "/c/vars.json"}


def _qemu_var_file(checkout: Path, target: str, build_name: str) -> None:
    path = checkout / "images/capi/packer/qemu" / f"qemu-{target}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"build_name": build_name, "distro_name": "x"}))


def test_build_request_paths_follow_image_builder_output_layout(tmp_path: Path) -> None:
    _qemu_var_file(tmp_path, "ubuntu-2204-cloudimg", "ubuntu-2204")
    request = BuildRequest(
        "ubuntu-2204-cloudimg", KubeVersion(1, 30, 2), Hypervisor.KVM, tmp_path, tmp_path / "cache"
    )
    # The build name comes from the target's var file, not from the target.
    assert request.build_name == "ubuntu-2204-kube-v1.30.2"
    assert request.artifact == (
        tmp_path / "images/capi/output/ubuntu-2204-kube-v1.30.2/ubuntu-2204-kube-v1.30.2"
    )


def test_build_name_expands_environment_references_like_packer(tmp_path: Path) -> None:
    _qemu_var_file(tmp_path, "flatcar", "flatcar-{{env `FLATCAR_CHANNEL`}}-{{ env `FLATCAR_VERSION` }}")
    capi = tmp_path / "images/capi"
    env = {"FLATCAR_CHANNEL": "stable", "FLATCAR_VERSION": "4152.2.3"}
    assert read_build_name(capi, "flatcar", env) == "flatcar-stable-4152.2.3"
    with pytest.raises(ImageBuildError, match=r"variable\(s\) FLATCAR_VERSION;"):
        read_build_name(capi, "flatcar", {"FLATCAR_CHANNEL": "beta"})
    with pytest.raises(ImageBuildError) as caught:
        read_build_name(capi, "flatcar", {})
    assert caught.value.hint == (
        "set FLATCAR_CHANNEL and FLATCAR_VERSION as image-builder's documentation for flatcar says"
    )
    _qemu_var_file(tmp_path, "odd", "odd-{{user `distro`}}")
    with pytest.raises(ImageBuildError, match="does not give a usable name"):
        read_build_name(capi, "odd", {})
    (capi / "packer/qemu/qemu-none.json").write_text("{}")
    with pytest.raises(ImageBuildError, match="sets no build_name"):
        read_build_name(capi, "none", {})


def test_vmx_points_at_the_vmdk_on_an_lsilogic_controller() -> None:
    text = vmx_document("img", "img.vmdk")
    assert 'scsi0.virtualDev = "lsilogic"' in text
    assert 'scsi0:0.fileName = "img.vmdk"' in text
    assert 'guestOS = "otherlinux-64"' in text


# --- the streamed upload body ----------------------------------------------------------------------


def test_multipart_body_length_matches_what_it_yields_and_parses(tmp_path: Path) -> None:
    image = tmp_path / 'odd"name.qcow2'
    payload = bytes(range(256)) * 5000  # crosses the 1 MiB chunk boundary
    image.write_bytes(payload)
    seen: list[tuple[int, int]] = []
    body = MultipartFileBody(image, progress=lambda sent, total: seen.append((sent, total)))
    data = b"".join(bytes(chunk) for chunk in body)  # copied as it comes, as a socket send does
    assert len(data) == len(body)
    assert seen[-1] == (len(payload), len(payload))
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {body.content_type}\r\n\r\n".encode() + data
    )
    (part,) = list(message.iter_parts())
    assert part.get_filename() == "odd_name.qcow2"
    assert part.get_payload(decode=True) == payload


def test_multipart_body_can_send_the_file_under_another_name(tmp_path: Path) -> None:
    image = tmp_path / "node.img"
    image.write_bytes(b"QFI\xfb" + bytes(60))
    body = MultipartFileBody(image, filename="ubuntu-2204-kube-v1.30.2.qcow2")
    data = b"".join(bytes(chunk) for chunk in body)
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {body.content_type}\r\n\r\n".encode() + data
    )
    (part,) = list(message.iter_parts())
    assert part.get_filename() == "ubuntu-2204-kube-v1.30.2.qcow2"


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


def test_upload_tls_settings_take_precedence_over_the_endpoints(tmp_path: Path) -> None:
    plain = Credentials("https://cs/client/api", "k", "s", source="Secret ns/c")
    bundled = Credentials("https://cs/client/api", "k", "s", True, "/etc/cs-ca.pem", "cloudstack.ini")
    unverified = Credentials("https://cs/client/api", "k", "s", False, None, "Secret ns/c")
    ca = tmp_path / "ssvm-ca.crt"
    assert UploadTLS().verify(plain) is True
    assert UploadTLS().verify(bundled) == "/etc/cs-ca.pem"
    # verify-ssl "false" is about the API endpoint; the upload still checks the SSVM's certificate.
    assert UploadTLS().verify(unverified) is True
    assert UploadTLS(ca_file=ca).verify(bundled) == str(ca)
    assert UploadTLS(insecure=True).verify(bundled) is False
