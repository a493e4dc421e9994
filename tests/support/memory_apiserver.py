"""An apiserver in memory for the rollout simulator's unit tests: one owner and its Machines.

It answers the custom-object calls the simulator makes and records, for every status the simulator
writes for the owner, the (version, phase) of each Machine that existed at that moment.
"""

from __future__ import annotations

import json
from typing import Any


class MemoryApi:
    """An apiserver in memory for one owner, its Machines and their infrastructure; records
    (status, machines) per status write."""

    def __init__(self) -> None:
        self.machines: dict[str, dict[str, Any]] = {}
        self.others: dict[str, dict[str, Any]] = {}  # CloudStackMachineTemplates and CloudStackMachines
        self.history: list[tuple[dict[str, Any], list[tuple[str, str]]]] = []
        self.version = 10

    def _stored(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return json.loads(json.dumps(obj))

    def create_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        plural, body = args[3], args[-1]
        body["metadata"].update(uid=f"uid-{body['metadata']['name']}", creationTimestamp=f"{self.version:08}")
        (self.machines if plural == "machines" else self.others)[body["metadata"]["name"]] = body
        return self._stored(body)

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        if args[-1] not in self.others:
            raise ApiException(status=404, reason="Not Found")
        return json.loads(json.dumps(self.others[args[-1]]))

    def patch_namespaced_custom_object_status(self, *args: Any) -> dict[str, Any]:
        machine = self.machines[args[-2]]
        machine["status"] = {k: v for k, v in args[-1]["status"].items() if v is not None}
        return self._stored(machine)

    def delete_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        plural, name = args[3], args[-1]
        (self.machines if plural == "machines" else self.others).pop(name, None)
        return {"kind": "Status"}

    def replace_namespaced_custom_object_status(self, *args: Any) -> dict[str, Any]:
        self.history.append((args[-1]["status"], self.states()))
        return self._stored(args[-1])

    def states(self) -> list[tuple[str, str]]:
        return sorted((m["spec"]["version"], m["status"]["phase"]) for m in self.machines.values())
