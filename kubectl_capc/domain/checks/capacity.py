"""CloudStack headroom for a rollout's surge machines (CAPC-R001).

CAPC checks limits one VM at a time, just before it deploys it; a rollout needs room for its surge
machines all at once. Assumption: the control plane rolls first and the MachineDeployments roll one
after another, so the peak need at each level (account, domain, project) is that of the single step --
the control plane's surge machine, or one deployment's surge machines -- that needs the most of each
resource. Old machines are deleted only after their replacements run, so the surge adds to what exists.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kubectl_capc.domain.checks.base import Check, Finding, ObjectRef, Severity

__all__ = [
    "CHECKS",
    "NO_HEADROOM",
    "Level",
    "MachineShape",
    "Resource",
    "ResourceCount",
    "ScopeLimits",
    "Step",
    "check_capacity",
    "control_plane_step",
    "deployment_step",
    "parse_count",
    "resolve_max_surge",
]

NO_HEADROOM = Check(
    "CAPC-R001",
    Severity.ERROR,
    "Not enough CloudStack capacity for the rollout's surge machines",
    "raise the limit (updateResourceLimit), free resources, or lower maxSurge so fewer machines roll at once",
)
CHECKS = (NO_HEADROOM,)


class Level(str, enum.Enum):
    ACCOUNT = "account"
    DOMAIN = "domain"
    PROJECT = "project"


class Resource(str, enum.Enum):
    """The resources CloudStack limits, named as in listAccounts (`<name>limit/total/available`)."""

    VM = "vm"
    CPU = "cpu"
    MEMORY = "memory"  # MiB
    PRIMARY_STORAGE = "primarystorage"  # GiB

    @property
    def unit(self) -> str:
        return {
            "vm": "VM(s)",
            "cpu": "vCPU",
            "memory": "MiB memory",
            "primarystorage": "GiB primary storage",
        }[self.value]


def parse_count(value: str | int | None) -> int | None:
    """A CloudStack limit figure: None for "Unlimited", -1 or absent, else the number."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "unlimited":
            return None
        value = int(value)
    return None if value < 0 else value


@dataclass(frozen=True)
class ResourceCount:
    """limit/total/available of one resource; None stands for Unlimited."""

    limit: int | None
    total: int
    available: int | None

    @property
    def free(self) -> int | None:
        """What may still be allocated; None when unlimited."""
        if self.limit is None:
            return None
        return max(self.limit - self.total, 0) if self.available is None else self.available


@dataclass(frozen=True)
class ScopeLimits:
    """An account, domain or project, with its counts per resource (a resource left out is unlimited)."""

    level: Level
    name: str
    counts: Mapping[Resource, ResourceCount]


@dataclass(frozen=True)
class MachineShape:
    """What one machine takes: the offering's cpunumber and memory (MiB), and its disks (GiB)."""

    cpus: int
    memory_mib: int
    disk_gib: int

    def need(self, machines: int) -> dict[Resource, int]:
        return {
            Resource.VM: machines,
            Resource.CPU: machines * self.cpus,
            Resource.MEMORY: machines * self.memory_mib,
            Resource.PRIMARY_STORAGE: machines * self.disk_gib,
        }


@dataclass(frozen=True)
class Step:
    """One owner's roll: `surge` machines of `shape` at once, placed in the scopes of `placement`
    (the account, and its domain and project, of the failure domain the machines land in)."""

    owner: ObjectRef
    surge: int
    shape: MachineShape
    placement: tuple[ScopeLimits, ...]


_PERCENT_RE = re.compile(r"(0|[1-9][0-9]*)%")


def resolve_max_surge(max_surge: int | str | None, replicas: int) -> int:
    """Machines a MachineDeployment adds at once: maxSurge (default 1) as a count, or a percentage of
    replicas rounded up as Cluster API does, and never more than the replicas it replaces."""
    if max_surge is None:
        surge = 1
    elif isinstance(max_surge, int):
        surge = max_surge
    elif max_surge.isdigit():
        surge = int(max_surge)
    else:
        match = _PERCENT_RE.fullmatch(max_surge.strip())
        if match is None:
            raise ValueError(f"maxSurge {max_surge!r} is neither a number nor a percentage like 25%")
        surge = math.ceil(int(match[1]) * replicas / 100)
    return max(min(surge, replicas), 0)


def deployment_step(
    owner: ObjectRef,
    replicas: int,
    max_surge: int | str | None,
    shape: MachineShape,
    placement: tuple[ScopeLimits, ...],
    *,
    strategy: str = "RollingUpdate",
) -> Step:
    """OnDelete creates a machine only once an old one is gone, so it needs no headroom."""
    surge = resolve_max_surge(max_surge, replicas) if strategy == "RollingUpdate" else 0
    return Step(owner, surge, shape, placement)


def control_plane_step(
    owner: ObjectRef, max_surge: int | None, shape: MachineShape, placement: tuple[ScopeLimits, ...]
) -> Step:
    """A KubeadmControlPlane surges 0 or 1 machine (default 1)."""
    return Step(owner, 1 if max_surge is None else min(max(max_surge, 0), 1), shape, placement)


def check_capacity(steps: Sequence[Step], subject: ObjectRef) -> list[Finding]:
    """One finding per scope and resource whose free amount is below the peak step's need."""
    scopes: dict[tuple[Level, str], ScopeLimits] = {}
    peak: dict[tuple[Level, str, Resource], tuple[int, Step]] = {}
    for step in steps:
        if step.surge == 0:
            continue
        for scope in step.placement:
            scopes[(scope.level, scope.name)] = scope
            for resource, amount in step.shape.need(step.surge).items():
                key = (scope.level, scope.name, resource)
                if amount > peak.get(key, (0, step))[0]:
                    peak[key] = (amount, step)
    findings = []
    for (level, name, resource), (need, step) in peak.items():
        count = scopes[(level, name)].counts.get(resource)
        free = None if count is None else count.free
        if free is not None and need > free:
            findings.append(
                NO_HEADROOM.finding(
                    subject,
                    f"{level.value} {name} has {free} {resource.unit} free; the rollout needs {need} at its "
                    f"peak ({step.owner}: {step.surge} surge machine(s))",
                )
            )
    return findings
