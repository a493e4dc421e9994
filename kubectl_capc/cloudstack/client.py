"""The CloudStack adapter: every CloudStack API call of the plugin goes through `CloudStackClient`.

It wraps the `cs` library (signing, pagination, async jobs) and turns its failures into one-line
`CloudStackError`s that name the object and the fix, never a key or a signature. `cs` is imported inside
the functions that need it: with aiohttp installed, importing it costs about half a second.

Uploads of local images go straight to the secondary-storage VM (getUploadParamsForTemplate), as a
streamed multipart POST with a real Content-Length: the SSVM refuses chunked uploads, and the image
is never held in memory. The upload URL is always https on the SSVM's address, with a certificate
from CloudStack's own CA that clients rarely trust: uploads have their own TLS settings (`UploadTLS`).

`CloudStackClient._call` is the one place that decides which failed requests are sent again: reads
(list*) after any transient failure (connection refused, reset or timed out, CloudStack errors 530 and
534, HTTP 502-504, the API rate limit 429), with backoff and jitter; writes only when CloudStack cannot
have acted on them (the connection was never made, 429, or 401 with keys that changed meanwhile). A
connection refused before CloudStack ever answered this client fails at once: that is a wrong api-url
or a server that is down, not a blip. A 401 re-reads the credentials when the client knows where they
came from (`reload`): keys rotated in the failure domain's Secret during a run are picked up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from kubectl_capc.domain import testpoints
from kubectl_capc.domain.backoff import Backoff
from kubectl_capc.domain.checks.capacity import (
    Level,
    Resource,
    ResourceCount,
    ScopeLimits,
    parse_count,
)
from kubectl_capc.domain.errors import CapcError, ConfigError, ExitCode, one_line
from kubectl_capc.domain.images import failed_while_waiting
from kubectl_capc.domain.interrupts import StoppedAfterWrite, writing
from kubectl_capc.domain.model import CloudStackTemplateRow

__all__ = [
    "AccountWithoutKeys",
    "CloudStackClient",
    "CloudStackError",
    "CloudStackRejected",
    "CloudStackUnreachable",
    "Credentials",
    "Entry",
    "OwnerScope",
    "Template",
    "TemplateSpec",
    "UploadTLS",
    "UploadTicket",
    "VirtualMachine",
    "Zone",
    "credentials_from_config",
    "credentials_from_secret_data",
    "network_failure",
]

_log = logging.getLogger(__name__)


def _import_cs() -> None:
    """Import `cs` once, without the asyncio client and the JSON colouring its package also loads when
    aiohttp and pygments are installed: the plugin uses neither, and aiohttp alone costs about 0.2 s of
    CPU. The `from cs import ...` after each call then finds the module loaded."""
    if "cs" in sys.modules:
        return
    blocked = [name for name in ("aiohttp", "pygments") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # an import of it fails: cs goes without
    try:
        import cs  # noqa: F401
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


T = TypeVar("T")

UPLOAD_CHUNK_BYTES = 1 << 20
RETRIES = Backoff(attempts=5, base=1.0, cap=8.0)
"""CloudStack requests: up to 5 tries over roughly 8 to 15 seconds."""
_RETRIED_READ_ERRORS = frozenset({530, 534})
"""CloudStack's INTERNAL_ERROR and RESOURCE_UNAVAILABLE_ERROR: often a passing failure of one request."""
_API_LIMIT_EXCEEDED = 429
_OVERLOADED = frozenset({502, 503, 504})
# The query string of a request URL carries apiKey and signature; it must never reach a message.
_QUERY_RE = re.compile(r"\?[^\s'\")]*")


class CloudStackError(CapcError):
    """CloudStack refused a request, failed a job, could not be reached, or a template did not get ready.

    Shares the exit code of the other remote-API failures.
    """

    exit_code = ExitCode.KUBE_API


class CloudStackUnreachable(CloudStackError):
    """No answer from the API: connection refused or timed out, DNS or TLS failure."""


class CloudStackRejected(CloudStackError):
    """CloudStack refused the API key or the request signature (HTTP 401)."""


class AccountWithoutKeys(CloudStackError):
    """A failure domain's account has no user with API keys, so CAPC cannot act as it."""


@dataclass(frozen=True)
class Credentials:
    """Where and as whom to call the CloudStack API; `source` says where they came from, for messages."""

    endpoint: str
    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    verify_ssl: bool = True
    ca_bundle: str | None = None
    source: str = "the CloudStack client configuration"


def credentials_from_secret_data(data: Mapping[str, str], source: str) -> Credentials:
    """Credentials from a CAPC failure-domain Secret's decoded data (`api-url`, `api-key`, `secret-key`,
    `verify-ssl`), used verbatim as CAPC uses them: a value with a trailing newline is sent with it (and
    refused by CloudStack), and only the exact string "false" turns TLS verification off."""
    missing = [key for key in ("api-url", "api-key", "secret-key") if not data.get(key)]
    if missing:
        raise ConfigError(
            f"{source} lacks {', '.join(missing)}",
            hint="CAPC failure-domain Secrets need the keys api-url, api-key and secret-key",
        )
    endpoint = data["api-url"]
    _check_endpoint(endpoint, source)
    verify = data.get("verify-ssl") != "false"
    if not verify:
        _log.warning("%s sets verify-ssl to false: TLS certificates of %s are not checked", source, endpoint)
    return Credentials(endpoint, data["api-key"], data["secret-key"], verify, None, source)


