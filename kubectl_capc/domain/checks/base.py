"""What every check shares: its stable identity, its severity, and the findings it reports.

A `Check` is declared once, as a module constant in its family's module, and carries the ID users search
for (`CAPC-T001`), a title for docs/checks.md and the default fix hint. Check functions return
`Finding`s made from it, so a finding can never carry an ID or severity its check does not have.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Check", "Finding", "ObjectRef", "Severity"]


class Severity(str, enum.Enum):
    """An error blocks a safe upgrade; a warning deserves a look (and fails with `--strict`)."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class ObjectRef:
    """The Kubernetes object a finding concerns."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Finding:
    """One problem found: which check, how bad, about what, what is wrong and how to fix it.

    `failure_domain` names the CAPC failure domain when the problem is specific to one.
    """

    check_id: str
    severity: Severity
    subject: ObjectRef
    message: str
    hint: str
    failure_domain: str = ""


@dataclass(frozen=True)
class Check:
    """A check's identity: stable ID, severity, a title for the docs and a default fix hint."""

    id: str
    severity: Severity
    title: str
    hint: str

    def finding(
        self, subject: ObjectRef, message: str, *, hint: str | None = None, failure_domain: str = ""
    ) -> Finding:
        return Finding(self.id, self.severity, subject, message, hint or self.hint, failure_domain)
