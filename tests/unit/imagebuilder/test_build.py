"""Image-builder inputs: packer variables, the tools per hypervisor, the build environment, the output
layout read from image-builder's own packer files, and the VMware descriptor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubectl_capc.domain.errors import UsageError
from kubectl_capc.domain.images import Hypervisor
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
