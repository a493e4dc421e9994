"""The real `ClusterIO` of an upgrade: the management cluster, CloudStack, and the image pipeline.

It reads one cluster with the LIST-based reader, lists the CloudStack templates of each failure domain's
zone with the credentials CAPC uses there, and makes a missing template ready: waiting for copies on
their way, or (with `--image-source url|prebuilt|build`) registering or building it. `ClusterAccess`,
the reading of the cluster and the writer for its namespace, is shared with `rollback` and `cleanup`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubectl_capc.domain.checks.permissions import PERMISSION_MISSING, replace_access
from kubectl_capc.domain.errors import PlanError, UsageError
from kubectl_capc.domain.lease import LEASE_DURATION_SECONDS
from kubectl_capc.domain.model import ClusterInventory, ZoneTemplates
from kubectl_capc.domain.plan import (
    EnsureImage,
    ImageSource,
    OnDeleteMode,
    RollOnDelete,
    UpgradePlan,
    ZoneState,
)
from kubectl_capc.kube.write import KubeWriter
from kubectl_capc.ops.options import ImageOptions
from kubectl_capc.ops.progress import ImageProgress, NoteProgress, PipelineReporter
from kubectl_capc.ops.upgrade import Console

if TYPE_CHECKING:
    from kubectl_capc.cloudstack.client import CloudStackClient, ProgressCallback
    from kubectl_capc.cloudstack.errors import CloudStackError
    from kubectl_capc.kube.lease import ClusterLease
    from kubectl_capc.ops.image_targets import ZoneTarget

__all__ = ["ClusterAccess", "KubeClusterIO", "wait_for_copies"]


class ClusterAccess:
    """One cluster, read with the LIST-based reader, and the `KubeWriter` for its namespace: made at the
    first read, for the CAPI version the server serves."""

    def __init__(self, api_client: Any, namespace: str, cluster: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.cluster = cluster
        self.lease_seconds = LEASE_DURATION_SECONDS
        """How long the upgrade lock lasts unrenewed (a fleet lengthens it, `fleet_lease_seconds`)."""
        self._writer: KubeWriter | None = None

    @property
    def writer(self) -> KubeWriter:
        if self._writer is None:
            raise RuntimeError("read() the cluster before writing to it")
        return self._writer

    def lease(self) -> ClusterLease:
        """The cluster's upgrade lock (its Lease in the namespace), for this process."""
        from kubectl_capc.kube.lease import ClusterLease

        return ClusterLease(
            self.api_client, self.namespace, self.cluster, duration_seconds=self.lease_seconds
        )

    def read_inventory(self) -> ClusterInventory:
        from kubectl_capc.kube.read import read_inventories

        (inventory,) = read_inventories(self.api_client, namespace=self.namespace, cluster=self.cluster)
        if self._writer is None:
            self._writer = KubeWriter(self.api_client, self.namespace, inventory.capi_version)
        return inventory