def credentials_from_config(region: str | None = None) -> Credentials:
    """Credentials from the `cs` client configuration: `CLOUDSTACK_*` variables or `~/.cloudstack.ini`
    (section `region`, else `$CLOUDSTACK_REGION`, else `cloudstack`)."""
    _import_cs()
    from cs import read_config

    hint = (
        "set CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY and CLOUDSTACK_SECRET, write ~/.cloudstack.ini, "
        "or pass --cluster"
    )
    try:
        config = read_config(region)
    except SystemExit as err:  # cs exits when it finds no configuration file at all
        raise ConfigError(
            f"no CloudStack client configuration found: {one_line(str(err))}", hint=hint
        ) from None
    except ValueError as err:
        raise ConfigError(f"the CloudStack client configuration is incomplete: {err}", hint=hint) from None
    source = "$CLOUDSTACK_* variables" if os.environ.get("CLOUDSTACK_ENDPOINT") else "~/.cloudstack.ini"
    endpoint = str(config.get("endpoint") or "")
    if not endpoint:
        raise ConfigError(f"no CloudStack endpoint in {source}", hint=hint)
    _check_endpoint(endpoint, source)
    key, secret = config.get("key"), config.get("secret")
    if not key or not secret:
        raise ConfigError(f"no API key or secret key in {source}", hint=hint)
    verify = config.get("verify")
    ca_bundle = (
        verify if isinstance(verify, str) and verify and verify.lower() not in ("true", "false") else None
    )
    insecure = config.get("dangerous_no_tls_verify") is True
    return Credentials(endpoint, str(key), str(secret), not insecure, ca_bundle, source)


def _check_endpoint(endpoint: str, source: str) -> None:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"the CloudStack API URL {endpoint!r} in {source} is not an http(s) URL",
            hint="use the management server's API URL, e.g. https://cloud.example.com/client/api",
        )


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


@dataclass(frozen=True)
class UploadTicket:
    """getUploadParamsForTemplate's answer. The metadata and signature authorise one upload: keep them
    out of logs like a key."""

    template_id: str
    zone_id: str
    post_url: str
    expires: str
    metadata: str = field(repr=False)
    signature: str = field(repr=False)


@dataclass(frozen=True)
class UploadTLS:
    """How the secondary-storage VM's certificate is checked (`--upload-ca-file`, `--upload-insecure`).

    Neither given: the API endpoint's CA bundle if it has one, else the system's trust store."""

    ca_file: Path | None = None
    insecure: bool = False

    def verify(self, credentials: Credentials) -> bool | str:
        """requests' `verify` for an upload made with `credentials`."""
        if self.ca_file is not None:
            return str(self.ca_file)
        if self.insecure:
            return False
        return credentials.ca_bundle or True


ProgressCallback = Callable[[Sequence[Template]], None]
UploadProgress = Callable[[int, int], None]


