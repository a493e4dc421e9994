"""The kubectl-style global options, defined once and shared by every command.

kubectl refuses flags placed before a plugin's name (`kubectl --context x capc ...` fails), so users
write them after the subcommand: `kubectl capc validate c1 --context x -n ns`. Each command therefore
carries the options itself: `@global_options()` adds them to a command function and passes it a single
`GlobalOptions` as its `opts` argument.

Short options also accept pflag's `-n=ns` / `-v=4` spelling, which kubectl users type out of habit.

The arguments and options that several commands take (`CLUSTER`, `--dry-run`, `--yes`, `--no-wait`,
`--timeout`, `--poll-interval`, `--prebuilt-base-url`, `--upload-ca-file`, `--upload-insecure`,
`--progress`) are
declared here once, as `Annotated` types,
with the functions that turn their values into what the commands use, so they read and behave the
same everywhere.
"""

from __future__ import annotations

import enum
import functools
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from kubectl_capc.domain.defaults import DEFAULT_PREBUILT_BASE_URL
from kubectl_capc.domain.durations import parse_go_duration
from kubectl_capc.domain.errors import UsageError

if TYPE_CHECKING:
    from kubectl_capc.kube.target import KubeTarget
    from kubectl_capc.ops.options import ApplyOptions, Timeouts

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "PROGRESS_MODES",
    "BreakLockOption",
    "ClusterArgument",
    "DryRunOption",
    "GlobalOptions",
    "NoWaitOption",
    "OnDeleteOption",
    "OptionalClusterArgument",
    "OutputFormat",
    "OutputOption",
    "PollIntervalOption",
    "PrebuiltBaseUrlOption",
    "ProgressMode",
    "ProgressOption",
    "SelectorOption",
    "TimeoutOption",
    "YesOption",
    "apply_options",
    "configure_logging",
    "drop_equals",
    "global_options",
    "parse_duration",
    "parse_output",
    "parse_timeouts",
    "parse_verbosity",
    "positive_seconds",
]

T = TypeVar("T")


class OutputFormat(str, enum.Enum):
    """What `-o/--output` can ask for."""

    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


