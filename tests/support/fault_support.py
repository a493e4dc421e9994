"""Helpers of the fault tests: `image-upgrade` as a subprocess stopped at named points, and the end state
of a namespace reduced to what an interrupted-then-resumed run must reproduce exactly.

A run is stopped from inside through the test-only hook of `kubectl_capc.domain.testpoints`: the process
records every point it reaches in a file and sends itself the requested signal at one of them.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubectl_capc.domain.records import CHANGED_AT, HISTORY
from kubectl_capc.domain.testpoints import POINTS_ENV, SIGNAL_ENV
from tests.support.upgrade_support import REPO, capi_group_version, custom
from tests.testenv.bed import TestBed

OWNER_KINDS = ("KubeadmControlPlane", "MachineDeployment")
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "namespace")
READY_EVERYWHERE = {"zone1": ["Download Complete"], "zone2": ["Download Complete"]}
"""`templates_per_zone` of a template ready in both zones of the double's seed."""
IMAGE_URL = "http://127.0.0.1:9/ubuntu-2204-kube-{version}-kvm.qcow2"
"""An `--image-url` the double registers without fetching (it simulates the download)."""
_taken: set[str] = set()


def fresh_version(minor: str) -> str:
    """A patch release of `minor` (e.g. "v1.31") that no other run registers on the shared double. Its
    patch (100 and above) outranks the seed's: not for a minor that other tests resolve from `--to v1.29`."""
    while True:
        version = f"{minor}.{random.randrange(100, 1000)}"
        if version not in _taken:
            _taken.add(version)
            return version


@dataclass
class Run:
    """One finished `image-upgrade` process."""

    returncode: int
    stdout: str
    stderr: str
    points: list[str] = field(default_factory=list)

    @property
    def signalled_at(self) -> str | None:
        """The point at which the process sent itself a signal, from the last line it recorded."""
        last = self.points[-1] if self.points else ""
        match = re.fullmatch(r"SIG[A-Z]+@(.*)", last)
        return match.group(1) if match else None


