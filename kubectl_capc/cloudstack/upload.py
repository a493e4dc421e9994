"""Uploads of local images, straight to the zone's secondary-storage VM (getUploadParamsForTemplate).

The image goes as a streamed multipart POST with a real Content-Length: the SSVM refuses chunked uploads,
and the image is never held in memory. The upload URL is always https on the SSVM's address, with a
certificate from CloudStack's own CA that clients rarely trust: uploads have their own TLS settings
(`UploadTLS`).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from kubectl_capc.cloudstack.credentials import Credentials
from kubectl_capc.cloudstack.errors import CloudStackError, CloudStackUnreachable, network_failure, scrub
from kubectl_capc.domain import testpoints

__all__ = ["MultipartFileBody", "UploadProgress", "UploadTLS", "UploadTicket", "post_file"]

_log = logging.getLogger(__name__)

UPLOAD_CHUNK_BYTES = 1 << 20
UploadProgress = Callable[[int, int], None]
"""Called with the bytes sent so far and the file's size."""


@dataclass(frozen=True)
class UploadTicket:
    """getUploadParamsForTemplate's answer. The metadata and signature authorise one upload: keep them
    out of logs like a key."""

    template_id: str
    zone_id: str
    post_url: str
    expires: str
    metadata: str = field(repr=False)
    signature: str = field(repr=False)


@dataclass(frozen=True)
class UploadTLS:
    """How the secondary-storage VM's certificate is checked (`--upload-ca-file`, `--upload-insecure`).

    Neither given: the API endpoint's CA bundle if it has one, else the system's trust store."""

    ca_file: Path | None = None
    insecure: bool = False

    def verify(self, credentials: Credentials) -> bool | str:
        """requests' `verify` for an upload made with `credentials`."""
        if self.ca_file is not None:
            return str(self.ca_file)
        if self.insecure:
            return False
        return credentials.ca_bundle or True


def post_file(
    ticket: UploadTicket,
    path: Path,
    credentials: Credentials,
    *,
    request_timeout: float,
    progress: UploadProgress | None = None,
    filename: str | None = None,
    tls: UploadTLS | None = None,
) -> None:
    """POST `path` to the ticket's upload URL as multipart/form-data, streamed in 1 MiB chunks, under
    `filename` (default: the file's own name); the SSVM checks the name's extension. `credentials` are
    the client's: their CA bundle is the default trust, and their keys are kept out of messages."""
    import requests

    body = MultipartFileBody(path, progress, filename=filename)
    headers = {
        "Content-Type": body.content_type,
        "X-signature": ticket.signature,
        "X-expires": ticket.expires,
        "X-metadata": ticket.metadata,
    }
    what = f"upload {path.name} for template {ticket.template_id}"
    where = ticket.post_url.split("?", 1)[0]
    tls = tls or UploadTLS()
    verify = tls.verify(credentials)
    if verify is False:
        _log.warning(
            "--upload-insecure: the certificate of the secondary-storage VM at %s is not checked",
            urlsplit(where).netloc,
        )
    try:
        with _quiet_insecure_warning(verify is False):
            response = requests.post(
                ticket.post_url,
                # urllib3 sends any buffer; the stubs only name bytes and str.
                data=cast("Iterable[bytes]", body),
                headers=headers,
                verify=verify,
                timeout=(request_timeout, max(request_timeout, 300.0)),
            )
    except requests.exceptions.SSLError as err:
        trusted = f"the CA in {tls.ca_file}" if tls.ca_file is not None else "the trusted CAs"
        raise CloudStackUnreachable(
            f"{what}: the certificate of the secondary-storage VM at {where} is not signed by "
            f"{trusted}: {scrub(network_failure(err), credentials)}",
            hint="pass --upload-ca-file FILE with the CA that signed it (CloudStack's own root CA "
            "unless an administrator installed another certificate), or --upload-insecure",
        ) from None
    except requests.RequestException as err:
        raise CloudStackError(
            f"{what} to {where} failed: {scrub(network_failure(err), credentials)}",
            hint="the upload URL points at the zone's secondary-storage VM: check that it is reachable",
        ) from None
    if response.status_code != 200:
        raise CloudStackError(
            f"{what}: the secondary-storage VM answered HTTP {response.status_code}: "
            f"{scrub(response.text[:300], credentials)}",
            hint="re-run the command: it deletes the incomplete template and uploads again",
        )


@contextlib.contextmanager
def _quiet_insecure_warning(quiet: bool) -> Iterator[None]:
    """urllib3 warns on every unverified request; the one warning logged per upload says it once."""
    if not quiet:
        yield
        return
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        yield


class MultipartFileBody:
    """A multipart/form-data body with one file part, produced in chunks with its exact length known
    up front: requests then sends Content-Length (not chunked encoding) and memory stays constant."""

    def __init__(
        self,
        path: Path,
        progress: UploadProgress | None = None,
        field_name: str = "file",
        *,
        filename: str | None = None,
    ) -> None:
        self.path = path
        self.progress = progress
        self.boundary = f"kubectl-capc-{secrets.token_hex(16)}"
        name = filename or path.name
        safe_name = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        self._head = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{field_name}"; filename="{safe_name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.file_size = path.stat().st_size

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self.file_size + len(self._tail)

    def __iter__(self) -> Iterator[bytes | memoryview]:
        # One buffer, refilled in place: a fresh 1 MiB object per chunk would make the kernel fault in
        # new pages on every read, which halves throughput. The HTTP client sends each chunk before it
        # asks for the next one, so handing out views of the same buffer is safe.
        buffer = bytearray(UPLOAD_CHUNK_BYTES)
        view = memoryview(buffer)
        sent = 0
        yield self._head
        with self.path.open("rb", buffering=0) as image:
            while count := image.readinto(buffer):
                if not sent:
                    testpoints.reached(f"uploading {self.path.name}")
                sent += count
                if self.progress is not None:
                    self.progress(sent, self.file_size)
                yield view[:count]
        if sent != self.file_size:
            raise CloudStackError(
                f"{self.path} changed size during the upload ({self.file_size} -> {sent} bytes)",
                hint="upload a file that nothing is writing to",
            )
        yield self._tail