class CloudStackClient:
    """One set of credentials; methods name the CloudStack objects they act on in their errors."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        request_timeout: float = 30.0,
        job_timeout: float = 900.0,
        poll_interval: float = 5.0,
    ) -> None:
        self.poll_interval = poll_interval
        self.reload: Callable[[], Credentials] | None = None
        """Reads the credentials again (from their Secret) after a 401; None: a 401 is final."""
        self._request_timeout = request_timeout
        self._job_timeout = job_timeout
        self._answered = False
        self._users: dict[Credentials, CloudStackClient] = {}
        self._use(credentials)

    def _use(self, credentials: Credentials) -> None:
        _import_cs()
        from cs import CloudStack

        self.credentials = credentials
        self._api = CloudStack(
            endpoint=credentials.endpoint,
            key=credentials.api_key,
            secret=credentials.secret_key,
            timeout=max(1, round(self._request_timeout)),
            method="post",  # keeps parameters (URLs, names) out of proxy and server access logs
            verify=credentials.ca_bundle,
            dangerous_no_tls_verify=not credentials.verify_ssl,
            retry=0,  # retries are decided in _call
            job_timeout=max(1, round(self._job_timeout)),
            poll_interval=self.poll_interval,
        )

    @property
    def endpoint(self) -> str:
        return self.credentials.endpoint

    # -- reads -------------------------------------------------------------------------------------

    def zones(self) -> tuple[Zone, ...]:
        rows = self._call("list zones", lambda: self._api.listZones(fetch_list=True))
        return tuple(
            Zone(str(z.get("id", "")), str(z.get("name", "")), str(z.get("allocationstate", "")))
            for z in rows
        )

    def zone(self, id_or_name: str) -> Zone:
        """A zone by id, else by name; a CloudStackError names the zones that exist when none matches."""
        zones = self.zones()
        found = next((z for z in zones if z.id == id_or_name), None) or next(
            (z for z in zones if z.name == id_or_name), None
        )
        if found is None:
            names = ", ".join(z.name for z in zones) or "none"
            raise CloudStackError(
                f"zone {id_or_name!r} does not exist at {self.endpoint} (zones: {names})",
                hint=f"fix the failure domain's zone, or the credentials in {self.credentials.source}",
            )
        return found

    def owner_scope(self, *, project: str = "", account: str = "", domain: str = "") -> OwnerScope:
        """Resolve a failure domain's `account` + `domain` and `project` as CAPC does; the caller's own
        account when none is set.

        With an account: the domain by its exact path (ROOT/<path>), the account in it, then the first
        user of the account whose getUserKeys returns keys; reads for this scope are then made as that
        user, as CAPC makes them (`AccountWithoutKeys` when it has none). The project is looked up as
        whoever acts (the user, else the caller) and must match exactly one project.
        """
        user: Credentials | None = None
        domain_id: str | None = None
        if account:
            domain_id, path = self._domain_id(domain, account)
            self._account_in(account, domain_id, path)
            user = self._user_keys(account, domain_id, path)
        if not project:
            return OwnerScope(account=account or None, domain_id=domain_id, user=user)
        actor = self._acting(user)
        rows = actor._call(
            f"find project {project!r}",
            lambda: actor._api.listProjects(name=project, listall=True, fetch_list=True),
        )
        matches = [row for row in rows if str(row.get("name", "")).lower() == project.lower()]
        whose = f" of account {account!r}" if account else ""
        if len(matches) != 1:
            found = "is not visible" if not matches else f"matches {len(matches)} projects"
            raise CloudStackError(
                f"project {project!r}{whose} {found} at {self.endpoint}",
                hint="fix the failure domain's project, or make the account a member of exactly one "
                f"project of that name (credentials: {actor.credentials.source})",
            )
        return OwnerScope(str(matches[0]["id"]), account or None, domain_id, user)

    def _domain_id(self, domain: str, account: str) -> tuple[str, str]:
        """The id of the domain at `domain` (ROOT added when missing, then matched exactly), and its path."""
        parts = (domain or "ROOT").split("/")
        if parts[0].upper() != "ROOT":
            parts.insert(0, "ROOT")
        parts[0] = "ROOT"
        path = "/".join(parts)
        rows = self._call(
            f"find domain {path}",
            lambda: self._api.listDomains(
                name=parts[-1], level=len(parts) - 1, listall=True, fetch_list=True
            ),
        )
        found = next((row for row in rows if str(row.get("path", "")) == path), None)
        if found is None:
            raise CloudStackError(
                f"domain {path} of account {account!r} is not visible at {self.endpoint}",
                hint="fix the failure domain's domain: its exact path, such as ROOT/team (names are "
                "case-sensitive), or use the keys of an admin of that domain",
            )
        return str(found["id"]), path

    def _account_in(self, account: str, domain_id: str, path: str) -> None:
        rows = self._call(
            f"find account {account!r}",
            lambda: self._api.listAccounts(name=account, domainid=domain_id, listall=True, fetch_list=True),
        )
        if len(rows) != 1:
            found = "does not exist" if not rows else f"matches {len(rows)} accounts"
            raise CloudStackError(
                f"account {account!r} {found} in domain {path} at {self.endpoint}",
                hint="fix the failure domain's account, or use the keys of an admin of that domain",
            )

    def _user_keys(self, account: str, domain_id: str, path: str) -> Credentials:
        """The API keys of the first user of the account that has them (listUsers, then getUserKeys)."""
        users = self._call(
            f"list the users of account {account!r}",
            lambda: self._api.listUsers(account=account, domainid=domain_id, listall=True, fetch_list=True),
        )
        for user in users:
            username = str(user.get("username", user.get("id", "")))
            keys = self._keys_of(str(user.get("id", "")), username)
            if keys.get("apikey") and keys.get("secretkey"):
                current = self.credentials
                return Credentials(
                    current.endpoint,
                    str(keys["apikey"]),
                    str(keys["secretkey"]),
                    current.verify_ssl,
                    current.ca_bundle,
                    f"the API keys of user {username} of account {account} (found with {current.source})",
                )
        raise AccountWithoutKeys(
            f"account {account!r} in domain {path} has no user with API keys at {self.endpoint}: "
            "CAPC cannot act as it",
            hint="generate keys for a user of that account (registerUserKeys, or Generate Keys in the UI)",
        )

    def _keys_of(self, user_id: str, username: str) -> Mapping[str, Any]:
        answer = self._call(f"get the API keys of user {username}", lambda: self._api.getUserKeys(id=user_id))
        keys = answer.get("userkeys", {}) if isinstance(answer, Mapping) else {}
        return keys if isinstance(keys, Mapping) else {}

    def _acting(self, user: Credentials | None) -> CloudStackClient:
        """The client that signs requests with `user`'s keys (one per user), else this one."""
        if user is None:
            return self
        actor = self._users.get(user)
        if actor is None:
            actor = CloudStackClient(
                user,
                request_timeout=self._request_timeout,
                job_timeout=self._job_timeout,
                poll_interval=self.poll_interval,
            )
            self._users[user] = actor
        return actor

    def limits(self, owner: OwnerScope = OwnerScope()) -> tuple[ScopeLimits, ...]:
        """The counts (`<resource>limit/total/available`) of the account that acts in `owner`, its
        domain and its project, as that account sees them: one list call per level."""
        actor = self._acting(owner.user)
        accounts = actor._call("list the account's limits", lambda: actor._api.listAccounts(fetch_list=True))
        if not accounts:
            return ()
        account = accounts[0]
        found = [_scope_limits(Level.ACCOUNT, str(account.get("name", "")), account)]
        domain_id = str(account.get("domainid", ""))
        domains = actor._call(
            "list the domain's limits", lambda: actor._api.listDomains(id=domain_id, fetch_list=True)
        )
        found += [
            _scope_limits(Level.DOMAIN, str(row.get("path") or row.get("name", "")), row)
            for row in domains
            if str(row.get("id", "")) == domain_id
        ]
        if owner.project_id:
            project_id = owner.project_id
            projects = actor._call(
                "list the project's limits",
                lambda: actor._api.listProjects(id=project_id, listall=True, fetch_list=True),
            )
            found += [
                _scope_limits(Level.PROJECT, str(row.get("name", "")), row)
                for row in projects
                if str(row.get("id", "")) == project_id
            ]
        return tuple(found)

    def hypervisors(self, zone_id: str) -> tuple[str, ...]:
        rows = self._call(
            f"list the hypervisors of zone {zone_id}", lambda: self._api.listHypervisors(zoneid=zone_id)
        )
        items = rows.get("hypervisor", []) if isinstance(rows, Mapping) else []
        return tuple(str(item.get("name", "")) for item in items)

    def templates(
        self,
        *,
        template_filter: str = "executable",
        name: str | None = None,
        template_id: str | None = None,
        zone_id: str | None = None,
        owner: OwnerScope = OwnerScope(),
    ) -> tuple[Template, ...]:
        """listTemplates rows (one per template and zone), all pages. `name` matches as CloudStack
        matches it (whole name, case-insensitive), which is also how CAPC finds templates."""
        what = (
            "list templates"
            + (f" named {name!r}" if name else "")
            + (f" with id {template_id}" if template_id else "")
        )
        actor = self._acting(owner.user)
        rows = actor._call(
            what,
            lambda: actor._api.listTemplates(
                templatefilter=template_filter,
                name=name,
                id=template_id,
                zoneid=zone_id,
                fetch_list=True,
                **owner.read_params(),
            ),
        )
        return tuple(Template.from_api(row) for row in rows)

    def virtual_machines(
        self, *, zone_id: str, owner: OwnerScope = OwnerScope()
    ) -> tuple[VirtualMachine, ...]:
        """Every VM of the owner in one zone (listVirtualMachines with listall), all pages."""
        rows = self._call(
            f"list the virtual machines of zone {zone_id}",
            lambda: self._api.listVirtualMachines(
                zoneid=zone_id, listall=True, fetch_list=True, **owner.params()
            ),
        )
        return tuple(VirtualMachine.from_api(row) for row in rows)

    def service_offerings(
        self,
        *,
        offering_id: str | None = None,
        name: str | None = None,
        zone_id: str | None = None,
        owner: OwnerScope = OwnerScope(),
    ) -> tuple[Entry, ...]:
        """listServiceOfferings by id (any zone) or by name, within a zone when `zone_id` is given, as
        the owner's user sees them (offerings may be limited to domains)."""
        return self._acting(owner.user)._entries(
            "listServiceOfferings", "service offerings", id=offering_id, name=name, zoneid=zone_id
        )

    def disk_offerings(
        self,
        *,
        offering_id: str | None = None,
        name: str | None = None,
        zone_id: str | None = None,
        owner: OwnerScope = OwnerScope(),
    ) -> tuple[Entry, ...]:
        return self._acting(owner.user)._entries(
            "listDiskOfferings", "disk offerings", id=offering_id, name=name, zoneid=zone_id
        )

    def networks(
        self,
        *,
        network_id: str | None = None,
        name: str | None = None,
        zone_id: str | None = None,
        owner: OwnerScope = OwnerScope(),
    ) -> tuple[Entry, ...]:
        """listNetworks as the owner sees them: its own networks and the shared ones."""
        return self._acting(owner.user)._entries(
            "listNetworks", "networks", id=network_id, name=name, zoneid=zone_id, **owner.read_params()
        )

    def affinity_groups(
        self, *, group_id: str | None = None, owner: OwnerScope = OwnerScope()
    ) -> tuple[Entry, ...]:
        return self._acting(owner.user)._entries(
            "listAffinityGroups", "affinity groups", id=group_id, **owner.read_params()
        )

    def ssh_key_pairs(
        self, *, name: str | None = None, owner: OwnerScope = OwnerScope()
    ) -> tuple[Entry, ...]:
        return self._acting(owner.user)._entries(
            "listSSHKeyPairs", "SSH key pairs", name=name, **owner.read_params()
        )

    def _entries(self, command: str, what: str, **params: str | None) -> tuple[Entry, ...]:
        shown = "".join(f" {key}={value}" for key, value in params.items() if value and key != "domainid")
        rows = self._call(
            f"list {what}{shown}", lambda: getattr(self._api, command)(fetch_list=True, **params)
        )
        return tuple(Entry.from_api(row) for row in rows)

    # -- writes ------------------------------------------------------------------------------------

    def register_template(
        self, spec: TemplateSpec, url: str, zone_ids: Sequence[str]
    ) -> tuple[Template, ...]:
        """registerTemplate: CloudStack records the template at once and downloads it in the background
        into every zone of `zone_ids`; watch the download with `wait_until_ready`."""
        answer = self._write(
            f"register template {spec.name!r} from {url}",
            lambda: self._api.registerTemplate(
                url=_signable_url(url), zoneids=list(zone_ids), **spec.params()
            ),
        )
        return tuple(Template.from_api(row) for row in answer.get("template", []))

    def upload_ticket(self, spec: TemplateSpec, zone_id: str) -> UploadTicket:
        """getUploadParamsForTemplate: creates the template record (NotUploaded) and authorises one POST."""
        answer = self._write(
            f"prepare the upload of template {spec.name!r}",
            lambda: self._api.getUploadParamsForTemplate(zoneid=zone_id, **spec.params()),
        )
        params = answer.get("getuploadparams", answer)
        return UploadTicket(
            template_id=str(params["id"]),
            zone_id=zone_id,
            post_url=str(params["postURL"]),
            expires=str(params["expires"]),
            metadata=str(params["metadata"]),
            signature=str(params["signature"]),
        )

    def upload(
        self,
        ticket: UploadTicket,
        path: Path,
        progress: UploadProgress | None = None,
        *,
        filename: str | None = None,
        tls: UploadTLS | None = None,
    ) -> None:
        """POST `path` to the upload URL as multipart/form-data, streamed in 1 MiB chunks, under
        `filename` (default: the file's own name); the SSVM checks the name's extension."""
        import requests

        body = MultipartFileBody(path, progress, filename=filename)
        headers = {
            "Content-Type": body.content_type,
            "X-signature": ticket.signature,
            "X-expires": ticket.expires,
            "X-metadata": ticket.metadata,
        }
        what = f"upload {path.name} for template {ticket.template_id}"
        where = _without_query(ticket.post_url)
        tls = tls or UploadTLS()
        verify = tls.verify(self.credentials)
        if verify is False:
            _log.warning(
                "--upload-insecure: the certificate of the secondary-storage VM at %s is not checked",
                urlsplit(where).netloc,
            )
        try:
            with _quiet_insecure_warning(verify is False):
                response = requests.post(
                    ticket.post_url,
                    # urllib3 sends any buffer; the stubs only name bytes and str.
                    data=cast("Iterable[bytes]", body),
                    headers=headers,
                    verify=verify,
                    timeout=(self._request_timeout, max(self._request_timeout, 300.0)),
                )
        except requests.exceptions.SSLError as err:
            trusted = f"the CA in {tls.ca_file}" if tls.ca_file is not None else "the trusted CAs"
            raise CloudStackUnreachable(
                f"{what}: the certificate of the secondary-storage VM at {where} is not signed by "
                f"{trusted}: {self._scrub(network_failure(err))}",
                hint="pass --upload-ca-file FILE with the CA that signed it (CloudStack's own root CA "
                "unless an administrator installed another certificate), or --upload-insecure",
            ) from None
        except requests.RequestException as err:
            raise CloudStackError(
                f"{what} to {where} failed: {self._scrub(network_failure(err))}",
                hint="the upload URL points at the zone's secondary-storage VM: check that it is reachable",
            ) from None
        if response.status_code != 200:
            raise CloudStackError(
                f"{what}: the secondary-storage VM answered HTTP {response.status_code}: "
                f"{self._scrub(response.text[:300])}",
                hint="re-run the command: it deletes the incomplete template and uploads again",
            )

    def copy_template(
        self,
        template_id: str,
        source_zone_id: str,
        zones: Sequence[Zone],
        *,
        timeout: float,
        on_progress: ProgressCallback | None = None,
        started: float | None = None,
    ) -> None:
        """copyTemplate, an async job that ends once the copies are in every zone of `zones`; followed
        here for at most `timeout` seconds from now (the caller's budget, not a fixed job timeout).

        Each poll asks for the job and lists the template, so `on_progress` sees every zone's copy move
        on. A failed job names the zone (the one whose copy is in error, else all of them) and
        CloudStack's error; a job still running when the time is up names each zone's progress.
        `started` is when the caller's time limit began, for the time stated in that message.
        """
        now = time.monotonic()
        deadline, started = now + timeout, now if started is None else started
        names = {zone.id: zone.name for zone in zones}
        what = f"copy template {template_id} to zone {', '.join(names.values())}"
        going_on = "CloudStack goes on copying; the next run waits for the copy instead of copying again"
        answer = self._write(
            what,
            lambda: self._api.copyTemplate(
                id=template_id, sourcezoneid=source_zone_id, destzoneids=list(names), fetch_result=False
            ),
            going_on=going_on,
        )
        job_id = str(answer.get("jobid") or "")
        if not job_id:  # answered at once, without a job
            return
        try:
            self._follow_copy(
                job_id, template_id, names, what, deadline=deadline, started=started, on_progress=on_progress
            )
        except StoppedAfterWrite:
            raise
        except KeyboardInterrupt:
            raise StoppedAfterWrite(what, going_on) from None  # the job runs on without us

    def _follow_copy(
        self,
        job_id: str,
        template_id: str,
        names: Mapping[str, str],
        what: str,
        *,
        deadline: float,
        started: float,
        on_progress: ProgressCallback | None,
    ) -> None:
        rows: list[Template] = []
        while True:
            job = self._call(f"follow the job of {what}", lambda: self._api.queryAsyncJobResult(jobid=job_id))
            rows = [row for row in self.templates(template_id=template_id) if row.zone_id in names]
            if on_progress is not None:
                on_progress(rows)
            status = int(job.get("jobstatus") or 0)
            if status == 1 and not job.get("jobresultcode"):
                return
            if status != 0:
                raise self._copy_failed(template_id, names, rows, job.get("jobresult"))
            if time.monotonic() >= deadline:
                progress = {row.zone_id: row.status or "no status" for row in rows if not row.ready}
                pending = [f"{names[z]}: {progress.get(z, 'no copy yet')}" for z in names]
                named = f"template {rows[0].name!r} ({template_id})" if rows else f"template {template_id}"
                raise CloudStackError(
                    f"the copy of {named} to zone {', '.join(names.values())} is not done after "
                    f"{_seconds(time.monotonic() - started)} ({'; '.join(pending)})",
                    hint="CloudStack keeps copying: re-run the same command to keep waiting, "
                    "or raise --timeout",
                )
            testpoints.reached(f"copying template {template_id} to {', '.join(sorted(names.values()))}")
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def _copy_failed(
        self, template_id: str, names: Mapping[str, str], rows: Sequence[Template], result: Any
    ) -> CloudStackError:
        error = result if isinstance(result, Mapping) else {}
        code = error.get("errorcode", "?")
        text = self._scrub(str(error.get("errortext") or "no details"))
        failed = [names[row.zone_id] for row in rows if failed_while_waiting(row.ready, row.status)]
        zones = (
            [n for n in names.values() if re.search(rf"\b{re.escape(n)}\b", text)]
            or failed
            or list(names.values())
        )
        return CloudStackError(
            f"the copy of template {template_id} to zone {', '.join(zones)} failed: "
            f"CloudStack error {code}: {text}",
            hint="fix what CloudStack reports about that zone's secondary storage, then re-run the same "
            "command (with --replace while the failed copy is still listed)",
        )

    def delete_template(self, template_id: str, zone_id: str | None = None) -> None:
        """deleteTemplate (an async job), from one zone when `zone_id` is given."""
        where = f" from zone {zone_id}" if zone_id else ""
        self._write(
            f"delete template {template_id}{where}",
            lambda: self._api.deleteTemplate(id=template_id, zoneid=zone_id, fetch_result=True),
        )

    def tag_template(self, template_id: str, tags: Mapping[str, str]) -> None:
        """createTags on the template (an async job)."""
        pairs = [{"key": key, "value": value} for key, value in tags.items()]
        self._write(
            f"tag template {template_id}",
            lambda: self._api.createTags(
                resourceids=[template_id], resourcetype="Template", tags=pairs, fetch_result=True
            ),
        )

    # -- waiting -----------------------------------------------------------------------------------

    def wait_until_ready(
        self,
        template_id: str,
        zone_ids: Sequence[str],
        *,
        timeout: float,
        failed: Callable[[Template], bool],
        on_progress: ProgressCallback | None = None,
        started: float | None = None,
    ) -> tuple[Template, ...]:
        """Poll listTemplates until the template is ready in every zone of `zone_ids`, for at most
        `timeout` seconds from now.

        `failed` says which status texts are errors (the caller's policy); the first failed zone ends the
        wait with a CloudStackError naming it. `on_progress` sees every poll's rows. `started` is when
        the caller's own time limit began (`time.monotonic()`; default: now): a timeout reports the time
        waited since then, which is what the operator's `--timeout` measured.
        """
        now = time.monotonic()
        deadline = now + timeout
        started = now if started is None else started
        wanted = set(zone_ids)
        while True:
            listed = self.templates(template_id=template_id)
            rows = [row for row in listed if row.zone_id in wanted]
            if on_progress is not None:
                on_progress(rows)
            if rows and not all(row.ready for row in rows):
                zones = ", ".join(sorted(row.zone_name for row in rows))
                testpoints.reached(f"waiting for template {rows[0].name} in {zones}")
            for row in rows:
                if not row.ready and failed(row):
                    raise CloudStackError(
                        f"template {row.name!r} ({template_id}) failed in zone {row.zone_name}: {row.status}",
                        hint="fix the image source, then delete the failed template and register it again "
                        "(`kubectl capc image register ... --replace` does both)",
                    )
            ready = {row.zone_id for row in rows if row.ready}
            if wanted <= ready:
                return tuple(rows)
            if time.monotonic() >= deadline:
                pending = [f"{row.zone_name}: {row.status or 'no status'}" for row in rows if not row.ready]
                pending += [f"{zone}: no copy" for zone in sorted(wanted - {row.zone_id for row in rows})]
                hint = "re-run the same command to keep waiting, or raise --timeout"
                if any(row.status in ("UploadInProgress", "NotUploaded") for row in rows):
                    hint += "; if the upload was interrupted, re-run with --replace to upload again"
                named = f"template {rows[0].name!r} ({template_id})" if rows else f"template {template_id}"
                waited = _seconds(time.monotonic() - started)
                raise CloudStackError(
                    f"{named} is not ready after {waited} ({'; '.join(pending)})", hint=hint
                )
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    # -- plumbing ----------------------------------------------------------------------------------

    def _write(self, what: str, request: Callable[[], T], *, going_on: str = "") -> T:
        """A command that changes something: Ctrl-C waits for it, and it is retried only when safe.
        `going_on`: what the command starts that CloudStack carries on with after a Ctrl-C."""
        with writing(what, going_on):
            return self._call(what, request, write=True)

    def _call(self, what: str, request: Callable[[], T], *, write: bool = False) -> T:
        """Run one `cs` request, retrying as the module docstring says; a failure that stays becomes a
        CloudStackError saying what failed and why."""
        attempt = 1
        reloaded = False
        while True:
            _log.debug("CloudStack %s: %s", self.endpoint, what)
            try:
                result = request()
            except Exception as err:
                if not reloaded and self._rejected(err) and self._reload():
                    reloaded = True
                    continue
                delay = _retry_delay(err, attempt, write=write, answered_before=self._answered)
                self._answered = self._answered or _answered(err)
                if delay is None:
                    raise self._error(what, err, write=write) from None
                _log.info("CloudStack %s: %s failed (%s); trying again in %.1fs", self.endpoint, what,
                          self._scrub(network_failure(err)), delay)  # fmt: skip
                time.sleep(delay)
                attempt += 1
            else:
                self._answered = True
                return result

    def _rejected(self, err: Exception) -> bool:
        _import_cs()
        from cs import CloudStackApiException

        return isinstance(err, CloudStackApiException) and _error_code(err) == 401

    def _reload(self) -> bool:
        """After a 401: take the credentials again from where they came; True when they changed."""
        if self.reload is None:
            return False
        fresh = self.reload()
        current = self.credentials
        if (fresh.endpoint, fresh.api_key, fresh.secret_key) == (
            current.endpoint, current.api_key, current.secret_key
        ):  # fmt: skip
            return False
        _log.info("CloudStack rejected the keys; using the new ones from %s", fresh.source)
        self._use(fresh)
        return True

    def _error(self, what: str, err: Exception, *, write: bool) -> CloudStackError:
        import requests

        _import_cs()
        from cs import CloudStackApiException, CloudStackException

        if isinstance(err, CloudStackApiException):
            return self._api_error(what, err)
        if isinstance(err, CloudStackException):
            response = getattr(err, "response", None)
            if response is not None and getattr(response, "status_code", None) == 408:
                return CloudStackError(
                    f"{what}: CloudStack's job did not finish in time at {self.endpoint}",
                    hint="check the job in CloudStack, then re-run the command",
                )
            return CloudStackError(
                f"{what}: unexpected answer from {self.endpoint}: {self._scrub(str(err))}",
                hint=f"check that api-url in {self.credentials.source} is the API URL, ending in /client/api",
            )
        if isinstance(err, requests.exceptions.SSLError):
            return CloudStackUnreachable(
                f"{what}: TLS failure talking to {self.endpoint}: {self._scrub(network_failure(err))}",
                hint=f"fix the server certificate or the CA configured in {self.credentials.source}",
            )
        if isinstance(err, requests.RequestException) and write and _may_have_arrived(err):
            return CloudStackUnreachable(
                f"{what}: no answer from CloudStack at {self.endpoint} "
                f"({self._scrub(network_failure(err))}); it may or may not have been done",
                hint="re-run the same command: it looks at what exists in CloudStack before acting again",
            )
        if isinstance(err, requests.Timeout):
            return CloudStackUnreachable(
                f"{what}: CloudStack at {self.endpoint} did not answer within {self._request_timeout:g}s",
                hint="the management server is slow or overloaded: re-run the same command later, or "
                "raise --request-timeout",
            )
        if isinstance(err, requests.RequestException):
            return CloudStackUnreachable(
                f"{what}: cannot reach CloudStack at {self.endpoint}: {self._scrub(network_failure(err))}",
                hint=f"check api-url in {self.credentials.source} and that the management server is up",
            )
        raise err

    def _api_error(self, what: str, err: Any) -> CloudStackError:
        error = err.error if isinstance(err.error, Mapping) else {}
        code = error.get("errorcode") or getattr(getattr(err, "response", None), "status_code", "?")
        text = self._scrub(str(error.get("errortext") or (err.args[0] if err.args else "no details")))
        source = self.credentials.source
        if code == 401:
            return CloudStackRejected(
                f"{what}: CloudStack at {self.endpoint} rejected the credentials from {source} ({text})",
                hint=f"check api-key and secret-key in {source}, and that the key is enabled",
            )
        if code == 432:
            return CloudStackError(
                f"{what}: this CloudStack or this account does not offer the command ({text})",
                hint="use an account whose role allows template management",
            )
        if code == 531:
            return CloudStackError(
                f"{what}: permission denied ({text})", hint=f"use an account allowed to do this in {source}"
            )
        return CloudStackError(f"{what}: CloudStack error {code}: {text}", hint=_hint_for(code))

    def _scrub(self, text: str) -> str:
        """Drop query strings and any literal key from a message."""
        text = _QUERY_RE.sub("", one_line(text))
        for value in (self.credentials.api_key, self.credentials.secret_key):
            if value:
                text = text.replace(value, "***")
        return text


