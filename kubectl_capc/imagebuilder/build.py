"""Build a CAPC node image with kubernetes-sigs/image-builder and convert it for the zone's hypervisor.

The process boundary of the image pipeline: `make`, `qemu-img`, `vhd-util` and `ovftool` run here, always
with argument lists (never a shell) and an environment without CloudStack credentials. image-builder's
contract, as documented: `make -C DIR/images/capi build-qemu-<target>` with `PACKER_VAR_FILES` naming JSON
var files (they win over its defaults) writes an extension-less qcow2 to
`images/capi/output/<build_name>-kube-<version>/<build_name>-kube-<version>`, where `build_name` comes from
the target's own var file `packer/qemu/qemu-<target>.json` (it differs from the target for the cloudimg
targets, and flatcar's is made from environment variables). KVM takes that qcow2 as it is; VMware needs
a streamOptimized vmdk packed into an OVA by ovftool; XenServer needs a dynamic VHD written by vhd-util
(qemu-img's `vpc` output is not accepted by XenServer), the way image-builder's
hack/convert-cloudstack-image.sh writes it: raw, then a fixed VHD, then a dynamic one with its timestamp
pinned by faketime, compressed with bzip2.

Results are cached by (OS, version, hypervisor, image-builder commit): a finished entry is returned
without rebuilding, and a build whose conversion was interrupted is converted again without rebuilding.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.errors import CapcError, ExitCode, UsageError, one_line
from kubectl_capc.domain.images import Hypervisor, ImageFormat
from kubectl_capc.domain.versions import KubeVersion

__all__ = [
    "BuildRequest",
    "BuildResult",
    "ImageBuildError",
    "Tool",
    "build_image",
    "check_tools",
    "default_cache_dir",
    "packer_variables",
    "read_build_name",
    "required_tools",
    "write_checksums",
]

Status = Callable[[str], None]

_RESULT_FILE = "result.json"
_BUILT_MARKER = "built"
_SECRET_ENV_PREFIXES = ("CLOUDSTACK_",)
_TAIL_LINES = 5


class ImageBuildError(CapcError):
    """The image could not be built or converted; the message points at the build log."""

    exit_code = ExitCode.PLAN


@dataclass(frozen=True)
class Tool:
    name: str
    why: str
    install: str


_MAKE = Tool("make", "runs image-builder's build targets", "install make (Debian: apt-get install make)")
_QEMU_IMG = Tool(
    "qemu-img",
    "checks the built qcow2 and converts it",
    "install qemu-img (Debian: apt-get install qemu-utils)",
)
_OVFTOOL = Tool("ovftool", "packs the VMware OVA", "install VMware OVF Tool and put ovftool on PATH")
_VHD_UTIL = Tool(
    "vhd-util",
    "writes a VHD that XenServer accepts (qemu-img's vpc output is not)",
    "install vhd-util from blktap (image-builder's hack/ensure-vhdutil.sh fetches a build)",
)
_FAKETIME = Tool(
    "faketime",
    "pins the VHD's timestamp as image-builder does",
    "install faketime (Debian: apt-get install faketime)",
)
FAKETIME_DATE = "2010-01-01"
"""The clock vhd-util sees when it writes the dynamic VHD (image-builder's convert-cloudstack-image.sh)."""


def required_tools(hypervisor: Hypervisor) -> tuple[Tool, ...]:
    """Everything a build for `hypervisor` will run, in the order it runs them."""
    extra = {
        Hypervisor.KVM: (),
        Hypervisor.VMWARE: (_OVFTOOL,),
        Hypervisor.XENSERVER: (_VHD_UTIL, _FAKETIME),
    }
    return (_MAKE, _QEMU_IMG, *extra[hypervisor])


def check_tools(hypervisor: Hypervisor, which: Callable[[str], str | None] = shutil.which) -> None:
    """Fail before the hour-long build when a tool needed after it is missing."""
    missing = [tool for tool in required_tools(hypervisor) if which(tool.name) is None]
    if missing:
        tool = missing[0]
        others = f" (also missing: {', '.join(t.name for t in missing[1:])})" if missing[1:] else ""
        raise UsageError(
            f"{tool.name} is not on PATH: a {hypervisor.value} image needs it, it {tool.why}{others}",
            hint=tool.install,
        )


def packer_variables(version: KubeVersion) -> dict[str, str]:
    """The var file that pins Kubernetes and turns on image-builder's CloudStack provisioning
    (the CloudStack cloud-init datasource comes from `provider=cloudstack`)."""
    numbers = f"{version.major}.{version.minor}.{version.patch}"
    return {
        "kubernetes_semver": f"v{numbers}",
        "kubernetes_series": f"v{version.major}.{version.minor}",
        "kubernetes_deb_version": f"{numbers}-1.1",
        "kubernetes_rpm_version": numbers,
        # cri-tools is released once per Kubernetes minor, as 1.MINOR.0 (image-builder's
        # kubernetes.json pins it so, apart from kubernetes_semver); left alone it stays at the
        # checkout's default minor whatever Kubernetes version is built.
        "crictl_version": f"{version.major}.{version.minor}.0",
        "ansible_user_vars": "provider=cloudstack",
    }


_ENV_REFERENCE = re.compile(r"\{\{\s*env\s+`([^`]*)`\s*\}\}")


def read_build_name(capi_dir: Path, target: str, environ: Mapping[str, str]) -> str:
    """The `build_name` in image-builder's `packer/qemu/qemu-<target>.json`, with packer's
    `{{env `NAME`}}` references replaced as packer replaces them; an unset one is refused (packer would
    make it empty and build e.g. `flatcar--kube-...`)."""
    var_file = capi_dir / "packer" / "qemu" / f"qemu-{target}.json"
    try:
        value = json.loads(var_file.read_text(encoding="utf-8")).get("build_name")
    except (OSError, ValueError, AttributeError) as err:
        raise ImageBuildError(
            f"cannot read build_name from {var_file}: {one_line(str(err))}",
            hint="check that the image-builder checkout is complete",
        ) from None
    if not isinstance(value, str) or not value:
        raise ImageBuildError(
            f"{var_file} sets no build_name", hint="image-builder's QEMU var files name their build"
        )
    unset = [ref for ref in dict.fromkeys(_ENV_REFERENCE.findall(value)) if not environ.get(ref)]
    if unset:
        raise ImageBuildError(
            f"build_name {value!r} in {var_file} needs the environment variable(s) {', '.join(unset)}",
            hint=f"set {' and '.join(unset)} as image-builder's documentation for {target} says",
        )
    name = _ENV_REFERENCE.sub(lambda match: environ[match.group(1)], value)
    if "{{" in name or "/" in name:
        raise ImageBuildError(
            f"build_name {value!r} in {var_file} does not give a usable name ({name!r})",
            hint="image-builder's QEMU var files name their build without user variables",
        )
    return name


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubectl-capc" / "images"


@dataclass(frozen=True)
class BuildRequest:
    os: str
    version: KubeVersion
    hypervisor: Hypervisor
    image_builder_dir: Path
    cache_dir: Path

    @property
    def capi_dir(self) -> Path:
        return self.image_builder_dir / "images" / "capi"

    @property
    def build_name(self) -> str:
        """image-builder's artifact name, `<build_name>-kube-<version>`, as the target's var file says."""
        return f"{read_build_name(self.capi_dir, self.os, os.environ)}-kube-{self.version}"

    @property
    def artifact(self) -> Path:
        name = self.build_name
        return self.capi_dir / "output" / name / name


@dataclass(frozen=True)
class BuildResult:
    image: Path
    image_format: ImageFormat
    size: int
    sha256: str
    md5: str
    image_builder_commit: str
    build_log: Path
    cached: bool

    def to_document(self) -> dict[str, Any]:
        """The typed `ImageBuild` object: what `-o json|yaml` prints and what a cache entry keeps."""
        return {
            "apiVersion": API_VERSION,
            "kind": "ImageBuild",
            "image": str(self.image),
            "format": self.image_format.value,
            "size": self.size,
            "sha256": self.sha256,
            "md5": self.md5,
            "imageBuilderCommit": self.image_builder_commit,
            "buildLog": str(self.build_log),
            "cached": self.cached,
        }


def build_image(request: BuildRequest, step: Status, status: Status) -> BuildResult:
    """Build (or take from the cache), convert and checksum the image for `request`.

    `step` hears about each stage; `status` gets every build log line, for a live status line.
    """
    _check_checkout(request)
    check_tools(request.hypervisor)
    commit = image_builder_commit(request.image_builder_dir)
    # By target, not build name: e.g. ubuntu-2204 and ubuntu-2204-cloudimg build the same name.
    key = f"{request.os}-kube-{request.version}-{request.hypervisor.suffix}-{commit[:12]}"
    entry = request.cache_dir / key
    reusable = not commit.endswith("-dirty")
    if reusable and (cached := _cached_result(entry)) is not None:
        step(f"using the cached image {cached.image} (image-builder {commit[:12]})")
        return cached
    if not reusable:
        step("the image-builder checkout has uncommitted changes: building without reusing the cache")
        shutil.rmtree(entry, ignore_errors=True)
    entry.mkdir(parents=True, exist_ok=True)
    log_path = entry / "build.log"
    if not ((entry / _BUILT_MARKER).exists() and request.artifact.is_file()):
        _run_build(request, entry, log_path, step, status)
        (entry / _BUILT_MARKER).write_text(str(request.artifact) + "\n")
    _check_qcow2(request.artifact)
    image = _convert(request, entry, step)
    sha256, md5 = write_checksums(image)
    result = BuildResult(
        image, request.hypervisor.image_format, image.stat().st_size, sha256, md5, commit, log_path, False
    )
    _write_result(entry, result)
    return result


def _check_checkout(request: BuildRequest) -> None:
    if not (request.capi_dir / "Makefile").is_file():
        raise UsageError(
            f"{request.image_builder_dir} is not an image-builder checkout (no images/capi/Makefile)",
            hint="git clone https://github.com/kubernetes-sigs/image-builder and pass its directory",
        )
    os_vars = request.capi_dir / "packer" / "qemu" / f"qemu-{request.os}.json"
    if not os_vars.is_file():
        known = sorted(
            p.stem.removeprefix("qemu-") for p in (request.capi_dir / "packer" / "qemu").glob("qemu-*.json")
        )
        raise UsageError(
            f"image-builder has no QEMU build for OS {request.os!r}",
            hint=f"use one of: {', '.join(known) or 'none found'}",
        )


def image_builder_commit(directory: Path) -> str:
    """The checkout's commit, with `-dirty` when it has uncommitted changes or is not a git checkout."""
    git = shutil.which("git")
    if git is None:
        return "unknown-dirty"
    head = subprocess.run(  # noqa: S603 - a fixed argument list
        [git, "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        return "unknown-dirty"
    changes = subprocess.run(  # noqa: S603 - a fixed argument list
        [git, "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    commit = head.stdout.strip()
    return commit if changes.returncode == 0 and not changes.stdout.strip() else f"{commit}-dirty"


def _cached_result(entry: Path) -> BuildResult | None:
    try:
        data = json.loads((entry / _RESULT_FILE).read_text())
        image = Path(data["image"])
        if not image.is_file() or image.stat().st_size != data["size"]:
            return None
        return BuildResult(
            image=image,
            image_format=ImageFormat(data["format"]),
            size=data["size"],
            sha256=data["sha256"],
            md5=data["md5"],
            image_builder_commit=data["imageBuilderCommit"],
            build_log=Path(data["buildLog"]),
            cached=True,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_result(entry: Path, result: BuildResult) -> None:
    partial = entry / f"{_RESULT_FILE}.partial"
    partial.write_text(json.dumps(result.to_document(), indent=2) + "\n")
    partial.replace(entry / _RESULT_FILE)


def build_environment(base: Mapping[str, str], var_file: Path) -> dict[str, str]:
    """The build's environment: the caller's, minus CloudStack credentials, plus the var file."""
    env = {key: value for key, value in base.items() if not key.startswith(_SECRET_ENV_PREFIXES)}
    env["PACKER_VAR_FILES"] = str(var_file)
    return env


def _run_build(request: BuildRequest, entry: Path, log_path: Path, step: Status, status: Status) -> None:
    var_file = entry / "packer-vars.json"
    var_file.write_text(json.dumps(packer_variables(request.version), indent=2) + "\n")
    stale_output = request.artifact.parent
    if stale_output.exists():
        step(f"removing {stale_output}, left by an earlier unfinished build (packer refuses to overwrite it)")
        shutil.rmtree(stale_output)
    argv = [_which("make"), "-C", str(request.capi_dir), f"build-qemu-{request.os}"]
    step(f"building {request.build_name} with image-builder; log: {log_path}")
    started = time.monotonic()
    tail: list[str] = []
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(  # noqa: S603 - an argument list built from checked values
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=build_environment(os.environ, var_file),
            text=True,
            errors="replace",
            bufsize=1,
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            log.flush()
            text = line.rstrip()
            if text:
                tail = [*tail[-(_TAIL_LINES - 1) :], text]
                status(f"[{_elapsed(started)}] {text[:160]}")
        code = process.wait()
    if code != 0:
        raise ImageBuildError(
            f"image-builder failed (make exited {code}) after {_elapsed(started)}: "
            + one_line(" | ".join(tail)),
            hint=f"read the full log in {log_path}",
        )
    if not request.artifact.is_file():
        raise ImageBuildError(
            f"image-builder finished but {request.artifact} does not exist",
            hint=f"check the build log {log_path} for where packer wrote the image",
        )


def _check_qcow2(path: Path) -> None:
    info = _run([_which("qemu-img"), "info", "--output=json", str(path)], f"inspect {path}")
    try:
        image_format = json.loads(info).get("format")
    except ValueError:
        image_format = None
    if image_format != "qcow2":
        raise ImageBuildError(
            f"{path} is not a qcow2 image (qemu-img reports {image_format!r})",
            hint="image-builder's QEMU builds write qcow2: check the build log",
        )


def _convert(request: BuildRequest, entry: Path, status: Status) -> Path:
    stem = f"{request.build_name}-{request.hypervisor.suffix}"
    if request.hypervisor is Hypervisor.KVM:
        final = entry / f"{stem}.qcow2"
        status(f"copying the qcow2 to {final}")
        _atomic(final, lambda tmp: shutil.copyfile(request.artifact, tmp))
        return final
    if request.hypervisor is Hypervisor.VMWARE:
        return _to_ova(request.artifact, entry, stem, status)
    return _to_vhd(request.artifact, entry, stem, status)


def _to_ova(source: Path, entry: Path, stem: str, status: Status) -> Path:
    vmdk, vmx, final = entry / f"{stem}.vmdk", entry / f"{stem}.vmx", entry / f"{stem}.ova"
    status(f"converting to a streamOptimized vmdk: {vmdk}")
    _run(
        [
            _which("qemu-img"), "convert", "-f", "qcow2", "-O", "vmdk",
            "-o", "adapter_type=lsilogic,subformat=streamOptimized,compat6", str(source), str(vmdk),
        ],
        f"convert {source} to vmdk",
    )  # fmt: skip
    vmx.write_text(vmx_document(stem, vmdk.name))
    status(f"packing the OVA with ovftool: {final}")
    _atomic(
        final,
        lambda tmp: _run([_which("ovftool"), vmx.name, str(tmp)], f"pack {final.name}", cwd=entry),
        suffix=".ova",
    )
    vmx.unlink()
    vmdk.unlink()
    return final


def vmx_document(name: str, vmdk_name: str) -> str:
    """A minimal VM description for ovftool: 64-bit Linux guest, LSI Logic SCSI disk, BIOS, no NIC."""
    settings = {
        ".encoding": "UTF-8",
        "config.version": "8",
        "virtualHW.version": "11",
        "displayName": name,
        "guestOS": "otherlinux-64",
        "firmware": "bios",
        "numvcpus": "2",
        "memsize": "2048",
        "scsi0.present": "TRUE",
        "scsi0.virtualDev": "lsilogic",
        "scsi0:0.present": "TRUE",
        "scsi0:0.fileName": vmdk_name,
    }
    return "".join(f'{key} = "{value}"\n' for key, value in settings.items())


def _to_vhd(source: Path, entry: Path, stem: str, status: Status) -> Path:
    """image-builder's XenServer conversion: qcow2 -> raw -> fixed VHD -> dynamic VHD (vhd-util, under
    faketime so the VHD's timestamp is the same on every build) -> bzip2."""
    raw, fixed, dynamic = entry / f"{stem}.raw", entry / f"{stem}-fixed.vhd", entry / f"{stem}.vhd"
    final = entry / f"{stem}.vhd.bz2"
    status(f"converting to raw, then to a dynamic VHD with vhd-util: {dynamic}")
    _run(
        [_which("qemu-img"), "convert", "-f", "qcow2", "-O", "raw", str(source), str(raw)],
        f"convert {source} to raw",
    )
    vhd_util = _which("vhd-util")
    _run(
        [vhd_util, "convert", "-s", "0", "-t", "1", "-i", raw.name, "-o", fixed.name],
        "write a fixed VHD",
        cwd=entry,
    )
    dynamic.unlink(missing_ok=True)
    _run(
        [
            _which("faketime"), FAKETIME_DATE,
            vhd_util, "convert", "-s", "1", "-t", "2", "-i", fixed.name, "-o", dynamic.name,
        ],
        "write a dynamic VHD",
        cwd=entry,
    )  # fmt: skip
    status(f"compressing with bzip2: {final}")
    _atomic(final, lambda tmp: _bzip2(dynamic, tmp), suffix=".bz2")
    for leftover in (raw, fixed, dynamic, *entry.glob("*.bak")):
        leftover.unlink(missing_ok=True)
    return final


def _bzip2(source: Path, target: Path) -> None:
    with source.open("rb") as plain, bz2.open(target, "wb", compresslevel=9) as packed:
        shutil.copyfileobj(plain, packed, 1 << 20)


def write_checksums(path: Path) -> tuple[str, str]:
    """Write `<path>.sha256` and `<path>.md5` in the format `sha256sum -c` / `md5sum -c` read."""
    sha256, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324 - CloudStack verifies downloads with MD5
    with path.open("rb") as image:
        while chunk := image.read(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
    for suffix, digest in ((".sha256", sha256.hexdigest()), (".md5", md5.hexdigest())):
        Path(f"{path}{suffix}").write_text(f"{digest}  {path.name}\n")
    return sha256.hexdigest(), md5.hexdigest()


def _atomic(final: Path, write: Callable[[Path], object], suffix: str = "") -> None:
    """Write through a temporary name, so an interrupted step never leaves a complete-looking file."""
    tmp = final.with_name(f".{final.stem}.partial{suffix or final.suffix}")
    tmp.unlink(missing_ok=True)
    write(tmp)
    tmp.replace(final)


def _which(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"{name} is not on PATH")
    return found


def _run(argv: Sequence[str], what: str, cwd: Path | None = None) -> str:
    result = subprocess.run(  # noqa: S603 - an argument list built from checked values
        list(argv),
        capture_output=True,
        text=True,
        errors="replace",
        cwd=cwd,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        detail = one_line(_last_lines(result.stderr or result.stdout))
        raise ImageBuildError(f"{Path(argv[0]).name} could not {what} (exit {result.returncode}): {detail}")
    return result.stdout


def _last_lines(text: str, count: int = 3) -> str:
    lines: Iterable[str] = [line for line in text.splitlines() if line.strip()]
    return " | ".join(list(lines)[-count:])


def _elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
