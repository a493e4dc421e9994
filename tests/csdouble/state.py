"""The double's in-memory cloud: entities, credentials, jobs, faults and the call log."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from .downloads import DownloadPolicy, advance, status_text
from .faults import DownloadFault, Faults
from .model import (
    Account,
    Call,
    CatalogItem,
    Domain,
    Job,
    OsType,
    Project,
    Tag,
    Template,
    TemplateZone,
    UploadTicket,
    User,
    VirtualMachine,
    Volume,
    Zone,
)

CATALOG_KINDS = ("serviceoffering", "diskoffering", "network", "affinitygroup", "sshkeypair", "vpc")


def random_key() -> str:
    """A key shaped like CloudStack's (86 url-safe base64 characters)."""
    return secrets.token_urlsafe(64)


@dataclass
class Credentials:
    api_key: str
    secret_key: str
    account_id: str


@dataclass
class Settings:
    job_polls: int = 1  # queryAsyncJobResult answers "pending" this many times before the outcome
    download: DownloadPolicy = field(default_factory=DownloadPolicy)
    # Global settings allow.user.expunge.recover.vm and allow.user.view.destroyed.vm (both false).
    allow_user_expunge_recover_vm: bool = False
    allow_user_view_destroyed_vm: bool = False
    expunge_polls: int = 1  # VM listings that still show an expunged VM as Expunging


class State:
    """Everything the API serves. Guard every access from request threads with `lock`."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.credentials = Credentials(random_key(), random_key(), "")
        self.allow_loopback_urls = False
        self.upload_key = random_key()
        self.upload_base_url = "http://127.0.0.1"  # set by the server once it listens
        self.clear()

    def clear(self) -> None:
        """Forget the cloud (entities, jobs, faults, calls); credentials and flags stay."""
        self.domains: dict[str, Domain] = {}
        self.accounts: dict[str, Account] = {}
        self.users: dict[str, User] = {}
        self.projects: dict[str, Project] = {}
        self.zones: dict[str, Zone] = {}
        self.ostypes: dict[str, OsType] = {}
        self.catalog: dict[str, dict[str, CatalogItem]] = {kind: {} for kind in CATALOG_KINDS}
        self.templates: dict[str, Template] = {}
        self.tags: list[Tag] = []
        self.vms: dict[str, VirtualMachine] = {}
        self.volumes: dict[str, Volume] = {}
        # updateResourceLimit and seed overrides: (account|project|domain, id, resource type name) -> max
        self.limits: dict[tuple[str, str, str], int] = {}
        self.db_ids = 0  # sequence for internal (numeric) ids such as i-<account>-<vm>-VM
        self.jobs: dict[str, Job] = {}
        self.tickets: dict[str, UploadTicket] = {}
        self.calls: list[Call] = []
        self.faults = Faults()
        self.settings = Settings()

    # ----- lookups -------------------------------------------------------------------------------

    def caller(self) -> Account:
        return self.accounts[self.credentials.account_id]

    def key_owner(self, api_key: str | None) -> tuple[Account, str] | None:
        """The account a request signed with `api_key` acts as, and the secret it must be signed with:
        the seed's key pair, or a user's registered keys."""
        if api_key is None:
            return None
        if api_key == self.credentials.api_key:
            return self.caller(), self.credentials.secret_key
        for user in self.users.values():
            if user.api_key == api_key and user.secret_key and user.state == "enabled":
                return self.accounts[user.account_id], user.secret_key
        return None

    def zone(self, ref: str) -> Zone | None:
        """A zone by id, or by name when no id matches."""
        if ref in self.zones:
            return self.zones[ref]
        return next((z for z in self.zones.values() if z.name == ref), None)

    def zone_id(self, ref: str) -> str:
        zone = self.zone(ref)
        if zone is None:
            raise ValueError(f"unknown zone {ref!r}")
        return zone.id

    def domain_by_path(self, path: str) -> Domain | None:
        return next((d for d in self.domains.values() if d.path.lower() == path.lower()), None)

    def account_named(self, name: str, domain_id: str) -> Account | None:
        return next(
            (
                a
                for a in self.accounts.values()
                if a.name.lower() == name.lower() and a.domain_id == domain_id
            ),
            None,
        )

    def project_named(self, name: str) -> Project | None:
        return next((p for p in self.projects.values() if p.name == name), None)

    def next_db_id(self) -> int:
        self.db_ids += 1
        return self.db_ids

    def zone_db_id(self, zone_id: str) -> int:
        """The zone's internal id, as some CloudStack error texts print it."""
        return list(self.zones).index(zone_id) + 1

    def account_db_id(self, account_id: str) -> int:
        return list(self.accounts).index(account_id) + 1

    def is_subdomain(self, domain_id: str, ancestor_id: str) -> bool:
        """True when `domain_id` is `ancestor_id` or below it."""
        path = self.domains[domain_id].path.lower()
        ancestor = self.domains[ancestor_id].path.lower()
        return path == ancestor or path.startswith(ancestor + "/")

    def templates_named(self, name: str) -> list[Template]:
        return [t for t in self.templates.values() if t.name == name and not t.removed]

    # ----- downloads -----------------------------------------------------------------------------

    def download_fault_for(self, template: Template, zone_id: str) -> DownloadFault | None:
        return self.faults.download_fault(template.id, template.name, zone_id)

    def tick_downloads(self, tick: bool) -> None:
        """Advance every download in progress; `tick` counts one listTemplates poll."""
        policy = self.settings.download
        for template in self.templates.values():
            for row in template.zones.values():
                advance(row, policy, self.download_fault_for(template, row.zone_id), tick)

    def template_status(self, template_id: str) -> dict[str, str]:
        """Per zone name, the status text listTemplates shows (for test assertions)."""
        with self.lock:
            self.tick_downloads(tick=False)
            template = self.templates[template_id]
            return {self.zones[z].name: status_text(row) for z, row in template.zones.items()}

    def zone_rows(self, template: Template) -> list[TemplateZone]:
        return [template.zones[z] for z in self.zones if z in template.zones]