def _scope_limits(level: Level, name: str, row: Mapping[str, Any]) -> ScopeLimits:
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


def _seconds(elapsed: float) -> str:
    """`3s`, `3600s`; tenths below one second (`0.3s`), where whole seconds would read as `0s`."""
    return f"{elapsed:.1f}s" if elapsed < 0.95 else f"{elapsed:.0f}s"


def _error_code(err: Any) -> object:
    """A CloudStack API error's `errorcode`, else the HTTP status of its response."""
    error = err.error if isinstance(getattr(err, "error", None), Mapping) else {}
    return error.get("errorcode") or getattr(getattr(err, "response", None), "status_code", None)


def _may_have_arrived(err: Exception) -> bool:
    """Whether a request that failed with a requests error may have reached CloudStack."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(err, requests.exceptions.ConnectTimeout):
        return False
    reason = err.args[0] if err.args else None
    return not isinstance(getattr(reason, "reason", reason), NewConnectionError)


def _answered(err: Exception) -> bool:
    """Whether the failure came with an answer from CloudStack (an API error, an HTTP status)."""
    _import_cs()
    from cs import CloudStackException

    return isinstance(err, CloudStackException)


def _retry_delay(err: Exception, attempt: int, *, write: bool, answered_before: bool) -> float | None:
    """Seconds before sending a failed request again, or None: the CloudStack retry policy (see the
    module docstring). A write is sent again only when CloudStack cannot have acted on it."""
    import requests

    _import_cs()
    from cs import CloudStackApiException, CloudStackException

    if attempt >= RETRIES.attempts:
        return None
    if isinstance(err, requests.exceptions.SSLError):
        return None
    if isinstance(err, requests.RequestException):
        arrived = _may_have_arrived(err)
        if (not arrived and not answered_before) or (arrived and write):
            return None
        return RETRIES.delay(attempt)
    if isinstance(err, CloudStackApiException):
        code = _error_code(err)
        if code == _API_LIMIT_EXCEEDED or (not write and code in _RETRIED_READ_ERRORS):
            return RETRIES.delay(attempt)
        return None
    if isinstance(err, CloudStackException) and not write:
        status = getattr(getattr(err, "response", None), "status_code", None)
        return RETRIES.delay(attempt) if status in _OVERLOADED else None
    return None


def _hint_for(code: object) -> str:
    if code == 431:
        return "a parameter was refused: check the values given on the command line"
    if code in (530, 534, 535):
        return "CloudStack failed internally: check the management server log, then re-run"
    return "re-run the command; if it fails again, check the management server log"


_CONNECTION_PREFIX = re.compile(r"^\w*Connection(?:Pool)?\([^)]*\): ")


def network_failure(err: Exception) -> str:
    """The cause of a requests/urllib3 failure (refused, DNS, TLS, timeout) without the wrappers' noise."""
    reason: object = err.args[0] if err.args else err
    reason = getattr(reason, "reason", None) or reason
    return _CONNECTION_PREFIX.sub("", one_line(str(reason)))


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]


