"""The terminal of the commands that change clusters (`image-upgrade`, `rollback`, fleets).

The plan and the server-checked diff of each write go to stdout; steps, progress (drawn by
`kubectl_capc.cli.progress` as `--progress` says), notes and questions go to stderr, so stdout stays
what a script reads. With `-o json|yaml`, stdout carries only the plan's typed document, with the
server's verdict on each write, printed once whatever point the run stopped at.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar

import typer

from kubectl_capc.cli.options import OutputFormat
from kubectl_capc.domain.errors import ExitCode

if TYPE_CHECKING:
    from kubectl_capc.cli.progress import ProgressDisplay
    from kubectl_capc.domain.plan import Step
    from kubectl_capc.domain.preview import ObjectPreview
    from kubectl_capc.domain.progress import CopyUpdate, RolloutUpdate, UploadUpdate

__all__ = ["PlanTerminal", "Terminal"]


class _Documented(Protocol):
    def to_document(self) -> dict[str, Any]: ...


PlanT = TypeVar("PlanT", bound=_Documented)


class Terminal:
    """What every changing command's terminal does alike: progress, notes and questions on stderr through
    one `cli.progress` display, and (with `-o json|yaml`) one typed document printed once at the end."""

    def __init__(self, output: OutputFormat, *, progress: str | ProgressDisplay = "auto") -> None:
        """`progress`: the `--progress` mode, or the display to use."""
        self.output = output
        self._document: dict[str, Any] | None = None
        from kubectl_capc.cli.progress import ProgressDisplay

        self.display = progress if isinstance(progress, ProgressDisplay) else ProgressDisplay(progress)
        self.current_step: str | None = None
        """The step under way (`Action Kind/name`), for the message shown when the run is interrupted."""

    def confirm(self, question: str) -> bool:
        self.display.close()
        return typer.confirm(question, default=False, err=True)

    def upload(self, update: UploadUpdate) -> None:
        self.display.upload(update)

    def copies(self, update: CopyUpdate) -> None:
        self.display.copies(update)

    def note(self, message: str) -> None:
        self.display.note(message)

    def flush(self) -> None:
        """Print the typed document (json/yaml) once, whatever point the run stopped at."""
        self.display.close()
        if self._document is not None:
            from kubectl_capc.cli.printing import print_document

            print_document(self._document, self.output)
            self._document = None

    def exit_with(self, run: Callable[[], int]) -> NoReturn:
        """Run the command and exit with the code `run` returns; Ctrl-C exits 130 saying where it stopped
        and how to go on. The typed document is printed however the run ended."""
        try:
            code = run()
        except KeyboardInterrupt as stop:
            self._stopped(stop)
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        finally:
            self.flush()
        raise typer.Exit(code)

    def _stopped(self, stop: KeyboardInterrupt) -> None:
        """Say where Ctrl-C stopped the run and how to go on from there."""
        from kubectl_capc.domain.interrupts import StoppedAfterWrite

        if isinstance(stop, StoppedAfterWrite):
            where = f" after {stop.done}"
        else:
            where = f" during {self.current_step}" if self.current_step else ""
        self.note(f"interrupted{where}: run the same command again to continue where it stopped")


class PlanTerminal(Terminal, ABC, Generic[PlanT]):
    """Shows one command's plan, previews, steps and progress; each command says how its plan and
    previews look as text and what the document says about each write."""

    def __init__(
        self,
        output: OutputFormat,
        *,
        color: bool | None = None,
        progress: str | ProgressDisplay = "auto",
    ) -> None:
        """`color` None: colour the diffs when stdout is a terminal and NO_COLOR is not set."""
        super().__init__(output, progress=progress)
        self.color = sys.stdout.isatty() and "NO_COLOR" not in os.environ if color is None else color

    @abstractmethod
    def print_plan(self, plan: PlanT) -> None:
        """The plan as text on stdout."""

    @abstractmethod
    def print_previews(self, previews: Sequence[ObjectPreview]) -> None:
        """The server-checked diff of each write as text on stdout."""

    @abstractmethod
    def verdict(self, preview: ObjectPreview) -> dict[str, Any]:
        """The server's verdict on one write, as the document's `status.serverDryRun` lists it."""

    def show_plan(self, plan: PlanT) -> None:
        self.display.close()  # a new plan (after a conflict mid-wait) is not drawn over
        if self.output is OutputFormat.TABLE:
            self.print_plan(plan)
        elif self._document is None:
            self._document = plan.to_document()

    def show_previews(self, previews: Sequence[ObjectPreview]) -> None:
        if self.output is OutputFormat.TABLE:
            self.print_previews(previews)
        elif self._document is not None and "serverDryRun" not in self._document["status"]:
            self._document["status"]["serverDryRun"] = [self.verdict(p) for p in previews]

    def progress(self, update: RolloutUpdate) -> None:
        self.display.rollout(update)

    def announce(self, label: str, step: Step, state: str) -> None:
        """`[label] Action Kind/name: ...` with what the step does (`state` "start"), or "done"."""
        self.current_step = f"{step.action} {step.subject}" if state == "start" else None
        text = step.summary() if state == "start" else "done"
        self.note(f"[{label}] {step.action} {step.subject}: {text}")
