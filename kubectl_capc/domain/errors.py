"""Failures the user can act on, each with the exit code documented in docs/exit-codes.md.

Commands raise these; the entry point prints them as one `error: ...` line on stderr and exits with the
class's code, so scripts can tell a bad flag from an unreachable cluster without parsing text.
"""

from __future__ import annotations

import enum
import re
from typing import ClassVar

__all__ = [
    "CapcError",
    "ConfigError",
    "ExitCode",
    "KubeApiError",
    "LockedError",
    "PlanError",
    "RolloutError",
    "UsageError",
    "connection_failure",
    "one_line",
]


class ExitCode(enum.IntEnum):
    """Process exit codes. 0 and 1 follow `kubectl diff`: 1 means "findings", never "failed"."""

    OK = 0
    FINDINGS = 1
    USAGE = 2
    CONFIG = 3
    KUBE_API = 4
    PLAN = 5
    ROLLOUT = 6
    LOCKED = 7
    FLEET_INCOMPLETE = 8
    """A fleet `image-upgrade` ended with some selected clusters not at the target (failed, skipped,
    not started)."""
    INTERNAL = 70
    INTERRUPTED = 130


class CapcError(Exception):
    """Base of the expected failures; raise a subclass so the exit code says what went wrong."""

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        text = self.message if not self.hint else f"{self.message}; {self.hint}"
        return one_line(text)


class UsageError(CapcError):
    """A flag or argument has a value the command cannot work with."""

    exit_code = ExitCode.USAGE


class ConfigError(CapcError):
    """The kubeconfig, or the CloudStack credentials, are missing, unreadable, malformed or incomplete."""

    exit_code = ExitCode.CONFIG


class KubeApiError(CapcError):
    """The Kubernetes API server could not be reached or refused a request."""

    exit_code = ExitCode.KUBE_API


class PlanError(CapcError):
    """The requested upgrade cannot be planned from the cluster's current state."""

    exit_code = ExitCode.PLAN


class RolloutError(CapcError):
    """Changes were applied but a rollout did not finish in time; re-running the command continues it."""

    exit_code = ExitCode.ROLLOUT


class LockedError(CapcError):
    """Another run holds the cluster's upgrade lock (its Lease), or took it over during this run."""

    exit_code = ExitCode.LOCKED


def one_line(text: str) -> str:
    """Collapse whitespace (YAML and HTTP errors span lines) so every error stays a single line."""
    return " ".join(text.split())


_CONNECTION_PREFIX = re.compile(r"^\w*Connection(?:Pool)?\([^)]*\): ")


def connection_failure(cause: object) -> str:
    """The cause of a request that got no answer (refused, DNS, TLS, timeout), as urllib3 found it, in one
    line and without the repr of urllib3's connection object it starts with."""
    return _CONNECTION_PREFIX.sub("", one_line(str(cause)))
