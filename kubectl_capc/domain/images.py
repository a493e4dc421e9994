"""Node-image decisions that need no I/O: hypervisors and disk formats, what a template name means, where
a prebuilt image lives, and what to do about a template that may already exist in a zone.

CAPC resolves a template by name per zone and fails unless exactly one executable template matches, so
every decision here keeps "one template of that name per zone" true, whatever state a previous,
interrupted run left behind.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from kubectl_capc.domain.defaults import DEFAULT_PREBUILT_BASE_URL
from kubectl_capc.domain.errors import UsageError
from kubectl_capc.domain.naming import TemplateName, parse_template_name
from kubectl_capc.domain.versions import KubeVersion

__all__ = [
    "DEFAULT_PREBUILT_BASE_URL",
    "Action",
    "CopyState",
    "ExistingCopy",
    "Hypervisor",
    "ImageFormat",
    "TemplateInfo",
    "ZoneDecision",
    "check_download_url",
    "check_format",
    "check_template_name",
    "classify_copy",
    "decide",
    "describe_template",
    "failed_while_waiting",
    "format_from_url",
    "os_display_name",
    "prebuilt_url",
    "upload_file_name",
]


class ImageFormat(str, enum.Enum):
    """Disk formats as registerTemplate's `format` parameter spells them."""

    QCOW2 = "QCOW2"
    VHD = "VHD"
    OVA = "OVA"
    RAW = "RAW"


# File extensions CloudStack accepts for each format (UriUtils.checkFormat); each may be compressed.
_EXTENSIONS: dict[str, ImageFormat] = {
    "qcow2": ImageFormat.QCOW2,
    "img": ImageFormat.QCOW2,
    "vhd": ImageFormat.VHD,
    "ova": ImageFormat.OVA,
    "raw": ImageFormat.RAW,
}
_COMPRESSIONS = ("bz2", "gz", "zip")


class Hypervisor(str, enum.Enum):
    """The hypervisors CAPC images are published for, by their CloudStack names."""

    KVM = "KVM"
    XENSERVER = "XenServer"
    VMWARE = "VMware"

    @property
    def suffix(self) -> str:
        """The name suffix of the image convention (`-kvm`, `-xen`, `-vmware`)."""
        return {"KVM": "kvm", "XenServer": "xen", "VMware": "vmware"}[self.value]

    @property
    def image_format(self) -> ImageFormat:
        """The format CloudStack needs for a template of this hypervisor."""
        return {"KVM": ImageFormat.QCOW2, "XenServer": ImageFormat.VHD, "VMware": ImageFormat.OVA}[self.value]

    @property
    def accepted_formats(self) -> tuple[ImageFormat, ...]:
        return (ImageFormat.QCOW2, ImageFormat.RAW) if self is Hypervisor.KVM else (self.image_format,)

    @property
    def prebuilt_extension(self) -> str:
        """The file extension of CAPC's published images for this hypervisor."""
        return {"KVM": "qcow2.bz2", "XenServer": "vhd.bz2", "VMware": "ova"}[self.value]

    @classmethod
    def parse(cls, text: str) -> Hypervisor:
        """Accept the CloudStack name, the name suffix or `xenserver`, in any case."""
        key = text.strip().lower()
        for hypervisor in cls:
            if key in (hypervisor.value.lower(), hypervisor.suffix):
                return hypervisor
        choices = ", ".join(h.value for h in cls)
        raise UsageError(f"unsupported hypervisor {text!r}", hint=f"use one of {choices}")


def format_from_url(url: str) -> ImageFormat:
    """The image format CloudStack will expect for `url`, from its file extension.

    `.img` counts as QCOW2, what cloud images named so usually are; CloudStack refuses a URL whose
    extension does not match the registered format, so guessing is not an option.
    """
    path = urlsplit(url).path
    parts = path.rsplit("/", 1)[-1].lower().split(".")
    if len(parts) > 1 and parts[-1] in _COMPRESSIONS:
        parts.pop()
    extension = parts[-1] if len(parts) > 1 else ""
    found = _EXTENSIONS.get(extension)
    if found is None:
        known = ", ".join(f".{ext}" for ext in _EXTENSIONS)
        raise UsageError(
            f"cannot tell the image format of {url!r} from its file name",
            hint=f"the name must end in one of {known}, optionally followed by .bz2, .gz or .zip",
        )
    return found


def upload_file_name(template_name: str, image_format: ImageFormat, local_name: str) -> str:
    """The file name an upload is sent under: the template's name, the extension of its format and the
    local file's compression suffix, e.g. `ubuntu-2204-kube-v1.30.2-kvm.qcow2.bz2`.

    The secondary-storage VM refuses a file whose name's extension does not fit its content (a qcow2
    sent as `.img` is refused, and a bz2 file must end in `.bz2` to be looked into), whatever the
    local file is called."""
    suffix = next((f".{c}" for c in _COMPRESSIONS if local_name.lower().endswith(f".{c}")), "")
    stem = re.sub(r'[/\\"\r\n]', "_", template_name)
    return f"{stem}.{image_format.value.lower()}{suffix}"


