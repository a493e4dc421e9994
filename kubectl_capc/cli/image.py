"""`kubectl capc image list|register|build`: find, register and build CloudStack node-image templates.

Progress (each zone's download or copy, the upload's bytes, rate and ETA, the build's status) goes to
stderr as `--progress` says (`kubectl_capc.cli.progress`); stdout carries only the result table or the
`-o json|yaml` document.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kubectl_capc.cli.options import (
    DEFAULT_POLL_INTERVAL,
    GlobalOptions,
    OutputFormat,
    PollIntervalOption,
    PrebuiltBaseUrlOption,
    ProgressOption,
    UploadCaFileOption,
    UploadInsecureOption,
    check_upload_tls,
    global_options,
    positive_seconds,
)
from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.errors import UsageError
from kubectl_capc.domain.images import DEFAULT_PREBUILT_BASE_URL, Hypervisor, describe_template
from kubectl_capc.domain.versions import KubeVersion, TargetVersion, parse_target

if TYPE_CHECKING:
    from kubectl_capc.cloudstack.client import CloudStackClient
    from kubectl_capc.cloudstack.credentials import Credentials
    from kubectl_capc.cloudstack.rows import OwnerScope, Template
    from kubectl_capc.domain.model import ClusterInventory
    from kubectl_capc.ops.image_register import ZoneOutcome
    from kubectl_capc.ops.image_targets import ZoneTarget

__all__ = ["image_app"]

DEFAULT_TIMEOUT = "1h"

image_app = typer.Typer(
    help="Find, register and build the CloudStack templates (node images) that CAPC machines boot from.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ClusterOption = Annotated[
    str | None,
    typer.Option("--cluster", metavar="NAME", help="Use this cluster's failure domains and credentials."),
]
ReleaseOption = Annotated[
    str, typer.Option("--version", metavar="VERSION", help="Kubernetes release, e.g. v1.29.3.")
]


def _exact_version(text: str) -> KubeVersion:
    exact = parse_target(text).exact
    if exact is None:
        raise UsageError(f"--version {text} names a minor, not a release", hint="give one like v1.29.3")
    return exact


# -- list ------------------------------------------------------------------------------------------


@image_app.command("list")
@global_options()
def list_templates(
    opts: GlobalOptions,
    *,
    cluster: ClusterOption = None,
    version: Annotated[
        str | None, typer.Option("--version", metavar="VERSION", help="Only this minor (v1.29) or release.")
    ] = None,
) -> None:
    """List templates named like node images (<os>-kube-vX.Y.Z[-kvm|-xen|-vmware]) and their state per zone.

    With --cluster the columns are the cluster's failure-domain zones, as its credentials see them;
    otherwise every zone, with the CloudStack client configuration (CLOUDSTACK_* or ~/.cloudstack.ini).
    """
    from kubectl_capc.cli.printing import print_document, print_table

    wanted = parse_target(version) if version else None
    if cluster:
        _, targets = _cluster_targets(opts, cluster, poll_interval=5.0)
        columns = [(t.zone.id, t.zone.name, t.failure_domain) for t in targets]
        rows = _rows_seen_by(targets)
    else:
        client = _client(_config_credentials(), poll_interval=5.0)
        columns = [(z.id, z.name, "") for z in client.zones()]
        rows = list(client.templates())
    items = _listing(rows, columns, wanted)
    if opts.output is OutputFormat.TABLE:
        headers = ["NAME", "OS", "KUBERNETES", "HYPERVISOR", *[name.upper() for _, name, _ in columns]]
        table = [
            [
                item["name"],
                item["osName"] or "-",
                item["kubernetesVersion"] or "-",
                item["hypervisor"],
                *[zone["status"] for zone in item["zones"]],
            ]
            for item in items
        ]
        if not table:
            typer.echo("No node-image templates found.", err=True)
            return
        print_table(headers, table)
    else:
        print_document({"apiVersion": API_VERSION, "kind": "TemplateList", "items": items}, opts.output)


def _rows_seen_by(targets: Sequence[ZoneTarget]) -> list[Template]:
    rows: dict[tuple[str, str], Template] = {}
    seen: set[tuple[int, OwnerScope]] = set()
    for target in targets:
        key = (id(target.client), target.owner)
        if key in seen:
            continue
        seen.add(key)
        for template_filter in ("self", "executable"):
            for row in target.client.templates(template_filter=template_filter, owner=target.owner):
                rows[(row.id, row.zone_id)] = row
    return list(rows.values())


def _listing(
    rows: Sequence[Template], columns: Sequence[tuple[str, str, str]], wanted: TargetVersion | None
) -> list[dict[str, Any]]:
    """One entry per template name that follows the image convention, with its state in each column."""
    by_name: dict[str, list[Template]] = {}
    for row in rows:
        info = describe_template(row.name)
        if info.version is None:
            continue
        if wanted is not None and not _matches(info.version, wanted):
            continue
        by_name.setdefault(row.name, []).append(row)
    items = []
    for name in sorted(by_name, key=lambda n: (describe_template(n).version, n)):
        info = describe_template(name)
        copies = by_name[name]
        items.append(
            {
                "name": name,
                "os": info.os,
                "osName": info.os_name,
                "kubernetesVersion": str(info.version),
                "hypervisor": copies[0].hypervisor,
                "zones": [
                    _zone_state(copies, zone_id, zone_name, domain) for zone_id, zone_name, domain in columns
                ],
            }
        )
    return items


def _matches(version: KubeVersion, wanted: TargetVersion) -> bool:
    if wanted.exact is not None:
        return version == wanted.exact
    return (version.major, version.minor) == (wanted.major, wanted.minor)


def _zone_state(copies: Sequence[Template], zone_id: str, zone_name: str, domain: str) -> dict[str, Any]:
    here = [c for c in copies if c.zone_id == zone_id]
    entry: dict[str, Any] = {"zone": zone_name, "zoneId": zone_id}
    if domain:
        entry["failureDomain"] = domain
    if not here:
        return {**entry, "status": "-", "ready": False, "templateIds": []}
    if len(here) > 1:
        status = f"{len(here)} copies"
    else:
        status = "ready" if here[0].ready else (here[0].status or "not ready")
    return {
        **entry,
        "status": status,
        "ready": len(here) == 1 and here[0].ready,
        "templateIds": [c.id for c in here],
    }


# -- register --------------------------------------------------------------------------------------


@image_app.command("register")
@global_options()
def register(
    opts: GlobalOptions,
    *,
    cluster: Annotated[
        str,
        typer.Option(
            "--cluster", metavar="NAME", help="The cluster whose failure-domain zones get the template."
        ),
    ],
    version: ReleaseOption,
    url: Annotated[
        str | None, typer.Option("--url", metavar="URL", help="Image URL that CloudStack downloads.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", metavar="PATH", help="Local image file, uploaded to one zone and copied to the rest."
        ),
    ] = None,
    prebuilt: Annotated[
        bool, typer.Option("--prebuilt", help="Use CAPC's published prebuilt image.")
    ] = False,
    prebuilt_base_url: PrebuiltBaseUrlOption = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", metavar="NAME", help="Template name; default: the current one's, for VERSION."
        ),
    ] = None,
    public: Annotated[bool, typer.Option("--public", help="Make the template public.")] = False,
    replace_failed: Annotated[
        bool, typer.Option("--replace", help="Delete a failed template of that name and register it again.")
    ] = False,
    timeout: Annotated[
        str,
        typer.Option(
            "--timeout", metavar="DURATION", help="How long to wait for the template in every zone."
        ),
    ] = DEFAULT_TIMEOUT,
    poll_interval: PollIntervalOption = DEFAULT_POLL_INTERVAL,
    upload_ca_file: UploadCaFileOption = None,
    upload_insecure: UploadInsecureOption = False,
    progress: ProgressOption = "auto",
) -> None:
    """Register the template for VERSION in every failure-domain zone of a cluster and wait until it is ready.

    Re-running is safe: a ready template of that name is reused and one still downloading is waited for.
    """
    from kubectl_capc.cli.printing import print_document, print_table
    from kubectl_capc.cli.progress import ProgressDisplay
    from kubectl_capc.cloudstack.upload import UploadTLS
    from kubectl_capc.ops.image_register import (
        ImageSource,
        find_prebuilt,
        register_image,
        template_spec_for,
        template_tags,
    )
    from kubectl_capc.ops.image_targets import current_template
    from kubectl_capc.ops.progress import PipelineReporter

    chosen = [flag for flag, given in (("--url", url), ("--file", file), ("--prebuilt", prebuilt)) if given]
    if len(chosen) != 1:
        raise UsageError(
            "give exactly one image source" + (f", not {' and '.join(chosen)}" if chosen else ""),
            hint="use --url URL, --file PATH or --prebuilt",
        )
    if prebuilt_base_url is not None and not prebuilt:
        raise UsageError(
            f"--prebuilt-base-url conflicts with {chosen[0]}",
            hint="drop --prebuilt-base-url, or use --prebuilt instead",
        )
    check_upload_tls(upload_ca_file, upload_insecure, uploads=file is not None, needs="--file")
    target_version = _exact_version(version)
    wait_seconds = positive_seconds(timeout, "--timeout")
    if file is not None and not file.is_file():
        raise UsageError(f"--file {file} is not a readable file", hint="give the path of a local image file")
    inventory, targets = _cluster_targets(
        opts, cluster, poll_interval=positive_seconds(poll_interval, "--poll-interval")
    )
    current = current_template(inventory, targets)
    if file is not None:
        source = ImageSource(path=file)
    elif url is not None:
        source = ImageSource(url=url)
    else:
        source = find_prebuilt(
            prebuilt_base_url or DEFAULT_PREBUILT_BASE_URL,
            current.name,
            target_version,
            Hypervisor.parse(current.hypervisor),
        )
    spec = template_spec_for(current, target_version, source, name=name, public=public)
    display = ProgressDisplay(progress)
    try:
        outcomes = register_image(
            targets,
            spec,
            source,
            tags=template_tags(spec, target_version),
            replace_failed=replace_failed,
            timeout=wait_seconds,
            reporter=PipelineReporter(display, timeout=wait_seconds),
            upload_tls=UploadTLS(upload_ca_file, upload_insecure),
        )
    finally:
        display.close()
    if opts.output is OutputFormat.TABLE:
        print_table(
            ("FAILURE DOMAIN", "ZONE", "TEMPLATE", "ID", "ACTION"),
            [(o.failure_domain, o.zone, spec.name, o.template_id, o.action) for o in outcomes],
        )
    else:
        print_document(_registration_document(spec.name, target_version, str(source), outcomes), opts.output)


def _registration_document(
    name: str, version: KubeVersion, source: str, outcomes: Sequence[ZoneOutcome]
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "TemplateRegistration",
        "name": name,
        "kubernetesVersion": str(version),
        "source": source,
        "zones": [
            {
                "failureDomain": o.failure_domain,
                "zone": o.zone,
                "zoneId": o.zone_id,
                "templateId": o.template_id,
                "action": o.action,
            }
            for o in outcomes
        ],
    }


# -- build -----------------------------------------------------------------------------------------


@image_app.command("build")
@global_options()
def build(
    opts: GlobalOptions,
    *,
    version: ReleaseOption,
    os_name: Annotated[
        str,
        typer.Option(
            "--os", metavar="OS", help="image-builder build name, e.g. ubuntu-2204 or rockylinux-9."
        ),
    ],
    image_builder_dir: Annotated[
        Path,
        typer.Option("--image-builder-dir", metavar="DIR", help="A kubernetes-sigs/image-builder checkout."),
    ],
    hypervisor: Annotated[
        str, typer.Option("--hypervisor", metavar="kvm|vmware|xenserver", help="Hypervisor the image is for.")
    ] = "kvm",
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", metavar="DIR", help="Where images are kept; default ~/.cache/kubectl-capc/images."
        ),
    ] = None,
    progress: ProgressOption = "auto",
) -> None:
    """Build a node image with image-builder (make build-qemu-OS), convert it for the hypervisor, checksum it.

    Results are cached by OS, version, hypervisor and image-builder commit: a re-run does not rebuild.
    """
    from kubectl_capc.cli.printing import print_document, print_table
    from kubectl_capc.cli.progress import ProgressDisplay, size
    from kubectl_capc.imagebuilder.build import BuildRequest, build_image, default_cache_dir

    request = BuildRequest(
        os=os_name,
        version=_exact_version(version),
        hypervisor=Hypervisor.parse(hypervisor),
        image_builder_dir=image_builder_dir,
        cache_dir=cache_dir or default_cache_dir(),
    )
    display = ProgressDisplay(progress)
    try:
        result = build_image(request, step=display.note, status=display.status)
    finally:
        display.close()
    if opts.output is OutputFormat.TABLE:
        print_table(
            ("IMAGE", "FORMAT", "SIZE", "SHA256", "CACHED"),
            [
                (
                    str(result.image),
                    result.image_format.value,
                    size(result.size),
                    result.sha256,
                    _yes(result.cached),
                )
            ],
        )
    else:
        print_document(result.to_document(), opts.output)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


# -- shared ----------------------------------------------------------------------------------------


def _config_credentials() -> Credentials:
    from kubectl_capc.cloudstack.credentials import credentials_from_config

    return credentials_from_config()


def _client(credentials: Credentials, *, poll_interval: float) -> CloudStackClient:
    from kubectl_capc.cloudstack.client import CloudStackClient

    return CloudStackClient(credentials, poll_interval=poll_interval)


def _cluster_targets(
    opts: GlobalOptions, cluster: str, *, poll_interval: float
) -> tuple[ClusterInventory, tuple[ZoneTarget, ...]]:
    from kubectl_capc.kube.client import kube_client
    from kubectl_capc.kube.read import read_inventories
    from kubectl_capc.ops.image_targets import zone_targets

    api = kube_client(opts.target)
    inventories = read_inventories(api, namespace=opts.target.resolve_context().namespace, cluster=cluster)
    inventory = inventories[0]
    return inventory, zone_targets(api, inventory, lambda creds: _client(creds, poll_interval=poll_interval))