class Started:
    """An `image-upgrade` process still running; `finish()` waits for it."""

    def __init__(self, process: subprocess.Popen[str], trace: Path) -> None:
        self.process = process
        self.trace = trace

    def points(self) -> list[str]:
        return self.trace.read_text().splitlines() if self.trace.exists() else []

    def wait_for_point(self, prefix: str, timeout: float = 60) -> None:
        """Wait until the process has reached a point starting with `prefix` (signalled there or not)."""
        deadline = time.monotonic() + timeout
        while not any(re.sub(r"^SIG[A-Z]+@", "", p).startswith(prefix) for p in self.points()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                if self.process.poll() is None:
                    self.process.kill()
                _out, err = self.process.communicate()
                raise AssertionError(
                    f"never reached {prefix!r} (exit {self.process.returncode}): {err[-2000:]}"
                )
            time.sleep(0.05)

    def finish(self, timeout: float = 180) -> Run:
        try:
            out, err = self.process.communicate(timeout=timeout)
            return Run(self.process.returncode, out, err, self.points())
        finally:
            self.trace.unlink(missing_ok=True)


def start_upgrade(
    bed: TestBed,
    namespace: str,
    args: Sequence[str],
    *,
    signal_at: str | None = None,
    env: Mapping[str, str] | None = None,
    kubeconfig: Path | None = None,
) -> Started:
    """`kubectl capc image-upgrade c1 -n NAMESPACE ARGS --yes` in the background."""
    handle, name = tempfile.mkstemp(prefix="capc-points-")
    os.close(handle)
    environment = {**os.environ, **(env or {}), POINTS_ENV: name}
    environment.pop(SIGNAL_ENV, None)
    if signal_at:
        environment[SIGNAL_ENV] = signal_at
    process = subprocess.Popen(
        [sys.executable, "-m", "kubectl_capc", "image-upgrade", "c1", "-n", namespace, *args, "--yes",
         "--kubeconfig", str(kubeconfig or bed.kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=REPO,
        env=environment,
    )  # fmt: skip
    return Started(process, Path(name))


def upgrade(
    bed: TestBed,
    namespace: str,
    args: Sequence[str],
    *,
    signal_at: str | None = None,
    env: Mapping[str, str] | None = None,
    kubeconfig: Path | None = None,
    timeout: float = 180,
) -> Run:
    """`kubectl capc image-upgrade c1 -n NAMESPACE ARGS --yes`; with `signal_at` = "SIGNAME@POINT"."""
    started = start_upgrade(bed, namespace, args, signal_at=signal_at, env=env, kubeconfig=kubeconfig)
    try:
        return started.finish(timeout)
    except subprocess.TimeoutExpired:
        started.process.kill()
        started.process.communicate()
        raise


DOCUMENTED_EXIT_CODES = frozenset(
    int(code) for code in re.findall(r"^\| (\d+) \|", (REPO / "docs" / "exit-codes.md").read_text(), re.M)
)


def failure_line(run: Run, exit_code: int, *names: str) -> str:
    """Check that `run` failed the documented way: `exit_code` (listed in docs/exit-codes.md), no
    traceback, and a last stderr line `error: ...` naming `names`, with what to do after a `;`."""
    line = (run.stderr.strip().splitlines() or [""])[-1]
    assert run.returncode == exit_code, (run.returncode, run.stderr[-3000:])
    assert exit_code in DOCUMENTED_EXIT_CODES
    assert "Traceback" not in run.stderr, run.stderr
    assert line.startswith("error: ") and "; " in line, line
    for name in names:
        assert name in line, (name, line)
    return line


def unique(points: Sequence[str]) -> list[str]:
    """Points in the order first reached."""
    return list(dict.fromkeys(points))


# -- the end state ----------------------------------------------------------------------------------


def _strip_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in metadata.items() if key not in SERVER_FIELDS}
    annotations = dict(kept.get("annotations") or {})
    annotations.pop(CHANGED_AT, None)
    if HISTORY in annotations:
        entries = json.loads(annotations[HISTORY])
        annotations[HISTORY] = [{k: v for k, v in entry.items() if k != "at"} for entry in entries]
    kept["annotations"] = annotations
    kept["ownerReferences"] = sorted(
        (ref["kind"], ref["name"], bool(ref.get("controller"))) for ref in kept.get("ownerReferences") or []
    )
    return kept


def _objects(bed: TestBed, namespace: str, kind: str) -> list[dict[str, Any]]:
    group, version, plural = capi_group_version(bed, kind)
    items: list[dict[str, Any]] = custom(bed).list_namespaced_custom_object(
        group, version, namespace, plural
    )["items"]
    return items


def end_state(bed: TestBed, namespace: str, rename: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The CloudStackMachineTemplates (whole, minus server fields) and each owner's version, machine
    template and recorded history, with timestamps left out; `rename` replaces text (e.g. a version
    that differs between runs) so that two namespaces compare equal."""
    state: dict[str, Any] = {}
    for kind in ("CloudStackMachineTemplate", *OWNER_KINDS):
        for obj in _objects(bed, namespace, kind):
            spec = obj.get("spec") or {}
            if kind == "CloudStackMachineTemplate":
                value: Any = {"metadata": _strip_metadata(obj["metadata"]), "spec": spec}
            else:
                metadata = _strip_metadata(obj["metadata"])
                value = {"spec": _owner_spec(kind, spec), "annotations": metadata["annotations"]}
            state[f"{kind}/{obj['metadata']['name']}"] = value
    text = json.dumps(state, sort_keys=True).replace(namespace, "NAMESPACE")
    for old, new in (rename or {}).items():
        text = text.replace(old, new)
    result: dict[str, Any] = json.loads(text)
    return result


def _owner_spec(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "KubeadmControlPlane":
        machine_template = spec.get("machineTemplate") or {}
        ref = (machine_template.get("spec") or machine_template).get("infrastructureRef") or {}
        return {"version": spec.get("version"), "template": ref.get("name")}
    machine = (spec.get("template") or {}).get("spec") or {}
    return {
        "version": machine.get("version"),
        "template": (machine.get("infrastructureRef") or {}).get("name"),
    }


def half_written(state: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """What in `state` (taken right after a kill) is not a state the reference run passes through.

    A CloudStackMachineTemplate must be absent or exactly the reference's; an owner must be at a
    version, template and history that the reference's recorded history shows it passing through.
    """
    problems = []
    for key, value in state.items():
        if key not in reference:
            problems.append(f"{key} should not exist")
        elif key.startswith("CloudStackMachineTemplate/"):
            if value != reference[key]:
                problems.append(f"{key} differs from the uninterrupted run's")
        elif value not in passes_through(reference[key]):
            problems.append(f"{key} is at {value['spec']} with {len(value['annotations'].get(HISTORY, []))} "
                            "history entries, a state the uninterrupted run never has")  # fmt: skip
    return problems


def passes_through(final: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every state an owner passes through on its way to `final`, rebuilt from `final`'s history."""
    history = list(final["annotations"].get(HISTORY, []))
    states = []
    for done in range(len(history) + 1):
        entries = history[len(history) - done :]
        annotations = {k: v for k, v in final["annotations"].items() if not k.startswith("capc.kubectl.io/")}
        if entries:
            newest = entries[0]
            annotations.update(
                {
                    "capc.kubectl.io/previous-version": newest["fromVersion"],
                    "capc.kubectl.io/previous-template": newest["fromTemplate"],
                    HISTORY: entries,
                }
            )
            spec = {"version": newest["toVersion"], "template": newest["toTemplate"]}
        else:
            oldest = history[-1] if history else None
            spec = (
                {"version": oldest["fromVersion"], "template": oldest["fromTemplate"]}
                if oldest
                else final["spec"]
            )
        states.append({"spec": spec, "annotations": annotations})
    return states


# -- the CloudStack double ----------------------------------------------------------------------------


def admin(bed: TestBed, path: str, body: Any = None, method: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(bed.admin_url(path), data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def templates_per_zone(bed: TestBed, name: str) -> dict[str, list[str]]:
    """zone -> status of every live CloudStack template named `name` there (CAPC needs exactly one)."""
    found: dict[str, list[str]] = {}
    for template in admin(bed, "templates"):
        if template["name"] == name and not template["removed"]:
            for zone, row in template["zones"].items():
                found.setdefault(zone, []).append(row["status"])
    return {zone: sorted(statuses) for zone, statuses in sorted(found.items())}


@contextmanager
def faults(bed: TestBed, spec: Mapping[str, Any]) -> Iterator[None]:
    """Fault injection on the double for the duration of the block."""
    admin(bed, "faults", dict(spec))
    try:
        yield
    finally:
        admin(bed, "faults", {})


def stopped(pid: int, timeout: float = 60) -> None:
    """Wait until process `pid` has stopped itself (SIGSTOP)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        if state == "T":
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not stop")


def cloudstack_env(bed: TestBed) -> dict[str, str]:
    """The double's endpoint and current keys, re-read from its env file (a test may rotate the keys;
    `bed.cloudstack` holds those it started with)."""
    lines = (bed.dir / "cloudstack.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def cloudstack_api(bed: TestBed) -> Any:
    """A `cs` client with the double's current keys."""
    from cs import CloudStack

    values = cloudstack_env(bed)
    return CloudStack(
        values["CLOUDSTACK_ENDPOINT"],
        values["CLOUDSTACK_KEY"],
        values["CLOUDSTACK_SECRET"],
        poll_interval=0.05,
    )


def template_tags(bed: TestBed, name: str) -> dict[str, str]:
    """The tags of the live template named `name` (one per name is expected), with the uploader's tag
    checked and then shown as `HOST/PID`: its value names the process that sent the upload, which
    differs from run to run. An uploaded template must carry it, naming this host and a process id."""
    from kubectl_capc.ops.image_register import UPLOADER_TAG

    rows = cloudstack_api(bed).listTemplates(templatefilter="self", name=name, fetch_list=True)
    ids = {row["id"] for row in rows}
    assert len(ids) == 1, f"{len(ids)} templates named {name}"
    (row, *_) = rows
    tags = {tag["key"]: tag["value"] for tag in row.get("tags") or []}
    uploaded = any(t["id"] == row["id"] and t["upload"] for t in admin(bed, "templates"))
    if uploaded or UPLOADER_TAG in tags:
        value = tags.get(UPLOADER_TAG)
        assert value is not None and _names_a_local_process(value), (
            f"template {name}: {UPLOADER_TAG}={value!r}, expected {socket.gethostname()}/PID"
        )
        tags[UPLOADER_TAG] = "HOST/PID"
    return tags


def _names_a_local_process(value: str) -> bool:
    """Whether a tag value has the shape HOST/PID, with this host's name (uploads are sent from here)."""
    host, _, pid = value.rpartition("/")
    return host == socket.gethostname() and pid.isdigit() and int(pid) > 0
