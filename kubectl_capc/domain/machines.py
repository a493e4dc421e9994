"""Cluster API Machines as plain data, readable from both the v1beta1 and the v1beta2 shapes.

The adapters copy what a Machine says into `Machine`; the workload checks and the rollout doctor read
only this, so neither depends on the API version the management cluster serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kubectl_capc.domain.durations import parse_go_duration
from kubectl_capc.domain.model import Condition, find_condition

__all__ = ["Machine"]


@dataclass(frozen=True)
class Machine:
    """What the checks and the doctor need of a Machine.

    `owner_kind`/`owner_name` name the KubeadmControlPlane or MachineDeployment it belongs to (through
    its MachineSet for a deployment). `node_drain_timeout` is the raw field: a Duration string in
    v1beta1 (`spec.nodeDrainTimeout`), an int of seconds in v1beta2
    (`spec.deletion.nodeDrainTimeoutSeconds`), None when absent.
    """

    name: str
    namespace: str
    owner_kind: str
    owner_name: str
    version: str = ""
    provider_id: str = ""
    node_ref: str = ""
    phase: str = ""
    failure_domain: str = ""
    created: datetime | None = None
    deleting_since: datetime | None = None
    conditions: tuple[Condition, ...] = ()
    node_drain_timeout: str | int | None = None
    drain_started: datetime | None = None  # status.deletion.nodeDrainStartTime
    volume_detach_started: datetime | None = None  # status.deletion.waitForNodeVolumeDetachStartTime

    @property
    def drain_timeout_seconds(self) -> float:
        """The drain limit in seconds; 0 means a blocked drain waits forever (absent is the same)."""
        value = self.node_drain_timeout
        if value is None:
            return 0.0
        if isinstance(value, int):
            return float(max(value, 0))
        return max(parse_go_duration(value), 0.0)

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)
