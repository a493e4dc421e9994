"""`kubectl capc image list|register` on the real test bed: a CAPC cluster with two failure domains whose
credentials Secret points at the bed's CloudStack double. The CLI runs as a separate process, as users
run it; CloudStack's side is checked through the double's admin endpoint."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fault_support import READY_EVERYWHERE, admin, template_tags, templates_per_zone
from tests.support.fixtures_capc import create_objects, render_cluster
from tests.support.upgrade_support import TWO_ZONES, cli
from tests.testenv.bed import TestBed


@pytest.fixture
def cluster(testenv_v1beta2: TestBed, namespace: str) -> tuple[TestBed, str, str]:
    name = f"c-{uuid.uuid4().hex[:6]}"
    create_objects(
        testenv_v1beta2.api_client(), render_cluster(name, namespace, capi="v1beta2", zones=TWO_ZONES)
    )
    return testenv_v1beta2, namespace, name


def new_version() -> str:
    """A release no other test registers on the shared double."""
    number = int(uuid.uuid4().hex[:8], 16)
    return f"v1.{40 + number % 60}.{number // 60 % 1000}"


def templates_named(bed: TestBed, name: str) -> list[dict[str, Any]]:
    return [t for t in admin(bed, "templates") if t["name"] == name and not t["removed"]]


def commands_called(bed: TestBed, command: str, name: str) -> list[dict[str, str]]:
    return [
        c["params"]
        for c in admin(bed, "calls")
        if c["command"] == command and c["params"].get("name") == name
    ]


@pytest.fixture
def faults(testenv_v1beta2: TestBed) -> Iterator[None]:
    yield
    admin(testenv_v1beta2, "faults", {})


def registered_everywhere(
    bed: TestBed, template: str, done: subprocess.CompletedProcess[str], *actions: str
) -> None:
    """`done` succeeded, taking `actions` in zone1 and zone2, and the template is ready in both zones."""
    assert done.returncode == 0, done.stderr
    assert [line.split()[-1] for line in done.stdout.splitlines()[1:]] == list(actions)
    assert templates_per_zone(bed, template) == READY_EVERYWHERE


def register_args(
    namespace: str, cluster: str, version: str, *source: str, bed: TestBed | None = None
) -> list[str]:
    """`image register` arguments; with `bed`, uploads verify the certificate with the double's CA."""
    tls = ["--upload-ca-file", str(bed.upload_ca_file)] if bed is not None else []
    return ["image", "register", "--cluster", cluster, "-n", namespace, "--version", version, *source,
            *tls, "--poll-interval", "0.05s", "--timeout", "60s"]  # fmt: skip


def test_list_shows_templates_per_failure_domain_zone(cluster: tuple[TestBed, str, str]) -> None:
    bed, namespace, name = cluster
    done = cli(bed, "image", "list", "--cluster", name, "-n", namespace, "--version", "v1.29")
    assert done.returncode == 0, done.stderr
    header, *rows = [line.split() for line in done.stdout.splitlines()]
    assert header == ["NAME", "OS", "KUBERNETES", "HYPERVISOR", "ZONE1", "ZONE2"]
    # Other tests register v1.29 patches on this shared double; the seed's row is there, and only v1.29 rows.
    assert ["ubuntu-2204-kube-v1.29.3", "Ubuntu", "22.04", "v1.29.3", "KVM", "ready", "ready"] in rows
    assert {row[3].rsplit(".", 1)[0] for row in rows} == {"v1.29"}
    as_json = json.loads(cli(bed, "image", "list", "--cluster", name, "-n", namespace, "-o", "json").stdout)
    assert as_json["kind"] == "TemplateList"
    names = [item["name"] for item in as_json["items"]]
    assert "ubuntu-2204-kube-v1.28.5" in names and not any(n.startswith("CentOS") for n in names)
    zones = as_json["items"][0]["zones"]
    assert [(z["zone"], z["failureDomain"], z["ready"]) for z in zones] == [
        ("zone1", "fd-zone1", True),
        ("zone2", "fd-zone2", True),
    ]


def test_list_without_a_cluster_uses_the_cloudstack_client_configuration(testenv_v1beta2: TestBed) -> None:
    done = cli(testenv_v1beta2, "image", "list", env=testenv_v1beta2.cloudstack)
    assert done.returncode == 0, done.stderr
    assert "ubuntu-2204-kube-v1.28.5" in done.stdout and "ZONE2" in done.stdout.splitlines()[0]
    assert testenv_v1beta2.cloudstack["CLOUDSTACK_SECRET"] not in done.stdout + done.stderr