# registerTemplate's limits: 255 characters is CloudStack's default for a string parameter such as
# `name`, and `url` allows 2048.
MAX_TEMPLATE_NAME_LENGTH = 255
MAX_URL_LENGTH = 2048


def check_download_url(url: str) -> None:
    """Refuse, before anything is registered, a URL that registerTemplate refuses: CloudStack downloads
    templates over http(s) only. The URL is not repeated in the error: it may carry a signature."""
    hint = "give an http:// or https:// URL that every zone can download"
    if any(char.isspace() for char in url):
        raise UsageError("the image URL contains whitespace", hint=hint + " (encode spaces as %20)")
    if len(url) > MAX_URL_LENGTH:
        raise UsageError(
            f"the image URL has {len(url)} characters, CloudStack takes at most {MAX_URL_LENGTH}", hint=hint
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UsageError("the image URL cannot be parsed", hint=hint) from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise UsageError(f"the image URL has {scheme}: CloudStack downloads over http(s) only", hint=hint)
    if not parts.hostname:
        raise UsageError("the image URL names no host", hint=hint)


def check_template_name(name: str) -> None:
    """Refuse, before anything is written, a template name CloudStack refuses: empty, or longer than
    255 characters (its API answers error 431 even to a listTemplates with such a name)."""
    if not name.strip():
        raise UsageError("the template name is empty", hint="name the template, or leave the name out")
    if len(name) > MAX_TEMPLATE_NAME_LENGTH:
        raise UsageError(
            f"the template name {_abridged(name)!r} has {len(name)} characters, CloudStack takes at most "
            f"{MAX_TEMPLATE_NAME_LENGTH}",
            hint=f"choose a name of at most {MAX_TEMPLATE_NAME_LENGTH} characters "
            "(`image register --name`, `image-upgrade --image`)",
        )


def _abridged(text: str, keep: int = 40) -> str:
    """`text` cut in the middle to about `keep` characters, so that a message stays one readable line."""
    if len(text) <= keep:
        return text
    return f"{text[: keep - 12]}...{text[-9:]}"


def check_format(image_format: ImageFormat, hypervisor: Hypervisor, source: str) -> None:
    """Refuse an image whose format the hypervisor cannot boot (e.g. a qcow2 for VMware)."""
    if image_format not in hypervisor.accepted_formats:
        raise UsageError(
            f"{source} is a {image_format.value} image but the zones run {hypervisor.value}",
            hint=f"{hypervisor.value} needs a {hypervisor.image_format.value} image",
        )


def prebuilt_url(base_url: str, name: TemplateName, hypervisor: Hypervisor) -> str:
    """The URL of CAPC's published image for this OS, version and hypervisor.

    The layout is `<base>/<kvm|vmware|xen>/<os>-kube-vX.Y.Z-<hv>.<qcow2.bz2|ova|vhd.bz2>`.
    """
    file_name = f"{name.os}-kube-{name.version}-{hypervisor.suffix}.{hypervisor.prebuilt_extension}"
    return f"{base_url.rstrip('/')}/{hypervisor.suffix}/{file_name}"


_OS_NAMES = {
    "ubuntu": "Ubuntu",
    "rockylinux": "Rocky Linux",
    "centos": "CentOS",
    "rhel": "RHEL",
    "flatcar": "Flatcar",
    "photon": "Photon OS",
}
_BUILD_NAME_RE = re.compile(r"(?P<distro>[a-z]+)-(?P<version>[0-9]+)(?P<variant>(?:-[a-z0-9]+)*)")


def os_display_name(build_name: str) -> str:
    """`ubuntu-2204` -> `Ubuntu 22.04`, `rockylinux-9` -> `Rocky Linux 9`; unknown names as given."""
    match = _BUILD_NAME_RE.fullmatch(build_name)
    if match is None:
        return build_name
    distro = _OS_NAMES.get(match["distro"], match["distro"].capitalize())
    version = match["version"]
    if match["distro"] == "ubuntu" and len(version) == 4:
        version = f"{version[:2]}.{version[2:]}"
    variant = match["variant"].lstrip("-").replace("-", " ")
    return f"{distro} {version}" + (f" ({variant})" if variant else "")


@dataclass(frozen=True)
class TemplateInfo:
    """What a template's name says about it; all None for names outside the image convention."""

    name: str
    os: str | None
    os_name: str | None
    version: KubeVersion | None
    hypervisor_suffix: str | None


def describe_template(name: str) -> TemplateInfo:
    """Parse a template name with the shared naming convention."""
    parsed = parse_template_name(name)
    if parsed is None:
        return TemplateInfo(name, None, None, None, None)
    return TemplateInfo(name, parsed.os, os_display_name(parsed.os), parsed.version, parsed.hypervisor)


class CopyState(enum.Enum):
    """Where one zone's copy of a template stands."""

    READY = "ready"
    IN_PROGRESS = "in-progress"
    ABANDONED_UPLOAD = "abandoned-upload"
    FAILED = "failed"


_PROGRESS_RE = re.compile(r"(\d{1,3})% Downloaded")
# Status texts CloudStack shows while a copy is on its way (TemplateJoinDaoImpl.getTemplateStatus).
_PROGRESS_TEXTS = frozenset(
    {"", "Processing", "Installing Template", "Download Complete", "Bypassed Secondary Storage",
     "UploadInProgress", "Active"}
)  # fmt: skip
# An upload record whose file never arrived: nothing will complete it, and nothing can use it.
_ABANDONED_UPLOAD_TEXTS = frozenset({"NotUploaded", "UploadAbandoned"})


def downloaded_percent(status: str) -> int | None:
    """The number of CloudStack's `N% Downloaded` status (at most 100); None for any other text."""
    match = _PROGRESS_RE.fullmatch(status.strip())
    return min(100, int(match.group(1))) if match else None


def classify_copy(ready: bool, status: str) -> CopyState:
    """Read CloudStack's free-text `status`: any text that is not progress is an error message."""
    if ready:
        return CopyState.READY
    text = status.strip()
    if text in _PROGRESS_TEXTS or downloaded_percent(text) is not None:
        return CopyState.IN_PROGRESS
    if text in _ABANDONED_UPLOAD_TEXTS:
        return CopyState.ABANDONED_UPLOAD
    return CopyState.FAILED


def failed_while_waiting(ready: bool, status: str) -> bool:
    """During a wait, an error text or an abandoned upload ends it; `NotUploaded` does not, because
    CloudStack notices a finished upload only at its next check of the storage VM."""
    if ready:
        return False
    return classify_copy(ready, status) is CopyState.FAILED or status.strip() == "UploadAbandoned"


class Action(enum.Enum):
    """What to do in one zone to end with exactly one ready template of the wanted name."""

    CREATE = "create"
    REUSE = "reuse"
    WAIT = "wait"
    REPLACE = "replace"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class ExistingCopy:
    """A template of the wanted name found in the zone (only the fields a decision needs)."""

    template_id: str
    ready: bool
    status: str
    uploader_gone: bool = False
    """The upload in progress was started by a kubectl-capc process that no longer runs."""
    uploader_running: bool = False
    """The upload was started by a kubectl-capc process that may still be sending it: one on another host,
    or one still alive on this host."""


@dataclass(frozen=True)
class ZoneDecision:
    action: Action
    template_id: str = ""
    reason: str = ""


def decide(existing: Sequence[ExistingCopy], *, replace: bool, zone: str, name: str) -> ZoneDecision:
    """Choose how to get template `name` ready in `zone`, given the copies already there.

    A ready copy is reused and one in progress is waited for; a failed one blocks unless `replace` says
    to delete it, and an upload that never arrived is replaced (nothing else can finish it) unless the
    process that asked for it may still be sending the file: that one is waited for, as CloudStack shows
    "NotUploaded" from the upload ticket until the file has arrived.
    An upload still shown in progress is restarted with `replace`, or when the process that sent it is
    known to be gone (killed or interrupted: its upload can never finish).
    Several copies block: CAPC would refuse the name, and which to keep is the operator's call.
    """
    if not existing:
        return ZoneDecision(Action.CREATE)
    if len(existing) > 1:
        ids = ", ".join(copy.template_id for copy in existing)
        return ZoneDecision(
            Action.BLOCKED,
            reason=f"{len(existing)} templates named {name!r} exist in zone {zone} ({ids}); CAPC needs "
            "exactly one: delete the extra ones",
        )
    copy = existing[0]
    state = classify_copy(copy.ready, copy.status)
    if state is CopyState.READY:
        return ZoneDecision(Action.REUSE, copy.template_id)
    if state is CopyState.IN_PROGRESS:
        # An upload's ticket dies with the process that held it: `replace` restarts an upload that a
        # killed run left behind, which nothing else could finish.
        if (replace or copy.uploader_gone) and copy.status.strip() == "UploadInProgress":
            return ZoneDecision(Action.REPLACE, copy.template_id, reason="upload interrupted")
        return ZoneDecision(Action.WAIT, copy.template_id)
    if copy.uploader_running and copy.status.strip() == "NotUploaded" and not replace:
        return ZoneDecision(Action.WAIT, copy.template_id)
    if state is CopyState.ABANDONED_UPLOAD or replace:
        return ZoneDecision(Action.REPLACE, copy.template_id, reason=copy.status)
    return ZoneDecision(
        Action.BLOCKED,
        copy.template_id,
        reason=f"template {name!r} ({copy.template_id}) failed in zone {zone}: {copy.status}; "
        "re-run with --replace to delete it and register it again",
    )
