"""Shared waits: one LIST and WATCH per kind for every rollout a fleet run waits for.

A fleet run waits for many KubeadmControlPlanes and MachineDeployments at once, in one or many
namespaces. Each wait opening its own watch would make the API server's load grow with the fleet;
`WatchHub` keeps one feed per kind instead (a namespaced watch when the fleet is in one namespace, else
one across all namespaces), holds the latest copy of each object, and wakes every waiter when one
changes. A waiter judges its own objects exactly as `KubeWriter.wait` does: progress, a `Conflict` when
an object is changed to another version or deleted meanwhile, and a `RolloutError` with the stall
report when its time is up.

The feed follows the usual reflector rules: one LIST, then WATCH requests of 5 to 10 minutes from the
last resourceVersion seen (bookmarks included); a broken stream is watched again from there after a
pause that grows while it keeps breaking; 410 Gone lists again. A refusal (403, say) ends the feed and
is raised in every waiter.

The kubernetes library is imported inside the functions: importing it costs about half a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from kubectl_capc.domain.errors import CapcError, KubeApiError, RolloutError, one_line
from kubectl_capc.domain.model import CapiVersion, normalize_version
from kubectl_capc.domain.plan import WaitRollout
from kubectl_capc.kube.errors import forbidden_error
from kubectl_capc.kube.resources import RESOURCES
from kubectl_capc.kube.retries import RETRIES
from kubectl_capc.kube.write import (
    Conflict,
    KubeWriter,
    OwnerProgress,
    ProgressCallback,
    progress_of,
    stall_hint,
    watch_seconds,
)

__all__ = ["BROKEN", "EXPIRED", "FeedSource", "KubeFeedSource", "WatchHub"]

_log = logging.getLogger(__name__)

EXPIRED, BROKEN = "EXPIRED", "BROKEN"
"""How a WATCH ended besides its events: 410 Gone (list again), or the stream broke (watch again)."""
_IDLE_REPORT = 5.0
"""A waiter reports its progress at least this often (seconds), so the elapsed time moves on and its
caller can stop it within seconds (a second Ctrl-C, a lost lock); it costs no request."""


class FeedSource(Protocol):
    """Where a feed gets one kind's objects: a LIST and WATCH requests, in one namespace or in all."""

    def list(self, kind: str) -> tuple[list[dict[str, Any]], str]:
        """The objects and the list's resourceVersion."""

    def watch(self, kind: str, resource_version: str, seconds: int) -> Iterable[tuple[str, dict[str, Any]]]:
        """(type, object) events, ending with (EXPIRED, {}) or (BROKEN, {}) when it ends that way."""


