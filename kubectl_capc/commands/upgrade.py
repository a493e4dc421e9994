"""`kubectl capc image-upgrade CLUSTER --to VERSION`: plan, preview, confirm, apply and resume an upgrade.

The plan goes to stdout (a table, or `-o json|yaml` as `kind: UpgradePlan`), then the server-checked
diff of every object it creates or changes. Progress and questions go to stderr. Exit codes follow
`kubectl diff` for `--dry-run` (0 nothing to do, 1 changes pending); see docs/exit-codes.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kubectl_capc.errors import ExitCode, UsageError
from kubectl_capc.options import GlobalOptions, OutputFormat, global_options, parse_duration

if TYPE_CHECKING:
    from kubectl_capc.apply import Timeouts
    from kubectl_capc.kube_write import OwnerProgress
    from kubectl_capc.plan import PlanHop, Step, UpgradePlan
    from kubectl_capc.preview import ObjectPreview

__all__ = ["image_upgrade", "parse_timeouts"]

# The values of kubectl_capc.plan.ImageSource, spelled out so that `--help` need not import the planner.
IMAGE_SOURCES = ("existing", "url", "prebuilt", "build")
CLOUDSTACK_REQUEST_TIMEOUT = 30.0
_PHASES = {"images": "images", "control-plane": "control_plane", "machine-deployment": "machine_deployment"}


def parse_timeouts(values: Sequence[str]) -> Timeouts:
    """`--timeout` values: `DURATION` for every phase, or `PHASE=DURATION` (images, control-plane,
    machine-deployment); 0 means no limit. Later values win over earlier ones and the defaults."""
    from kubectl_capc.apply import Timeouts

    timeouts = Timeouts()
    for value in values:
        phase, sep, duration = value.rpartition("=")
        if not sep:
            timeouts = Timeouts(*(3 * (_duration(value),)))
        elif phase in _PHASES:
            timeouts = replace(timeouts, **{_PHASES[phase]: _duration(duration)})
        else:
            raise UsageError(
                f"--timeout {value!r}: unknown phase {phase!r}", hint=f"use one of {', '.join(_PHASES)}"
            )
    return timeouts


def _image_source(value: str) -> str:
    text = value[1:] if value.startswith("=") else value
    if text.lower() not in IMAGE_SOURCES:
        raise typer.BadParameter(f"{text!r} is not an image source; use one of {'|'.join(IMAGE_SOURCES)}")
    return text.lower()


def _duration(text: str) -> float | None:
    try:
        return parse_duration(text)
    except typer.BadParameter as err:
        raise UsageError(f"--timeout: {err.message}") from None


@global_options()
def image_upgrade(
    opts: GlobalOptions,
    cluster: Annotated[str, typer.Argument(metavar="CLUSTER", help="The workload cluster to upgrade.")],
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
        str,
        typer.Option(
            "--image-source",
            metavar="|".join(IMAGE_SOURCES),
            parser=_image_source,
            help="Where missing templates come from.",
        ),
    ] = "existing",
    image_url: Annotated[
        str | None,
        typer.Option(
            "--image-url", metavar="URL", help="Image URL for --image-source url; {version} is replaced."
        ),
    ] = None,
    prebuilt_base_url: Annotated[
        str | None,
        typer.Option("--prebuilt-base-url", metavar="URL", help="Mirror of CAPC's prebuilt images."),
    ] = None,
    image_builder_dir: Annotated[
        Path | None,
        typer.Option(
            "--image-builder-dir", metavar="DIR", help="image-builder checkout for --image-source build."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Preview only: every write is sent with dryRun=All (with -f: no file is written). "
            "Exit 1 if changes.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking for confirmation.")] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Stop at the first rollout instead of waiting; re-run to continue."),
    ] = False,
    timeout: Annotated[
        list[str] | None,
        typer.Option(
            "--timeout",
            metavar="[PHASE=]DURATION",
            help="Per-phase limit: 90m, or control-plane=60m, machine-deployment=30m, images=1h; 0: none.",
        ),
    ] = None,
    parallel: Annotated[
        int, typer.Option("--parallel", metavar="N", help="MachineDeployments rolled out at the same time.")
    ] = 1,
    poll_interval: Annotated[
        str,
        typer.Option(
            "--poll-interval",
            metavar="DURATION",
            help="Time between two checks of CloudStack while a template downloads or a job runs.",
        ),
    ] = "5s",
    filenames: Annotated[
        list[Path] | None,
        typer.Option(
            "-f",
            "--filename",
            metavar="PATH",
            help="GitOps: plan from these manifest files or directories and rewrite them (repeatable).",
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
) -> None:
    """Upgrade a CAPC cluster to a Kubernetes version: new node image and machine templates, control plane
    first, then MachineDeployments; one minor at a time. Safe to interrupt and run again."""
    from kubectl_capc.apply import ApplyOptions, ImageOptions, Upgrade
    from kubectl_capc.cloudstack import CloudStackClient, Credentials
    from kubectl_capc.cluster_io import KubeClusterIO
    from kubectl_capc.images import check_download_url
    from kubectl_capc.kube import api_client
    from kubectl_capc.plan import ImageSource
    from kubectl_capc.planner import PlanRequest
    from kubectl_capc.versions import parse_target

    source = ImageSource(image_source)
    target = parse_target(to)
    if parallel < 1:
        raise UsageError(
            "--parallel must be at least 1",
            hint="e.g. --parallel 2 rolls out two MachineDeployments at a time",
        )
    poll_seconds = _duration(poll_interval)
    if poll_seconds is None:
        raise UsageError("--poll-interval must be longer than 0", hint="e.g. 5s")
    if source is ImageSource.URL and not image_url:
        raise UsageError("--image-source url needs --image-url URL", hint="the URL may contain {version}")
    if image_url:
        check_download_url(image_url)
    if image is not None and not image.strip():
        raise UsageError("--image is empty", hint="name the CloudStack template to use, or leave --image out")
    # With a source that can provide images, an exact target is obtainable even without a template yet.
    obtainable = source is not ImageSource.EXISTING and target.exact is not None
    request = PlanRequest(
        target=target,
        requested=to,
        image=image,
        image_source=source,
        parallel=parallel,
        obtainable=frozenset({target.exact}) if obtainable and target.exact else frozenset(),
    )
    options = ApplyOptions(
        dry_run=dry_run,
        yes=yes,
        no_wait=no_wait,
        interactive=sys.stdin.isatty(),
        timeouts=parse_timeouts(timeout or []),
    )
    console = TerminalConsole(opts.output, color=sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    if filenames or output_dir or server_dry_run:
        from kubectl_capc.offline import OfflineOptions, run_offline

        offline = OfflineOptions(tuple(filenames or ()), output_dir, dry_run, server_dry_run)
        raise typer.Exit(run_offline(opts, cluster, request, offline, console))
    namespace = opts.resolve_context().namespace

    def cloudstack(credentials: Credentials) -> CloudStackClient:
        # --request-timeout bounds every remote request, CloudStack's too (which cannot wait forever).
        timeout = opts.request_timeout or CLOUDSTACK_REQUEST_TIMEOUT
        return CloudStackClient(credentials, request_timeout=timeout, poll_interval=poll_seconds)

    io = KubeClusterIO(
        api_client(opts),
        namespace,
        cluster,
        ImageOptions(source, image_url, prebuilt_base_url, image_builder_dir),
        console,
        make_client=cloudstack,
    )
    try:
        code = Upgrade(io, request, options, console).run()
    except KeyboardInterrupt as stop:
        from kubectl_capc.interrupts import StoppedAfterWrite

        if isinstance(stop, StoppedAfterWrite):
            where = f" after {stop.write} had finished"
        else:
            where = f" during {console.current_step}" if console.current_step else ""
        console.note(f"interrupted{where}: run the same command again to continue where it stopped")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    finally:
        console.flush()
    raise typer.Exit(code)


class TerminalConsole:
    """The plan and diffs on stdout; steps, progress, notes and questions on stderr."""

    def __init__(self, output: OutputFormat, *, color: bool) -> None:
        self.output = output
        self.color = color
        self._document: dict[str, Any] | None = None
        self._last_progress = ""
        self._live = sys.stderr.isatty()
        self.current_step: str | None = None
        """The step under way (`Action Kind/name`), for the message shown when the run is interrupted."""

    def show_plan(self, plan: UpgradePlan) -> None:
        if self.output is not OutputFormat.TABLE:
            if self._document is None:
                self._document = plan.to_document()
            return
        from kubectl_capc.cli import print_table

        current = ", ".join(f"{name} {version}" for name, version in plan.worker_versions)
        typer.echo(f"Cluster {plan.namespace}/{plan.cluster} (CAPI {plan.capi_version}) → {plan.target}")
        typer.echo(
            f"  control plane {plan.control_plane_version}"
            + (f"; MachineDeployments {current}" if current else "")
        )
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

    def show_previews(self, previews: Sequence[ObjectPreview]) -> None:
        if self.output is not OutputFormat.TABLE:
            if self._document is not None and "serverDryRun" not in self._document["status"]:
                self._document["status"]["serverDryRun"] = [_verdict(p) for p in previews]
            return
        from kubectl_capc.preview import render_previews

        typer.echo(render_previews(previews, color=self.color), nl=False)

    def confirm(self, question: str) -> bool:
        return typer.confirm(question, default=False, err=True)

    def step(self, hop: PlanHop, step: Step, state: str) -> None:
        self._end_progress()
        if state == "start":
            self.current_step = f"{step.action} {step.subject}"
            typer.echo(f"[hop {hop.number}] {step.action} {step.subject}: {step.summary()}", err=True)
        else:
            self.current_step = None
            typer.echo(f"[hop {hop.number}] {step.action} {step.subject}: done", err=True)

    def progress(self, progress: Sequence[OwnerProgress], elapsed: float) -> None:
        minutes, seconds = divmod(int(elapsed), 60)
        text = "; ".join(str(item) for item in progress)
        if self._live:
            sys.stderr.write(f"\r\033[K  {text} ({minutes}:{seconds:02d})")
            sys.stderr.flush()
            self._last_progress = text
        elif text != self._last_progress:
            typer.echo(f"  {text} ({minutes}:{seconds:02d})", err=True)
            self._last_progress = text

    def note(self, message: str) -> None:
        self._end_progress()
        typer.echo(message, err=True)

    def flush(self) -> None:
        """Print the typed plan document (json/yaml) once, whatever point the run stopped at."""
        self._end_progress()
        if self._document is not None:
            from kubectl_capc.cli import print_document

            print_document(self._document, self.output)
            self._document = None

    def _end_progress(self) -> None:
        if self._live and self._last_progress:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self._last_progress = "" if self._live else self._last_progress


def _verdict(preview: ObjectPreview) -> dict[str, Any]:
    result = "rejected" if preview.rejection else "accepted" if preview.checked else "not-checked"
    entry = {"hop": preview.hop, "object": preview.step.subject, "result": result}
    if preview.rejection:
        entry["message"] = preview.rejection
    elif not preview.checked:
        entry["message"] = preview.unchecked_reason
    return entry