class KubeClusterIO(ClusterAccess):
    """Reads one cluster with the LIST-based reader, lists CloudStack templates per failure domain with
    the credentials CAPC uses, and obtains missing templates through the image pipeline."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        cluster: str,
        images: ImageOptions,
        console: Console,
        *,
        make_client: Callable[[Any], Any] | None = None,
        progress: ImageProgress | None = None,
    ) -> None:
        """`make_client` builds a CloudStack client from credentials (default: `CloudStackClient`);
        `progress` shows the image pipeline's progress (default: as notes on `console`)."""
        super().__init__(api_client, namespace, cluster)
        self.make_client = make_client
        self.images = images
        self.console = console
        self.progress = progress
        self._targets: tuple[Any, ...] | None = None
        self._inventory: ClusterInventory | None = None
        self._replace_refusals: list[str] | None = None

    def preflight(self, plan: UpgradePlan) -> list[str]:
        """CAPC-R001 for the cluster last read (room in CloudStack for the rollout's surge machines), and
        CAPC-P001 for the Machine deletions of `--on-delete=replace`, which the documented Role leaves
        out: refused before the first write rather than after the deployment's patch."""
        from kubectl_capc.ops.capacity import rollout_capacity

        problems = self._replace_permissions(plan)
        inventory = self._inventory
        if inventory is None or self._targets is None:
            return problems
        capacity = rollout_capacity(inventory, self._targets, plan.target)
        return [*problems, *(f"{f.check_id}: {f.message}" for f in capacity)]

    def _replace_permissions(self, plan: UpgradePlan) -> list[str]:
        """Asked once a run: permissions do not change between its plans."""
        replaces = any(
            isinstance(step, RollOnDelete) and step.mode is OnDeleteMode.REPLACE for _, step in plan.steps()
        )
        if not replaces:
            return []
        if self._replace_refusals is None:
            from kubectl_capc.kube.read import access_review

            self._replace_refusals = [
                f"{PERMISSION_MISSING.id}: you cannot {access}, which --on-delete=replace needs to "
                "replace the Machines of OnDelete MachineDeployments (docs/rbac.md)"
                for access in replace_access(self.namespace)
                if not access_review(self.api_client, access)
            ]
        return self._replace_refusals

    def read(self) -> tuple[ClusterInventory, ZoneTemplates | None]:
        inventory = self.read_inventory()
        self._inventory = inventory
        return inventory, self.zone_templates(inventory)

    def zone_templates(self, inventory: ClusterInventory) -> ZoneTemplates | None:
        """The CloudStack templates of each failure domain's zone, as the planner takes them."""
        if inventory.cluster.topology_managed or not inventory.failure_domains:
            return None  # the planner refuses these with its own message
        rows = {
            target.failure_domain: tuple(
                t.as_row() for t in target.client.templates(zone_id=target.zone.id, owner=target.owner)
            )
            for target in self._zone_targets(inventory)
        }
        return rows

    def _zone_targets(self, inventory: ClusterInventory) -> tuple[Any, ...]:
        from kubectl_capc.ops.image_targets import zone_targets

        if self._targets is None:
            if self.make_client is None:
                self._targets = zone_targets(self.api_client, inventory)
            else:
                self._targets = zone_targets(self.api_client, inventory, self.make_client)
        return self._targets

    def ensure_image(self, step: EnsureImage, inventory: ClusterInventory, timeout: float | None) -> None:
        """Make `step.image` ready in every failure domain's zone: wait for copies on their way, and with
        an image source other than `existing`, register or build what is missing (and, once it is
        ready everywhere, tag it if an earlier run was stopped before it could)."""
        targets = self._zone_targets(inventory)
        reporter = PipelineReporter(self.progress or NoteProgress(self.console.note), timeout=timeout)
        if self.images.source is ImageSource.EXISTING:
            wait_for_copies(step, targets, timeout, reporter.zones)
            return
        from kubectl_capc.domain.images import Hypervisor
        from kubectl_capc.ops.image_register import (
            complete_tags,
            register_image,
            template_spec_for,
            template_tags,
        )
        from kubectl_capc.ops.image_targets import current_template

        current = current_template(inventory, targets)
        if step.ready:
            complete_tags(targets, step.image, step.version, Hypervisor.parse(current.hypervisor))
            return
        source = self._source(step, current)
        spec = template_spec_for(current, step.version, source, name=step.image)
        register_image(
            targets,
            spec,
            source,
            tags=template_tags(spec, step.version),
            replace_failed=False,
            timeout=timeout if timeout is not None else float("inf"),
            reporter=reporter,
            upload_tls=self.images.upload_tls(),
        )

    def _source(self, step: EnsureImage, current: Any) -> Any:
        from kubectl_capc.domain.images import DEFAULT_PREBUILT_BASE_URL, Hypervisor
        from kubectl_capc.ops.image_register import ImageSource as Source
        from kubectl_capc.ops.image_register import find_prebuilt

        if self.images.source is ImageSource.URL:
            if not self.images.url:
                raise UsageError(
                    "--image-source url needs --image-url URL", hint="the URL may contain {version}"
                )
            return Source(url=self.images.url.replace("{version}", str(step.version)))
        if self.images.source is ImageSource.PREBUILT:
            base = self.images.prebuilt_base_url or DEFAULT_PREBUILT_BASE_URL
            return find_prebuilt(base, current.name, step.version, Hypervisor.parse(current.hypervisor))
        return Source(path=self._build(step, current))

    def _build(self, step: EnsureImage, current: Any) -> Path:
        from kubectl_capc.domain.images import Hypervisor
        from kubectl_capc.domain.naming import parse_template_name
        from kubectl_capc.imagebuilder.build import BuildRequest, build_image, default_cache_dir

        builder_dir = self.images.builder_dir()
        parsed = parse_template_name(step.image) or parse_template_name(current.name)
        if parsed is None:
            raise UsageError(
                f"cannot tell which OS to build for {step.image!r}", hint="use --image-source url"
            )
        request = BuildRequest(
            os=parsed.os,
            version=step.version,
            hypervisor=Hypervisor.parse(current.hypervisor),
            image_builder_dir=builder_dir,
            cache_dir=self.images.cache_dir or default_cache_dir(),
        )
        return build_image(request, self.console.note, lambda _line: None).image


