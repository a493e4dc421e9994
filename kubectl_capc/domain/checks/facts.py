"""What validation learns from Kubernetes and CloudStack, as plain values the checks read.

`kubectl_capc.ops.validate` gathers these (Secrets, SelfSubjectAccessReviews, CloudStack list calls); the
checks only read them, so every check is a pure function that tests can feed hand-made facts. Secret
values never enter these types: a `SecretFacts` holds key names, the API URL and the TLS flag only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubectl_capc.domain.checks.limits import ScopeLimits
from kubectl_capc.domain.checks.workload import WorkloadReading
from kubectl_capc.domain.model import FailureDomain, SecretRef

__all__ = [
    "Access",
    "Connection",
    "Facts",
    "Lookup",
    "Query",
    "Reach",
    "Resource",
    "Row",
    "SecretFacts",
    "SecretState",
    "Tenant",
]

REQUIRED_SECRET_KEYS = ("api-url", "api-key", "secret-key")


class SecretState(str, enum.Enum):
    FOUND = "found"
    MISSING = "missing"
    FORBIDDEN = "forbidden"
    FAILED = "failed"


@dataclass(frozen=True)
class SecretFacts:
    """A failure domain's credentials Secret as far as checks may see it: no key values, only which keys
    hold a value with leading or trailing whitespace (`padded`), since CAPC uses values verbatim."""

    ref: SecretRef
    state: SecretState
    detail: str = ""
    keys: frozenset[str] = frozenset()
    api_url: str = ""
    verify_ssl: str | None = None
    padded: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Tenant:
    """Who CloudStack is asked as: a Secret's keys, narrowed to a failure domain's account/domain/project.

    Two failure domains with the same Secret and tenancy see the same CloudStack, so their facts are shared.
    """

    secret: SecretRef
    account: str = ""
    domain: str = ""
    project: str = ""

    @classmethod
    def of(cls, failure_domain: FailureDomain) -> Tenant:
        return cls(
            failure_domain.credentials,
            failure_domain.account,
            failure_domain.domain,
            failure_domain.project,
        )


class Reach(str, enum.Enum):
    """How the first CloudStack call as a tenant went."""

    OK = "ok"
    UNREACHABLE = "unreachable"
    REJECTED = "rejected"
    FAILED = "failed"


@dataclass(frozen=True)
class Connection:
    """The outcome of connecting as a tenant; `scope_problems` are unresolvable account/domain/project,
    `keyless` says the account has no user with API keys for CAPC to act as."""

    tenant: Tenant
    reach: Reach
    detail: str = ""
    scope_problems: tuple[str, ...] = ()
    keyless: str = ""

    @property
    def usable(self) -> bool:
        return self.reach is Reach.OK and not self.scope_problems and not self.keyless


class Resource(str, enum.Enum):
    """The CloudStack list calls checks rely on."""

    ZONE = "zone"
    NETWORK = "network"
    HYPERVISOR = "hypervisor"
    TEMPLATE = "template"
    SERVICE_OFFERING = "serviceoffering"
    DISK_OFFERING = "diskoffering"
    AFFINITY_GROUP = "affinitygroup"
    SSH_KEY_PAIR = "sshkeypair"


@dataclass(frozen=True)
class Query:
    """One CloudStack list call: a resource filtered by id, name and zone (empty = no filter).

    Templates are always listed with `templatefilter=executable`, the only filter CAPC uses.
    """

    resource: Resource
    id: str = ""
    name: str = ""
    zone_id: str = ""


@dataclass(frozen=True)
class Row:
    """One listed CloudStack object with the fields checks read; fields a kind lacks keep their default.

    `ready` and `status` are a template's in its zone; `customized` is a disk offering's. `cpus` and
    `memory_mib` are a service offering's; `size_gib` a template's size or a disk offering's disk size.
    """

    id: str = ""
    name: str = ""
    zone_id: str = ""
    zone_name: str = ""
    ready: bool = True
    status: str = ""
    hypervisor: str = ""
    customized: bool = False
    cpus: int = 0
    memory_mib: int = 0
    size_gib: int = 0


@dataclass(frozen=True)
class Lookup:
    """What a list call returned: its rows, or the CloudStack error that answered it.

    An id CloudStack does not know is answered with no rows, as cloudstack-go reads that error.
    """

    rows: tuple[Row, ...] = ()
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error)


@dataclass(frozen=True)
class Access:
    """One permission an upgrade needs, as a SelfSubjectAccessReview asks it."""

    verb: str
    group: str
    resource: str
    namespace: str
    name: str = ""

    def __str__(self) -> str:
        plural = f"{self.resource}.{self.group}" if self.group else self.resource
        target = f"{plural}/{self.name}" if self.name else plural
        where = f"in namespace {self.namespace}" if self.namespace else "in all namespaces"
        return f"{self.verb} {target} {where}"


@dataclass(frozen=True)
class Facts:
    """Everything gathered for one validation run (all clusters share it).

    `limits` are each tenant's account, domain and project counts (read only for `--to`).
    """

    secrets: Mapping[SecretRef, SecretFacts] = field(default_factory=dict)
    connections: Mapping[Tenant, Connection] = field(default_factory=dict)
    lookups: Mapping[tuple[Tenant, Query], Lookup] = field(default_factory=dict)
    access: Mapping[Access, bool] = field(default_factory=dict)
    # (namespace, cluster) -> what its workload cluster said; a cluster not in it is not checked (W0xx)
    workloads: Mapping[tuple[str, str], WorkloadReading] = field(default_factory=dict)
    limits: Mapping[Tenant, tuple[ScopeLimits, ...]] = field(default_factory=dict)

    def connection(self, failure_domain: FailureDomain) -> Connection | None:
        return self.connections.get(Tenant.of(failure_domain))

    def lookup(self, failure_domain: FailureDomain, query: Query) -> Lookup | None:
        """The answer to `query` as the failure domain's tenant; None when it was not asked."""
        return self.lookups.get((Tenant.of(failure_domain), query))
