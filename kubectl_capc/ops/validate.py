"""`kubectl capc validate`: gather the facts the checks need, run them, and report the findings.

Facts are gathered in rounds, each one concurrent (threads): the credentials Secrets and the
SelfSubjectAccessReviews; then, next to the CloudStack rounds, each cluster's workload cluster
(`kubectl_capc.kube.workload`: its kubeconfig Secret, Nodes, Pods, PodDisruptionBudgets, the
deprecated-API metric) and one LIST of the Machines of all clusters; then one CloudStack connection
per tenant (Secret + account/domain/project), probed with listZones; then each failure domain's zone;
then what the checks need inside the zones.
The same question asked for several failure domains or clusters is asked once. Secret values stay in
this module's `Credentials` objects; CloudStack error texts are scrubbed of them before they reach a
finding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from kubectl_capc.domain.checks import Finding, Severity, first_queries, run_checks, second_queries
from kubectl_capc.domain.checks.capacity import ScopeLimits
from kubectl_capc.domain.checks.facts import (
    REQUIRED_SECRET_KEYS,
    Access,
    Connection,
    Facts,
    Lookup,
    Query,
    Reach,
    Resource,
    Row,
    SecretFacts,
    SecretState,
    Tenant,
)
from kubectl_capc.domain.checks.permissions import required_access
from kubectl_capc.domain.checks.upgrade import INVALID_TARGET
from kubectl_capc.domain.checks.workload import RemovedApi, WorkloadReading, removed_between
from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.errors import ConfigError, ExitCode, UsageError
from kubectl_capc.domain.model import ClusterInventory, FailureDomain, SecretRef
from kubectl_capc.domain.versions import TargetVersion, parse_target, parse_version

if TYPE_CHECKING:
    from kubectl_capc.cloudstack.client import CloudStackClient
    from kubectl_capc.cloudstack.credentials import Credentials
    from kubectl_capc.cloudstack.rows import OwnerScope, Template, Zone
    from kubectl_capc.kube.rest import Sender

__all__ = [
    "REPORT_KIND",
    "Ask",
    "ClusterResult",
    "Gathered",
    "Session",
    "ValidationReport",
    "ask_in_rounds",
    "build_report",
    "gather_facts",
    "parse_to",
    "read_workloads",
]

_log = logging.getLogger(__name__)

REPORT_KIND = "ValidationReport"
MAX_WORKERS = 8
# CloudStack's answer to an id it does not know; cloudstack-go reads it as "no match" (count 0).
_NO_SUCH_ID = "entity does not exist"

K = TypeVar("K")
V = TypeVar("V")

ClientFactory = Callable[["Credentials"], "CloudStackClient"]
# Answers one check question as one tenant.
Ask = Callable[[Tenant, Query], Lookup]


def parse_to(text: str) -> TargetVersion:
    """Parse `--to`; a bad value is a usage error that carries the check's ID."""
    try:
        return parse_target(text)
    except UsageError as err:
        raise UsageError(f"{INVALID_TARGET.id}: {err.message}", hint=err.hint) from None


# -- the report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterResult:
    namespace: str
    name: str
    findings: tuple[Finding, ...]

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)


