"""Cluster API Machines as plain data, readable from both the v1beta1 and the v1beta2 shapes.

The adapters copy what a Machine says into `Machine`; the workload checks and the rollout doctor read
only this, so neither depends on the API version the management cluster serves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Condition", "Machine", "parse_duration"]

_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string as metav1.Duration serialises it (`10m`, `1h30m`, `0s`).

    Raises ValueError for anything else (the API server validates Durations, so only bad input does).
    """
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return 0.0
    parts = _DURATION_PART.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise ValueError(f"{text!r} is not a duration (expected e.g. 10m, 1h30m or 90s)")
    return sign * sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


@dataclass(frozen=True)
class Condition:
    """One status condition, from `status.conditions`, `status.v1beta2.conditions` or
    `status.deprecated.v1beta1.conditions`: the types differ between the shapes, so one list holds all."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None


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
        return max(parse_duration(value), 0.0)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)