def _signable_url(url: str) -> str:
    """`cs` signs `~` unescaped while CloudStack's Java URLEncoder escapes it, so a URL containing `~`
    would fail the signature check; `%7E` names the same resource (RFC 3986 §2.3) and signs alike."""
    return url.replace("~", "%7E")


@contextlib.contextmanager
def _quiet_insecure_warning(quiet: bool) -> Iterator[None]:
    """urllib3 warns on every unverified request; the one warning logged per upload says it once."""
    if not quiet:
        yield
        return
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        yield


class MultipartFileBody:
    """A multipart/form-data body with one file part, produced in chunks with its exact length known
    up front: requests then sends Content-Length (not chunked encoding) and memory stays constant."""

    def __init__(
        self,
        path: Path,
        progress: UploadProgress | None = None,
        field_name: str = "file",
        *,
        filename: str | None = None,
    ) -> None:
        self.path = path
        self.progress = progress
        self.boundary = f"kubectl-capc-{secrets.token_hex(16)}"
        name = filename or path.name
        safe_name = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        self._head = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{field_name}"; filename="{safe_name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.file_size = path.stat().st_size

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self.file_size + len(self._tail)

    def __iter__(self) -> Iterator[bytes | memoryview]:
        # One buffer, refilled in place: a fresh 1 MiB object per chunk would make the kernel fault in
        # new pages on every read, which halves throughput. The HTTP client sends each chunk before it
        # asks for the next one, so handing out views of the same buffer is safe.
        buffer = bytearray(UPLOAD_CHUNK_BYTES)
        view = memoryview(buffer)
        sent = 0
        yield self._head
        with self.path.open("rb", buffering=0) as image:
            while count := image.readinto(buffer):
                if not sent:
                    testpoints.reached(f"uploading {self.path.name}")
                sent += count
                if self.progress is not None:
                    self.progress(sent, self.file_size)
                yield view[:count]
        if sent != self.file_size:
            raise CloudStackError(
                f"{self.path} changed size during the upload ({self.file_size} -> {sent} bytes)",
                hint="upload a file that nothing is writing to",
            )
        yield self._tail