@dataclass(frozen=True)
class ValidationReport:
    """Findings per cluster; `strict` makes warnings fail the validation too."""

    clusters: tuple[ClusterResult, ...]
    target: TargetVersion | None = None
    strict: bool = False

    @property
    def errors(self) -> int:
        return sum(c.count(Severity.ERROR) for c in self.clusters)

    @property
    def warnings(self) -> int:
        return sum(c.count(Severity.WARNING) for c in self.clusters)

    @property
    def passed(self) -> bool:
        return self.errors == 0 and not (self.strict and self.warnings)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.passed else ExitCode.FINDINGS

    def summary(self) -> str:
        clusters = _plural(len(self.clusters), "cluster")
        if not self.errors and not self.warnings:
            return f"{clusters} validated: no problems found."
        counts = f"{_plural(self.errors, 'error')}, {_plural(self.warnings, 'warning')}"
        verdict = "passed" if self.passed else "failed"
        strict = " (--strict: warnings fail)" if self.strict and self.warnings else ""
        return f"{clusters} validated: {counts}; {verdict}{strict}."

    def to_document(self) -> dict[str, Any]:
        """The typed `ValidationReport` object for `-o json|yaml`."""
        return {
            "apiVersion": API_VERSION,
            "kind": REPORT_KIND,
            "target": str(self.target) if self.target else None,
            "strict": self.strict,
            "summary": {
                "clusters": len(self.clusters),
                "errors": self.errors,
                "warnings": self.warnings,
                "passed": self.passed,
            },
            "clusters": [
                {
                    "namespace": result.namespace,
                    "name": result.name,
                    "errors": result.count(Severity.ERROR),
                    "warnings": result.count(Severity.WARNING),
                    "findings": [_finding_document(f) for f in result.findings],
                }
                for result in self.clusters
            ],
        }

    def rows(self, *, with_cluster: bool) -> list[tuple[str, ...]]:
        """Table rows: one per finding, cluster first when several clusters are shown."""
        out: list[tuple[str, ...]] = []
        for result in self.clusters:
            for f in result.findings:
                row = (f.check_id, f.severity.value, str(f.subject), f.message, f.hint)
                out.append((f"{result.namespace}/{result.name}", *row) if with_cluster else row)
        return out


TABLE_HEADERS = ("CHECK", "SEVERITY", "OBJECT", "MESSAGE", "FIX")


def _finding_document(finding: Finding) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": finding.check_id,
        "severity": finding.severity.value,
        "object": {
            "kind": finding.subject.kind,
            "namespace": finding.subject.namespace,
            "name": finding.subject.name,
        },
        "message": finding.message,
        "hint": finding.hint,
    }
    if finding.failure_domain:
        document["failureDomain"] = finding.failure_domain
    return document


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def build_report(
    inventories: Sequence[ClusterInventory],
    facts: Facts,
    target: TargetVersion | None = None,
    *,
    strict: bool = False,
    secrets: Collection[str] = (),
) -> ValidationReport:
    """Run every check on every cluster; `secrets` are values that must not appear in any text."""
    return ValidationReport(
        tuple(
            ClusterResult(
                inventory.namespace,
                inventory.name,
                tuple(_scrubbed(f, secrets) for f in run_checks(inventory, facts, target)),
            )
            for inventory in inventories
        ),
        target,
        strict,
    )


def _scrubbed(finding: Finding, secrets: Collection[str]) -> Finding:
    message, hint = finding.message, finding.hint
    for value in secrets:
        message, hint = message.replace(value, "***"), hint.replace(value, "***")
    if (message, hint) == (finding.message, finding.hint):
        return finding
    return Finding(finding.check_id, finding.severity, finding.subject, message, hint, finding.failure_domain)


# -- gathering -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A working CloudStack connection for one tenant: the client, whose objects it sees, the zones."""

    client: CloudStackClient
    owner: OwnerScope
    zones: tuple[Zone, ...]

    def limits(self) -> tuple[ScopeLimits, ...]:
        """The tenant's account, domain and project counts; none when they cannot be read."""
        from kubectl_capc.cloudstack.errors import CloudStackError

        try:
            return self.client.limits(self.owner)
        except CloudStackError as err:
            _log.info("CloudStack capacity not checked: %s", err.message)
            return ()

    def ask(self, query: Query) -> Lookup:
        """Answer one check question; an id CloudStack does not know is answered with no rows."""
        from kubectl_capc.cloudstack.errors import CloudStackError

        try:
            return Lookup(tuple(_rows(self, query)))
        except CloudStackError as err:
            if query.id and _NO_SUCH_ID in err.message:
                return Lookup()
            return Lookup(error=err.message)


@dataclass(frozen=True)
class Gathered:
    """The facts, plus the secret values the report must scrub."""

    facts: Facts
    secrets: frozenset[str] = field(default_factory=frozenset)


