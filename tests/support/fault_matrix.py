"""The fault matrix of `image-upgrade`: the real CLI process is stopped at every step boundary and in the
middle of every rollout wait, template download and upload, then the same command is run again. A step
boundary is where one step has ended and the next has not begun: the start of every step that acts,
and the end of the last one; inside the image step, every CloudStack write is a boundary of its own.

Each kill point gets a cluster of its own (one control-plane machine, two MachineDeployments) on the
real test bed with the rollout simulator; the process stops itself at exactly that point through the
test-only hook of `kubectl_capc.domain.testpoints`. For every point:

- right after the stop, nothing is half-written: each CloudStackMachineTemplate is absent or complete,
  each KubeadmControlPlane / MachineDeployment is at a version, template and history that the
  uninterrupted run passes through, and no zone holds two CloudStack templates of the name;
- the re-run ends exactly where an uninterrupted run ends: the same objects, versions, references and
  recorded history (timestamps aside), one ready CloudStack template per zone, with the same tags;
- with SIGINT (Ctrl-C), the process exits 130 with one line that says how to continue, and a write in
  flight is finished first (the point "writing ..." is inside a write); a copyTemplate is an async job
  that CloudStack goes on with, so Ctrl-C there (or while the copy is followed) stops once the request
  is sent, says that the copy goes on, and the re-run waits for that copy: no zone is ever sent a
  second copy of one template.

The matrix (kill point -> outcome) is printed after each test. The tests are spread over
tests/testbed/test_fault_matrix_*.py, so that the suite's workers share them out.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubectl_capc.domain.records import HISTORY
from tests.support.fault_support import (
    IMAGE_URL,
    READY_EVERYWHERE,
    Run,
    admin,
    end_state,
    fresh_version,
    half_written,
    template_tags,
    templates_per_zone,
    unique,
    upgrade,
)
from tests.support.upgrade_support import create_cluster
from tests.testenv.bed import TestBed

PARALLEL = 3
SMALL = {"control_plane_replicas": 1, "worker_replicas": 1}
STANDIN = Path(__file__).resolve().parents[1] / "imagebuilder_standin"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
fresh_target = functools.partial(fresh_version, "v1.30")  # the matrix registers v1.30 releases


@dataclass(frozen=True)
class Scenario:
    """One upgrade: from which version, to which target (fresh per run when it registers an image)."""

    title: str
    start: str
    target: Callable[[], str]
    args: Callable[[str], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    creates_image: bool = False


@dataclass(frozen=True)
class Reference:
    """What the uninterrupted run did: the points it reached and where it ended."""

    target: str
    points: list[str]
    state: dict[str, Any]
    tags: dict[str, str]


@dataclass
class Row:
    point: str
    signal: str
    killed: str = ""
    resumed: str = ""
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        outcome = "converged, nothing half-written" if not self.problems else "; ".join(self.problems)
        exits = f"stopped: {self.killed:4} re-run: {self.resumed:3}"
        return f"{self.signal:8} {self.point[:78]:78}  {exits} {outcome}"


def dashed(version: str) -> str:
    return version.replace(".", "-")


def rename(target: str) -> dict[str, str]:
    return {target: "TARGET", dashed(target): "TARGET-DASHED"}


def namespace_on(bed: TestBed) -> str:
    from kubernetes import client

    name = f"fm-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(bed.api_client()).create_namespace({"metadata": {"name": name}})
    return name


def drop_namespace(bed: TestBed, name: str) -> None:
    from kubernetes import client

    client.CoreV1Api(bed.api_client()).delete_namespace(name)


def image_name(target: str) -> str:
    return f"ubuntu-2204-kube-{target}"


def reference_run(bed: TestBed, scenario: Scenario) -> Reference:
    namespace = namespace_on(bed)
    create_cluster(bed, namespace, version=scenario.start, **SMALL)
    target = scenario.target()
    run = upgrade(bed, namespace, scenario.args(target), env=scenario.env)
    assert run.returncode == 0, run.stderr[-3000:]
    again = upgrade(bed, namespace, scenario.args(target), env=scenario.env)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr[-3000:]
    state = end_state(bed, namespace, rename(target))
    tags = template_tags(bed, image_name(target)) if scenario.creates_image else {}
    drop_namespace(bed, namespace)
    return Reference(target, unique(run.points), state, tags)


def for_target(point: str, reference: Reference, target: str) -> str:
    """`point` of the reference run as a run to `target` reaches it (ids unknown in advance: a prefix)."""
    point = point.replace(reference.target, target).replace(dashed(reference.target), dashed(target))
    found = _UUID.search(point)
    return point[: found.start()] + "*" if found else point


def reached(run: Run, point: str) -> bool:
    at = run.signalled_at or ""
    return at.startswith(point[:-1]) if point.endswith("*") else at == point


def stop_and_resume(bed: TestBed, scenario: Scenario, reference: Reference, point: str, signal: str) -> Row:
    row = Row(point, signal)
    namespace = namespace_on(bed)
    try:
        create_cluster(bed, namespace, version=scenario.start, **SMALL)
        target = scenario.target() if scenario.creates_image else reference.target
        stop_at = for_target(point, reference, target)
        stopped = upgrade(
            bed, namespace, scenario.args(target), env=scenario.env, signal_at=f"{signal}@{stop_at}"
        )
        row.killed = str(stopped.returncode)
        row.problems += stop_problems(stopped, stop_at, signal)
        after_stop = end_state(bed, namespace, rename(target))
        row.problems += half_written(after_stop, reference.state)
        if signal == "SIGINT" and point.startswith("writing "):
            row.problems += write_landed(bed, stop_at, after_stop, target)
        if scenario.creates_image:
            doubled = {z: s for z, s in templates_per_zone(bed, image_name(target)).items() if len(s) > 1}
            if doubled:
                row.problems.append(f"two templates in a zone after the stop: {doubled}")
        resumed = upgrade(bed, namespace, scenario.args(target), env=scenario.env)
        row.resumed = str(resumed.returncode)
        if resumed.returncode != 0:
            row.problems.append(f"the re-run failed: {resumed.stderr.strip().splitlines()[-1:]}")
        final = end_state(bed, namespace, rename(target))
        if final != reference.state:
            differing = sorted(
                k for k in {*final, *reference.state} if final.get(k) != reference.state.get(k)
            )
            row.problems.append(f"end state differs in {differing}")
        if scenario.creates_image:
            if templates_per_zone(bed, image_name(target)) != READY_EVERYWHERE:
                row.problems.append(f"CloudStack: {templates_per_zone(bed, image_name(target))}")
            twice = {copy: n for copy, n in copies_sent(bed, image_name(target)).items() if n > 1}
            if twice:
                row.problems.append(f"copied to a zone more than once: {twice}")
            tags = {
                k: v.replace(target, reference.target)
                for k, v in template_tags(bed, image_name(target)).items()
            }
            if tags != reference.tags:
                row.problems.append(f"template tags {tags} != {reference.tags}")
    finally:
        drop_namespace(bed, namespace)
    return row


def stop_problems(run: Run, point: str, signal: str) -> list[str]:
    if not reached(run, point):
        return [f"the run never reached the point (exit {run.returncode}): {run.stderr[-300:]!r}"]
    if signal == "SIGKILL":
        return [] if run.returncode == -9 else [f"exit {run.returncode} after SIGKILL"]
    problems = []
    last = (run.stderr.strip().splitlines() or [""])[-1]
    if run.returncode != 130:
        problems.append(f"exit {run.returncode} after SIGINT, not 130")
    if not last.startswith("interrupted") or "run the same command again" not in last:
        problems.append(f"last line does not say how to continue: {last!r}")
    if "Traceback" in run.stderr:
        problems.append("a traceback was printed")
    if point.startswith(("writing copy ", "copying template ")):
        if "was sent (CloudStack goes on copying" not in last:
            problems.append(f"the copy was not reported as sent and going on in CloudStack: {last!r}")
        if point.startswith("writing ") and "stopping after" not in run.stderr:
            problems.append("the copy request in flight was not reported as finished first")
    elif point.startswith("writing ") and ("stopping after" not in run.stderr or "had finished" not in last):
        problems.append("the write in flight was not reported as finished first")
    return problems


def copies_sent(bed: TestBed, name: str) -> dict[str, int]:
    """`template id -> zone id` (as "id>zone") -> copyTemplate requests the double received for the live
    templates named `name`."""
    ids = {t["id"] for t in admin(bed, "templates") if t["name"] == name and not t["removed"]}
    sent: dict[str, int] = {}
    for call in admin(bed, "calls"):
        params = call["params"]
        if call["command"] == "copyTemplate" and params.get("id") in ids:
            for zone in str(params.get("destzoneids") or params.get("destzoneid") or "").split(","):
                key = f"{params['id']}>{zone}"
                sent[key] = sent.get(key, 0) + 1
    return sent


def write_landed(bed: TestBed, point: str, state: dict[str, Any], target: str) -> list[str]:
    """After Ctrl-C inside the write named by `point` (of a run to `target`), that write is complete."""
    verb, _, rest = point.removeprefix("writing ").partition(" ")
    for old, new in rename(target).items():
        rest = rest.replace(old, new)
    zones = templates_per_zone(bed, image_name(target))
    landed = {
        "create": rest in state,
        "patch": HISTORY in (state.get(rest) or {}).get("annotations", {}),
        "prepare": list(zones) == ["zone1"],
        "copy": list(zones) == ["zone1", "zone2"],  # listed there at once: in progress or done
    }.get(verb)
    return [] if landed else [f"the interrupted write did not land ({zones})"]


def run_matrix(
    bed: TestBed, scenario: Scenario, reference: Reference, stops: Sequence[tuple[str, str]]
) -> list[Row]:
    """Every stop, several at a time; a stop in the middle of a template download runs alone, since the
    double moves every download on with each template listing, whoever sends it."""
    alone = [stop for stop in stops if stop[0].startswith("waiting for template")]
    together = [stop for stop in stops if stop not in alone]

    def run(stop: tuple[str, str]) -> Row:
        return stop_and_resume(bed, scenario, reference, *stop)

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        rows = dict(zip(together, pool.map(run, together), strict=True))
    rows.update((stop, run(stop)) for stop in alone)
    return [rows[stop] for stop in stops]


def report(capsys: pytest.CaptureFixture[str], title: str, rows: Sequence[Row]) -> None:
    with capsys.disabled():
        print(f"\n\nfault matrix: {title} ({len(rows)} stops)")
        for row in rows:
            print(f"  {row}")
    failed = [str(row) for row in rows if row.problems]
    assert not failed, "\n".join(failed)


def boundaries_and_waits(points: Sequence[str]) -> list[str]:
    """Where to stop a run that reached `points`: before every step, in the middle of every rollout
    wait, and after the last step."""
    steps = [p for p in points if re.match(r"v\S+ (start|waiting) ", p)]
    return [*steps, next(p for p in reversed(points) if re.match(r"v\S+ done ", p))]


# -- scenarios ----------------------------------------------------------------------------------------


def existing(target: str) -> Callable[[], str]:
    return lambda: target


SINGLE_HOP = Scenario("v1.28.5 -> v1.29.3", "v1.28.5", existing("v1.29.3"), lambda t: ["--to", t])
TWO_HOPS = Scenario("v1.28.5 -> v1.30.2 (two hops)", "v1.28.5", existing("v1.30.2"), lambda t: ["--to", t])


def standin_checkout_in(parent: Path) -> Path:
    """A committed copy of the stand-in image-builder under `parent` (its commit keys the image cache)."""
    import shutil
    import subprocess

    directory = parent / "image-builder"
    shutil.copytree(STANDIN, directory)
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@example.com",
                                                "commit", "-q", "-m", "standin"]):  # fmt: skip
        subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True)
    return directory


def url_scenario() -> Scenario:
    args = ["--image-source", "url", "--image-url", IMAGE_URL, "--poll-interval", "0.1s"]
    return Scenario(
        "v1.29.3 -> new release, image registered from a URL", "v1.29.3", fresh_target,
        lambda t: ["--to", t, *args], creates_image=True,
    )  # fmt: skip


def build_scenario(checkout: Path, cache: Path, upload_ca_file: Path) -> Scenario:
    """Images built by the stand-in image-builder, one checkout per target: like the real one, it
    cannot run two builds in one checkout at a time. Uploads verify the double's CA."""
    import shutil
    import sys

    def args(target: str) -> list[str]:
        own = checkout.with_name(f"image-builder-{target}")
        if not own.exists():
            shutil.copytree(checkout, own, symlinks=True)  # .git included: the same commit
        source = ["--image-source", "build", "--image-builder-dir", str(own),
                  "--upload-ca-file", str(upload_ca_file)]  # fmt: skip
        return ["--to", target, *source, "--poll-interval", "0.1s"]

    return Scenario(
        "v1.29.3 -> new release, image built and uploaded", "v1.29.3", fresh_target, args,
        env={"XDG_CACHE_HOME": str(cache), "PYTHON": sys.executable}, creates_image=True,
    )  # fmt: skip


def image_steps(points: Sequence[str]) -> list[str]:
    """Every point from the start of the EnsureImage step to its end."""
    first = next(i for i, p in enumerate(points) if " start EnsureImage " in p)
    last = next(i for i, p in enumerate(points) if " done EnsureImage " in p)
    return list(points[first : last + 1])
