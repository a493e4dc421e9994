"""`kube.watches.WatchHub`: many rollout waits served by one LIST and one WATCH per kind.

The feed's source is a double that counts LISTs and WATCHes and hands out events pushed by the test;
the waits judge the objects exactly as `KubeWriter.wait` does.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubectl_capc.domain.errors import RolloutError
from kubectl_capc.domain.plan import WaitRollout
from kubectl_capc.kube.watches import BROKEN, EXPIRED, WatchHub
from kubectl_capc.kube.write import Conflict, OwnerProgress

pytestmark = pytest.mark.timeout(30)

KIND = "MachineDeployment"


def deployment(namespace: str, name: str, version: str, *, updated: int, rv: int) -> dict[str, Any]:
    """A v1beta1 MachineDeployment of 2 replicas, `updated` of them at `version` and ready."""
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta1",
        "kind": KIND,
        "metadata": {"namespace": namespace, "name": name, "generation": 2, "resourceVersion": str(rv)},
        "spec": {
            "clusterName": name,
            "replicas": 2,
            "template": {"spec": {"version": version, "infrastructureRef": {"name": f"{name}-t"}}},
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 2,
            "updatedReplicas": updated,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "phase": "Running",
        },
    }


class Source:
    """A `FeedSource` whose WATCH hands out what the test pushes."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = list(objects)
        self.lists = 0
        self.watches = 0
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def list(self, kind: str) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        return list(self.objects), "1"

    def watch(self, kind: str, resource_version: str, seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        self.watches += 1
        while True:
            event = self.events.get()
            yield event
            if event[0] in (EXPIRED, BROKEN):
                return


class Writer:
    """What the hub needs of a `KubeWriter`: the namespace, and the stall report at a timeout."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def stall_report(self, step: WaitRollout, progress: Any, timeout: float | None) -> str:
        return f"{step.subject} stalled: " + "; ".join(str(p) for p in progress)


def step(name: str, version: str = "v1.29.3") -> WaitRollout:
    return WaitRollout(kind=KIND, names=(name,), version=version)


def waiting(hub: WatchHub, namespace: str, name: str, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(hub.wait(Writer(namespace), step(name), **kwargs))  # type: ignore[arg-type]
        except Exception as err:
            result.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def listed(source: Source, times: int) -> None:
    deadline = time.monotonic() + 10
    while source.lists < times:
        assert time.monotonic() < deadline, "the feed did not list"
        time.sleep(0.01)


def test_waits_of_several_clusters_in_several_namespaces_share_one_list_and_one_watch() -> None:
    source = Source(
        deployment("ns1", "a-md-0", "v1.29.3", updated=0, rv=1),
        deployment("ns2", "b-md-0", "v1.29.3", updated=1, rv=1),
    )
    hub = WatchHub(source, {"ns1", "ns2"})
    seen: list[tuple[OwnerProgress, ...]] = []
    first, first_result = waiting(hub, "ns1", "a-md-0", timeout=20, on_progress=lambda p, _: seen.append(p))
    second, second_result = waiting(hub, "ns2", "b-md-0", timeout=20)

    source.events.put(("MODIFIED", deployment("ns2", "b-md-0", "v1.29.3", updated=2, rv=2)))
    second.join(10)
    assert not second.is_alive() and second_result[0][0].done
    assert first.is_alive()
    source.events.put(("MODIFIED", deployment("ns1", "a-md-0", "v1.29.3", updated=2, rv=3)))
    first.join(10)

    assert not first.is_alive() and first_result[0][0].done
    assert seen[0][0].up_to_date == 0 and seen[-1][0].up_to_date == 2
    assert (source.lists, source.watches) == (1, 1)
    assert hub.kinds == (KIND,)
    hub.close()


def test_a_broken_stream_is_watched_again_and_gone_lists_again() -> None:
    source = Source(deployment("ns1", "a-md-0", "v1.29.3", updated=0, rv=1))
    hub = WatchHub(source, {"ns1"})
    thread, result = waiting(hub, "ns1", "a-md-0", timeout=20)
    listed(source, 1)
    source.objects = [deployment("ns1", "a-md-0", "v1.29.3", updated=2, rv=5)]
    source.events.put((BROKEN, {}))
    source.events.put((EXPIRED, {}))
    thread.join(10)
    assert not thread.is_alive() and result[0][0].done
    assert source.lists == 2 and source.watches >= 2
    hub.close()


def test_a_version_changed_by_someone_else_is_a_conflict() -> None:
    source = Source(deployment("ns1", "a-md-0", "v1.29.3", updated=0, rv=1))
    hub = WatchHub(source, {"ns1"})
    thread, result = waiting(hub, "ns1", "a-md-0", timeout=20)
    source.events.put(("MODIFIED", deployment("ns1", "a-md-0", "v1.30.1", updated=0, rv=2)))
    thread.join(10)
    assert isinstance(result[0], Conflict) and "was changed to v1.30.1" in result[0].message
    hub.close()


def test_objects_of_other_namespaces_are_not_seen() -> None:
    source = Source(deployment("elsewhere", "a-md-0", "v1.29.3", updated=2, rv=1))
    hub = WatchHub(source, {"ns1"})
    thread, result = waiting(hub, "ns1", "a-md-0", timeout=20)
    thread.join(10)
    assert isinstance(result[0], Conflict) and "a-md-0 no longer exists" in result[0].message
    hub.close()


def test_the_deadline_ends_the_wait_with_the_stall_report() -> None:
    source = Source(deployment("ns1", "a-md-0", "v1.29.3", updated=1, rv=1))
    hub = WatchHub(source, {"ns1"})
    thread, result = waiting(hub, "ns1", "a-md-0", timeout=0.3)
    thread.join(10)
    assert isinstance(result[0], RolloutError)
    assert result[0].message.startswith("MachineDeployment/a-md-0 stalled: a-md-0: 1/2 up to date")
    hub.close()