def gather_facts(
    api_client: Sender,
    inventories: Sequence[ClusterInventory],
    target: TargetVersion | None = None,
    *,
    make_client: ClientFactory | None = None,
    request_timeout: float | None = None,
) -> Gathered:
    """Ask Kubernetes and CloudStack everything the checks need, each distinct question once."""
    factory = make_client or _client_factory(request_timeout)
    domains = [fd for inventory in inventories for fd in inventory.failure_domains]
    secret_refs = list(dict.fromkeys(fd.credentials for fd in domains if fd.credentials.name))
    accesses = list(dict.fromkeys(a for inventory in inventories for a in required_access(inventory)))
    _log.info(
        "validating %d cluster(s): %d credentials Secret(s), %d permission(s)",
        len(inventories),
        len(secret_refs),
        len(accesses),
    )
    with ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="validate") as pool:
        secret_futures = {ref: pool.submit(_read_secret, api_client, ref) for ref in secret_refs}
        access = _reviews(pool, api_client, accesses)
        read = {ref: future.result() for ref, future in secret_futures.items()}
    secrets = {ref: facts for ref, (facts, _, _) in read.items()}
    credentials = {ref: creds for ref, (_, creds, _) in read.items() if creds is not None}
    secret_values = frozenset(value for _, _, values in read.values() for value in values)

    workloads_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workload")
    workloads = workloads_pool.submit(read_workloads, api_client, inventories, request_timeout, target)
    workloads_pool.shutdown(wait=False)
    tenants = list(dict.fromkeys(Tenant.of(fd) for fd in domains if fd.credentials in credentials))
    connected = _parallel(lambda t: _connect(t, credentials[t.secret], factory), tenants)
    connections = {tenant: connection for tenant, (connection, _) in connected.items()}
    sessions = {tenant: session for tenant, (_, session) in connected.items() if session is not None}
    secret_values |= {
        key
        for session in sessions.values()
        if session.owner.user is not None
        for key in (session.owner.user.api_key, session.owner.user.secret_key)
    }

    limits = _parallel(lambda t: sessions[t].limits(), list(sessions)) if target is not None else {}
    known = Facts(secrets, connections, {}, access, limits={t: found for t, found in limits.items() if found})
    facts = ask_in_rounds(inventories, known, target, lambda tenant, query: sessions[tenant].ask(query))
    _log.info("asked CloudStack %d distinct question(s) as %d tenant(s)", len(facts.lookups), len(sessions))
    return Gathered(replace(facts, workloads=workloads.result()), secret_values)


def read_workloads(
    api_client: Sender,
    inventories: Sequence[ClusterInventory],
    request_timeout: float | None = None,
    target: TargetVersion | None = None,
) -> dict[tuple[str, str], WorkloadReading]:
    """Each cluster's workload cluster, read concurrently, and the Machines of all of them with one LIST
    (of the one cluster, its namespace, or all namespaces). With a target, each also reads the objects
    of the built-in API versions removed between its control plane's version and the target."""
    from kubectl_capc.kube.workload import read_machines, read_workload

    if not inventories:
        return {}
    namespaces = {inventory.namespace for inventory in inventories}
    namespace = next(iter(namespaces)) if len(namespaces) == 1 else None
    cluster = inventories[0].name if len(inventories) == 1 else None
    machines = read_machines(api_client, inventories[0].capi_version, namespace=namespace, cluster=cluster)
    keys = [(inventory.namespace, inventory.name) for inventory in inventories]
    removed = {(i.namespace, i.name): _removed_apis(i, target) for i in inventories}
    read = _parallel(
        lambda key: read_workload(api_client, *key, request_timeout=request_timeout, removed=removed[key]),
        keys,
    )
    return {key: WorkloadReading(read[key].facts, machines.get(key, ())) for key in keys}


def _removed_apis(inventory: ClusterInventory, target: TargetVersion | None) -> tuple[RemovedApi, ...]:
    control_plane = inventory.control_plane
    if target is None or control_plane is None:
        return ()
    try:
        current = parse_version(control_plane.version)
    except ValueError:
        return ()
    return removed_between(current, (target.major, target.minor))


