"""`kubectl capc image-upgrade` for several clusters (names, `-A`, `-l`): the fleet plan and progress.

stdout: the fleet plan as a table (one row per cluster, then the node images the fleet shares) and the
final summary, or with `-o json|yaml` one typed document: `FleetUpgradePlan` for `--dry-run` and for a
refused run, `FleetUpgradeReport` once the run has ended. stderr: one line each time a cluster changes
state, or, on a terminal, a live table of the clusters (`--progress`, drawn by `cli.progress`); notes
and questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import typer

from kubectl_capc.cli.options import GlobalOptions, OutputFormat
from kubectl_capc.cli.terminal import Terminal
from kubectl_capc.domain.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from kubectl_capc.domain.fleet import ClusterKey, FleetPlan, FleetReport
    from kubectl_capc.domain.planner import PlanRequest
    from kubectl_capc.ops.options import ApplyOptions, ImageOptions

__all__ = ["FleetFlags", "FleetTerminal", "run_fleet"]

CLOUDSTACK_REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class FleetFlags:
    """The flags only a fleet run reads."""

    selector: str | None = None
    canary: int = 0
    max_concurrent: int = 1
    continue_on_error: bool = False
    skip_failing: bool = False

    def refuse_for_one_cluster(self) -> None:
        """One cluster name without -A or -l: the fleet flags would be ignored, so refuse them."""
        given = [
            flag
            for flag, value in (
                ("--canary", self.canary != 0),
                ("--max-concurrent", self.max_concurrent != 1),
                ("--continue-on-error", self.continue_on_error),
                ("--skip-failing", self.skip_failing),
            )
            if value
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)} only apply to a fleet",
                hint="name several clusters, or select them with -A or -l SELECTOR",
            )

    def check(self) -> None:
        if self.canary < 0:
            raise UsageError("--canary must be 0 or more", hint="e.g. --canary 1 upgrades one cluster first")
        if self.max_concurrent < 1:
            raise UsageError(
                "--max-concurrent must be at least 1", hint="e.g. --max-concurrent 5 upgrades five at a time"
            )
        if self.selector is not None and not self.selector.strip():
            raise UsageError("-l is empty", hint="give a label selector such as env=prod,tier!=canary")


def run_fleet(
    opts: GlobalOptions,
    names: Sequence[str],
    flags: FleetFlags,
    *,
    request: PlanRequest,
    images: ImageOptions,
    options: ApplyOptions,
    poll_seconds: float,
    progress: str = "auto",
) -> NoReturn:
    """Plan and run the fleet; exits 0 when every cluster is at the target, 8 when some are not, 1 for
    a dry run with changes pending."""
    from kubectl_capc.cloudstack.client import CloudStackClient
    from kubectl_capc.cloudstack.credentials import Credentials
    from kubectl_capc.domain.fleet import FleetPolicy
    from kubectl_capc.kube.client import api_client
    from kubectl_capc.ops.fleet import FleetOptions, FleetRun, FleetSelection, exit_code_of

    flags.check()
    if options.no_wait:
        raise UsageError(
            "--no-wait does not apply to a fleet: each cluster's rollouts are waited for before the next "
            "starts",
            hint="drop --no-wait, or upgrade the clusters one by one",
        )
    namespace = None if opts.all_namespaces else opts.target.resolve_context().namespace
    selection = FleetSelection(tuple(names), namespace, flags.selector)
    policy = FleetPolicy(flags.canary, flags.max_concurrent, flags.continue_on_error, flags.skip_failing)

    def cloudstack(credentials: Credentials) -> CloudStackClient:
        timeout = opts.request_timeout or CLOUDSTACK_REQUEST_TIMEOUT
        return CloudStackClient(credentials, request_timeout=timeout, poll_interval=poll_seconds)

    console = FleetTerminal(opts.output, progress=progress)
    run = FleetRun(
        api_client(opts.target), selection, request, images, FleetOptions(policy, options),
        console=console, make_client=cloudstack, progress=console,
    )  # fmt: skip

    def upgrade() -> int:
        report = run.run()
        if report is not None:
            return exit_code_of(report)
        plan = run.plan_result  # --dry-run
        return ExitCode.FINDINGS if plan is not None and plan.order else ExitCode.OK

    console.exit_with(upgrade)


# What a member's state line says for each kind of change; other changes (notes, finished steps) are
# only logged.
_SHOWN = {
    "checking": "",
    "checked": "",
    "running": "running",
    "start": "",
    "succeeded": "succeeded",
    "failed": "failed",
    "rejected": "rejected",
}


class FleetTerminal(Terminal):
    """The `FleetConsole` of the CLI; thread-safe, since members report from their own threads. The
    clusters' states are the `cli.progress` display's fleet table (or its plain lines)."""

    # -- the plan and the report (stdout) ---------------------------------------------------------

    def show_fleet_plan(self, plan: FleetPlan) -> None:
        from kubectl_capc.cli.printing import print_table

        if self.output is not OutputFormat.TABLE:
            self._document = plan.to_document()
            return
        policy = plan.policy
        typer.echo(
            f"Fleet upgrade to {plan.target}: {len(plan.members)} cluster(s), {len(plan.order)} to upgrade"
            f" (canary {policy.canary}, at most {policy.max_concurrent} at a time"
            + (", continue on error" if policy.continue_on_error else "")
            + (", skip failing" if policy.skip_failing else "")
            + ")"
        )
        typer.echo("")
        print_table(("NAMESPACE", "CLUSTER", "VERDICT", "HOPS", "NEW TEMPLATES", "NOTE"), plan.table_rows())
        images = plan.images
        if images:
            typer.echo("")
            rows = [
                (
                    image.image,
                    "ready" if image.ready else "to make ready",
                    image.source.value,
                    ", ".join(f"{z.zone}: {z.state.value}" for z in image.zones),
                    str(len(image.clusters)),
                )
                for image in images
            ]
            print_table(("IMAGE", "STATE", "SOURCE", "ZONES", "CLUSTERS"), rows)
        typer.echo("")

    def show_report(self, plan: FleetPlan, report: FleetReport) -> None:
        from kubectl_capc.cli.printing import print_table

        self.display.close()
        if self.output is not OutputFormat.TABLE:
            self._document = report.to_document(plan.target)
            return
        rows = [(r.key.namespace, r.key.name, r.outcome.value, r.reason) for r in report.results]
        print_table(("NAMESPACE", "CLUSTER", "RESULT", "REASON"), rows)
        typer.echo(f"Fleet upgrade to {plan.target}: {report.summary()}.")

    # -- progress (stderr) ------------------------------------------------------------------------

    def member(self, key: ClusterKey, state: str, detail: str = "") -> None:
        if state not in _SHOWN:
            return
        text = _SHOWN[state] or detail
        if _SHOWN[state] and detail:
            text = f"{text}: {detail}"
        self.display.cluster(str(key), text)
