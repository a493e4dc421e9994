"""Names of CloudStack node-image templates and of the CloudStackMachineTemplates that use them.

Pure: no I/O. Template names follow the convention of the published CAPC images and image-builder
(`<os>-kube-vX.Y.Z[-kvm|-xen|-vmware]`, e.g. `ubuntu-2204-kube-v1.28.5`). CloudStackMachineTemplates are
immutable, so each upgrade creates a copy; its name is derived from the current one and the target version
so that re-running an upgrade finds the object it created before instead of creating another.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass, replace

from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.versions import KubeVersion

__all__ = [
    "HYPERVISOR_SUFFIXES",
    "MAX_NAME_LENGTH",
    "TemplateName",
    "machine_template_name",
    "next_free_name",
    "parse_template_name",
    "template_name_for",
]

HYPERVISOR_SUFFIXES = ("kvm", "xen", "vmware")
# A DNS-1123 subdomain may be 253 characters long; 63 keeps the name usable as a label value too.
MAX_NAME_LENGTH = 63

_NUM = r"0|[1-9][0-9]*"
_TEMPLATE_RE = re.compile(
    rf"(?P<os>.+)-kube-v(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<hypervisor>{'|'.join(HYPERVISOR_SUFFIXES)}))?"
)
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# A Kubernetes 1.x version at the end of a machine template name (`-v1-28-5`, `-v1.28.5`, `-v1-28`),
# optionally followed by the `-N` that next_free_name adds.
_VERSION_TAIL_RE = re.compile(rf"(?P<stem>.+?)-v1[-.](?:{_NUM})(?:[-.](?:{_NUM}))?(?:-[1-9][0-9]*)?")
# Names this module generates: stem, version tail, optional counter.
_GENERATED_RE = re.compile(rf"(?P<stem>.+?)(?P<tail>-v(?:{_NUM})-(?:{_NUM})-(?:{_NUM}))(?:-[1-9][0-9]*)?")
_HASH_LENGTH = 6
# Room kept after the stem for a tail like "-v1-29-10-2". A longer stem is cut to fit and gets a short hash
# of itself; since this depends on the stem alone, the cut stem survives later renames unchanged.
_TAIL_ROOM = 12


@dataclass(frozen=True)
class TemplateName:
    """A CloudStack template name split by the image naming convention."""

    os: str
    version: KubeVersion
    hypervisor: str | None = None

    def __str__(self) -> str:
        suffix = f"-{self.hypervisor}" if self.hypervisor else ""
        return f"{self.os}-kube-{self.version}{suffix}"

    def with_version(self, version: KubeVersion) -> TemplateName:
        """The same OS and hypervisor for another Kubernetes version."""
        _require_release(version)
        return replace(self, version=version)


def parse_template_name(name: str) -> TemplateName | None:
    """Split `ubuntu-2204-kube-v1.28.5-kvm` into OS, version and hypervisor; None for custom names."""
    match = _TEMPLATE_RE.fullmatch(name)
    if match is None:
        return None
    version = KubeVersion(int(match["major"]), int(match["minor"]), int(match["patch"]))
    return TemplateName(match["os"], version, match["hypervisor"])


def template_name_for(current_name: str, target: KubeVersion) -> str:
    """The template name for `target` with the same OS and hypervisor as `current_name`.

    Raises PlanError when `current_name` does not follow the convention, so no name can be derived.
    """
    parsed = parse_template_name(current_name)
    if parsed is None:
        raise PlanError(
            f"cannot derive the {target} template from {current_name!r}: its name does not follow "
            f"<os>-kube-vX.Y.Z[-kvm|-xen|-vmware]",
            hint="name the template to use with --image",
        )
    return str(parsed.with_version(target))


def machine_template_name(current_name: str, target: KubeVersion) -> str:
    """A readable, deterministic CloudStackMachineTemplate name for `target`, derived from the current one.

    `mycluster-control-plane` and `mycluster-control-plane-v1-28-5` both become
    `mycluster-control-plane-v1-29-3`; a prefix longer than 51 characters is cut and completed with a short
    hash of itself, so the name stays within 63 characters. The result is a valid DNS-1123 subdomain and a
    valid label value.
    """
    _require_name(current_name)
    _require_release(target)
    match = _VERSION_TAIL_RE.fullmatch(current_name)
    stem = match["stem"] if match else current_name
    return _compose(stem, f"-v{target.major}-{target.minor}-{target.patch}")


def next_free_name(name: str, taken: Collection[str]) -> str:
    """`name`, or the first of `name-2`, `name-3`, ... not in `taken`, each within the length limit.

    `taken` holds the names of objects that exist with a different spec: a name whose object has the
    wanted spec is not taken, it is reused.
    """
    _require_name(name)
    if name not in taken:
        return name
    match = _GENERATED_RE.fullmatch(name)
    stem, tail = (match["stem"], match["tail"]) if match else (name, "")
    counter = 2
    while (candidate := _compose(stem, f"{tail}-{counter}")) in taken:
        counter += 1
    return candidate


def _compose(stem: str, tail: str) -> str:
    limit = MAX_NAME_LENGTH - max(len(tail), _TAIL_ROOM)
    if len(stem) > limit:
        room = limit - 1 - _HASH_LENGTH
        if room < 1:
            raise ValueError(f"{tail!r} leaves no room for a name within {MAX_NAME_LENGTH} characters")
        digest = hashlib.sha256(stem.encode()).hexdigest()[:_HASH_LENGTH]
        stem = f"{stem[:room].rstrip('-.')}-{digest}"
    return stem + tail


def _require_name(name: str) -> None:
    if len(name) > 253 or _DNS1123_SUBDOMAIN_RE.fullmatch(name) is None:
        raise ValueError(f"{name!r} is not a valid Kubernetes object name (DNS-1123 subdomain)")


def _require_release(version: KubeVersion) -> None:
    if not version.is_release:
        raise ValueError(f"{version} is a pre-release or carries build metadata; names use releases only")