@dataclass(frozen=True)
class GlobalOptions:
    """The parsed global options; `None` means "not given, use kubectl's default"."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    all_namespaces: bool = False
    request_timeout: float | None = None
    verbosity: int = 0
    output: OutputFormat = OutputFormat.TABLE

    @property
    def target(self) -> KubeTarget:
        """The cluster to talk to, as the layers below the CLI take it."""
        from kubectl_capc.kube.target import KubeTarget

        return KubeTarget(self.kubeconfig, self.context, self.namespace, self.request_timeout)


def parse_duration(value: str | float | None) -> float | None:
    """Parse kubectl's `--request-timeout`: a bare number of seconds or a Go duration like `1m30s`.

    Returns seconds, or None for zero, which kubectl reads as "no timeout".
    """
    if value is None or isinstance(value, float):
        return value or None
    text = drop_equals(value).strip()
    if re.fullmatch(r"\d+", text):
        return float(text) or None
    try:
        if text.startswith(("-", "+")):  # kubectl refuses a signed timeout
            raise ValueError(text)
        seconds = parse_go_duration(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a duration; use seconds or a unit, e.g. 30s, 2m, 1h"
        ) from None
    return seconds or None


def parse_verbosity(value: str | int) -> int:
    """Parse `-v/--v` as kubectl does: a non-negative log level."""
    if isinstance(value, int):
        return value
    text = drop_equals(value)
    if not (text.isascii() and text.isdigit()):
        raise typer.BadParameter(f"{text!r} is not a log level; use a number such as 4 or 6")
    return int(text)


def parse_output(value: str | OutputFormat) -> OutputFormat:
    """Parse `-o/--output` into one of the supported formats."""
    if isinstance(value, OutputFormat):
        return value
    text = drop_equals(value)
    try:
        return OutputFormat(text)
    except ValueError:
        choices = "|".join(choice.value for choice in OutputFormat)
        raise typer.BadParameter(f"{text!r} is not an output format; use one of {choices}") from None


def drop_equals(text: str) -> str:
    """A value as pflag reads it: the option parser hands `-v=4` over as "=4"."""
    return text[1:] if text.startswith("=") else text


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "-o",
        "--output",
        parser=parse_output,
        metavar="table|json|yaml",
        help="Output format.",
        show_default=False,
    ),
]


ClusterArgument = Annotated[str, typer.Argument(metavar="CLUSTER", help="The workload cluster.")]
OptionalClusterArgument = Annotated[
    str | None, typer.Argument(metavar="CLUSTER", help="Cluster name; default: all in the namespace.")
]
SelectorOption = Annotated[
    str | None,
    typer.Option(
        "-l",
        "--selector",
        metavar="SELECTOR",
        help="Only the Clusters whose labels match, e.g. env=prod,tier!=dev (with -A: in every namespace).",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Preview only: every change is sent with dryRun=All, nothing is stored. Exit 1 if any.",
    ),
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Change the cluster without asking for confirmation.")
]
NoWaitOption = Annotated[
    bool, typer.Option("--no-wait", help="Stop at the first rollout instead of waiting; re-run to continue.")
]
ON_DELETE_MODES = ("leave", "replace")
"""The values of domain.plan.OnDeleteMode, spelled out so that `--help` need not import the planner."""


def one_of(choices: tuple[str, ...], what: str) -> Callable[[str], str]:
    """The parser of an option that takes one of `choices` (any case), refusing others as `what`."""

    def parse(value: str) -> str:
        text = drop_equals(value).lower()
        if text not in choices:
            raise typer.BadParameter(f"{text!r} is not {what}; use one of {'|'.join(choices)}")
        return text

    return parse


OnDeleteOption = Annotated[
    str,
    typer.Option(
        "--on-delete",
        metavar="|".join(ON_DELETE_MODES),
        parser=one_of(ON_DELETE_MODES, "an OnDelete mode"),
        help="MachineDeployments with the OnDelete strategy: leave their old Machines (listed) or replace "
        "them one at a time.",
    ),
]
"""`--on-delete` of image-upgrade (an `OnDeleteMode` value)."""
BreakLockOption = Annotated[
    bool,
    typer.Option(
        "--break-lock",
        help="Take the cluster's upgrade lock even from a live holder (only when it is known to be dead).",
    ),
]
TimeoutOption = Annotated[
    list[str] | None,
    typer.Option(
        "--timeout",
        metavar="[PHASE=]DURATION",
        help="Per-phase limit: 90m, or control-plane=60m, machine-deployment=30m, "
        "images=1h (image-upgrade); 0: none.",
    ),
]
"""`--timeout` of the commands that wait for rollouts (read by `parse_timeouts`)."""
DEFAULT_POLL_INTERVAL = "5s"
PollIntervalOption = Annotated[
    str,
    typer.Option(
        "--poll-interval",
        metavar="DURATION",
        help="Time between two checks of CloudStack while a template downloads or a job runs.",
    ),
]
"""`--poll-interval` of the commands that wait for CloudStack (read by `positive_seconds`)."""
PrebuiltBaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--prebuilt-base-url",
        metavar="URL",
        help="Where CAPC's prebuilt images are published, or a mirror.",
        show_default=DEFAULT_PREBUILT_BASE_URL,
    ),
]

UploadCaFileOption = Annotated[
    Path | None,
    typer.Option(
        "--upload-ca-file",
        metavar="FILE",
        help="PEM file of the CA that signed the secondary-storage VM's certificate, for uploads.",
    ),
]
UploadInsecureOption = Annotated[
    bool,
    typer.Option(
        "--upload-insecure",
        help="Upload without checking the secondary-storage VM's certificate (warned about).",
    ),
]
"""`--upload-ca-file` / `--upload-insecure` of the commands that may upload (read by `check_upload_tls`)."""


class ProgressMode(str, enum.Enum):
    """What `--progress` can ask for (drawn by `cli.progress`, which `--help` need not import)."""

    AUTO = "auto"
    PLAIN = "plain"
    NONE = "none"


PROGRESS_MODES = tuple(mode.value for mode in ProgressMode)


ProgressOption = Annotated[
    str,
    typer.Option(
        "--progress",
        metavar="|".join(PROGRESS_MODES),
        parser=one_of(PROGRESS_MODES, "a progress mode"),
        help="Progress on stderr: live on a terminal (auto), timestamped lines (plain), or none.",
    ),
]
"""`--progress` of the commands that wait (a `ProgressMode` value)."""


def check_upload_tls(ca_file: Path | None, insecure: bool, *, uploads: bool, needs: str) -> None:
    """Refuse the upload TLS flags where nothing is uploaded (`needs` names what would upload), the two
    together, and a CA file that cannot be read as PEM certificates."""
    given = [flag for flag, on in (("--upload-ca-file", ca_file), ("--upload-insecure", insecure)) if on]
    if not given:
        return
    if not uploads:
        raise UsageError(f"{given[0]} is only for uploads", hint=f"drop it, or upload with {needs}")
    if len(given) == 2:
        raise UsageError(
            "--upload-ca-file conflicts with --upload-insecure",
            hint="give the CA file to check the certificate, or --upload-insecure not to check it",
        )
    if ca_file is not None:
        import ssl

        try:
            ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError, ValueError) as err:
            raise UsageError(
                f"--upload-ca-file {ca_file} cannot be read as PEM certificates: {err}",
                hint="give the CA certificate file, PEM-encoded (-----BEGIN CERTIFICATE-----)",
            ) from None


_PHASES = {"images": "images", "control-plane": "control_plane", "machine-deployment": "machine_deployment"}


def parse_timeouts(values: Sequence[str]) -> Timeouts:
    """`--timeout` values: `DURATION` for every phase, or `PHASE=DURATION` (images, control-plane,
    machine-deployment); 0 means no limit. Later values win over earlier ones and the defaults."""
    from kubectl_capc.ops.options import Timeouts

    timeouts = Timeouts()
    for value in values:
        phase, sep, duration = value.rpartition("=")
        if not sep:
            timeouts = Timeouts(*(3 * (_flag_seconds(value, "--timeout"),)))
        elif phase in _PHASES:
            timeouts = replace(timeouts, **{_PHASES[phase]: _flag_seconds(duration, "--timeout")})
        else:
            raise UsageError(
                f"--timeout {value!r}: unknown phase {phase!r}", hint=f"use one of {', '.join(_PHASES)}"
            )
    return timeouts


def apply_options(
    *, dry_run: bool, yes: bool, no_wait: bool, timeout: Sequence[str] | None, break_lock: bool = False
) -> ApplyOptions:
    """`--dry-run`, `--yes`, `--no-wait`, `--timeout` and `--break-lock` of a command that changes a
    cluster by plan; questions are asked only when stdin is a terminal."""
    from kubectl_capc.ops.options import ApplyOptions

    return ApplyOptions(
        dry_run=dry_run,
        yes=yes,
        no_wait=no_wait,
        interactive=sys.stdin.isatty(),
        timeouts=parse_timeouts(timeout or []),
        break_lock=break_lock,
    )


def _flag_seconds(text: str, flag: str) -> float | None:
    """The duration `text` given to `flag`, in seconds (None for 0); a usage error names the flag."""
    try:
        return parse_duration(text)
    except typer.BadParameter as err:
        raise UsageError(f"{flag}: {err.message}") from None


def positive_seconds(text: str, flag: str) -> float:
    """Like `_flag_seconds`, for a flag where 0 makes no sense (an interval, a wait that must end)."""
    seconds = _flag_seconds(text, flag)
    if seconds is None:
        raise UsageError(f"{flag} must be longer than 0", hint="give a duration such as 5s, 30m or 2h")
    return seconds


def configure_logging(verbosity: int) -> None:
    """Route this tool's logs to stderr: warnings by default, info from -v=1, HTTP requests from -v=6.

    Only the `kubectl_capc` loggers get louder: the kubernetes client logs response bodies at debug
    level, and those may hold secrets.
    """
    import logging

    if verbosity >= 6:
        level = logging.DEBUG
    elif verbosity >= 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname).1s %(name)s: %(message)s"))
    logger = logging.getLogger("kubectl_capc")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _option(annotation: Any, default: Any, *decls: str, **info: Any) -> tuple[Any, Any]:
    return Annotated[annotation, typer.Option(*decls, **info)], default


def _global_parameters(all_namespaces: bool) -> dict[str, tuple[Any, Any]]:
    params = {
        "kubeconfig": _option(
            str | None, None, "--kubeconfig", metavar="FILE", help="Kubeconfig file; default: $KUBECONFIG."
        ),
        "context": _option(str | None, None, "--context", metavar="NAME", help="Kubeconfig context to use."),
        "namespace": _option(
            str | None,
            None,
            "-n",
            "--namespace",
            metavar="NAME",
            parser=drop_equals,
            help="Namespace; default: the context's namespace, else 'default'.",
        ),
        "all_namespaces": _option(bool, False, "-A", "--all-namespaces", help="Act on all namespaces."),
        "request_timeout": _option(
            float | None,
            None,
            "--request-timeout",
            metavar="DURATION",
            parser=parse_duration,
            help="Timeout of each API request, e.g. 30s or 1m; 0 waits forever (default).",
        ),
        "verbosity": _option(
            int,
            0,
            "-v",
            "--v",
            metavar="LEVEL",
            parser=parse_verbosity,
            help="Log level: 1 info, 6 HTTP requests.",
        ),
        "output": (OutputOption, OutputFormat.TABLE),
    }
    if not all_namespaces:
        del params["all_namespaces"]
    return params


def global_options(*, all_namespaces: bool = False) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Add the global options to a command that takes `opts: GlobalOptions`.

    `all_namespaces=True` also adds `-A/--all-namespaces`, for commands that can span namespaces.
    """

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(command, eval_str=True)
        if "opts" not in signature.parameters:
            raise TypeError(f"{command.__name__} must take an `opts: GlobalOptions` parameter")
        extra = _global_parameters(all_namespaces)
        clash = set(extra) & set(signature.parameters)
        if clash:
            raise TypeError(f"{command.__name__} has parameters named like global options: {sorted(clash)}")
        own = [param for name, param in signature.parameters.items() if name != "opts"]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, (annotation, default) in extra.items()
        ]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> T:
            values = {name: kwargs.pop(name) for name in extra}
            opts = GlobalOptions(**values)
            configure_logging(opts.verbosity)
            return command(*args, opts=opts, **kwargs)

        run.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return run

    return decorate
