"""The double's entities. Plain dataclasses; rendering to API fields lives in views.py."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

ROLE_ACCOUNT_TYPES = {"User": 0, "Admin": 1, "DomainAdmin": 2}


def cs_timestamp(moment: datetime | None = None) -> str:
    """A date as CloudStack renders it, e.g. 2024-05-02T09:15:00+0000."""
    return (moment or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class Domain:
    id: str
    name: str
    path: str
    parent_id: str | None = None


@dataclass
class Account:
    id: str
    name: str
    domain_id: str
    roletype: str = "User"
    state: str = "enabled"

    @property
    def is_root_admin(self) -> bool:
        return self.roletype == "Admin"

    @property
    def is_normal_user(self) -> bool:
        return self.roletype == "User"


@dataclass
class User:
    """A user of an account; requests signed with its keys act as its account."""

    id: str
    username: str
    account_id: str
    api_key: str | None = None
    secret_key: str | None = None
    state: str = "enabled"
    firstname: str = ""
    lastname: str = ""
    email: str = ""


@dataclass
class Project:
    id: str
    name: str
    displaytext: str
    domain_id: str
    owner_account_id: str
    member_account_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Owner:
    """Who owns a resource: an account, or a project (CloudStack's project account)."""

    account_id: str | None = None
    project_id: str | None = None


@dataclass
class Zone:
    id: str
    name: str
    hypervisors: list[str]
    allocationstate: str = "Enabled"
    networktype: str = "Advanced"
    description: str = ""
    dns1: str = "8.8.8.8"
    internaldns1: str = "10.0.0.1"
    guestcidraddress: str = "10.1.0.0/16"
    localstorageenabled: bool = False
    securitygroupsenabled: bool = False


@dataclass
class OsType:
    id: str
    description: str
    oscategory_id: str
    oscategory_name: str


@dataclass
class CatalogItem:
    """A listed resource the double only reads (offerings, networks, affinity groups, key pairs).

    `fields` holds the API response object; ownership and zone scope drive visibility.
    """

    kind: str
    fields: dict[str, Any]
    owner: Owner | None = None
    zone_ids: list[str] | None = None
    domain_ids: list[str] | None = None
    shared: bool = False

    @property
    def id(self) -> str:
        return str(self.fields["id"])

    @property
    def name(self) -> str:
        return str(self.fields.get("name", ""))


class ZoneState(enum.Enum):
    NOT_UPLOADED = "NotUploaded"
    UPLOAD_IN_PROGRESS = "UploadInProgress"
    DOWNLOADING = "Downloading"
    READY = "Ready"
    ERROR = "Error"


@dataclass
class TemplateZone:
    """A template's copy on the secondary storage of one zone, with its download progress."""

    zone_id: str
    state: ZoneState
    created: str
    percent: int = 0
    ticks: int = 0
    started_at: float = 0.0
    error: str | None = None


@dataclass
class UploadRecord:
    """What the upload endpoint stored for a template."""

    path: str
    filename: str
    size: int
    sha256: str
    md5: str


@dataclass
class UploadTicket:
    """The parameters handed out by getUploadParamsForTemplate."""

    template_id: str
    zone_id: str
    post_url: str
    metadata: str
    expires: str
    signature: str
    used: bool = False


@dataclass
class Template:
    id: str
    name: str
    displaytext: str
    format: str
    hypervisor: str
    ostype_id: str
    owner: Owner
    created: str
    ispublic: bool = False
    isfeatured: bool = False
    isextractable: bool = False
    passwordenabled: bool = False
    sshkeyenabled: bool = False
    isdynamicallyscalable: bool = False
    requireshvm: bool = True
    bootable: bool = True
    bits: int = 64
    checksum: str | None = None
    url: str | None = None
    templatetag: str | None = None
    directdownload: bool = False
    crosszones: bool = False
    size: int = 0
    physicalsize: int = 0
    details: dict[str, str] = field(default_factory=dict)
    zones: dict[str, TemplateZone] = field(default_factory=dict)
    removed: bool = False
    upload: UploadRecord | None = None


@dataclass
class Tag:
    key: str
    value: str
    resource_type: str
    resource_id: str
    owner: Owner


class VmState(enum.Enum):
    """VirtualMachine.State values a user VM passes through."""

    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    DESTROYED = "Destroyed"
    EXPUNGING = "Expunging"
    ERROR = "Error"


@dataclass
class Nic:
    network_id: str
    ip_address: str
    mac_address: str
    is_default: bool


@dataclass
class Volume:
    """A ROOT or DATADISK volume; it counts against primary storage while its VM is not expunged."""

    id: str
    name: str
    type: str
    vm_id: str | None
    owner: Owner
    zone_id: str
    size: int  # bytes
    created: str
    disk_offering_id: str | None = None
    device_id: int = 0
    removed: bool = False


@dataclass
class VirtualMachine:
    id: str
    db_id: int
    name: str
    displayname: str
    owner: Owner
    zone_id: str
    template_id: str
    service_offering_id: str
    cpunumber: int
    cpuspeed: int
    memory: int  # MiB
    nics: list[Nic]
    created: str
    state: VmState
    hypervisor: str = "KVM"
    disk_offering_id: str | None = None
    keypairs: list[str] = field(default_factory=list)
    userdata: str | None = None
    affinity_group_ids: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    removed: bool = False
    expunge_polls: int = 0  # listings that still show an Expunging VM before it is gone


class JobStatus(enum.IntEnum):
    PENDING = 0
    SUCCEEDED = 1
    FAILED = 2


@dataclass
class Job:
    id: str
    cmd_class: str
    account_id: str
    created: str
    instance_type: str
    instance_id: str | None
    polls_left: int
    status: JobStatus = JobStatus.PENDING
    result: dict[str, Any] | None = None
    resultcode: int = 0
    completed: str | None = None
    # Runs when the job's pending polls are used up: returns the job result, None to stay pending
    # (a stalled job), or raises ApiError to fail the job.
    action: Callable[[], dict[str, Any] | None] | None = field(default=None, repr=False)


class Call(NamedTuple):
    """One API request as received, minus credentials and signing fields."""

    command: str
    params: dict[str, str]


# Hypervisor.HypervisorType names (None excluded) and Storage.ImageFormat values.
HYPERVISOR_TYPES = (
    "XenServer", "KVM", "VMware", "Hyperv", "VirtualBox", "Parralels", "BareMetal", "Simulator",
    "Ovm", "Ovm3", "LXC", "Custom", "External",
)  # fmt: skip
IMAGE_FORMATS = (
    "QCOW2", "RAW", "VHD", "VHDX", "ISO", "OVA", "BAREMETAL", "VMDK", "VDI", "TAR", "ZIP", "DIR",
)  # fmt: skip


def hypervisor_type(name: str) -> str | None:
    """HypervisorType.getType: case-insensitive, None when unknown."""
    return next((h for h in HYPERVISOR_TYPES if h.lower() == name.lower()), None)
