"""getUploadParamsForTemplate and the upload endpoint, with a real multipart client (requests).

The endpoint is HTTPS only, with a certificate signed by the double's own CA, like a secondary-storage
VM's; and it checks the uploaded file as the SSVM does: its content against the name it is sent under,
then against the template's format."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import os
import random
import shutil
import socket
import ssl
import subprocess
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from cs import CloudStackApiException
from urllib3 import encode_multipart_formdata

from tests.csdouble import CloudStackDouble
from tests.csdouble.signing import format_expires, upload_signature
from tests.csdouble.upload import describe_content

UBUNTU_2204 = "46f966f7-d8d7-461e-9b51-46642c22c1bc"
VIRTUAL_SIZE = 20 * 1024**3


def qcow2_image(payload_size: int = 64 * 1024) -> bytes:
    """Bytes with a QCOW2 v3 header (magic, version, virtual size at offset 24) and random content."""
    header = b"QFI\xfb" + (3).to_bytes(4, "big") + bytes(16) + VIRTUAL_SIZE.to_bytes(8, "big")
    return header + os.urandom(payload_size)


def upload_params(api: Any, double: CloudStackDouble, **overrides: Any) -> dict[str, Any]:
    params = {
        "name": "ubuntu-2404-kube-v1.30.1",
        "displaytext": "Ubuntu 24.04 Kubernetes v1.30.1",
        "format": "QCOW2",
        "hypervisor": "KVM",
        "ostypeid": UBUNTU_2204,
        "zoneid": double.state.zone_id("zone1"),
        **overrides,
    }
    return dict(api.getUploadParamsForTemplate(**{k: v for k, v in params.items() if v is not None}))


def ticket(api: Any, double: CloudStackDouble, **overrides: Any) -> dict[str, Any]:
    """The upload parameters, plus the CA file that verifies the upload server ("ca")."""
    params = upload_params(api, double, **overrides)["getuploadparams"]
    return {**params, "ca": str(double.upload_ca_file)}


def headers_of(params: dict[str, Any]) -> dict[str, str]:
    return {
        "X-signature": params["signature"],
        "X-expires": params["expires"],
        "X-metadata": params["metadata"],
    }


def post(
    params: dict[str, Any], data: bytes, filename: str = "image.qcow2", **kwargs: Any
) -> requests.Response:
    return requests.post(
        params["postURL"],
        headers=kwargs.pop("headers", headers_of(params)),
        files={"files[]": (filename, data)},
        timeout=10,
        verify=kwargs.pop("verify", params.get("ca", True)),
        **kwargs,
    )


def test_upload_params_shape(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    answer = cloudstack_api.getUploadParamsForTemplate(
        name="up",
        displaytext="up",
        format="QCOW2",
        hypervisor="KVM",
        ostypeid=UBUNTU_2204,
        zoneid=cloudstack.state.zone_id("zone1"),
    )
    assert set(answer) == {"getuploadparams"}
    params = answer["getuploadparams"]
    assert set(params) == {"id", "postURL", "metadata", "expires", "signature"}
    assert params["postURL"] == f"{cloudstack.upload_base_url}/upload/{params['id']}"
    assert cloudstack.upload_base_url.startswith("https://127.0.0.1:")
    assert cloudstack.upload_base_url != cloudstack.base_url.replace("http:", "https:")
    assert datetime.strptime(params["expires"], "%Y-%m-%dT%H:%M:%S%z") > datetime.now(timezone.utc)
    row = cloudstack_api.listTemplates(templatefilter="self", id=params["id"])["template"][0]
    assert (row["status"], row["isready"], row["zonename"]) == ("NotUploaded", False, "zone1")


def test_uploaded_bytes_are_stored_identically_and_the_template_gets_ready(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    params = ticket(cloudstack_api, cloudstack)
    image = qcow2_image(3 * 1024 * 1024)
    answer = post(params, image)
    assert (answer.status_code, answer.text) == (200, "upload successful.")
    record = cloudstack.state.templates[params["id"]].upload
    assert record is not None
    with open(record.path, "rb") as stored:
        assert stored.read() == image
    assert record.sha256 == hashlib.sha256(image).hexdigest()
    assert record.md5 == hashlib.md5(image).hexdigest()
    assert (record.size, record.filename) == (len(image), "image.qcow2")
    assert cloudstack.upload_dir is not None
    leftovers = [p.name for p in cloudstack.upload_dir.iterdir() if p.name.startswith("part-")]
    assert leftovers == []
    history = [
        cloudstack_api.listTemplates(templatefilter="self", id=params["id"])["template"][0] for _ in range(5)
    ]
    assert [r["status"] for r in history[:2]] == ["20% Downloaded", "40% Downloaded"]
    assert (history[-1]["status"], history[-1]["isready"]) == ("Download Complete", True)
    assert (history[-1]["size"], history[-1]["physicalsize"]) == (VIRTUAL_SIZE, len(image))


def test_compressed_images_are_accepted(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = ticket(cloudstack_api, cloudstack)
    assert post(params, bz2.compress(qcow2_image()), filename="image.qcow2.bz2").status_code == 200
    params = ticket(cloudstack_api, cloudstack, name="gz")
    assert post(params, gzip.compress(qcow2_image()), filename="image.qcow2.gz").status_code == 200


def test_a_file_of_another_type_is_refused(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = ticket(cloudstack_api, cloudstack)
    answer = post(params, b"\0" * 4096)
    message = "File type mismatch between the sent file and the actual content. Received: data"
    assert (answer.status_code, answer.text) == (400, message)
    assert cloudstack.state.template_status(params["id"]) == {"zone1": message}


@pytest.mark.parametrize(
    ("filename", "received"),
    [
        ("image.img", "QEMU QCOW Image (v3)"),  # .img is raw to the SSVM
        ("image", "QEMU QCOW Image (v3)"),
        ("image.vhd", "QEMU QCOW Image (v3)"),
    ],
)
def test_the_file_name_must_carry_the_contents_extension(
    cloudstack: CloudStackDouble, cloudstack_api: Any, filename: str, received: str
) -> None:
    params = ticket(cloudstack_api, cloudstack)
    answer = post(params, qcow2_image(), filename=filename)
    assert answer.status_code == 400
    assert answer.text.endswith(f"actual content. Received: {received}")
    assert cloudstack.state.templates[params["id"]].upload is None


def test_a_compressed_file_needs_its_compression_suffix(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    params = ticket(cloudstack_api, cloudstack)
    answer = post(params, bz2.compress(qcow2_image()), filename="image.qcow2")
    assert (answer.status_code, answer.text.rsplit(": ", 1)[-1]) == (400, "bzip2 compressed data")


def test_content_of_another_format_than_the_templates_is_refused(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    params = ticket(cloudstack_api, cloudstack, format="VHD", hypervisor="XenServer")
    answer = post(params, qcow2_image(), filename="image.qcow2")
    assert answer.status_code == 500
    assert answer.text == (
        "File type mismatch between uploaded file and selected format. Selected file format: VHD. "
        "Received: QEMU QCOW Image (v3)"
    )


def _qemu_images(directory: Path) -> dict[str, Path]:
    """Small real images made by qemu-img: a qcow2, a dynamic and a fixed VHD, an OVA holding a vmdk."""
    made = {}
    qcow2 = directory / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "8M"], check=True)
    made["qcow2"] = qcow2
    for subformat in ("dynamic", "fixed"):
        vhd = directory / f"{subformat}.vhd"
        subprocess.run(
            ["qemu-img", "convert", "-O", "vpc", "-o", f"subformat={subformat},force_size=on",
             str(qcow2), str(vhd)],
            check=True,
        )  # fmt: skip
        made[subformat] = vhd
    vmdk = directory / "disk.vmdk"
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", str(qcow2), str(vmdk)], check=True)
    ova = directory / "disk.ova"
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as archive:
        archive.add(vmdk, vmdk.name)
    made["ova"] = ova
    return made


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")
@pytest.mark.parametrize(
    ("image", "fmt", "hypervisor", "status"),
    [
        ("dynamic", "VHD", "XenServer", 200),
        ("fixed", "VHD", "XenServer", 400),  # no footer copy at the start: "data" to `file`
        ("ova", "OVA", "VMware", 200),
        ("qcow2", "QCOW2", "KVM", 200),
    ],
)
def test_real_images_of_each_format(  # noqa: PLR0917
    cloudstack: CloudStackDouble, cloudstack_api: Any, tmp_path: Path,
    image: str, fmt: str, hypervisor: str, status: int,
) -> None:  # fmt: skip
    path = _qemu_images(tmp_path)[image]
    params = ticket(cloudstack_api, cloudstack, format=fmt, hypervisor=hypervisor, name=image)
    answer = post(params, path.read_bytes(), filename=f"{image}.{fmt.lower()}")
    assert answer.status_code == status, answer.text


_SSVM_WORDS = (
    "VMware", "data", "x86 boot", "QEMU QCOW", "Microsoft Disk Image", "POSIX tar", "ISO 9660", "DOS/MBR",
    "bzip2", "gzip",
)  # fmt: skip


@pytest.mark.skipif(
    shutil.which("file") is None or shutil.which("qemu-img") is None, reason="needs file and qemu-img"
)
def test_the_content_is_described_as_the_file_command_describes_it(tmp_path: Path) -> None:
    images = _qemu_images(tmp_path)
    # Fixed noise: fresh random bytes now and then match one of `file`'s magic numbers.
    (tmp_path / "random").write_bytes(random.Random(7).randbytes(4096))
    packed = tmp_path / "disk.qcow2.bz2"
    packed.write_bytes(bz2.compress(images["qcow2"].read_bytes()))
    for path in [*images.values(), tmp_path / "random", packed]:
        for inside in (False, True):
            said = subprocess.run(
                ["file", "-b", *(["-z"] if inside else []), str(path)],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            ours = describe_content(path, look_inside=inside)
            # `file` adds details (sizes, dates, creator); the SSVM looks only for these words.
            assert {w for w in _SSVM_WORDS if w in ours} == {w for w in _SSVM_WORDS if w in said}, (
                path.name, inside, ours, said,
            )  # fmt: skip


def test_the_upload_server_speaks_only_tls_with_the_doubles_own_ca(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    params = ticket(cloudstack_api, cloudstack)
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        post(params, qcow2_image(), verify=True)
    plain = params["postURL"].replace("https://", "http://")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(plain, data=b"x", timeout=5)
    context = ssl.create_default_context(cafile=params["ca"])
    host, port = cloudstack.upload_base_url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        subject = dict(item[0] for item in tls.getpeercert()["subject"])
        assert subject["commonName"] == "s-1-VM"
    # The ticket is still unused: the refused attempts never reached the handler.
    assert post(params, qcow2_image()).status_code == 200
    # Nor does the API server take uploads.
    on_api = requests.post(f"{cloudstack.base_url}/upload/{params['id']}", data=b"x", timeout=5)
    assert on_api.status_code == 404


@pytest.mark.parametrize("header", ["X-signature", "X-expires", "X-metadata"])
def test_every_signing_header_is_required(
    cloudstack: CloudStackDouble, cloudstack_api: Any, header: str
) -> None:
    params = ticket(cloudstack_api, cloudstack)
    headers = {k: v for k, v in headers_of(params).items() if k != header}
    assert post(params, qcow2_image(), headers=headers).status_code == 400
    assert cloudstack.state.templates[params["id"]].upload is None


def test_a_tampered_signature_is_refused(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = ticket(cloudstack_api, cloudstack)
    headers = headers_of(params) | {"X-signature": params["signature"][::-1]}
    answer = post(params, qcow2_image(), headers=headers)
    assert (answer.status_code, answer.text) == (400, "signature validation failed")


def test_the_signature_binds_the_exact_host(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = ticket(cloudstack_api, cloudstack)
    elsewhere = dict(params, postURL=params["postURL"].replace("127.0.0.1", "localhost"))
    # (its certificate names 127.0.0.1 only: skip that check to reach the signature check)
    assert post(elsewhere, qcow2_image(), verify=False).status_code == 400
    assert post(params, qcow2_image()).status_code == 200


def test_an_expired_upload_is_refused(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = ticket(cloudstack_api, cloudstack)
    expires = format_expires(datetime.now(timezone.utc) - timedelta(minutes=1))
    signature = upload_signature(params["metadata"], params["postURL"], expires, cloudstack.state.upload_key)
    headers = headers_of(params) | {"X-expires": expires, "X-signature": signature}
    answer = post(params, qcow2_image(), headers=headers)
    assert (answer.status_code, answer.text) == (400, "upload request has expired")


def test_a_second_upload_is_refused(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = ticket(cloudstack_api, cloudstack)
    assert post(params, qcow2_image()).status_code == 200
    assert post(params, qcow2_image()).status_code == 400


def test_chunked_bodies_without_content_length_are_refused(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    params = ticket(cloudstack_api, cloudstack)
    body, content_type = encode_multipart_formdata({"files[]": ("image.qcow2", qcow2_image())})
    answer = requests.post(
        params["postURL"],
        data=iter([body]),
        timeout=10,
        verify=params["ca"],
        headers=headers_of(params) | {"Content-Type": content_type},
    )
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.status_code == 400
    assert "Content-Length" in answer.text


def test_upload_parameter_validation(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        upload_params(cloudstack_api, cloudstack, zoneid=None)
    assert caught.value.error["errortext"].endswith("due to missing parameter zoneid")
    with pytest.raises(CloudStackApiException) as caught:
        upload_params(cloudstack_api, cloudstack, format="RAW")
    assert (
        caught.value.error["errortext"]
        == "Image format: RAW is incorrect. Supported formats are QCOW2, OVA, VHD"
    )


def test_unknown_upload_ids_are_not_found(cloudstack: CloudStackDouble) -> None:
    answer = requests.post(
        f"{cloudstack.upload_base_url}/upload/00000000-0000-4000-8000-000000000000",
        timeout=5,
        verify=str(cloudstack.upload_ca_file),
    )
    assert answer.status_code == 404


def test_admin_view_reports_the_upload(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = ticket(cloudstack_api, cloudstack)
    image = qcow2_image()
    post(params, image)
    listed = requests.get(f"{cloudstack.base_url}/admin/templates", timeout=5).json()
    entry = next(t for t in listed if t["id"] == params["id"])
    assert entry["upload"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert entry["zones"]["zone1"]["status"] == "0% Downloaded"
