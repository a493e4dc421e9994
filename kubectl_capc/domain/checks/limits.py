"""CloudStack's resource limits of an account, domain or project, as listAccounts, listDomains and
listProjects report them (`<resource>limit`, `<resource>total`, `<resource>available`)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Level", "Resource", "ResourceCount", "ScopeLimits", "parse_count"]


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
