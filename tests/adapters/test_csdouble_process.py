"""`python -m tests.csdouble` as a background process, driven over its admin endpoint."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cs import CloudStack, CloudStackApiException

from tests.csdouble.fixtures import EXAMPLE_SEED

REPO = Path(__file__).resolve().parents[2]


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if line)


def wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the double exited early with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.02)


@pytest.fixture
def double_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    command = [
        sys.executable,
        "-m",
        "tests.csdouble",
        "--dir",
        str(tmp_path),
        "--seed",
        str(EXAMPLE_SEED),
        "--poll-steps",
        "2",
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(tmp_path / "cloudstack.env", process)
        yield process, tmp_path
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_env_and_pid_files(double_process: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, state_dir = double_process
    env_path = state_dir / "cloudstack.env"
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    env = read_env(env_path)
    assert set(env) == {"CLOUDSTACK_ENDPOINT", "CLOUDSTACK_KEY", "CLOUDSTACK_SECRET"}
    assert env["CLOUDSTACK_ENDPOINT"].startswith("http://127.0.0.1:") and env["CLOUDSTACK_ENDPOINT"].endswith(
        "/client/api"
    )
    assert (state_dir / "cloudstack.pid").read_text().strip() == str(process.pid)
    api = CloudStack(env["CLOUDSTACK_ENDPOINT"], env["CLOUDSTACK_KEY"], env["CLOUDSTACK_SECRET"])
    assert api.listZones()["count"] == 2


def test_sigterm_stops_it_cleanly_without_leaking_secrets(
    double_process: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, state_dir = double_process
    env = read_env(state_dir / "cloudstack.env")
    CloudStack(env["CLOUDSTACK_ENDPOINT"], env["CLOUDSTACK_KEY"], env["CLOUDSTACK_SECRET"]).listZones()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert not (state_dir / "cloudstack.pid").exists()
    assert process.stdout is not None and process.stderr is not None
    output = process.stdout.read() + process.stderr.read()
    assert b"listening on http://127.0.0.1:" in output
    assert env["CLOUDSTACK_KEY"].encode() not in output and env["CLOUDSTACK_SECRET"].encode() not in output


def test_admin_endpoint_drives_state_and_faults(double_process: tuple[subprocess.Popen[bytes], Path]) -> None:
    _, state_dir = double_process
    env = read_env(state_dir / "cloudstack.env")
    admin = env["CLOUDSTACK_ENDPOINT"].replace("/client/api", "/admin")
    api = CloudStack(env["CLOUDSTACK_ENDPOINT"], env["CLOUDSTACK_KEY"], env["CLOUDSTACK_SECRET"])

    api.listZones(name="zone1")
    calls = requests.get(f"{admin}/calls", timeout=5).json()
    assert calls == [{"command": "listZones", "params": {"name": "zone1"}}]

    added = requests.post(
        f"{admin}/templates",
        timeout=5,
        json={
            "name": "ubuntu-2204-kube-v1.28.5",
            "ostype": "Ubuntu 22.04 LTS",
            "ispublic": True,
            "zones": {"zone1": "downloading"},
        },
    )
    assert added.status_code == 200
    found = api.listTemplates(
        templatefilter="executable",
        name="ubuntu-2204-kube-v1.28.5",
        zoneid="cc2ecd8a-5c9a-42b4-a5f4-3ca19adfbf45",
    )
    assert found["count"] == 2

    faults: dict[str, Any] = {"errors": [{"command": "listZones", "times": 1, "errorcode": 530}]}
    assert requests.post(f"{admin}/faults", json=faults, timeout=5).status_code == 200
    with pytest.raises(CloudStackApiException) as caught:
        api.listZones()
    assert caught.value.response.status_code == 530
    assert requests.get(f"{admin}/faults", timeout=5).json()["errors"][0]["times"] == 0

    assert requests.post(f"{admin}/reset", json={}, timeout=5).status_code == 200
    assert requests.get(f"{admin}/calls", timeout=5).json() == []
    assert api.listTemplates(templatefilter="executable", name="ubuntu-2204-kube-v1.28.5")["count"] == 2

    assert requests.post(f"{admin}/seed", json={"zones": [{"name": "solo"}]}, timeout=5).status_code == 200
    assert [z["name"] for z in api.listZones()["zone"]] == ["solo"]
    bad = requests.post(f"{admin}/seed", json={"zonez": []}, timeout=5)
    assert bad.status_code == 400 and "unknown seed sections" in bad.json()["error"]


def test_key_rotation_rewrites_the_env_file(double_process: tuple[subprocess.Popen[bytes], Path]) -> None:
    _, state_dir = double_process
    env_path = state_dir / "cloudstack.env"
    old = read_env(env_path)
    admin = old["CLOUDSTACK_ENDPOINT"].replace("/client/api", "/admin")
    fresh = requests.post(f"{admin}/credentials", json={}, timeout=5).json()
    new = read_env(env_path)
    assert (new["CLOUDSTACK_KEY"], new["CLOUDSTACK_SECRET"]) == (fresh["api_key"], fresh["secret_key"])
    assert new["CLOUDSTACK_KEY"] != old["CLOUDSTACK_KEY"]
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    with pytest.raises(CloudStackApiException) as caught:
        CloudStack(old["CLOUDSTACK_ENDPOINT"], old["CLOUDSTACK_KEY"], old["CLOUDSTACK_SECRET"]).listZones()
    assert caught.value.response.status_code == 401
    assert CloudStack(new["CLOUDSTACK_ENDPOINT"], new["CLOUDSTACK_KEY"], new["CLOUDSTACK_SECRET"]).listZones()


def test_unknown_admin_routes_and_bodies(double_process: tuple[subprocess.Popen[bytes], Path]) -> None:
    _, state_dir = double_process
    admin = read_env(state_dir / "cloudstack.env")["CLOUDSTACK_ENDPOINT"].replace("/client/api", "/admin")
    assert requests.get(f"{admin}/nothing", timeout=5).status_code == 404
    assert requests.post(f"{admin}/faults", data="not json", timeout=5).status_code == 400
    assert (
        requests.post(f"{admin}/templates", json={"name": "x", "ostype": "BeOS"}, timeout=5).status_code
        == 400
    )


def test_bad_seed_file_fails_fast(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("zones: [{name: z1}]\ntemplates: [{name: t, ostype: nowhere}]\n")
    result = subprocess.run(
        [sys.executable, "-m", "tests.csdouble", "--dir", str(tmp_path), "--seed", str(seed)],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        env=os.environ | {"PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode != 0
    assert b"unknown OS type 'nowhere'" in result.stderr
    assert not (tmp_path / "cloudstack.env").exists()