class KubeFeedSource:
    """The real `FeedSource`: custom-object LISTs and WATCHes at the served CAPI version."""

    def __init__(self, api_client: Any, capi_version: CapiVersion, namespace: str | None) -> None:
        from kubernetes import client

        self._api = client.CustomObjectsApi(api_client)
        self.capi_version = capi_version
        self.namespace = namespace

    def _request(self, kind: str) -> Callable[..., Any]:
        resource = RESOURCES[kind]
        if self.namespace is None:
            api: Any = self._api.list_cluster_custom_object
            args: tuple[str, ...] = (resource.group, self.capi_version, resource.plural)
        else:
            args = (resource.group, self.capi_version, self.namespace, resource.plural)
            api = self._api.list_namespaced_custom_object

        def request(**kwargs: Any) -> Any:
            return api(*args, **kwargs)

        request.__name__ = api.__name__  # the watch helper looks at the name
        request.__doc__ = api.__doc__
        return request

    def list(self, kind: str) -> tuple[list[dict[str, Any]], str]:
        from kubernetes.client.exceptions import ApiException

        items: list[dict[str, Any]] = []
        token: str | None = None
        request = self._request(kind)
        while True:
            try:
                page = request(limit=500, **({"_continue": token} if token else {}))
            except ApiException as err:
                raise _refusal(f"list {RESOURCES[kind].plural}", err) from None
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, str((page.get("metadata") or {}).get("resourceVersion", ""))

    def watch(self, kind: str, resource_version: str, seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        plural = RESOURCES[kind].plural
        watcher = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in watcher.stream(  # type: ignore[no-untyped-call]
                self._request(kind),
                resource_version=resource_version, timeout_seconds=seconds,
                allow_watch_bookmarks=True, _request_timeout=seconds + 30,
            ):  # fmt: skip
                if event["type"] == "ERROR":
                    if (event.get("raw_object") or {}).get("code") == 410:
                        yield EXPIRED, {}
                        return
                    raise KubeApiError(f"watching {plural}: {one_line(str(event.get('raw_object')))}")
                yield str(event["type"]), event["raw_object"]
        except ApiException as err:
            if err.status == 410:
                yield EXPIRED, {}
                return
            raise _refusal(f"watch {plural}", err) from None
        except (HTTPError, OSError) as err:
            _log.info("watch of %s ended: %s; watching again from there", plural, one_line(str(err)))
            yield BROKEN, {}
        finally:
            watcher.stop()  # type: ignore[no-untyped-call]


def _refusal(what: str, err: Any) -> KubeApiError:
    denied = forbidden_error(what, err)
    if denied is not None:
        return denied
    return KubeApiError(f"{what}: HTTP {err.status} {one_line(str(err.reason))}")


@dataclass
class _Snapshot:
    objects: dict[tuple[str, str], dict[str, Any]]
    generation: int
    error: CapcError | None


class _Feed:
    """One kind's objects, kept current by a background LIST and WATCH loop."""

    def __init__(self, kind: str, source: FeedSource, namespaces: frozenset[str] | None) -> None:
        self.kind = kind
        self._source = source
        self._namespaces = namespaces
        self._cond = threading.Condition()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._generation = 0  # moves on with every change the feed has seen; 0: not listed yet
        self._error: CapcError | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)
        self._thread.start()

    def _keep(self, obj: dict[str, Any]) -> tuple[str, str] | None:
        metadata = obj.get("metadata") or {}
        namespace = str(metadata.get("namespace", ""))
        if self._namespaces is not None and namespace not in self._namespaces:
            return None
        return namespace, str(metadata.get("name", ""))

    def _run(self) -> None:
        try:
            while not self._closed:
                items, resource_version = self._source.list(self.kind)
                with self._cond:
                    self._objects = {key: o for o in items if (key := self._keep(o)) is not None}
                    self._generation += 1
                    self._cond.notify_all()
                self._follow(resource_version)
        except CapcError as err:
            self._fail(err)
        except Exception as err:  # whatever ends the feed ends every wait on it
            self._fail(KubeApiError(f"watching {self.kind}: {one_line(str(err))}"))

    def _fail(self, err: CapcError) -> None:
        with self._cond:
            self._error = err
            self._cond.notify_all()

    def _follow(self, resource_version: str) -> None:
        """WATCH from `resource_version` until 410 Gone (then the caller lists again) or close()."""
        breaks = 0
        while not self._closed:
            ended = ""
            for event_type, obj in self._source.watch(self.kind, resource_version, watch_seconds(None)):
                if event_type in (EXPIRED, BROKEN):
                    ended = event_type
                    break
                breaks = 0
                resource_version = str((obj.get("metadata") or {}).get("resourceVersion", resource_version))
                if event_type == "BOOKMARK":
                    continue
                key = self._keep(obj)
                if key is None:
                    continue
                with self._cond:
                    if event_type == "DELETED":
                        self._objects.pop(key, None)
                    else:
                        self._objects[key] = obj
                    self._generation += 1
                    self._cond.notify_all()
                if self._closed:
                    return
            if ended == EXPIRED:
                return
            if ended == BROKEN:
                breaks += 1
                time.sleep(RETRIES.delay(breaks))

    def snapshot(self, after: int, timeout: float | None) -> _Snapshot:
        """The objects once the generation is past `after` (or `timeout` seconds have passed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation > after or self._error is not None, timeout)
            return _Snapshot(dict(self._objects), self._generation, self._error)

    def close(self) -> None:
        self._closed = True


class WatchHub:
    """The feeds of one run, made on first use; `wait` is `KubeWriter.wait` fed by them."""

    def __init__(
        self,
        source: FeedSource,
        namespaces: Iterable[str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`namespaces`: the only ones whose objects are kept (None: every namespace)."""
        self._source = source
        self._namespaces = frozenset(namespaces) if namespaces is not None else None
        self._feeds: dict[str, _Feed] = {}
        self._lock = threading.Lock()
        self._clock = clock

    @classmethod
    def for_cluster(cls, api_client: Any, capi_version: CapiVersion, namespaces: Iterable[str]) -> WatchHub:
        """A hub for clusters in `namespaces`: a namespaced feed when that is one namespace, else one
        across all namespaces that keeps only theirs."""
        chosen = frozenset(namespaces)
        scope = next(iter(chosen)) if len(chosen) == 1 else None
        return cls(KubeFeedSource(api_client, capi_version, scope), chosen)

    def _feed(self, kind: str) -> _Feed:
        with self._lock:
            if kind not in self._feeds:
                self._feeds[kind] = _Feed(kind, self._source, self._namespaces)
            return self._feeds[kind]

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds fed so far, one feed each."""
        return tuple(sorted(self._feeds))

    def wait(
        self,
        writer: KubeWriter,
        step: WaitRollout,
        *,
        timeout: float | None,
        on_progress: ProgressCallback | None = None,
    ) -> tuple[OwnerProgress, ...]:
        """Until every object of `step` in `writer`'s namespace has rolled out at `step.version`."""
        feed = self._feed(step.kind)
        started = self._clock()
        deadline = None if timeout is None else started + timeout
        generation = 0
        progress: tuple[OwnerProgress, ...] = ()
        while True:
            remaining = None if deadline is None else deadline - self._clock()
            if remaining is not None and remaining <= 0:
                raise RolloutError(writer.stall_report(step, progress, timeout), hint=stall_hint(step))
            wait_for = _IDLE_REPORT if remaining is None else min(_IDLE_REPORT, remaining)
            seen = feed.snapshot(generation, wait_for)
            if seen.error is not None:
                raise seen.error
            if seen.generation == 0:
                continue  # not listed yet
            generation = seen.generation
            latest = {name: seen.objects.get((writer.namespace, name)) for name in step.names}
            missing = sorted(name for name, obj in latest.items() if obj is None)
            if missing:
                raise Conflict(f"{step.kind} {', '.join(missing)} no longer exists")
            progress = tuple(progress_of(obj, step.version) for obj in latest.values() if obj is not None)
            for item in progress:
                if normalize_version(item.version) != normalize_version(step.version):
                    raise Conflict(f"{step.kind}/{item.name} was changed to {item.version} during the wait")
            if on_progress is not None:
                on_progress(progress, self._clock() - started)
            if all(item.done for item in progress):
                return progress

    def close(self) -> None:
        """Stop following (the feeds' threads end with their current WATCH request)."""
        with self._lock:
            for feed in self._feeds.values():
                feed.close()
