"""`image build` against a stand-in image-builder checkout (tests/imagebuilder_standin): the same make
targets, PACKER_VAR_FILES and output path as the real one, writing a small real qcow2 with qemu-img.
Conversions use the real qemu-img; ovftool and vhd-util (not packaged for Debian) and faketime are
stand-in scripts that record their arguments."""

from __future__ import annotations

import bz2
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kubectl_capc.domain.errors import UsageError
from kubectl_capc.domain.images import Hypervisor, ImageFormat
from kubectl_capc.domain.versions import KubeVersion
from kubectl_capc.imagebuilder.build import (
    BuildRequest,
    BuildResult,
    ImageBuildError,
    build_image,
    packer_variables,
)

STANDIN = Path(__file__).resolve().parents[1] / "imagebuilder_standin"
V1_30_2 = KubeVersion(1, 30, 2)

FAKE_OVFTOOL = """\
import sys, tarfile
from pathlib import Path
vmx, ova = Path(sys.argv[1]), Path(sys.argv[2])
settings = dict(line.split(" = ", 1) for line in vmx.read_text().splitlines())
vmdk = Path(settings["scsi0:0.fileName"].strip('"'))
Path("ovftool.args").write_text(" ".join(sys.argv[1:]))
ovf = vmx.with_suffix(".ovf")
ovf.write_text("<Envelope/>")
with tarfile.open(ova, "w") as archive:
    archive.add(ovf, ovf.name)
    archive.add(vmdk, vmdk.name)
ovf.unlink()
"""

FAKE_VHD_UTIL = """\
import subprocess, sys
from pathlib import Path
args = sys.argv[1:]
with open("vhd-util.calls", "a") as log:
    log.write(" ".join(args) + "\\n")
opts = dict(zip(args[1::2], args[2::2]))
source, target = opts["-i"], opts["-o"]
subformat = {"1": "fixed", "2": "dynamic"}[opts["-t"]]
source_format = "raw" if opts["-s"] == "0" else "vpc"
subprocess.run(["qemu-img", "convert", "-f", source_format, "-O", "vpc", "-o",
                f"subformat={subformat},force_size=on", source, target], check=True)
Path(target + ".bak").write_text("backup")
"""


FAKE_FAKETIME = """\
import os, sys
with open("faketime.calls", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
os.execvp(sys.argv[2], sys.argv[2:])
"""