def ask_in_rounds(
    inventories: Sequence[ClusterInventory], facts: Facts, target: TargetVersion | None, ask: Ask
) -> Facts:
    """`facts` plus CloudStack's answers to what the checks ask, in two rounds: the zones first, then
    what the checks need inside the resolved zones.

    Each distinct (tenant, question) is asked once, only as a tenant whose connection is usable, and
    the questions of one round are asked concurrently.
    """
    for source in (first_queries, lambda inv, f: second_queries(inv, f, target)):
        wanted = _wanted(inventories, facts, source)
        answers = _parallel(lambda key: ask(*key), wanted)
        facts = replace(facts, lookups={**facts.lookups, **answers})
    return facts


def _client_factory(request_timeout: float | None) -> ClientFactory:
    from kubectl_capc.cloudstack.client import CloudStackClient

    timeout = request_timeout or 30.0

    def make(credentials: Credentials) -> CloudStackClient:
        return CloudStackClient(credentials, request_timeout=timeout)

    return make


QuerySource = Callable[[ClusterInventory, Facts], Iterable[tuple[FailureDomain, Query]]]


def _wanted(
    inventories: Sequence[ClusterInventory], facts: Facts, source: QuerySource
) -> list[tuple[Tenant, Query]]:
    """The round's questions not answered yet, each once, for tenants that can be asked."""
    keys = ((Tenant.of(fd), query) for inventory in inventories for fd, query in source(inventory, facts))
    return list(dict.fromkeys(key for key in keys if _usable(facts, key[0]) and key not in facts.lookups))


def _usable(facts: Facts, tenant: Tenant) -> bool:
    """Whether the tenant's login and scope worked: exactly the tenants gather_facts has a Session for."""
    connection = facts.connections.get(tenant)
    return connection is not None and connection.usable


def _parallel(work: Callable[[K], V], items: Sequence[K]) -> dict[K, V]:
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(items)), thread_name_prefix="validate") as pool:
        return dict(zip(items, pool.map(work, items), strict=True))


SecretRead = tuple[SecretFacts, "Credentials | None", frozenset[str]]


def _read_secret(api_client: Sender, ref: SecretRef) -> SecretRead:
    """A credentials Secret as checks see it (no values), the credentials when they are usable, and
    the key values, which no output may show."""
    from kubectl_capc.cloudstack.credentials import credentials_from_secret_data
    from kubectl_capc.domain.checks.credentials import url_problem
    from kubectl_capc.kube.read import fetch_secret

    answer = fetch_secret(api_client, ref)
    if answer.invalid:
        return SecretFacts(ref, SecretState.FAILED, answer.invalid), None, frozenset()
    if answer.data is None:
        state = {404: SecretState.MISSING, 401: SecretState.FORBIDDEN, 403: SecretState.FORBIDDEN}.get(
            answer.status, SecretState.FAILED
        )
        return SecretFacts(ref, state, f"HTTP {answer.status} {answer.reason}"), None, frozenset()
    data = answer.data
    present = frozenset(key for key, value in data.items() if value.strip())
    padded = frozenset(key for key, value in data.items() if value != value.strip() and value.strip())
    verify_ssl = data.get("verify-ssl")
    api_url = data.get("api-url", "")
    facts = SecretFacts(ref, SecretState.FOUND, "", present, api_url, verify_ssl, padded)
    # Both spellings of each key are secret: as stored, and as a reader that trims would send it.
    values = frozenset(
        form
        for key in ("api-key", "secret-key")
        for form in (data.get(key, ""), data.get(key, "").strip())
        if form
    )
    if any(key not in present for key in REQUIRED_SECRET_KEYS) or url_problem(api_url) is not None:
        return facts, None, values
    try:
        return facts, credentials_from_secret_data(data, f"Secret {ref}"), values
    except ConfigError:
        return facts, None, values


