"""The rows the CloudStack client returns (zones, templates, catalogue entries, VMs, limits) and what it
is given to say whose objects it acts on (`OwnerScope`) and what template to create (`TemplateSpec`).

Each row is read from its API answer as CloudStack words it; a field that is absent reads as empty or 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubectl_capc.cloudstack.credentials import Credentials
from kubectl_capc.domain.checks.capacity import Level, Resource, ResourceCount, ScopeLimits, parse_count
from kubectl_capc.domain.model import CloudStackTemplateRow

__all__ = [
    "Entry",
    "OwnerScope",
    "Template",
    "TemplateSpec",
    "VirtualMachine",
    "Zone",
    "scope_limits",
]


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    allocation_state: str

    @property
    def enabled(self) -> bool:
        return self.allocation_state != "Disabled"


@dataclass(frozen=True)
class Template:
    """One `listTemplates` row: a template as it exists in one zone."""

    id: str
    name: str
    zone_id: str
    zone_name: str
    ready: bool
    status: str
    hypervisor: str
    format: str
    os_type_id: str
    os_type_name: str
    display_text: str = ""
    is_public: bool = False
    tags: tuple[tuple[str, str], ...] = ()
    size: int = 0
    """Bytes (the virtual size), 0 when CloudStack does not know it yet."""

    def tag(self, key: str) -> str | None:
        return next((value for name, value in self.tags if name == key), None)

    def as_row(self) -> CloudStackTemplateRow:
        """The inventory model's view of this row."""
        return CloudStackTemplateRow(
            self.id, self.name, self.zone_id, self.zone_name, self.ready, self.status
        )

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Template:
        tags = tuple(
            (str(tag.get("key", "")), str(tag.get("value", "")))
            for tag in row.get("tags") or ()
            if isinstance(tag, Mapping)
        )
        return cls(
            id=str(row.get("id", "")),
            name=str(row.get("name", "")),
            zone_id=str(row.get("zoneid", "")),
            zone_name=str(row.get("zonename", "")),
            ready=row.get("isready") is True,
            status=str(row.get("status") or ""),
            hypervisor=str(row.get("hypervisor", "")),
            format=str(row.get("format", "")),
            os_type_id=str(row.get("ostypeid", "")),
            os_type_name=str(row.get("ostypename", "")),
            display_text=str(row.get("displaytext", "")),
            is_public=row.get("ispublic") is True,
            tags=tags,
            size=_number(row.get("size")),
        )


@dataclass(frozen=True)
class Entry:
    """One row of a catalogue listing: a service or disk offering, network, affinity group or key pair.

    `zone_id` is a network's zone; `customized` says whether a disk offering takes a custom size;
    `cpus` and `memory_mib` are a service offering's, `disk_gib` a disk offering's size.
    """

    id: str
    name: str
    zone_id: str = ""
    customized: bool = False
    cpus: int = 0
    memory_mib: int = 0
    disk_gib: int = 0

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Entry:
        return cls(
            id=str(row.get("id", "")),
            name=str(row.get("name", "")),
            zone_id=str(row.get("zoneid", "")),
            customized=row.get("iscustomized") is True,
            cpus=_number(row.get("cpunumber")),
            memory_mib=_number(row.get("memory")),
            disk_gib=_number(row.get("disksize")),
        )


def _number(value: object) -> int:
    """An integer field of a CloudStack answer; 0 when absent or not a number."""
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        return 0


@dataclass(frozen=True)
class VirtualMachine:
    """One `listVirtualMachines` row: the VM's id, name, state and zone."""

    id: str
    name: str
    state: str
    zone_id: str
    zone_name: str

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> VirtualMachine:
        return cls(
            id=str(row.get("id", "")),
            name=str(row.get("name", "")),
            state=str(row.get("state", "")),
            zone_id=str(row.get("zoneid", "")),
            zone_name=str(row.get("zonename", "")),
        )


@dataclass(frozen=True)
class OwnerScope:
    """Whose templates to see and create: the caller's own (all None), a project's, or another account's
    (an admin acting for it). CAPC failure domains name these as `project` and `account` + `domain`.

    `user` holds the keys of the account's user that CAPC acts as: reads in this scope are signed with
    them and name the project only (`read_params`), so they see what CAPC sees.
    """

    project_id: str | None = None
    account: str | None = None
    domain_id: str | None = None
    user: Credentials | None = field(default=None, repr=False)

    def params(self) -> dict[str, str | None]:
        """The owner parameters of a write (and of reads made with the caller's own keys)."""
        if self.project_id:
            return {"projectid": self.project_id}
        return {"account": self.account, "domainid": self.domain_id} if self.account else {}

    def read_params(self) -> dict[str, str | None]:
        """The owner parameters of a list call: the project only when acting as the account's user."""
        if self.user is not None:
            return {"projectid": self.project_id} if self.project_id else {}
        return self.params()

    def __str__(self) -> str:
        if self.project_id:
            return f"project {self.project_id}"
        return f"account {self.account}" if self.account else "the caller's account"


@dataclass(frozen=True)
class TemplateSpec:
    """What registerTemplate / getUploadParamsForTemplate need to know about a new template."""

    name: str
    display_text: str
    hypervisor: str
    format: str
    os_type_id: str
    public: bool = False
    checksum: str | None = None
    owner: OwnerScope = OwnerScope()

    def params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "displaytext": self.display_text,
            "hypervisor": self.hypervisor,
            "format": self.format,
            "ostypeid": self.os_type_id,
            "ispublic": self.public,
            "isextractable": False,
            "passwordenabled": False,
            "sshkeyenabled": False,
            "checksum": self.checksum,
            **self.owner.params(),
        }


def scope_limits(level: Level, name: str, row: Mapping[str, Any]) -> ScopeLimits:
    """An account, domain or project row's `<resource>limit`, `total` and `available` ("Unlimited" or -1:
    no limit)."""
    counts = {}
    for resource in Resource:
        maximum = parse_count(row.get(f"{resource.value}limit"))
        available = row.get(f"{resource.value}available")
        counts[resource] = ResourceCount(
            maximum, _number(row.get(f"{resource.value}total")), parse_count(available)
        )
    return ScopeLimits(level, name, counts)