def install_tool(monkeypatch: pytest.MonkeyPatch, bin_dir: Path, name: str, source: str) -> None:
    """A Python script `name` in `bin_dir`, put first on PATH."""
    bin_dir.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed copy of the stand-in, so the cache key has a real commit."""
    directory = tmp_path / "image-builder"
    shutil.copytree(STANDIN, directory)
    git(directory, "init", "-q")
    (directory / ".gitignore").write_text("images/capi/output/\n")
    git(directory, "add", ".")
    git(directory, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "standin")
    monkeypatch.setenv("PYTHON", sys.executable)
    return directory


def git(directory: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(directory), *args], check=True, capture_output=True, text=True
    ).stdout


def request(
    checkout: Path, tmp_path: Path, hypervisor: Hypervisor = Hypervisor.KVM, os_name: str = "ubuntu-2204"
) -> BuildRequest:
    return BuildRequest(os_name, V1_30_2, hypervisor, checkout, tmp_path / "cache")


def build(req: BuildRequest) -> tuple[BuildResult, list[str], list[str]]:
    steps: list[str] = []
    statuses: list[str] = []
    return build_image(req, step=steps.append, status=statuses.append), steps, statuses


def qemu_info(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", str(path)], check=True, capture_output=True, text=True
    )
    info: dict[str, object] = json.loads(out.stdout)
    return info


def builds_run(checkout: Path) -> int:
    counter = checkout / "images/capi/output/.builds"
    return int(counter.read_text()) if counter.exists() else 0


def test_kvm_build_passes_the_var_file_and_checksums_the_qcow2(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDSTACK_SECRET", "very-secret-value")
    result, steps, statuses = build(request(checkout, tmp_path))
    assert result.image.name == "ubuntu-2204-kube-v1.30.2-kvm.qcow2"
    assert (result.image_format, result.cached) == (ImageFormat.QCOW2, False)
    assert qemu_info(result.image)["format"] == "qcow2"
    assert result.image_builder_commit == git(checkout, "rev-parse", "HEAD").strip()
    # The var file is what image-builder received, and it won over the stand-in's defaults.
    entry = result.image.parent
    assert json.loads((entry / "packer-vars.json").read_text()) == packer_variables(V1_30_2)
    received = json.loads(
        (checkout / "images/capi/output/ubuntu-2204-kube-v1.30.2/variables.json").read_text()
    )
    assert received["kubernetes_semver"] == "v1.30.2" and received["kubernetes_deb_version"] == "1.30.2-1.1"
    assert received["ansible_user_vars"] == "provider=cloudstack"
    # crictl follows the Kubernetes minor, not the checkout's default (1.36.0 in the stand-in).
    assert received["crictl_version"] == "1.30.0"
    # Checksum files in the format sha256sum/md5sum check.
    for tool in ("sha256sum", "md5sum"):
        suffix = tool.removesuffix("sum")
        subprocess.run([tool, "-c", "--quiet", f"{result.image.name}.{suffix}"], cwd=entry, check=True)
    assert (entry / f"{result.image.name}.sha256").read_text().split()[0] == result.sha256
    # The log holds the build output, without the credentials of the caller's environment.
    log = result.build_log.read_text()
    assert "stand-in packer build of ubuntu-2204-kube-v1.30.2" in log
    assert "very-secret-value" not in log and "CLOUDSTACK_SECRET" not in log
    assert any("VM files in directory" in line for line in statuses)
    assert any(step.startswith("building ubuntu-2204-kube-v1.30.2 with image-builder") for step in steps)


def test_a_rerun_uses_the_cache_and_a_new_commit_rebuilds(checkout: Path, tmp_path: Path) -> None:
    first, _, _ = build(request(checkout, tmp_path))
    again, steps, _ = build(request(checkout, tmp_path))
    assert again.cached and again.image == first.image and again.sha256 == first.sha256
    assert again.to_document() == {**first.to_document(), "cached": True}
    assert builds_run(checkout) == 1
    assert steps[0].startswith("using the cached image")

    (checkout / "README").write_text("next commit\n")
    git(checkout, "add", ".")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "next")
    rebuilt, _, _ = build(request(checkout, tmp_path))
    assert not rebuilt.cached and rebuilt.image != first.image
    assert builds_run(checkout) == 2


def test_uncommitted_changes_are_never_served_from_the_cache(checkout: Path, tmp_path: Path) -> None:
    makefile = checkout / "images/capi/Makefile"
    makefile.write_text(makefile.read_text() + "\n# local change\n")
    first, _, _ = build(request(checkout, tmp_path))
    second, steps, _ = build(request(checkout, tmp_path))
    assert first.image_builder_commit.endswith("-dirty") and not second.cached
    assert builds_run(checkout) == 2
    assert "uncommitted changes" in steps[0]


def test_a_conversion_interrupted_after_the_build_does_not_rebuild(checkout: Path, tmp_path: Path) -> None:
    result, _, _ = build(request(checkout, tmp_path))
    (result.image.parent / "result.json").unlink()
    result.image.unlink()
    again, _, _ = build(request(checkout, tmp_path))
    assert again.image.is_file() and not again.cached
    assert builds_run(checkout) == 1


def test_output_left_by_an_unfinished_build_is_removed_first(checkout: Path, tmp_path: Path) -> None:
    stale = checkout / "images/capi/output/ubuntu-2204-kube-v1.30.2"
    stale.mkdir(parents=True)
    (stale / "ubuntu-2204-kube-v1.30.2").write_bytes(b"half")
    result, steps, _ = build(request(checkout, tmp_path))
    assert qemu_info(result.image)["format"] == "qcow2"
    assert any(step.startswith(f"removing {stale}") for step in steps)


def test_a_failed_build_points_at_its_log(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_FAIL", "1")
    with pytest.raises(ImageBuildError) as caught:
        build(request(checkout, tmp_path))
    message = str(caught.value)
    assert "image-builder failed (make exited 2)" in message
    assert "Build 'qemu' errored after 1 second: ssh timeout" in message
    assert message.endswith("build.log")
    assert "\n" not in message


def test_a_missing_tool_is_reported_before_the_build_starts(checkout: Path, tmp_path: Path) -> None:
    if shutil.which("vhd-util"):
        pytest.skip("vhd-util is installed here")
    with pytest.raises(UsageError, match="vhd-util is not on PATH: a XenServer image needs it"):
        build(request(checkout, tmp_path, Hypervisor.XENSERVER))
    assert builds_run(checkout) == 0
    assert not (tmp_path / "cache").exists()


def test_unknown_os_and_wrong_directory(checkout: Path, tmp_path: Path) -> None:
    with pytest.raises(
        UsageError,
        match=r"no QEMU build for OS 'ubuntu-1804'.*: flatcar, rockylinux-9, ubuntu-2204, "
        r"ubuntu-2204-cloudimg, ubuntu-2204-efi$",
    ):
        build(request(checkout, tmp_path, os_name="ubuntu-1804"))
    with pytest.raises(UsageError, match="is not an image-builder checkout"):
        build(request(tmp_path, tmp_path))


def test_vmware_gets_a_stream_optimized_vmdk_packed_into_an_ova(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_tool(monkeypatch, tmp_path / "bin", "ovftool", FAKE_OVFTOOL)
    result, _, _ = build(request(checkout, tmp_path, Hypervisor.VMWARE))
    assert result.image.name == "ubuntu-2204-kube-v1.30.2-vmware.ova"
    assert result.image_format is ImageFormat.OVA
    entry = result.image.parent
    assert (entry / "ovftool.args").read_text().startswith("ubuntu-2204-kube-v1.30.2-vmware.vmx ")
    with tarfile.open(result.image) as archive:
        assert archive.getnames() == [
            "ubuntu-2204-kube-v1.30.2-vmware.ovf",
            "ubuntu-2204-kube-v1.30.2-vmware.vmdk",
        ]
        archive.extract("ubuntu-2204-kube-v1.30.2-vmware.vmdk", tmp_path / "unpacked", filter="data")
    info = qemu_info(tmp_path / "unpacked" / "ubuntu-2204-kube-v1.30.2-vmware.vmdk")
    assert info["format"] == "vmdk"
    assert "streamOptimized" in json.dumps(info["format-specific"])
    assert not list(entry.glob("*.vmx")) and not list(entry.glob("*.vmdk"))


def test_xenserver_gets_a_dynamic_vhd_from_vhd_util_under_faketime_compressed_like_image_builder(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_tool(monkeypatch, tmp_path / "bin", "vhd-util", FAKE_VHD_UTIL)
    install_tool(monkeypatch, tmp_path / "bin", "faketime", FAKE_FAKETIME)
    result, _, _ = build(request(checkout, tmp_path, Hypervisor.XENSERVER))
    # hack/convert-cloudstack-image.sh: raw -> fixed VHD -> dynamic VHD under faketime -> bzip2.
    assert result.image.name == "ubuntu-2204-kube-v1.30.2-xen.vhd.bz2"
    assert result.image_format is ImageFormat.VHD
    entry = result.image.parent
    calls = (entry / "vhd-util.calls").read_text().splitlines()
    assert calls == [
        "convert -s 0 -t 1 -i ubuntu-2204-kube-v1.30.2-xen.raw -o ubuntu-2204-kube-v1.30.2-xen-fixed.vhd",
        "convert -s 1 -t 2 -i ubuntu-2204-kube-v1.30.2-xen-fixed.vhd -o ubuntu-2204-kube-v1.30.2-xen.vhd",
    ]
    faketime = (entry / "faketime.calls").read_text().splitlines()
    assert len(faketime) == 1 and faketime[0].startswith("2010-01-01 ")
    assert faketime[0].endswith(calls[1])
    unpacked = tmp_path / "unpacked.vhd"
    with bz2.open(result.image) as packed:
        unpacked.write_bytes(packed.read())
    info = qemu_info(unpacked)
    assert info["format"] == "vpc"
    leftovers = {p.name for p in entry.iterdir()} - {
        result.image.name, f"{result.image.name}.sha256", f"{result.image.name}.md5",
        "build.log", "packer-vars.json", "built", "result.json", "vhd-util.calls", "faketime.calls",
    }  # fmt: skip
    assert leftovers == set()


def test_the_output_path_comes_from_the_targets_build_name(checkout: Path, tmp_path: Path) -> None:
    """ubuntu-2204-cloudimg's var file says build_name ubuntu-2204: packer writes
    output/ubuntu-2204-kube-.../, and a stale directory there is what has to go."""
    stale = checkout / "images/capi/output/ubuntu-2204-kube-v1.30.2"
    stale.mkdir(parents=True)
    (stale / "ubuntu-2204-kube-v1.30.2").write_bytes(b"half")
    result, steps, _ = build(request(checkout, tmp_path, os_name="ubuntu-2204-cloudimg"))
    assert any(step.startswith(f"removing {stale}") for step in steps)
    assert result.image.name == "ubuntu-2204-kube-v1.30.2-kvm.qcow2"
    assert qemu_info(result.image)["format"] == "qcow2"
    received = json.loads((stale / "variables.json").read_text())
    assert received["disk_image"] == "true"  # built from the cloudimg target's var file
    # The plain ubuntu-2204 target builds the same name, but is cached apart from it.
    plain, _, _ = build(request(checkout, tmp_path))
    assert not plain.cached and plain.image.parent != result.image.parent
    assert builds_run(checkout) == 2


def test_flatcar_build_name_comes_from_the_environment_as_packer_makes_it(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ImageBuildError, match="FLATCAR_CHANNEL, FLATCAR_VERSION"):
        build(request(checkout, tmp_path, os_name="flatcar"))
    assert builds_run(checkout) == 0
    monkeypatch.setenv("FLATCAR_CHANNEL", "stable")
    monkeypatch.setenv("FLATCAR_VERSION", "4152.2.3")
    result, _, _ = build(request(checkout, tmp_path, os_name="flatcar"))
    assert result.image.name == "flatcar-stable-4152.2.3-kube-v1.30.2-kvm.qcow2"
    artifact = checkout / "images/capi/output/flatcar-stable-4152.2.3-kube-v1.30.2"
    assert (artifact / "flatcar-stable-4152.2.3-kube-v1.30.2").is_file()


def test_the_build_command_prints_the_result(checkout: Path, tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "kubectl_capc", "image", "build", "--version", "v1.30.2", "--os", "ubuntu-2204",
        "--image-builder-dir", str(checkout), "--cache-dir", str(tmp_path / "cache"), "-o", "json",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["kind"] == "ImageBuild" and document["format"] == "QCOW2" and document["cached"] is False
    assert Path(document["image"]).is_file()
    assert json.loads((Path(document["image"]).parent / "result.json").read_text()) == document
    assert "building ubuntu-2204-kube-v1.30.2 with image-builder" in done.stderr
    again = subprocess.run([*argv[:-2]], capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0
    assert again.stdout.splitlines()[0].split() == ["IMAGE", "FORMAT", "SIZE", "SHA256", "CACHED"]
    assert again.stdout.splitlines()[1].split()[-1] == "yes"