def _reviews(pool: ThreadPoolExecutor, api_client: Sender, accesses: Sequence[Access]) -> dict[Access, bool]:
    """Answer every permission with few SelfSubjectAccessReviews, however many namespaces `-A` spans.

    Permissions that differ only in namespace or name are first asked once for all namespaces: an
    authorizer that allows a verb in all namespaces allows it in each (RBAC has no deny rules). Only
    where that is denied is each one asked on its own, so a user bound by namespaced Roles still gets
    an exact answer per namespace.
    """
    from kubectl_capc.kube.read import access_review

    families: dict[Access, list[Access]] = {}
    for access in accesses:
        families.setdefault(Access(access.verb, access.group, access.resource, ""), []).append(access)
    first = {(family if len(members) > 1 else members[0]): members for family, members in families.items()}
    asked = {question: pool.submit(access_review, api_client, question) for question in first}
    answers: dict[Access, bool] = {}
    one_by_one = {}
    for question, members in first.items():
        allowed = asked[question].result()
        if allowed or len(members) == 1:
            answers.update(dict.fromkeys(members, allowed))
        else:
            one_by_one.update({member: pool.submit(access_review, api_client, member) for member in members})
    answers.update({member: future.result() for member, future in one_by_one.items()})
    return answers


def _connect(
    tenant: Tenant, credentials: Credentials, make_client: ClientFactory
) -> tuple[Connection, Session | None]:
    """Log in as the tenant (listZones), then resolve its account/domain/project."""
    from kubectl_capc.cloudstack.errors import (
        AccountWithoutKeys,
        CloudStackError,
        CloudStackRejected,
        CloudStackUnreachable,
    )

    try:
        client = make_client(credentials)
        zones = client.zones()
    except CloudStackUnreachable as err:
        return Connection(tenant, Reach.UNREACHABLE, err.message), None
    except CloudStackRejected as err:
        return Connection(tenant, Reach.REJECTED, err.message), None
    except CloudStackError as err:
        return Connection(tenant, Reach.FAILED, err.message), None
    try:
        owner = client.owner_scope(project=tenant.project, account=tenant.account, domain=tenant.domain)
    except AccountWithoutKeys as err:
        return Connection(tenant, Reach.OK, keyless=err.message), None
    except CloudStackError as err:
        return Connection(tenant, Reach.OK, scope_problems=(err.message,)), None
    return Connection(tenant, Reach.OK), Session(client, owner, zones)


def _rows(session: Session, query: Query) -> Iterable[Row]:
    """Run `query` through the CloudStack adapter; rows in the checks' vocabulary."""
    client, owner = session.client, session.owner
    ident, name, zone = query.id or None, query.name or None, query.zone_id or None
    if query.resource is Resource.ZONE:
        return (
            Row(z.id, z.name)
            for z in session.zones
            if (query.id and z.id == query.id) or (query.name and z.name.lower() == query.name.lower())
        )
    if query.resource is Resource.HYPERVISOR:
        return (Row(name=hypervisor) for hypervisor in client.hypervisors(query.zone_id))
    if query.resource is Resource.TEMPLATE:
        return (
            _template_row(t)
            for t in client.templates(name=name, template_id=ident, zone_id=zone, owner=owner)
        )
    if query.resource is Resource.NETWORK:
        entries = client.networks(network_id=ident, name=name, zone_id=zone, owner=owner)
    elif query.resource is Resource.SERVICE_OFFERING:
        entries = client.service_offerings(offering_id=ident, name=name, zone_id=zone, owner=owner)
    elif query.resource is Resource.DISK_OFFERING:
        entries = client.disk_offerings(offering_id=ident, name=name, zone_id=zone, owner=owner)
    elif query.resource is Resource.AFFINITY_GROUP:
        entries = client.affinity_groups(group_id=ident, owner=owner)
    else:
        entries = client.ssh_key_pairs(name=name, owner=owner)
    return (Row(e.id, e.name, e.zone_id, customized=e.customized, cpus=e.cpus,
                memory_mib=e.memory_mib, size_gib=e.disk_gib) for e in entries)  # fmt: skip


def _template_row(t: Template) -> Row:
    size_gib = -(-t.size // 2**30)  # whole GiB, rounded up
    return Row(t.id, t.name, t.zone_id, t.zone_name, t.ready, t.status, t.hypervisor, size_gib=size_gib)
