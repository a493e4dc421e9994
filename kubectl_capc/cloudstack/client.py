"""The CloudStack client: every CloudStack API call of the plugin goes through `CloudStackClient`.

It signs requests with one set of credentials through the `cs` library (pagination, async jobs), and
turns failures into the one-line errors of `errors`. `CloudStackClient._call` is the one place that
sends failed requests again, as `errors.retry_delay` decides; a 401 also re-reads the credentials when
the client knows where they came from (`reload`): keys rotated in the failure domain's Secret during a
run are picked up, and a write refused with the old keys is sent again with the new ones.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kubectl_capc.cloudstack import errors
from kubectl_capc.cloudstack.credentials import Credentials
from kubectl_capc.cloudstack.errors import AccountWithoutKeys, CloudStackError
from kubectl_capc.cloudstack.library import cs
from kubectl_capc.cloudstack.rows import (
    Entry,
    OwnerScope,
    Template,
    TemplateSpec,
    VirtualMachine,
    Zone,
    scope_limits,
)
from kubectl_capc.cloudstack.upload import UploadProgress, UploadTicket, UploadTLS, post_file
from kubectl_capc.domain import testpoints
from kubectl_capc.domain.checks.capacity import Level, ScopeLimits
from kubectl_capc.domain.images import failed_while_waiting
from kubectl_capc.domain.interrupts import StoppedAfterWrite, writing

__all__ = ["CloudStackClient", "ProgressCallback"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

ProgressCallback = Callable[[Sequence[Template]], None]
"""Called with the template's rows in the zones waited for, at every poll."""


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
        self.credentials = credentials
        self._api = cs().CloudStack(
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
                return dataclasses.replace(
                    self.credentials,
                    api_key=str(keys["apikey"]),
                    secret_key=str(keys["secretkey"]),
                    source=f"the API keys of user {username} of account {account} "
                    f"(found with {self.credentials.source})",
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
        found = [scope_limits(Level.ACCOUNT, str(account.get("name", "")), account)]
        domain_id = str(account.get("domainid", ""))
        domains = actor._call(
            "list the domain's limits", lambda: actor._api.listDomains(id=domain_id, fetch_list=True)
        )
        found += [
            scope_limits(Level.DOMAIN, str(row.get("path") or row.get("name", "")), row)
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
                scope_limits(Level.PROJECT, str(row.get("name", "")), row)
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
        """POST `path` to the upload URL, under `filename` (default: the file's own name), as
        `upload.post_file` sends it, with this client's credentials and request timeout."""
        post_file(
            ticket,
            path,
            self.credentials,
            request_timeout=self._request_timeout,
            progress=progress,
            filename=filename,
            tls=tls,
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
                raise CloudStackError(
                    f"the copy of {_named(rows, template_id)} to zone {', '.join(names.values())} is not "
                    f"done after {_seconds(time.monotonic() - started)} ({'; '.join(pending)})",
                    hint="CloudStack keeps copying: re-run the same command to keep waiting, "
                    "or raise --timeout",
                )
            testpoints.reached(f"copying template {template_id} to {', '.join(sorted(names.values()))}")
            self._pause(deadline)

    def _copy_failed(
        self, template_id: str, names: Mapping[str, str], rows: Sequence[Template], result: Any
    ) -> CloudStackError:
        error = result if isinstance(result, Mapping) else {}
        code = error.get("errorcode", "?")
        text = errors.scrub(str(error.get("errortext") or "no details"), self.credentials)
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
                waited = _seconds(time.monotonic() - started)
                raise CloudStackError(
                    f"{_named(rows, template_id)} is not ready after {waited} ({'; '.join(pending)})",
                    hint=hint,
                )
            self._pause(deadline)

    # -- plumbing ----------------------------------------------------------------------------------

    def _pause(self, deadline: float) -> None:
        """Sleep until the next poll, never past `deadline` (`time.monotonic()`)."""
        time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def _write(self, what: str, request: Callable[[], T], *, going_on: str = "") -> T:
        """A command that changes something: Ctrl-C waits for it, and it is retried only when safe.
        `going_on`: what the command starts that CloudStack carries on with after a Ctrl-C."""
        with writing(what, going_on):
            return self._call(what, request, write=True)

    def _call(self, what: str, request: Callable[[], T], *, write: bool = False) -> T:
        """Run one `cs` request, sent again as `errors.retry_delay` says; a failure that stays becomes a
        CloudStackError saying what failed and why."""
        attempt = 1
        reloaded = False
        while True:
            _log.debug("CloudStack %s: %s", self.endpoint, what)
            try:
                result = request()
            except Exception as err:
                if not reloaded and errors.rejected(err) and self._reload():
                    reloaded = True
                    continue
                delay = errors.retry_delay(err, attempt, write=write, answered_before=self._answered)
                self._answered = self._answered or errors.answered(err)
                if delay is None:
                    raise errors.error_for(
                        what,
                        err,
                        write=write,
                        credentials=self.credentials,
                        request_timeout=self._request_timeout,
                    ) from None
                _log.info("CloudStack %s: %s failed (%s); trying again in %.1fs", self.endpoint, what,
                          errors.scrub(errors.network_failure(err), self.credentials), delay)  # fmt: skip
                time.sleep(delay)
                attempt += 1
            else:
                self._answered = True
                return result

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


def _named(rows: Sequence[Template], template_id: str) -> str:
    """A waited-for template in a message: by name and id once a row of it is listed, else by id."""
    return f"template {rows[0].name!r} ({template_id})" if rows else f"template {template_id}"


def _seconds(elapsed: float) -> str:
    """`3s`, `3600s`; tenths below one second (`0.3s`), where whole seconds would read as `0s`."""
    return f"{elapsed:.1f}s" if elapsed < 0.95 else f"{elapsed:.0f}s"


def _signable_url(url: str) -> str:
    """`cs` signs `~` unescaped while CloudStack's Java URLEncoder escapes it, so a URL containing `~`
    would fail the signature check; `%7E` names the same resource (RFC 3986 §2.3) and signs alike."""
    return url.replace("~", "%7E")
