"""getUploadParamsForTemplate and the upload endpoint, with a real multipart client (requests)."""

from __future__ import annotations

import bz2
import hashlib
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from cs import CloudStackApiException
from urllib3 import encode_multipart_formdata

from tests.csdouble import CloudStackDouble
from tests.csdouble.signing import format_expires, upload_signature

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
    assert params["postURL"] == f"{cloudstack.base_url}/upload/{params['id']}"
    assert datetime.strptime(params["expires"], "%Y-%m-%dT%H:%M:%S%z") > datetime.now(timezone.utc)
    row = cloudstack_api.listTemplates(templatefilter="self", id=params["id"])["template"][0]
    assert (row["status"], row["isready"], row["zonename"]) == ("NotUploaded", False, "zone1")


def test_uploaded_bytes_are_stored_identically_and_the_template_gets_ready(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    params = upload_params(cloudstack_api, cloudstack)["getuploadparams"]
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
    params = upload_params(cloudstack_api, cloudstack)["getuploadparams"]
    assert post(params, bz2.compress(qcow2_image()), filename="image.qcow2.bz2").status_code == 200


def test_a_file_of_another_type_is_refused(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = upload_params(cloudstack_api, cloudstack)["getuploadparams"]
    answer = post(params, b"\0" * 4096)
    assert answer.status_code == 422
    assert cloudstack.state.template_status(params["id"]) == {
        "zone1": "uploaded file is not a valid QCOW2 image"
    }


@pytest.mark.parametrize("header", ["X-signature", "X-expires", "X-metadata"])
def test_every_signing_header_is_required(
    cloudstack: CloudStackDouble, cloudstack_api: Any, header: str
) -> None:
    params = upload_params(cloudstack_api, cloudstack)["getuploadparams"]
    headers = {k: v for k, v in headers_of(params).items() if k != header}
    assert post(params, qcow2_image(), headers=headers).status_code == 400
    assert cloudstack.state.templates[params["id"]].upload is None


def test_a_tampered_signature_is_refused(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = upload_params(cloudstack_api, cloudstack)["getuploadparams"]
    headers = headers_of(params) | {"X-signature": params["signature"][::-1]}
    answer = post(params, qcow2_image(), headers=headers)
    assert (answer.status_code, answer.text) == (400, "signature validation failed")


def test_the_signature_binds_the_exact_host(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = upload_params(cloudstack_api, cloudstack)["getuploadparams"]
    elsewhere = dict(params, postURL=params["postURL"].replace("127.0.0.1", "localhost"))
    assert post(elsewhere, qcow2_image()).status_code == 400
    assert post(params, qcow2_image()).status_code == 200


def test_an_expired_upload_is_refused(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = upload_params(cloudstack_api, cloudstack)["getuploadparams"]
    expires = format_expires(datetime.now(timezone.utc) - timedelta(minutes=1))
    signature = upload_signature(params["metadata"], params["postURL"], expires, cloudstack.state.upload_key)
    headers = headers_of(params) | {"X-expires": expires, "X-signature": signature}
    answer = post(params, qcow2_image(), headers=headers)
    assert (answer.status_code, answer.text) == (400, "upload request has expired")


def test_a_second_upload_is_refused(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = upload_params(cloudstack_api, cloudstack)["getuploadparams"]
    assert post(params, qcow2_image()).status_code == 200
    assert post(params, qcow2_image()).status_code == 400


def test_chunked_bodies_without_content_length_are_refused(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    params = upload_params(cloudstack_api, cloudstack)["getuploadparams"]
    body, content_type = encode_multipart_formdata({"files[]": ("image.qcow2", qcow2_image())})
    answer = requests.post(
        params["postURL"],
        data=iter([body]),
        timeout=10,
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
    answer = requests.post(f"{cloudstack.base_url}/upload/00000000-0000-4000-8000-000000000000", timeout=5)
    assert answer.status_code == 404


def test_admin_view_reports_the_upload(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    params = upload_params(cloudstack_api, cloudstack)["getuploadparams"]
    image = qcow2_image()
    post(params, image)
    listed = requests.get(f"{cloudstack.base_url}/admin/templates", timeout=5).json()
    entry = next(t for t in listed if t["id"] == params["id"])
    assert entry["upload"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert entry["zones"]["zone1"]["status"] == "0% Downloaded"
