"""The upload to the secondary-storage VM: the streamed multipart body and whose TLS settings apply."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

from kubectl_capc.cloudstack.credentials import Credentials
from kubectl_capc.cloudstack.upload import MultipartFileBody, UploadTLS


def test_multipart_body_length_matches_what_it_yields_and_parses(tmp_path: Path) -> None:
    image = tmp_path / 'odd"name.qcow2'
    payload = bytes(range(256)) * 5000  # crosses the 1 MiB chunk boundary
    image.write_bytes(payload)
    seen: list[tuple[int, int]] = []
    body = MultipartFileBody(image, progress=lambda sent, total: seen.append((sent, total)))
    data = b"".join(bytes(chunk) for chunk in body)  # copied as it comes, as a socket send does
    assert len(data) == len(body)
    assert seen[-1] == (len(payload), len(payload))
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {body.content_type}\r\n\r\n".encode() + data
    )
    (part,) = list(message.iter_parts())
    assert part.get_filename() == "odd_name.qcow2"
    assert part.get_payload(decode=True) == payload


def test_multipart_body_can_send_the_file_under_another_name(tmp_path: Path) -> None:
    image = tmp_path / "node.img"
    image.write_bytes(b"QFI\xfb" + bytes(60))
    body = MultipartFileBody(image, filename="ubuntu-2204-kube-v1.30.2.qcow2")
    data = b"".join(bytes(chunk) for chunk in body)
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {body.content_type}\r\n\r\n".encode() + data
    )
    (part,) = list(message.iter_parts())
    assert part.get_filename() == "ubuntu-2204-kube-v1.30.2.qcow2"


def test_upload_tls_settings_take_precedence_over_the_endpoints(tmp_path: Path) -> None:
    plain = Credentials("https://cs/client/api", "k", "s", source="Secret ns/c")
    bundled = Credentials("https://cs/client/api", "k", "s", True, "/etc/cs-ca.pem", "cloudstack.ini")
    unverified = Credentials("https://cs/client/api", "k", "s", False, None, "Secret ns/c")
    ca = tmp_path / "ssvm-ca.crt"
    assert UploadTLS().verify(plain) is True
    assert UploadTLS().verify(bundled) == "/etc/cs-ca.pem"
    # verify-ssl "false" is about the API endpoint; the upload still checks the SSVM's certificate.
    assert UploadTLS().verify(unverified) is True
    assert UploadTLS(ca_file=ca).verify(bundled) == str(ca)
    assert UploadTLS(insecure=True).verify(bundled) is False
