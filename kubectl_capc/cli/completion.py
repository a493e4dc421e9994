"""Shell completion of `kubectl capc` through kubectl: the `kubectl_complete-capc` executable.

kubectl (v1.26 and newer) completes a plugin's words by running `kubectl_complete-<plugin>` from PATH
with the words typed after the plugin's name, the last one being the word under the cursor ("" for a
new word): `kubectl capc validate c<TAB>` runs `kubectl_complete-capc validate c`. The answer is cobra's
`__complete` protocol on stdout: one candidate a line (`VALUE<TAB>DESCRIPTION`), then `:DIRECTIVE`, a
bit set telling the shell what to do with them. kubectl drops the output of a process that exits
non-zero and passes its stderr to the terminal, so this one always exits 0 and keeps stderr closed.
A leading `__complete` (or `__completeNoDesc`, which drops the descriptions) is accepted too, so the
executable answers the way a cobra program does when asked directly.

The commands, flags and flag values come from the Typer app itself, so completion follows the CLI as it
changes; a flag's values are its choices, or the `a|b|c` list of its metavar. Contexts come from the
kubeconfig. Namespaces, Cluster names and `--to` versions (the node-image templates in the cluster's
zones, merged with the Kubernetes minors `KNOWN_MINORS`) need the servers: those lookups run on a
worker thread against `BUDGET_SECONDS` (or `$KUBECTL_CAPC_COMPLETION_TIMEOUT`), and one that is late
is dropped, leaving nothing (or, for `--to`, the known minors). Completion never writes: no cache,
no log, no kubeconfig change.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubectl_capc.cli.options import GlobalOptions
    from kubectl_capc.domain.versions import KubeVersion
    from kubectl_capc.ops.completion import TemplateVersions

__all__ = [
    "BUDGET_ENV",
    "BUDGET_SECONDS",
    "DEFAULT",
    "FILTER_DIRS",
    "KEEP_ORDER",
    "KNOWN_MINORS",
    "NOTHING",
    "NO_FILE_COMP",
    "Answer",
    "Candidate",
    "Line",
    "Plan",
    "main",
    "plan",
    "read_line",
    "render",
    "resolve",
    "version_candidates",
]

# The cobra ShellCompDirective bits this executable uses (spf13/cobra completions.go; the others are
# 1 error, 2 no space after the candidate, 8 filter files by extension).
DEFAULT = 0  # the shell's own completion: file names
NO_FILE_COMP = 4
FILTER_DIRS = 16
KEEP_ORDER = 32

BUDGET_SECONDS = 0.8
"""From the start of `main` to the answer; with interpreter start-up (about 40 ms) and kubectl's own
work (about 50 ms) the user waits less than a second, whatever the servers do. A `--to` lookup spends
most of it importing cs and asking CloudStack."""
BUDGET_ENV = "KUBECTL_CAPC_COMPLETION_TIMEOUT"
"""A duration (`2s`, `1500ms`) that replaces `BUDGET_SECONDS`, for a slow link to the servers."""

KNOWN_MINORS = tuple(range(28, 38))
"""The Kubernetes minors `--to` is offered as `v1.MINOR` (v1.28, August 2023, to v1.37, August 2026);
`--to v1.MINOR` means the newest patch that has a node image."""

_HELP_FLAGS = (("--help", "Show the help and exit."), ("-h", "Show the help and exit."))
# Metavars of flags whose value is a path: the shell completes files, or directories.
_FILE_METAVARS = frozenset({"FILE", "PATH"})
_DIR_METAVARS = frozenset({"DIR"})


@dataclass(frozen=True)
class Candidate:
    """One completion: the text to insert and a few words shown beside it by shells that can."""

    value: str
    description: str = ""


@dataclass(frozen=True)
class Answer:
    """What to print: the candidates and the directive."""

    candidates: tuple[Candidate, ...] = ()
    directive: int = NO_FILE_COMP


NOTHING = Answer()
"""No candidates and no file names either: the answer when nothing fits, or when it came too late."""


@dataclass(frozen=True)
class Plan:
    """The answer known at once, and the server lookup that may replace it if it finishes in time.

    `lookup` gets the seconds left, to use as its request timeout.
    """

    answer: Answer
    lookup: Callable[[float], Answer] | None = None


@dataclass
class Line:
    """The command line up to the word being completed, read against the command tree."""

    command: Any
    arguments: list[str] = field(default_factory=list)
    given: dict[str, list[str]] = field(default_factory=dict)
    pending: Any = None
    """The option whose value is being completed, if any."""
    partial: str = ""
    prefix: str = ""
    """What precedes the value in the word being completed: `--to=` for `--to=v1.2`."""

    def value(self, name: str) -> str | None:
        """The last value given to the option named `name` (its parameter name) on the line."""
        values = self.given.get(name)
        return values[-1] if values else None


def main(argv: Sequence[str] | None = None) -> int:
    """Print the completions for the words in `argv` (default: the process arguments) and exit 0."""
    started = time.monotonic()
    words = list(sys.argv[1:] if argv is None else argv)
    descriptions = True
    if words and words[0] in ("__complete", "__completeNoDesc"):
        descriptions = words.pop(0) == "__complete"
    _close_stderr()
    try:
        answer, late = resolve(plan(words or [""]), started + _budget())
    except Exception:
        answer, late = NOTHING, False
    sys.stdout.write(render(answer, descriptions=descriptions))
    sys.stdout.flush()
    if late:
        _leave_now()
    return 0


def render(answer: Answer, *, descriptions: bool = True) -> str:
    """cobra's `__complete` output: one candidate a line, then `:DIRECTIVE`."""
    lines = []
    for candidate in answer.candidates:
        description = candidate.description.splitlines()[0].strip() if candidate.description else ""
        lines.append(f"{candidate.value}\t{description}" if descriptions and description else candidate.value)
    return "".join(f"{line}\n" for line in (*lines, f":{answer.directive}"))


