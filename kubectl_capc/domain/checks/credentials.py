"""Checks on each failure domain's CloudStack credentials: the Secret, its keys, and logging in with them.

CAPC reads `acsEndpoint` Secrets with the keys `api-url`, `api-key`, `secret-key` and an optional
`verify-ssl`, where only the exact string "false" turns TLS verification off.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from kubectl_capc.domain.checks.base import Check, Finding, ObjectRef, Severity
from kubectl_capc.domain.checks.common import cloudstack_cluster_ref
from kubectl_capc.domain.checks.facts import REQUIRED_SECRET_KEYS, Facts, Reach, SecretState, Tenant
from kubectl_capc.domain.model import ClusterInventory, FailureDomain, SecretRef

__all__ = [
    "ACCOUNT_WITHOUT_KEYS",
    "CLOUDSTACK_FAILED",
    "KEYS_MISSING",
    "KEYS_REJECTED",
    "SCOPE_NOT_FOUND",
    "SECRET_UNREADABLE",
    "TLS_UNVERIFIED",
    "UNREACHABLE",
    "URL_INVALID",
    "VALUE_PADDED",
    "check_credentials",
    "display_url",
    "url_problem",
]

SECRET_UNREADABLE = Check(
    "CAPC-S001",
    Severity.ERROR,
    "Credentials Secret missing or unreadable",
    "create the Secret named by the failure domain's acsEndpoint, or grant `get` on it",
)
KEYS_MISSING = Check(
    "CAPC-S002",
    Severity.ERROR,
    "Credentials Secret lacks a required key",
    "set api-url, api-key and secret-key in the Secret (kebab-case, as CAPC reads them)",
)
URL_INVALID = Check(
    "CAPC-S003",
    Severity.ERROR,
    "api-url is not a valid CloudStack API URL",
    "set api-url to the management server's API endpoint, e.g. https://cloud.example.com/client/api",
)
UNREACHABLE = Check(
    "CAPC-S004",
    Severity.ERROR,
    "CloudStack API unreachable",
    "check api-url, DNS, proxies and firewalls between this machine and the management server",
)
KEYS_REJECTED = Check(
    "CAPC-S005",
    Severity.ERROR,
    "CloudStack rejected the API keys",
    "generate new keys for the CAPC user in CloudStack and update api-key and secret-key",
)
TLS_UNVERIFIED = Check(
    "CAPC-S006",
    Severity.WARNING,
    "TLS verification is off",
    'verify-ssl "false" accepts any certificate; install a trusted certificate and remove the key',
)
SCOPE_NOT_FOUND = Check(
    "CAPC-S007",
    Severity.ERROR,
    "Failure domain account, domain or project not found",
    "fix the failure domain's account/domain/project, or give the API keys' user access to them",
)
ACCOUNT_WITHOUT_KEYS = Check(
    "CAPC-S010",
    Severity.ERROR,
    "Failure domain account has no user with API keys",
    "generate API keys for a user of the account (registerUserKeys): CAPC acts as the first user with keys",
)
VALUE_PADDED = Check(
    "CAPC-S009",
    Severity.ERROR,
    "Credentials Secret value has leading or trailing whitespace",
    "write the value without it: `kubectl create secret generic NAME --from-literal=KEY=VALUE`, "
    "or encode it with `echo -n VALUE | base64`",
)
CLOUDSTACK_FAILED = Check(
    "CAPC-S008",
    Severity.ERROR,
    "CloudStack request failed",
    "retry; if it persists, check the management server's logs for the failing command",
)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a CloudStack API endpoint, or None when it can."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as err:
        return f"is malformed ({err})"
    if parts.scheme not in ("http", "https"):
        return "is not an http or https URL"
    if not parts.hostname:
        return "names no host"
    return None


def display_url(url: str) -> str:
    """The URL without user info, query or fragment, safe to print."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _secret_subject(ref: SecretRef) -> ObjectRef:
    return ObjectRef("Secret", ref.namespace, ref.name)


def _domain_names(domains: Iterable[FailureDomain]) -> str:
    return ", ".join(sorted({fd.name for fd in domains}))


