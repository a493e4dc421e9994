"""`kubectl capc image-upgrade CLUSTER --to VERSION`: plan, preview, confirm, apply and resume an upgrade.

The plan goes to stdout (a table, or `-o json|yaml` as `kind: UpgradePlan`), then the server-checked
diff of every object it creates or changes. Progress and questions go to stderr. Exit codes follow
`kubectl diff` for `--dry-run` (0 nothing to do, 1 changes pending); see docs/exit-codes.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kubectl_capc.cli.fleet import FleetFlags
from kubectl_capc.cli.options import (
    DEFAULT_POLL_INTERVAL,
    BreakLockOption,
    DryRunOption,
    GlobalOptions,
    NoWaitOption,
    OnDeleteOption,
    OutputFormat,
    PollIntervalOption,
    PrebuiltBaseUrlOption,
    ProgressOption,
    TimeoutOption,
    UploadCaFileOption,
    UploadInsecureOption,
    YesOption,
    apply_options,
    check_upload_tls,
    drop_equals,
    global_options,
    positive_seconds,
)
from kubectl_capc.cli.terminal import PlanTerminal
from kubectl_capc.domain.errors import UsageError

if TYPE_CHECKING:
    from kubectl_capc.domain.plan import PlanHop, Step, UpgradePlan
    from kubectl_capc.domain.preview import ObjectPreview
    from kubectl_capc.ops.gitops import GitOpsResult, ServerVerdict
    from kubectl_capc.ops.options import ImageOptions

__all__ = ["UpgradeTerminal", "image_options", "image_upgrade"]

# The values of domain.plan.ImageSource, spelled out so that `--help` need not import the planner.
IMAGE_SOURCES = ("existing", "url", "prebuilt", "build")
CLOUDSTACK_REQUEST_TIMEOUT = 30.0


def _image_source(value: str) -> str:
    text = drop_equals(value).lower()
    if text not in IMAGE_SOURCES:
        raise typer.BadParameter(f"{text!r} is not an image source; use one of {'|'.join(IMAGE_SOURCES)}")
    return text


def image_options(
    source: str | None,
    url: str | None,
    prebuilt_base_url: str | None,
    image_builder_dir: Path | None,
    *,
    upload_ca_file: Path | None = None,
    upload_insecure: bool = False,
) -> ImageOptions:
    """The image flags as one `ImageOptions`: `--image-url` alone means `--image-source url`, and with
    any other source it is a conflict, so a given URL is never silently ignored."""
    from kubectl_capc.domain.images import check_download_url
    from kubectl_capc.domain.plan import ImageSource
    from kubectl_capc.ops.options import ImageOptions

    if source is None:
        chosen = ImageSource.URL if url is not None else ImageSource.EXISTING
    else:
        chosen = ImageSource(source)
    if url is not None and chosen is not ImageSource.URL:
        raise UsageError(
            f"--image-url conflicts with --image-source {chosen.value}",
            hint="drop one of them (--image-url alone means --image-source url)",
        )
    if prebuilt_base_url is not None and chosen is not ImageSource.PREBUILT:
        raise UsageError(
            f"--prebuilt-base-url conflicts with --image-source {chosen.value}",
            hint="drop --prebuilt-base-url, or add --image-source prebuilt",
        )
    if image_builder_dir is not None and chosen is not ImageSource.BUILD:
        raise UsageError(
            f"--image-builder-dir conflicts with --image-source {chosen.value}",
            hint="drop --image-builder-dir, or add --image-source build",
        )
    if chosen is ImageSource.URL:
        if not url:
            raise UsageError("--image-source url needs --image-url URL", hint="the URL may contain {version}")
        check_download_url(url)
    check_upload_tls(
        upload_ca_file, upload_insecure, uploads=chosen is ImageSource.BUILD, needs="--image-source build"
    )
    return ImageOptions(
        chosen,
        url,
        prebuilt_base_url,
        image_builder_dir,
        upload_ca_file=upload_ca_file,
        upload_insecure=upload_insecure,
    )


@global_options(all_namespaces=True)
def image_upgrade(
    opts: GlobalOptions,
    cluster: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="CLUSTER",
            help="The workload cluster; several, or -A / -l, upgrade a fleet.",
            show_default=False,
        ),
    ] = None,
    *,
    to: Annotated[
        str,
        typer.Option(
            "--to", metavar="VERSION", help="Target: v1.MINOR (newest patch with an image) or v1.MINOR.PATCH."
        ),
    ],
    image: Annotated[
        str | None,
        typer.Option(
            "--image", metavar="NAME", help="CloudStack template for the target, instead of the derived name."
        ),
    ] = None,
    image_source: Annotated[
        str | None,
        typer.Option(
            "--image-source",
            metavar="|".join(IMAGE_SOURCES),
            parser=_image_source,
            help="Where missing templates come from; default: url with --image-url, else existing.",
        ),
    ] = None,
    image_url: Annotated[
        str | None,
        typer.Option(
            "--image-url",
            metavar="URL",
            help="Image URL to register missing templates from (implies --image-source url); "
            "{version} is replaced.",
        ),
    ] = None,
    prebuilt_base_url: PrebuiltBaseUrlOption = None,
    image_builder_dir: Annotated[
        Path | None,
        typer.Option(
            "--image-builder-dir", metavar="DIR", help="image-builder checkout for --image-source build."
        ),
    ] = None,
    upload_ca_file: UploadCaFileOption = None,
    upload_insecure: UploadInsecureOption = False,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = None,
    parallel: Annotated[
        int, typer.Option("--parallel", metavar="N", help="MachineDeployments rolled out at the same time.")
    ] = 1,
    poll_interval: PollIntervalOption = DEFAULT_POLL_INTERVAL,
    on_delete: OnDeleteOption = "leave",
    break_lock: BreakLockOption = False,
    progress: ProgressOption = "auto",
    filenames: Annotated[
        list[Path] | None,
        typer.Option(
            "-f",
            "--filename",
            metavar="PATH",
            help="GitOps: plan from these manifest files or directories and rewrite them (repeatable; "
            "with --dry-run no file is written).",
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", metavar="DIR", help="With -f: write changed copies here, not in place."),
    ] = None,
    server_dry_run: Annotated[
        bool,
        typer.Option("--server-dry-run", help="With -f: have the cluster validate the result (dryRun=All)."),
    ] = False,
    selector: Annotated[
        str | None,
        typer.Option(
            "-l",
            "--selector",
            metavar="SELECTOR",
            help="Fleet: the Clusters with these labels (key=value,...).",
        ),
    ] = None,
    canary: Annotated[
        int, typer.Option("--canary", metavar="N", help="Fleet: upgrade N clusters fully before the rest.")
    ] = 0,
    max_concurrent: Annotated[
        int, typer.Option("--max-concurrent", metavar="K", help="Fleet: clusters upgraded at the same time.")
    ] = 1,
    continue_on_error: Annotated[
        bool,
        typer.Option(
            "--continue-on-error", help="Fleet: keep starting clusters after one fails (not canaries)."
        ),
    ] = False,
    skip_failing: Annotated[
        bool,
        typer.Option(
            "--skip-failing",
            help="Fleet: leave out clusters that cannot be upgraded instead of refusing the run.",
        ),
    ] = False,
) -> None:
    """Upgrade a CAPC cluster to a Kubernetes version: new node image and machine templates, control plane
    first, then MachineDeployments; one minor at a time. Safe to interrupt and run again."""
    from kubectl_capc.cloudstack.client import CloudStackClient
    from kubectl_capc.cloudstack.credentials import Credentials
    from kubectl_capc.domain.images import check_template_name
    from kubectl_capc.domain.plan import ImageSource, OnDeleteMode
    from kubectl_capc.domain.planner import PlanRequest
    from kubectl_capc.domain.versions import parse_target
    from kubectl_capc.kube.client import api_client
    from kubectl_capc.ops.cluster_io import KubeClusterIO
    from kubectl_capc.ops.upgrade import Upgrade

    target = parse_target(to)
    images = image_options(
        image_source,
        image_url,
        prebuilt_base_url,
        image_builder_dir,
        upload_ca_file=upload_ca_file,
        upload_insecure=upload_insecure,
    )
    if parallel < 1:
        raise UsageError(
            "--parallel must be at least 1",
            hint="e.g. --parallel 2 rolls out two MachineDeployments at a time",
        )
    poll_seconds = positive_seconds(poll_interval, "--poll-interval")
    if image is not None and not image.strip():
        raise UsageError("--image is empty", hint="name the CloudStack template to use, or leave --image out")
    if image is not None:
        check_template_name(image)
    # With a source that can provide images, an exact target is obtainable even without a template yet.
    obtainable = images.source is not ImageSource.EXISTING and target.exact is not None
    request = PlanRequest(
        target=target,
        requested=to,
        image=image,
        image_source=images.source,
        parallel=parallel,
        obtainable=frozenset({target.exact}) if obtainable and target.exact else frozenset(),
        on_delete=OnDeleteMode(on_delete),
    )
    options = apply_options(dry_run=dry_run, yes=yes, no_wait=no_wait, timeout=timeout, break_lock=break_lock)
    names = list(dict.fromkeys(cluster or ()))
    if not names and not opts.all_namespaces and selector is None:
        raise UsageError("name the cluster to upgrade", hint="or select several with -A or -l SELECTOR")
    fleet = FleetFlags(selector, canary, max_concurrent, continue_on_error, skip_failing)
    if len(names) != 1 or opts.all_namespaces or selector is not None:
        if filenames or output_dir or server_dry_run:
            raise UsageError("-f works on one cluster", hint="name one cluster, without -A and -l")
        if images.source is ImageSource.BUILD:
            images.builder_dir()
        from kubectl_capc.cli.fleet import run_fleet

        run_fleet(
            opts, names, fleet, request=request, images=images, options=options, poll_seconds=poll_seconds,
            progress=progress,
        )  # fmt: skip
    fleet.refuse_for_one_cluster()  # one name: exactly the one-cluster upgrade
    (cluster_name,) = names
    console = UpgradeTerminal(opts.output, progress=progress)
    if filenames or output_dir or server_dry_run:
        from kubectl_capc.ops import gitops

        if request.on_delete is OnDeleteMode.REPLACE:
            raise UsageError(
                "--on-delete=replace deletes Machines of a live cluster; with -f only files are changed",
                hint="drop --on-delete, or run it against the cluster once the change is rolled out",
            )
        if break_lock:
            raise UsageError(
                "--break-lock has no use with -f", hint="GitOps mode writes files only and takes no lock"
            )

        files = gitops.GitOpsOptions(tuple(filenames or ()), output_dir, dry_run, server_dry_run)
        raise typer.Exit(gitops.run(opts.target, cluster_name, request, files, console))
    if images.source is ImageSource.BUILD:
        images.builder_dir()  # refused before anything is read or written
    namespace = opts.target.resolve_context().namespace

    def cloudstack(credentials: Credentials) -> CloudStackClient:
        # --request-timeout bounds every remote request, CloudStack's too (which cannot wait forever).
        timeout = opts.request_timeout or CLOUDSTACK_REQUEST_TIMEOUT
        return CloudStackClient(credentials, request_timeout=timeout, poll_interval=poll_seconds)

    io = KubeClusterIO(
        api_client(opts.target), namespace, cluster_name, images, console, make_client=cloudstack,
        progress=console,
    )  # fmt: skip
    console.exit_with(Upgrade(io, request, options, console).run)


class UpgradeTerminal(PlanTerminal["UpgradePlan"]):
    """`image-upgrade`'s plan as hops and a table, its diffs with the hop they belong to."""

    def print_plan(self, plan: UpgradePlan) -> None:
        from kubectl_capc.cli.printing import print_table

        current = ", ".join(f"{name} {version}" for name, version in plan.worker_versions)
        typer.echo(f"Cluster {plan.namespace}/{plan.cluster} (CAPI {plan.capi_version}) → {plan.target}")
        typer.echo(
            f"  control plane {plan.control_plane_version}"
            + (f"; MachineDeployments {current}" if current else "")
        )
        if plan.strategies:
            typer.echo("  rollout strategy: " + "; ".join(f"{name} {text}" for name, text in plan.strategies))
        for hop in plan.hops:
            typer.echo(f"  hop {hop.number} to {hop.version}: {hop.reason}")
        if plan.hops:
            typer.echo("")
            print_table(("HOP", "ACTION", "OBJECT", "CHANGE"), plan.table_rows())
        for blocker in plan.blockers:
            typer.echo(f"BLOCKED {blocker}")
        for note in plan.notes:
            typer.echo(f"note: {note}")
        typer.echo("")

    def print_previews(self, previews: Sequence[ObjectPreview]) -> None:
        from kubectl_capc.domain.preview import render_previews

        typer.echo(render_previews(previews, color=self.color), nl=False)

    def verdict(self, preview: ObjectPreview) -> dict[str, Any]:
        result = "rejected" if preview.rejection else "accepted" if preview.checked else "not-checked"
        entry = {"hop": preview.hop, "object": preview.step.subject, "result": result}
        if preview.rejection:
            entry["message"] = preview.rejection
        elif not preview.checked:
            entry["message"] = preview.unchecked_reason
        return entry

    def show_files(self, result: GitOpsResult, verdicts: Sequence[ServerVerdict]) -> None:
        """The GitOps run's file diffs and server verdicts, or its typed document with `-o json|yaml`."""
        from kubectl_capc.cli.printing import print_document
        from kubectl_capc.ops.gitops import gitops_document

        if self.output is not OutputFormat.TABLE:
            print_document(gitops_document(result, verdicts), self.output)
            return
        text = "".join(change.diff(color=self.color) for change in result.changes)
        text += "".join(f"{verdict}\n" for verdict in verdicts)
        if text:
            typer.echo(text, nl=False)

    def step(self, hop: PlanHop, step: Step, state: str) -> None:
        self.announce(f"hop {hop.number}", step, state)