def test_register_by_url_waits_for_both_zones_and_a_rerun_reuses(cluster: tuple[TestBed, str, str]) -> None:
    bed, namespace, name = cluster
    version = new_version()
    template = f"ubuntu-2204-kube-{version}"
    url = f"http://127.0.0.1:9/kvm/{template}-kvm.qcow2.bz2"
    done = cli(bed, *register_args(namespace, name, version, "--url", url), "-v", "9")
    assert done.returncode == 0, done.stderr
    for secret in (bed.cloudstack["CLOUDSTACK_KEY"], bed.cloudstack["CLOUDSTACK_SECRET"]):
        assert secret not in done.stdout + done.stderr
    assert f"zone zone1: {template} 20% Downloaded" in done.stderr
    assert f"zone zone2: {template} ready" in done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        ("fd-zone1", "zone1", template, "registered"),
        ("fd-zone2", "zone2", template, "registered"),
    ]
    assert templates_per_zone(bed, template) == READY_EVERYWHERE
    (register,) = commands_called(bed, "registerTemplate", template)
    assert register["ostypeid"] == "46f966f7-d8d7-461e-9b51-46642c22c1bc" and register["ispublic"] == "false"

    again = cli(bed, *register_args(namespace, name, version, "--url", url), "-o", "json")
    assert again.returncode == 0, again.stderr
    assert [z["action"] for z in json.loads(again.stdout)["zones"]] == ["reused", "reused"]
    assert len(commands_called(bed, "registerTemplate", template)) == 1


@pytest.fixture
def image_site(tmp_path: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/images"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def test_prebuilt_with_a_missing_file_fails_before_registering(
    cluster: tuple[TestBed, str, str], image_site: str
) -> None:
    bed, namespace, name = cluster
    version = new_version()
    done = cli(bed, *register_args(namespace, name, version, "--prebuilt"), "--prebuilt-base-url", image_site)
    assert done.returncode == 2
    expected = f"{image_site}/kvm/ubuntu-2204-kube-{version}-kvm.qcow2.bz2 (HTTP 404)"
    assert done.stderr.startswith(f"error: no prebuilt image at {expected}")
    assert commands_called(bed, "registerTemplate", f"ubuntu-2204-kube-{version}") == []


def test_a_zone_whose_download_fails_is_named_and_replace_recovers(
    cluster: tuple[TestBed, str, str], faults: None
) -> None:
    bed, namespace, name = cluster
    version = new_version()
    template = f"ubuntu-2204-kube-{version}"
    message = "HTTP Server returned 403 (expected 200 OK)"
    admin(
        bed,
        "faults",
        {"downloads": [{"zone": "zone2", "at_percent": 40, "template": template, "message": message}]},
    )
    url = f"http://127.0.0.1:9/{template}.qcow2"
    failed = cli(bed, *register_args(namespace, name, version, "--url", url))
    assert failed.returncode == 4
    error = failed.stderr.strip().splitlines()[-1]
    assert "failed in zone zone2: HTTP Server returned 403 (expected 200 OK)" in error
    assert error.endswith("(`kubectl capc image register ... --replace` does both)")

    blocked = cli(bed, *register_args(namespace, name, version, "--url", url))
    assert blocked.returncode == 4 and "nothing was changed" in blocked.stderr

    admin(bed, "faults", {})
    fixed = cli(bed, *register_args(namespace, name, version, "--url", url, "--replace"), "-o", "json")
    assert fixed.returncode == 0, fixed.stderr
    assert [z["action"] for z in json.loads(fixed.stdout)["zones"]] == ["reused", "replaced"]
    assert templates_per_zone(bed, template) == READY_EVERYWHERE