def resolve(planned: Plan, deadline: float) -> tuple[Answer, bool]:
    """The lookup's answer if it arrives before `deadline` (monotonic time), else the planned one.

    The second value is True when a lookup is still running: the process must leave without waiting
    for it.
    """
    if planned.lookup is None:
        return planned.answer, False
    lookup = planned.lookup
    left = deadline - time.monotonic()
    if left <= 0:
        return planned.answer, False
    outcome: list[Answer] = []

    def run() -> None:
        # Any failure (no kubeconfig, refused, forbidden) means: offer what was planned.
        with contextlib.suppress(Exception):
            outcome.append(lookup(left))

    worker = threading.Thread(target=run, name="completion-lookup", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        return planned.answer, True
    return (outcome[0] if outcome else planned.answer), False


def plan(words: Sequence[str]) -> Plan:
    """What to offer for `words`, the words after `kubectl capc`, the last one being completed."""
    import typer.main

    from kubectl_capc.cli.app import app

    line = read_line(typer.main.get_command(app), words)
    if line.pending is not None:
        return _option_values(line)
    if line.partial.startswith("-"):
        return Plan(Answer(_flags(line)))
    listed = _listed_subcommands(line.command)
    if listed and not line.arguments:
        return Plan(
            Answer(
                tuple(Candidate(name, text) for name, text in listed.items() if name.startswith(line.partial))
            )
        )
    arguments = [p for p in getattr(line.command, "params", ()) if p.param_type_name == "argument"]
    if len(line.arguments) < len(arguments) and arguments[len(line.arguments)].name == "cluster":
        return Plan(NOTHING, _cluster_lookup(line))
    return Plan(NOTHING)


def read_line(root: Any, words: Sequence[str]) -> Line:
    """Walk `words` down the command tree as the CLI parses them: subcommands, options with their
    values (`--flag value`, `--flag=value`, `-n=value`, `-nvalue`), arguments, and `--`."""
    *done, partial = words
    line = Line(root, partial=partial)
    only_arguments = False
    index = 0
    while index < len(done):
        word = done[index]
        index += 1
        if only_arguments or not word.startswith("-") or word == "-":
            subcommand = _subcommand(line.command, word) if not line.arguments else None
            if subcommand is not None:
                line.command = subcommand
            else:
                line.arguments.append(word)
            continue
        if word == "--":
            only_arguments = True
            continue
        option, value = _split_option(line.command, word)
        if option is None:
            continue
        if _takes_value(option) and value is None:
            if index == len(done):
                line.pending = option
                break
            value = done[index]
            index += 1
        line.given.setdefault(option.name, []).append(value or "")
    if line.pending is None and partial.startswith("-") and not only_arguments:
        option, value = _split_option(line.command, partial)
        if option is not None and value is not None and _takes_value(option):
            line.pending, line.prefix, line.partial = option, partial[: len(partial) - len(value)], value
    return line


def version_candidates(
    templates: Iterable[tuple[KubeVersion, str]], current: KubeVersion | None = None, *, partial: str = ""
) -> tuple[Candidate, ...]:
    """`--to` values, newest first: each known minor and each template's minor as `v1.MINOR`, and each
    template's release as `v1.MINOR.PATCH`; none below `current` (the control plane's KubeVersion),
    which would be a downgrade. When `partial` is typed without the leading `v`, the values drop it too."""
    entries: dict[tuple[int, int, float], Candidate] = {}
    for minor in KNOWN_MINORS:
        entries[(1, minor, float("inf"))] = Candidate(f"v1.{minor}", "newest patch with a node image")
    for version, name in templates:
        if not version.is_release:
            continue
        entries[(version.major, version.minor, float(version.patch))] = Candidate(str(version), name)
        entries.setdefault(
            (version.major, version.minor, float("inf")),
            Candidate(version.minor_line, "newest patch with a node image"),
        )
    # A minor line sorts after its releases, so only lines older than the current minor fall below it.
    floor = (0, 0, 0.0) if current is None else (current.major, current.minor, float(current.patch))
    chosen = []
    for key in sorted(entries, reverse=True):
        if key < floor:
            continue
        candidate = entries[key]
        value = candidate.value if not partial or partial.startswith("v") else candidate.value[1:]
        if value.startswith(partial):
            chosen.append(Candidate(value, candidate.description))
    return tuple(chosen)


def _option_values(line: Line) -> Plan:
    option = line.pending
    name = option.name
    if name == "context":
        return Plan(Answer(_prefixed(line, _contexts(line))))
    if name in ("namespace", "cluster"):
        return Plan(NOTHING, _namespace_lookup(line) if name == "namespace" else _cluster_lookup(line))
    if name == "to":
        return _versions_plan(line)
    if option.metavar in _FILE_METAVARS:
        return Plan(Answer(directive=DEFAULT))
    if option.metavar in _DIR_METAVARS:
        return Plan(Answer(directive=FILTER_DIRS))
    choices = [item.value for item in option.shell_complete(None, "")] or _metavar_choices(option.metavar)
    return Plan(Answer(_prefixed(line, [Candidate(choice) for choice in choices])))


def _versions_plan(line: Line) -> Plan:
    known = version_candidates((), partial=line.partial)
    answer = Answer(_with_prefix(line.prefix, known), NO_FILE_COMP | KEEP_ORDER)
    cluster = _cluster_on(line)
    if not cluster:
        return Plan(answer)
    options = _global_options(line)

    def lookup(seconds: float) -> Answer:
        from kubectl_capc.ops.completion import template_versions

        found: TemplateVersions = template_versions(_with_timeout(options, seconds).target, cluster)
        candidates = version_candidates(found.templates, found.current, partial=line.partial)
        return Answer(_with_prefix(line.prefix, candidates), answer.directive)

    return Plan(answer, lookup)


def _cluster_lookup(line: Line) -> Callable[[float], Answer]:
    options = _global_options(line)

    def lookup(seconds: float) -> Answer:
        from kubectl_capc.ops.completion import clusters

        found = clusters(_with_timeout(options, seconds).target)
        return Answer(_prefixed(line, [Candidate(c.name, c.description) for c in found]))

    return lookup


def _namespace_lookup(line: Line) -> Callable[[float], Answer]:
    options = _global_options(line)

    def lookup(seconds: float) -> Answer:
        from kubectl_capc.ops.completion import namespaces

        found = namespaces(_with_timeout(options, seconds).target)
        return Answer(_prefixed(line, [Candidate(n.name, n.description) for n in found]))

    return lookup


def _contexts(line: Line) -> list[Candidate]:
    from kubectl_capc.kube.kubeconfig import load_kubeconfig

    kubeconfig = load_kubeconfig(line.value("kubeconfig"))
    return [
        Candidate(name, f"cluster {body.get('cluster', '')}")
        for name, body in sorted(kubeconfig.contexts.items())
    ]


def _flags(line: Line) -> tuple[Candidate, ...]:
    found: list[Candidate] = []
    for param in getattr(line.command, "params", ()):
        if param.param_type_name != "option" or getattr(param, "hidden", False):
            continue
        if param.name in line.given and not param.multiple:
            continue
        for name in (*param.opts, *param.secondary_opts):
            if name.startswith(line.partial):
                found.append(Candidate(name, param.help or ""))
    found.extend(Candidate(name, text) for name, text in _HELP_FLAGS if name.startswith(line.partial))
    return tuple(sorted(found, key=lambda c: c.value))


def _prefixed(line: Line, candidates: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """The candidates that start with the partial value, with the `--flag=` the word began with."""
    return _with_prefix(line.prefix, [c for c in candidates if c.value.startswith(line.partial)])


def _with_prefix(prefix: str, candidates: Iterable[Candidate]) -> tuple[Candidate, ...]:
    return tuple(Candidate(prefix + c.value, c.description) for c in candidates)


def _listed_subcommands(command: Any) -> dict[str, str]:
    """The visible subcommands of `command` with their one-line help; a group's commands not loaded yet
    are described from its table, without importing them."""
    from kubectl_capc.cli.lazy import LazyGroup

    if isinstance(command, LazyGroup):
        return command.short_helps(limit=80)
    commands = getattr(command, "commands", None) or {}
    return {
        name: sub.get_short_help_str(limit=80)
        for name, sub in commands.items()
        if not getattr(sub, "hidden", False)
    }


def _subcommand(command: Any, name: str) -> Any:
    commands = getattr(command, "commands", None) or {}
    sub = commands.get(name)
    return None if sub is None or getattr(sub, "hidden", False) else sub


def _split_option(command: Any, word: str) -> tuple[Any, str | None]:
    """The option `word` names and the value attached to it (`--to=v1.29`, `-n=ns`, `-nns`), if any."""
    options = {
        name: param
        for param in getattr(command, "params", ())
        if param.param_type_name == "option"
        for name in (*param.opts, *param.secondary_opts)
    }
    if word in options:
        return options[word], None
    if word.startswith("--"):
        name, sep, value = word.partition("=")
        return (options.get(name), value) if sep else (None, None)
    short = options.get(word[:2])
    if short is None:
        return None, None
    return short, word[2:].removeprefix("=")


def _takes_value(option: Any) -> bool:
    return not getattr(option, "is_flag", False) and not getattr(option, "count", False)


def _metavar_choices(metavar: str | None) -> list[str]:
    """`existing|url|prebuilt` lists a flag's values; a metavar such as `DURATION` does not."""
    if not metavar or "|" not in metavar or not metavar.islower():
        return []
    return metavar.split("|")


def _cluster_on(line: Line) -> str | None:
    """The cluster the line names: the CLUSTER argument, or `--cluster` of the image commands."""
    arguments = [p for p in getattr(line.command, "params", ()) if p.param_type_name == "argument"]
    if arguments and arguments[0].name == "cluster" and line.arguments:
        return line.arguments[0]
    return line.value("cluster")


def _global_options(line: Line) -> GlobalOptions:
    from kubectl_capc.cli.options import GlobalOptions

    return GlobalOptions(
        kubeconfig=line.value("kubeconfig"), context=line.value("context"), namespace=line.value("namespace")
    )


def _with_timeout(options: GlobalOptions, seconds: float) -> GlobalOptions:
    from dataclasses import replace

    return replace(options, request_timeout=max(seconds, 0.05))


def _budget() -> float:
    text = os.environ.get(BUDGET_ENV)
    if not text:
        return BUDGET_SECONDS
    import typer

    from kubectl_capc.cli.options import parse_duration

    try:
        return parse_duration(text) or BUDGET_SECONDS
    except typer.BadParameter:  # a malformed value keeps the default
        return BUDGET_SECONDS


def _close_stderr() -> None:
    """Send stderr, of this process and of anything it starts (kubeconfig exec plugins), nowhere:
    kubectl shows it in the middle of the user's command line."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


def _leave_now() -> None:
    """Exit without waiting for a late lookup's threads; the exit handlers still run, so the client
    libraries remove the temporary files they made."""
    import atexit

    atexit._run_exitfuncs()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
