"""What kubectl-capc writes onto the objects it changes, so history and rollback need no local state.

Every KubeadmControlPlane and MachineDeployment that `image-upgrade` patches gets, in the same patch
that changes its version and machine template, annotations saying what it was before and when it
changed, plus a short history of such changes (newest first). Every CloudStackMachineTemplate it creates
says which template it was cloned from and which Kubernetes version its image is for. The format is
documented in docs/annotations.md; this module is the only place that reads or writes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubectl_capc.domain.plan import PatchObject

__all__ = [
    "ACTION_ROLLBACK",
    "ACTION_UPGRADE",
    "CHANGED_AT",
    "CLONED_FROM",
    "HISTORY",
    "HISTORY_LIMIT",
    "KUBERNETES_VERSION",
    "PREFIX",
    "PREVIOUS_TEMPLATE",
    "PREVIOUS_VERSION",
    "Rotation",
    "read_history",
    "rotation_annotations",
    "timestamp",
]

PREFIX = "capc.kubectl.io/"
"""The annotation prefix the project owns (the group of its typed outputs)."""

PREVIOUS_VERSION = PREFIX + "previous-version"
PREVIOUS_TEMPLATE = PREFIX + "previous-template"
CHANGED_AT = PREFIX + "changed-at"
HISTORY = PREFIX + "history"
HISTORY_LIMIT = 10
"""Entries kept in the history annotation; older ones are dropped so the object stays small."""

CLONED_FROM = PREFIX + "cloned-from"
KUBERNETES_VERSION = PREFIX + "kubernetes-version"

ACTION_UPGRADE = "upgrade"
ACTION_ROLLBACK = "rollback"
"""A rotation that pointed an object back at the version and template it had before its last upgrade."""


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as Kubernetes writes a MicroTime: one run changes several
    objects within a second, and the history orders them by this."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Rotation:
    """One change of an object's Kubernetes version and/or machine template, as recorded on it.

    Templates are CloudStackMachineTemplate names; images are the CloudStack template names they use.
    """

    at: str
    action: str
    from_version: str
    to_version: str
    from_template: str
    to_template: str
    from_image: str = ""
    to_image: str = ""
    on_delete: str = ""
    """For an OnDelete MachineDeployment: what was done with its old Machines (`leave`, `replace`)."""

    @classmethod
    def of(cls, change: PatchObject, action: str, now: datetime) -> Rotation:
        """The record of the patch `change`, made by `action` (upgrade or rollback) at `now`."""
        return cls(
            at=timestamp(now),
            action=action,
            from_version=change.version_from,
            to_version=change.version_to,
            from_template=change.template_from,
            to_template=change.template_to,
            from_image=change.image_from,
            to_image=change.image_to,
            on_delete=change.on_delete,
        )

    def to_json(self) -> dict[str, str]:
        entry = {
            "at": self.at,
            "action": self.action,
            "fromVersion": self.from_version,
            "toVersion": self.to_version,
            "fromTemplate": self.from_template,
            "toTemplate": self.to_template,
            "fromImage": self.from_image,
            "toImage": self.to_image,
        }
        if self.on_delete:
            entry["onDelete"] = self.on_delete
        return entry

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rotation | None:
        """An entry read back; None when it lacks a required field (anyone can edit annotations)."""
        required = ("at", "fromVersion", "toVersion", "fromTemplate", "toTemplate")
        if not all(isinstance(data.get(key), str) and data.get(key) for key in required):
            return None

        def text(key: str) -> str:
            value = data.get(key, "")
            return value if isinstance(value, str) else ""

        return cls(
            at=text("at"),
            action=text("action") or ACTION_UPGRADE,
            from_version=text("fromVersion"),
            to_version=text("toVersion"),
            from_template=text("fromTemplate"),
            to_template=text("toTemplate"),
            from_image=text("fromImage"),
            to_image=text("toImage"),
            on_delete=text("onDelete"),
        )


def read_history(annotations: Mapping[str, str]) -> tuple[Rotation, ...]:
    """The recorded rotations of an object, newest first; unreadable entries are skipped."""
    raw = annotations.get(HISTORY)
    if not raw:
        return ()
    try:
        entries = json.loads(raw)
    except ValueError:
        return ()
    if not isinstance(entries, list):
        return ()
    rotations = (Rotation.from_json(entry) for entry in entries if isinstance(entry, Mapping))
    return tuple(rotation for rotation in rotations if rotation is not None)


def rotation_annotations(rotation: Rotation, current: Mapping[str, str]) -> dict[str, str]:
    """The annotations to set, in the patch that performs `rotation`, on an object annotated `current`."""
    history = (rotation, *read_history(current))[:HISTORY_LIMIT]
    return {
        PREVIOUS_VERSION: rotation.from_version,
        PREVIOUS_TEMPLATE: rotation.from_template,
        CHANGED_AT: rotation.at,
        HISTORY: json.dumps([entry.to_json() for entry in history], separators=(",", ":")),
    }