def check_credentials(inventory: ClusterInventory, facts: Facts) -> list[Finding]:
    findings: list[Finding] = []
    by_secret: dict[SecretRef, list[FailureDomain]] = {}
    by_tenant: dict[Tenant, list[FailureDomain]] = {}
    for fd in inventory.failure_domains:
        by_secret.setdefault(fd.credentials, []).append(fd)
        by_tenant.setdefault(Tenant.of(fd), []).append(fd)
    for ref, domains in by_secret.items():
        findings.extend(_secret_findings(ref, domains, facts))
    for tenant, domains in by_tenant.items():
        findings.extend(_connection_findings(inventory, tenant, domains, facts))
    return findings


def _secret_findings(ref: SecretRef, domains: list[FailureDomain], facts: Facts) -> list[Finding]:
    subject = _secret_subject(ref)
    users = f"used by failure domain {_domain_names(domains)}"
    secret = facts.secrets.get(ref)
    if secret is None:
        return []
    if secret.state is not SecretState.FOUND:
        reason = {
            SecretState.MISSING: "does not exist",
            SecretState.FORBIDDEN: "cannot be read with your permissions",
            SecretState.FAILED: "could not be read",
        }[secret.state]
        detail = f" ({secret.detail})" if secret.detail else ""
        return [SECRET_UNREADABLE.finding(subject, f"Secret {ref} {reason}{detail}; {users}")]
    findings = []
    missing = [key for key in REQUIRED_SECRET_KEYS if key not in secret.keys]
    if missing:
        findings.append(KEYS_MISSING.finding(subject, f"lacks {', '.join(missing)}; {users}"))
    if "api-url" not in missing:
        problem = url_problem(secret.api_url)
        if problem is not None:
            findings.append(
                URL_INVALID.finding(subject, f"api-url {display_url(secret.api_url)!r} {problem}")
            )
    for key in sorted(secret.padded):
        effect = {
            "verify-ssl": 'is not "false", so CAPC verifies TLS',
            "api-url": "is not the URL CAPC calls",
        }.get(key, "signs every request wrongly and CloudStack refuses it")
        findings.append(
            VALUE_PADDED.finding(
                subject,
                f"{key} has leading or trailing whitespace (often a newline): "
                f"as CAPC uses it, it {effect}; {users}",
            )
        )
    if secret.verify_ssl == "false":
        findings.append(
            TLS_UNVERIFIED.finding(subject, f'verify-ssl is "false": CAPC skips TLS verification; {users}')
        )
    return findings


def _connection_findings(
    inventory: ClusterInventory, tenant: Tenant, domains: list[FailureDomain], facts: Facts
) -> list[Finding]:
    connection = facts.connections.get(tenant)
    if connection is None:
        return []
    names = _domain_names(domains)
    secret = facts.secrets.get(tenant.secret)
    where = display_url(secret.api_url) if secret is not None else "CloudStack"
    subject = _secret_subject(tenant.secret)
    users = f"(failure domain {names})"
    if connection.reach is Reach.UNREACHABLE:
        text = connection.detail or f"cannot reach {where}"
        return [UNREACHABLE.finding(subject, f"{text} {users}", failure_domain=names)]
    if connection.reach is Reach.REJECTED:
        text = connection.detail or f"{where} refused the keys"
        return [KEYS_REJECTED.finding(subject, f"{text} {users}", failure_domain=names)]
    if connection.reach is Reach.FAILED:
        text = connection.detail or f"{where} failed"
        return [CLOUDSTACK_FAILED.finding(subject, f"{text} {users}", failure_domain=names)]
    if connection.keyless:
        ref = cloudstack_cluster_ref(inventory)
        return [ACCOUNT_WITHOUT_KEYS.finding(ref, f"{connection.keyless} {users}", failure_domain=names)]
    return [
        SCOPE_NOT_FOUND.finding(cloudstack_cluster_ref(inventory), f"{problem} {users}", failure_domain=names)
        for problem in connection.scope_problems
    ]