def sparse_qcow2(path: Path, size: int) -> Path:
    """A qcow2 header followed by `size` bytes mostly made of holes (the SSVM checks the file type)."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1G"], check=True)
    with path.open("r+b") as handle:
        handle.seek(size // 2)
        handle.write(os.urandom(4096))
    os.truncate(path, size)
    return path


def run_measured(bed: TestBed, args: list[str], out: Path) -> tuple[int, int, str]:
    """Run the CLI; return its exit code, its own peak RSS in KiB (wait4) and its stderr."""
    with (out / "stdout").open("w") as stdout, (out / "stderr").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubectl_capc", *args, "--kubeconfig", str(bed.kubeconfig)],
            stdout=stdout,
            stderr=stderr,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss, (out / "stderr").read_text()


def test_streamed_upload_keeps_memory_flat_and_copies_to_the_second_zone(
    cluster: tuple[TestBed, str, str], tmp_path: Path
) -> None:
    bed, namespace, name = cluster
    peaks = {}
    for size in (16 << 20, 256 << 20):
        version = new_version()
        template = f"ubuntu-2204-kube-{version}"
        image = sparse_qcow2(tmp_path / f"{template}-kvm.qcow2", size)
        out = tmp_path / str(size)
        out.mkdir()
        code, peaks[size], stderr = run_measured(
            bed, register_args(namespace, name, version, "--file", str(image), bed=bed), out
        )
        assert code == 0, stderr
        actions = [line.split()[-1] for line in (out / "stdout").read_text().splitlines()[1:]]
        assert actions == ["uploaded", "copied"]
        assert "uploaded 256.0 MiB of 256.0 MiB (100%)" in stderr or size != 256 << 20
        (uploaded,) = templates_named(bed, template)
        digest = hashlib.sha256()
        with image.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        assert (uploaded["upload"]["size"], uploaded["upload"]["sha256"]) == (size, digest.hexdigest())
        assert templates_per_zone(bed, template) == READY_EVERYWHERE
        assert len(commands_called(bed, "getUploadParamsForTemplate", template)) == 1
        image.unlink()
    # Sixteen times the data, the same memory: the body is streamed, never held.
    assert peaks[256 << 20] - peaks[16 << 20] < 16 * 1024, peaks


def test_a_run_killed_while_waiting_is_finished_by_a_rerun(cluster: tuple[TestBed, str, str]) -> None:
    bed, namespace, name = cluster
    version = new_version()
    template = f"ubuntu-2204-kube-{version}"
    args = [*register_args(namespace, name, version, "--url", f"http://127.0.0.1:9/{template}.qcow2")]
    args[args.index("0.05s")] = "1s"
    process = subprocess.Popen(
        [sys.executable, "-m", "kubectl_capc", *args, "--kubeconfig", str(bed.kubeconfig)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not templates_named(bed, template):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    statuses = [status for s in templates_per_zone(bed, template).values() for status in s]
    assert not any(status.startswith("Download Complete") for status in statuses)

    done = cli(bed, *register_args(namespace, name, version, "--url", f"http://127.0.0.1:9/{template}.qcow2"))
    registered_everywhere(bed, template, done, "waited", "waited")
    assert len(commands_called(bed, "registerTemplate", template)) == 1


def test_a_run_killed_during_the_upload_is_finished_by_a_rerun_with_replace(
    cluster: tuple[TestBed, str, str], tmp_path: Path
) -> None:
    bed, namespace, name = cluster
    version = new_version()
    template = f"ubuntu-2204-kube-{version}"
    image = sparse_qcow2(tmp_path / f"{template}-kvm.qcow2", 1 << 30)
    args = register_args(namespace, name, version, "--file", str(image), bed=bed)
    process = subprocess.Popen(
        [sys.executable, "-m", "kubectl_capc", *args, "--kubeconfig", str(bed.kubeconfig)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if " uploaded " in line:  # `TIMESTAMP uploaded 1.0 MiB of ...`: the upload has begun
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(templates_per_zone(bed, template)) == ["zone1"]

    done = cli(bed, *register_args(namespace, name, version, "--file", str(image), "--replace", bed=bed))
    registered_everywhere(bed, template, done, "replaced", "copied")


def test_uploads_check_the_ssvm_certificate_with_the_ca_file_or_not_at_all_with_a_warning(
    cluster: tuple[TestBed, str, str], tmp_path: Path
) -> None:
    """The double's upload server has a certificate from its own CA, as an SSVM has one from
    CloudStack's: without --upload-ca-file the upload fails at once, naming the flags; with the CA it
    succeeds; --upload-insecure succeeds too, with a warning."""
    bed, namespace, name = cluster
    version = new_version()
    template = f"ubuntu-2204-kube-{version}"
    image = sparse_qcow2(tmp_path / "node.img", 16 << 20)  # a qcow2, named as cloud images often are
    refused = cli(bed, *register_args(namespace, name, version, "--file", str(image)))
    assert refused.returncode == 4, refused.stderr
    (error,) = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert "certificate of the secondary-storage VM at https://127.0.0.1:" in error
    assert "--upload-ca-file FILE" in error and "--upload-insecure" in error
    (stuck,) = templates_named(bed, template)
    assert stuck["upload"] is None

    done = cli(bed, *register_args(namespace, name, version, "--file", str(image), bed=bed))
    # The refused run's process is gone and its ticket unused: its template is replaced.
    registered_everywhere(bed, template, done, "replaced", "copied")
    (uploaded,) = templates_named(bed, template)
    assert uploaded["upload"]["filename"] == f"{template}.qcow2"  # named for its format, not `.img`
    assert "warning" not in done.stderr.lower()

    version = new_version()
    template = f"ubuntu-2204-kube-{version}"
    args = register_args(namespace, name, version, "--file", str(image), "--upload-insecure")
    insecure = cli(bed, *args)
    registered_everywhere(bed, template, insecure, "uploaded", "copied")
    warnings = [line for line in insecure.stderr.splitlines() if "--upload-insecure" in line]
    assert len(warnings) == 1 and "is not checked" in warnings[0], insecure.stderr
    assert "InsecureRequestWarning" not in insecure.stderr


def killed_before_tagging(bed: TestBed, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI and have it SIGKILL itself right before its first createTags request."""
    from kubectl_capc.domain.testpoints import SIGNAL_ENV

    return cli(bed, *args, env={SIGNAL_ENV: "SIGKILL@writing tag template *"})


