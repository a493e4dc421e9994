"""Fault injection knobs: latency, failing commands, stalled or failed downloads, VM deployments that
end in Error, an expired key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import (
    CS_CLOUD_RUNTIME,
    CS_UNKNOWN,
    INSUFFICIENT_CAPACITY,
    INTERNAL_ERROR,
    USER_ERROR_MESSAGE,
    ApiError,
)

DEFAULT_DOWNLOAD_ERROR = "HTTP Server returned 404 (expected 200 OK)"


@dataclass
class LatencyFault:
    seconds: float
    commands: list[str] | None = None  # None: every command
    times: int | None = None  # None: every call; else only the next `times` calls


@dataclass
class CommandFault:
    """`command` answers with `errorcode` for its next `times` calls."""

    command: str
    times: int = 1
    errorcode: int = INTERNAL_ERROR
    errortext: str = USER_ERROR_MESSAGE
    cserrorcode: int | None = None

    def error(self) -> ApiError:
        code = self.cserrorcode
        if code is None:
            code = CS_CLOUD_RUNTIME if self.errorcode == INTERNAL_ERROR else CS_UNKNOWN
        return ApiError(self.errorcode, self.errortext, code)


@dataclass
class DownloadFault:
    """Downloads into `zone_id` stall at, or fail on reaching, `at_percent`.

    `template` (id or name) narrows the fault to one template; None hits every template.
    """

    zone_id: str
    mode: str = "error"
    at_percent: int = 0
    message: str = DEFAULT_DOWNLOAD_ERROR
    template: str | None = None


@dataclass
class DeployFault:
    """deployVirtualMachine jobs whose VM matches end with the VM in Error and the job failed.

    `zone_id` and `name` (a VM name prefix) narrow the fault; `times` None hits every match. Without
    `errortext` the job fails as CloudStack does when no host has room: 533 "Unable to create a
    deployment for VM instance {...}" (InsufficientServerCapacityException).
    """

    zone_id: str | None = None
    name: str | None = None
    times: int | None = None
    errorcode: int = INSUFFICIENT_CAPACITY
    errortext: str | None = None

    def matches(self, zone_id: str, vm_name: str) -> bool:
        return (
            self.times != 0
            and self.zone_id in (None, zone_id)
            and (self.name is None or vm_name.startswith(self.name))
        )


@dataclass
class Faults:
    latency: list[LatencyFault] = field(default_factory=list)
    errors: list[CommandFault] = field(default_factory=list)
    downloads: list[DownloadFault] = field(default_factory=list)
    deploys: list[DeployFault] = field(default_factory=list)
    key_expired: bool = False

    def latency_for(self, command: str) -> float:
        """The delay before answering `command`; consumes one call of each counted fault that applies."""
        total = 0.0
        for fault in self.latency:
            if (fault.commands is None or command in fault.commands) and fault.times != 0:
                if fault.times is not None:
                    fault.times -= 1
                total += fault.seconds
        return total

    def take_error(self, command: str) -> ApiError | None:
        """Consume one injected failure for `command`, if any is left."""
        for fault in self.errors:
            if fault.command == command and fault.times > 0:
                fault.times -= 1
                return fault.error()
        return None

    def download_fault(self, template_id: str, template_name: str, zone_id: str) -> DownloadFault | None:
        for fault in self.downloads:
            if fault.zone_id == zone_id and fault.template in (None, template_id, template_name):
                return fault
        return None

    def take_deploy_fault(self, zone_id: str, vm_name: str) -> DeployFault | None:
        """Consume one matching deployment fault, if any."""
        for fault in self.deploys:
            if fault.matches(zone_id, vm_name):
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_faults(data: Mapping[str, Any], zone_id_of: Callable[[str], str]) -> Faults:
    """Build Faults from the seed/admin format; zones may be given by name or id."""
    unknown = set(data) - {"latency", "errors", "downloads", "deploys", "key_expired"}
    if unknown:
        raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
    downloads = []
    for item in data.get("downloads", []):
        spec = dict(item)
        mode = spec.get("mode", "error")
        if mode not in ("stall", "error"):
            raise ValueError(f"download fault mode must be stall or error, not {mode!r}")
        zone = spec.pop("zone", None) or spec.pop("zone_id", None)
        if zone is None:
            raise ValueError("a download fault needs a zone")
        spec["zone_id"] = zone_id_of(str(zone))
        downloads.append(DownloadFault(**spec))
    deploys = []
    for item in data.get("deploys", []):
        spec = dict(item)
        zone = spec.pop("zone", None) or spec.pop("zone_id", None)
        spec["zone_id"] = None if zone is None else zone_id_of(str(zone))
        deploys.append(DeployFault(**spec))
    return Faults(
        latency=[LatencyFault(**dict(item)) for item in data.get("latency", [])],
        errors=[CommandFault(**dict(item)) for item in data.get("errors", [])],
        downloads=downloads,
        deploys=deploys,
        key_expired=bool(data.get("key_expired", False)),
    )