def wait_for_copies(
    step: EnsureImage,
    targets: Sequence[ZoneTarget],
    timeout: float | None,
    on_progress: ProgressCallback | None = None,
) -> None:
    """Wait for the copies of `step.image` still on their way, in every zone within the one `timeout`
    (seconds from now; None: no limit), which is what `--timeout images=` promises the operator.

    The zones one client sees under one template id are waited for together, the others in turn with
    what is left of the time. Once the time is up, the zones not yet looked at are listed once, so that
    the error names every zone that is not ready, with the time waited since the start.
    """
    from kubectl_capc.cloudstack.errors import CloudStackError
    from kubectl_capc.domain.images import failed_while_waiting

    missing = step.zones_in(ZoneState.MISSING, ZoneState.FAILED, ZoneState.DUPLICATE)
    if missing:
        zones = ", ".join(z.zone for z in missing)
        raise PlanError(
            f"CloudStack template {step.image} is not usable in zone {zones}",
            hint="register it (kubectl capc image register) or pass --image-source",
        )
    started = time.monotonic()
    deadline = started + (timeout if timeout is not None else float("inf"))
    errors: list[CloudStackError] = []
    for client, template_id, zone_ids in _copy_groups(step, targets):
        try:
            client.wait_until_ready(
                template_id,
                zone_ids,
                timeout=max(0.0, deadline - time.monotonic()),
                failed=lambda row: failed_while_waiting(row.ready, row.status),
                on_progress=on_progress,
                started=started,
            )
        except CloudStackError as err:
            if time.monotonic() < deadline:
                raise
            errors.append(err)
    if errors:
        raise _joined(errors)


def _copy_groups(
    step: EnsureImage, targets: Sequence[ZoneTarget]
) -> list[tuple[CloudStackClient, str, list[str]]]:
    """(client, template id, zone ids) of the copies still on their way, in the failure domains' order."""
    by_domain = {t.failure_domain: t for t in targets}
    groups: dict[tuple[int, str], tuple[CloudStackClient, str, list[str]]] = {}
    for zone in step.zones_in(ZoneState.IN_PROGRESS):
        target = by_domain[zone.failure_domain]
        key = (id(target.client), zone.template_id)
        groups.setdefault(key, (target.client, zone.template_id, []))[2].append(target.zone.id)
    return list(groups.values())


def _joined(errors: Sequence[CloudStackError]) -> CloudStackError:
    """One error for the zones of several waits: their messages, and each distinct hint once."""
    from kubectl_capc.cloudstack.errors import CloudStackError

    if len(errors) == 1:
        return errors[0]
    hints = list(dict.fromkeys(err.hint for err in errors if err.hint))
    return CloudStackError("; ".join(err.message for err in errors), hint="; ".join(hints) or None)
