"""The secondary-storage upload endpoint that getUploadParamsForTemplate points at.

Like the SSVM's HttpUploadServerHandler it wants a multipart POST to exactly the returned URL with
X-signature / X-expires / X-metadata headers, a real Content-Length (no chunked bodies), one upload per
template, and a file whose type matches the declared format. The body is streamed to disk.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from werkzeug.wrappers import Request, Response

from . import downloads
from .model import Template, UploadRecord, ZoneState
from .signing import parse_expires, upload_signature
from .state import State

_CHUNK = 1 << 20


class UploadRequest(Request):
    """Spools every file part into `upload_dir` instead of memory."""

    upload_dir: Path = Path(tempfile.gettempdir())

    def _get_file_stream(
        self, total_content_length: int | None, content_type: str | None, filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:  # fmt: skip
        return tempfile.NamedTemporaryFile("wb+", dir=self.upload_dir, prefix="part-", delete=False)


def _text(status: int, message: str) -> Response:
    return Response(message, status=status, mimetype="text/plain")


def detected_format(path: Path) -> str | None:
    """QCOW2 / VHD / OVA by magic bytes; 'compressed' when the file is bz2/gzip/zip; None otherwise."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(512)
        footer = b""
        if size >= 512:
            handle.seek(size - 512)
            footer = handle.read(512)
    if head.startswith(b"QFI\xfb"):
        return "QCOW2"
    if head.startswith(b"conectix") or footer.startswith(b"conectix") or footer[1:].startswith(b"conectix"):
        return "VHD"
    if head[257:262] == b"ustar":
        return "OVA"
    if head.startswith((b"BZh", b"\x1f\x8b", b"PK\x03\x04")):
        return "compressed"
    return None


def _digests(path: Path) -> tuple[str, str]:
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()


def _virtual_size(path: Path, fmt: str | None, fallback: int) -> int:
    if fmt != "QCOW2":
        return fallback
    with path.open("rb") as handle:
        header = handle.read(32)
    return int.from_bytes(header[24:32], "big") if len(header) == 32 else fallback


def _reject(state: State, request: Request, template_id: str) -> Response | None:
    """Header, signature, expiry and length checks; marks the ticket used when they pass."""
    signature, expires, metadata = (
        request.headers.get(h) for h in ("X-signature", "X-expires", "X-metadata")
    )
    if not (signature and expires and metadata):
        return _text(400, "signature, expires and metadata headers are required")
    ticket = state.tickets.get(template_id)
    post_url = f"{request.scheme}://{request.host}/upload/{template_id}"
    expected = upload_signature(metadata, post_url, expires, state.upload_key)
    if ticket is None or metadata != ticket.metadata or not hmac.compare_digest(signature, expected):
        return _text(400, "signature validation failed")
    moment = parse_expires(expires)
    if moment is None or moment < datetime.now(timezone.utc):
        return _text(400, "upload request has expired")
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower() or not request.content_length:
        return _text(400, "Content-Length header is required and must be positive")
    if ticket.used:
        return _text(400, "an upload for this template has already been received")
    ticket.used = True
    state.templates[template_id].zones[ticket.zone_id].state = ZoneState.UPLOAD_IN_PROGRESS
    return None


def _receive(request: Request, target_dir: Path) -> tuple[Path, str] | None:
    """Parse the multipart body; keep the first file part, whatever its field name."""
    files = list(request.files.values())
    try:
        if not files:
            return None
        first = files[0]
        spooled = Path(str(getattr(first.stream, "name", "")))
        for other in files[1:]:
            other.close()
            Path(str(getattr(other.stream, "name", ""))).unlink(missing_ok=True)
        first.close()
        filename = os.path.basename(first.filename or "") or "upload"
        target_dir.mkdir(parents=True, exist_ok=True)
        final = target_dir / filename
        shutil.move(spooled, final)
        return final, filename
    finally:
        request.close()


def handle_upload(state: State, request: UploadRequest, template_id: str) -> Response:
    if request.method != "POST":
        return _text(405, "only POST is supported")
    with state.lock:
        rejected = _reject(state, request, template_id)
    if rejected is not None:
        return rejected
    received = _receive(request, request.upload_dir / template_id)
    record = _inspect(*received) if received is not None else None
    with state.lock:
        template = state.templates[template_id]
        zone_id = state.tickets[template_id].zone_id
        row = template.zones[zone_id]
        if record is None:
            row.state, row.error = ZoneState.ERROR, "no file part in the upload request"
            return _text(400, row.error)
        upload, fmt = record
        if fmt not in (template.format, "compressed"):
            row.state, row.error = ZoneState.ERROR, f"uploaded file is not a valid {template.format} image"
            return _text(422, row.error)
        template.upload = upload
        template.physicalsize = upload.size
        template.size = _virtual_size(Path(upload.path), fmt, upload.size)
        downloads.start(row, state.settings.download, state.download_fault_for(template, zone_id))
    return _text(200, "upload successful.")


def _inspect(path: Path, filename: str) -> tuple[UploadRecord, str | None]:
    """Checksums and detected format of a received file (outside the state lock: files can be big)."""
    sha256, md5 = _digests(path)
    return UploadRecord(str(path), filename, path.stat().st_size, sha256, md5), detected_format(path)


def upload_summary(template: Template) -> dict[str, Any] | None:
    record = template.upload
    if record is None:
        return None
    return {
        "path": record.path,
        "filename": record.filename,
        "size": record.size,
        "sha256": record.sha256,
        "md5": record.md5,
    }
