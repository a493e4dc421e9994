"""`kubectl capc history CLUSTER`: the rotations recorded on a cluster's objects, newest first.

Everything comes from the annotations `image-upgrade` and `rollback` write onto the KubeadmControlPlane
and each MachineDeployment (`kubectl_capc.domain.records`), so the history needs no local state and shows the
same from any machine. Pure: the inventory comes in, a typed `UpgradeHistory` goes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.model import KUBEADM_CONTROL_PLANE_KIND, ClusterInventory
from kubectl_capc.domain.plan import MACHINE_DEPLOYMENT_KIND
from kubectl_capc.domain.records import Rotation, read_history

__all__ = ["KIND", "LIST_KIND", "HistoryEntry", "UpgradeHistory", "cluster_history", "histories_document"]

KIND = "UpgradeHistory"
LIST_KIND = "UpgradeHistoryList"


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded rotation of one object."""

    kind: str
    name: str
    rotation: Rotation

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.name}"

    def to_document(self) -> dict[str, Any]:
        r = self.rotation
        return {
            "at": r.at,
            "action": r.action,
            "kind": self.kind,
            "name": self.name,
            "version": {"from": r.from_version, "to": r.to_version},
            "machineTemplate": {"from": r.from_template, "to": r.to_template},
            "image": {"from": r.from_image, "to": r.to_image},
            **({"onDelete": r.on_delete} if r.on_delete else {}),
        }


@dataclass(frozen=True)
class UpgradeHistory:
    """The recorded rotations of one cluster's objects, newest first (`kind: UpgradeHistory`)."""

    namespace: str
    cluster: str
    entries: tuple[HistoryEntry, ...]

    def to_document(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.cluster, "namespace": self.namespace},
            "rotations": [entry.to_document() for entry in self.entries],
        }

    def table_rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """TIME (to the second), ACTION, OBJECT, VERSION, TEMPLATE, IMAGE rows."""
        return [
            (
                _to_the_second(e.rotation.at),
                e.rotation.action + (f" (OnDelete: {e.rotation.on_delete})" if e.rotation.on_delete else ""),
                e.subject,
                _change(e.rotation.from_version, e.rotation.to_version),
                _change(e.rotation.from_template, e.rotation.to_template),
                _change(e.rotation.from_image, e.rotation.to_image),
            )
            for e in self.entries
        ]


def histories_document(histories: Sequence[UpgradeHistory]) -> dict[str, Any]:
    """Several clusters' histories (`history -A` / `-l`) as one `UpgradeHistoryList`."""
    return {
        "apiVersion": API_VERSION,
        "kind": LIST_KIND,
        "items": [history.to_document() for history in histories],
    }


def cluster_history(inventory: ClusterInventory) -> UpgradeHistory:
    """Every rotation recorded on the control plane and the MachineDeployments, newest first.

    Entries of the same moment keep the control plane first, then MachineDeployments by name.
    """
    owners: list[tuple[str, str, Any]] = []
    if inventory.control_plane is not None:
        cp = inventory.control_plane
        owners.append((KUBEADM_CONTROL_PLANE_KIND, cp.name, cp.annotations))
    owners += [(MACHINE_DEPLOYMENT_KIND, md.name, md.annotations) for md in inventory.machine_deployments]
    entries = [
        HistoryEntry(kind, name, rotation)
        for kind, name, annotations in owners
        for rotation in read_history(annotations)
    ]
    # Stable: entries of one moment (or with unreadable times, last) keep the order above.
    entries.sort(key=lambda e: _moment(e.rotation.at), reverse=True)
    return UpgradeHistory(inventory.namespace, inventory.name, tuple(entries))


def _moment(text: str) -> datetime:
    """A recorded RFC 3339 time (with or without fractions of a second); unreadable ones sort oldest."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _to_the_second(text: str) -> str:
    head, dot, rest = text.partition(".")
    return head + "Z" if dot and rest.endswith("Z") else text


def _change(before: str, after: str) -> str:
    if not before and not after:
        return "-"
    if before == after:
        return f"{after} (unchanged)"
    return f"{before or '?'} → {after or '?'}"