def test_a_run_killed_between_registering_and_tagging_is_tagged_by_the_rerun(
    cluster: tuple[TestBed, str, str],
) -> None:
    bed, namespace, name = cluster
    version = new_version()
    template = f"ubuntu-2204-kube-{version}"
    args = register_args(namespace, name, version, "--url", f"http://127.0.0.1:9/{template}.qcow2")
    killed = killed_before_tagging(bed, args)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert template_tags(bed, template) == {}

    done = cli(bed, *args)
    registered_everywhere(bed, template, done, "waited", "waited")
    assert len(commands_called(bed, "registerTemplate", template)) == 1
    # The tags an uninterrupted run gives (test_register_by_url_waits_for_both_zones_and_a_rerun_reuses).
    assert template_tags(bed, template) == {
        "kubernetes-version": version,
        "os": "ubuntu-2204",
        "created-by": "kubectl-capc",
    }


def test_an_upload_killed_before_its_tags_is_uploaded_again_and_tagged(
    cluster: tuple[TestBed, str, str], tmp_path: Path
) -> None:
    bed, namespace, name = cluster
    version = new_version()
    template = f"ubuntu-2204-kube-{version}"
    image = sparse_qcow2(tmp_path / f"{template}-kvm.qcow2", 8 << 20)
    args = register_args(namespace, name, version, "--file", str(image), bed=bed)
    killed = killed_before_tagging(bed, args)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert templates_per_zone(bed, template) == {"zone1": ["NotUploaded"]}

    done = cli(bed, *args)
    registered_everywhere(bed, template, done, "replaced", "copied")
    assert template_tags(bed, template) == {  # the uploader's tag checked to name this host and a process
        "kubernetes-version": version,
        "os": "ubuntu-2204",
        "created-by": "kubectl-capc",
        "uploaded-by": "HOST/PID",
    }


def test_a_too_long_template_name_is_refused_before_anything_is_written(
    cluster: tuple[TestBed, str, str],
) -> None:
    bed, namespace, name = cluster
    long_name = "ubuntu-2204-kube-v1.29.3-" + "x" * 240
    register = cli(
        bed, *register_args(namespace, name, "v1.29.3", "--url", "http://127.0.0.1:9/a.qcow2"),
        "--name", long_name,
    )  # fmt: skip
    upgrade = cli(
        bed, "image-upgrade", name, "-n", namespace, "--to", "v1.29.3", "--image", long_name,
        "--image-source", "url", "--image-url", "http://127.0.0.1:9/a.qcow2", "--yes",
    )  # fmt: skip
    for run in (register, upgrade):
        assert run.returncode == 2, run.stderr
        (line,) = run.stderr.strip().splitlines()
        assert line.startswith("error: the template name 'ubuntu-2204-kube-v1.29.3-xxx")
        assert "has 265 characters, CloudStack takes at most 255; choose a name of at most 255" in line
        assert "--name" in line and "--image" in line
    sent = [c for c in admin(bed, "calls") if long_name in json.dumps(c["params"])]
    assert sent == []
