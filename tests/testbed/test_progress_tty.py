"""Progress as users see it: `image register --file` on the real test bed (an upload to zone1 and a
copy to zone2 on the bed's CloudStack double), its stderr once on a terminal (a pty) and once in a pipe.

On the terminal the live display is drawn in place (control sequences, the upload's bytes, rate and
ETA, each zone's copy); in the pipe every progress line starts with a UTC timestamp and holds no control
sequence. stdout is a pipe both times and carries only the result table.
"""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from kubectl_capc.domain.errors import ExitCode
from tests.support.upgrade_support import cli, create_cluster
from tests.testbed.test_image import cluster, new_version, register_args, sparse_qcow2  # noqa: F401
from tests.testenv.bed import TestBed
from tests.testenv.rollout_model import FAIL_ANNOTATION

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def run_on_a_terminal(bed: TestBed, args: list[str]) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pty (80 columns) and stdout a pipe: exit code, stdout, what the
    terminal received."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "kubectl_capc", *args, "--kubeconfig", str(bed.kubeconfig)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env,
    )  # fmt: skip
    os.close(slave)
    screen = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other side is closed: the process is gone
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    os.close(master)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    return process.wait(timeout=30), out, screen.decode(errors="replace")


def test_a_terminal_gets_the_live_display_and_a_pipe_gets_timestamped_lines(
    cluster: tuple[TestBed, str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    bed, namespace, name = cluster

    version = new_version()
    template = f"ubuntu-2204-kube-{version}"
    image = sparse_qcow2(tmp_path / f"{template}-kvm.qcow2", 64 << 20)
    code, out, screen = run_on_a_terminal(
        bed, register_args(namespace, name, version, "--file", str(image), bed=bed)
    )
    assert code == 0, screen
    assert "\x1b[" in screen  # drawn in place
    visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "uploaded 64.0 MiB of 64.0 MiB (100%)" in visible
    assert f"zone zone2: {template} ready" in visible
    assert not any(STAMP.match(line.strip("\r")) for line in visible.splitlines())  # no plain lines here
    assert "ETA" in visible  # the live upload row was drawn, not only the result line
    assert "\x1b" not in out and [line.split()[-1] for line in out.splitlines()[1:]] == ["uploaded", "copied"]

    version = new_version()
    template = f"ubuntu-2204-kube-{version}"
    image = sparse_qcow2(tmp_path / f"{template}-kvm.qcow2", 64 << 20)
    done = cli(bed, *register_args(namespace, name, version, "--file", str(image), bed=bed))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr + done.stdout
    progress = [line for line in done.stderr.splitlines() if STAMP.match(line)]
    assert any(line.endswith("uploaded 64.0 MiB of 64.0 MiB (100%)") for line in progress), done.stderr
    assert any(f"zone zone2: {template} ready (" in line for line in progress), done.stderr
    steps = [line for line in done.stderr.splitlines() if not STAMP.match(line)]
    assert steps and all(line.startswith(("uploading ", "copying ")) for line in steps), steps


def test_an_upgrade_s_json_stays_alone_on_stdout_and_its_rollouts_are_plain_lines_on_stderr(
    testenv: TestBed, namespace: str
) -> None:
    create_cluster(testenv, namespace, md_count=1)
    done = cli(testenv, "image-upgrade", "c1", "-n", namespace, "--to", "v1.29.3", "--yes", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "UpgradePlan"  # nothing but the document
    progress = [line for line in done.stderr.splitlines() if STAMP.match(line)]
    (cp_done,) = [line for line in progress if "c1-control-plane: done, 3/3 ready at v1.29.3 (" in line]
    assert cp_done.endswith(" of 1:00:00)")  # the wait's elapsed time against its limit
    (md_done,) = [line for line in progress if "c1-md-0: done, 2/2 ready at v1.29.3 (" in line]
    assert md_done.endswith(" of 30:00)")
    states = [line.split(" ", 1)[1].rsplit(" (", 1)[0] for line in progress]
    assert all(a != b for a, b in itertools.pairwise(states)), states  # a line only when the state changed


def test_a_rollout_line_names_the_machine_being_replaced_and_its_phase(
    testenv: TestBed, namespace: str
) -> None:
    create_cluster(testenv, namespace, md_count=1, annotate={"c1-control-plane": {FAIL_ANNOTATION: "Stuck"}})
    done = cli(
        testenv, "image-upgrade", "c1", "-n", namespace, "--to", "v1.29.3", "--yes",
        "--timeout", "control-plane=3s", "--progress", "plain",
    )  # fmt: skip
    assert done.returncode == ExitCode.ROLLOUT, done.stderr
    replacing = [line for line in done.stderr.splitlines() if "; replacing c1-control-plane-" in line]
    assert replacing and STAMP.match(replacing[-1]), done.stderr
    assert replacing[-1].split("; replacing ", 1)[1].split(" ")[1] == "(Provisioning)"


def test_progress_none_prints_steps_but_no_progress_lines(testenv: TestBed, namespace: str) -> None:
    create_cluster(testenv, namespace, md_count=1)
    done = cli(testenv, "image-upgrade", "c1", "-n", namespace, "--to", "v1.29.3", "--yes", "--progress=none")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert not [line for line in lines if STAMP.match(line)]
    assert "[hop 1] WaitRollout KubeadmControlPlane/c1-control-plane: done" in lines
    assert lines[-1] == f"cluster {namespace}/c1 is at v1.29.3"
