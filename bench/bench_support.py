"""What several benchmarks share: the machine they ran on, a plugin identity the audit log can single
out, the audit log itself, clusters that validate cleanly, and the table and verdict they print.

The benchmarks are scripts in this directory, so Python finds this module next to them.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def machine_description() -> str:
    """nproc, memory, Python, kernel and the load average at the time of the run, on one line."""
    with open("/proc/meminfo") as meminfo:
        total_kib = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1])
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs, {total_kib / (1 << 20):.1f} GiB RAM, "
        f"Python {platform.python_version()}, Linux {platform.release()}, load average {load}"
    )


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    lines = [tuple(headers), *(tuple(str(cell) for cell in row) for row in rows)]
    widths = [max(len(str(cell)) for cell in column) for column in zip(*lines, strict=True)]
    for line in lines:
        print("   ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def verdict(missed: Sequence[str]) -> int:
    """Print each missed target and return the exit status: 1 when any was missed."""
    for line in missed:
        print(f"TARGET MISSED: {line}")
    if not missed:
        print("all targets met")
    return 1 if missed else 0


def plugin_identity(bed: Any, namespace: str, name: str) -> tuple[Path, str]:
    """A kubeconfig for a ServiceAccount bound to cluster-admin, and its user name in the audit log.

    The plugin runs as this identity so that the audit log tells its requests apart from those of the
    benchmark's own client and of the rollout simulator, whatever User-Agent each sends.
    """
    from tests.support.rbac_support import bind_cluster_role, service_account_token, token_kubeconfig

    token = service_account_token(bed, namespace, name)
    bind_cluster_role(bed, namespace, name, "cluster-admin", binding=f"{namespace}-{name}")
    kubeconfig = token_kubeconfig(bed, bed.dir / f"{name}.kubeconfig", name, token)
    return kubeconfig, f"system:serviceaccount:{namespace}:{name}"


def audit_events(audit_log: Path, username: str, *, offset: int = 0) -> list[dict[str, Any]]:
    """Completed requests of `username` logged after byte `offset` of the audit log (a JSON event a line)."""
    events = []
    with audit_log.open() as lines:
        lines.seek(offset)
        for line in lines:
            event = json.loads(line)
            if event.get("stage") == "ResponseComplete" and event["user"].get("username") == username:
                events.append(event)
    return events


def received_at(event: Mapping[str, Any]) -> float:
    """When the apiserver received the request, in seconds since the epoch (time.time())."""
    return datetime.fromisoformat(str(event["requestReceivedTimestamp"]).replace("Z", "+00:00")).timestamp()


def describe_requests(events: Iterable[Mapping[str, Any]]) -> str:
    """A summary such as "watch machinedeployments 6, list machinedeployments 1", most frequent first."""
    counts: dict[str, int] = {}
    for event in events:
        ref = event.get("objectRef") or {}
        key = f"{event['verb']} {ref.get('resource') or event['requestURI'].split('?')[0]}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(
        f"{key} {count}" for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def create_settled_cluster(api: Any, objects: Sequence[Mapping[str, Any]]) -> None:
    """Create a cluster's objects and write the status of its finished rollouts as the rollout simulator
    renders it, on a bed without the simulator (so nothing else talks to the apiserver meanwhile)."""
    from datetime import timezone

    from kubernetes import client

    from tests.support.fixtures_capc import create_objects
    from tests.testenv.rollout_model import Controls
    from tests.testenv.rollout_status import RESOURCES, adopt, render_status

    custom = client.CustomObjectsApi(api)
    owners = {owner.kind: owner for owner in RESOURCES}
    for created in create_objects(api, objects):
        owner = owners.get(created["kind"])
        if owner is None:
            continue
        group, version = str(created["apiVersion"]).split("/")
        meta = created["metadata"]
        rollout = adopt(owner, version, created)
        status = render_status(owner, version, created, rollout, Controls(), now=datetime.now(timezone.utc))
        custom.replace_namespaced_custom_object_status(
            group, version, meta["namespace"], owner.plural, meta["name"], {**created, "status": status}
        )


@functools.cache
def _compile_package(env: tuple[tuple[str, str], ...]) -> None:
    """Write the package's bytecode cache once, as installing it does, so no measured run compiles it."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "kubectl_capc")],
        check=True, stdout=subprocess.DEVNULL, env=dict(env),
    )  # fmt: skip


def run_plugin(
    args: Sequence[str], kubeconfig: Path
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run `kubectl-capc ARGS` as its own process (the interpreter of this run); also its wall time and
    the CPU time (user + system) it used, which, unlike the wall time, does not grow with the load that
    other processes put on the machine.

    The process runs with Python's bytecode cache on (PYTHONDONTWRITEBYTECODE removed), as an installed
    plugin does: without it, every run would compile the package's sources again."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    _compile_package(tuple(env.items()))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kubectl_capc", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL, check=False, timeout=600, env=env,
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
