"""The secondary-storage upload endpoint that getUploadParamsForTemplate points at.

Like the SSVM's HttpUploadServerHandler it wants a multipart POST to exactly the returned URL with
X-signature / X-expires / X-metadata headers, a real Content-Length (no chunked bodies), one upload per
template. The body is streamed to disk. Then the file is checked twice, as the SSVM checks it: the
`file` command's description of its content (looked at through .gz/.bz2 when the name ends so) must
fit the **file name's extension** (a qcow2 named `.img` is refused with 400), and then the template's
format, with the name's compression suffix (refused with 500). `describe_content` plays `file`.
"""

from __future__ import annotations

import bz2
import gzip
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


def describe_content(path: Path, look_inside: bool) -> str:
    """What `file -b` (`file -bz` when `look_inside`) says of the types an image upload can hold."""
    with path.open("rb") as handle:
        head = handle.read(0x8006)
    outer = _describe(head)
    if not look_inside or not outer.startswith(("bzip2", "gzip")):
        return outer
    inner = _decompressed_head(path, bz2_data=outer.startswith("bzip2"))
    return f"{_describe(inner)} ({outer})" if inner is not None else outer


def _decompressed_head(path: Path, *, bz2_data: bool) -> bytes | None:
    try:
        with bz2.open(path, "rb") if bz2_data else gzip.open(path, "rb") as stream:
            return stream.read(0x8006)
    except (OSError, EOFError):
        return None


def _describe(head: bytes) -> str:
    if head.startswith(b"QFI\xfb"):
        return f"QEMU QCOW Image (v{int.from_bytes(head[4:8], 'big')})"
    if head.startswith(b"conectix"):  # dynamic VHDs copy the footer to the start; fixed ones do not
        return "Microsoft Disk Image, Virtual Server or Virtual PC"
    if head.startswith(b"KDMV"):
        return "VMware4 disk image"
    if head[257:262] == b"ustar":
        return "POSIX tar archive"
    if head.startswith(b"BZh"):
        return "bzip2 compressed data"
    if head.startswith(b"\x1f\x8b"):
        return "gzip compressed data"
    if head.startswith(b"PK\x03\x04"):
        return "Zip archive data"
    if head[0x8001:0x8006] == b"CD001":
        return "ISO 9660 CD-ROM filesystem data"
    if head[510:512] == b"\x55\xaa":
        return "DOS/MBR boot sector"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "ASCII text"
    return "data" if head else "empty"


# Which descriptions each extension may carry (ImageStoreUtil.checkTemplateFormat), e.g. VMDKs and raw
# disks are often just "data" to `file`.
_CONTENT_FOR_EXTENSION = (
    (("vmdk",), ("VMware", "data")),
    (("raw", "img"), ("x86 boot", "data")),
    (("qcow2",), ("QEMU QCOW",)),
    (("vhd", "vhdx"), ("Microsoft Disk Image",)),
    (("ova", "tar"), ("POSIX tar",)),
)
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip")
FORMAT_EXTENSIONS = {"QCOW2": "qcow2", "VHD": "vhd", "OVA": "ova", "RAW": "raw", "VHDX": "vhdx"}


def is_compressed_name(name: str) -> bool:
    return name.lower().endswith(COMPRESSION_SUFFIXES)


def format_mismatch(description: str, name: str) -> str:
    """'' when content described so may be called `name`; the description otherwise."""
    lowered = name.lower()
    for extensions, contents in _CONTENT_FOR_EXTENSION:
        named = any(lowered.endswith((ext, *(ext + c for c in COMPRESSION_SUFFIXES))) for ext in extensions)
        if named and any(content in description for content in contents):
            return ""
    if description.startswith(("ISO 9660", "DOS/MBR")) and lowered.endswith("iso"):
        return ""
    return description


def _digests(path: Path) -> tuple[str, str]:
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()


def _virtual_size(path: Path, plain_qcow2: bool, fallback: int) -> int:
    if not plain_qcow2:
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
            row.state, row.error = ZoneState.ERROR, "received entity is not a file"
            return _text(422, row.error)
        upload, description, plain = record
        # HttpUploadServerHandler: the content against the name it was sent under.
        mismatch = format_mismatch(description, upload.filename)
        if mismatch:
            row.state = ZoneState.ERROR
            row.error = (
                f"File type mismatch between the sent file and the actual content. Received: {mismatch}"
            )
            return _text(400, row.error)
        # NfsSecondaryStorageResource.postUpload: the content against the template's format.
        expected = "dummy." + FORMAT_EXTENSIONS.get(template.format, template.format.lower())
        if is_compressed_name(upload.filename):
            expected += "." + upload.filename.rsplit(".", 1)[-1].lower()
        mismatch = format_mismatch(description, expected)
        if mismatch:
            row.state = ZoneState.ERROR
            row.error = (
                "File type mismatch between uploaded file and selected format. "
                f"Selected file format: {template.format}. Received: {mismatch}"
            )
            return _text(500, row.error)
        template.upload = upload
        template.physicalsize = upload.size
        template.size = _virtual_size(Path(upload.path), plain, upload.size)
        downloads.start(row, state.settings.download, state.download_fault_for(template, zone_id))
    return _text(200, "upload successful.")


def _inspect(path: Path, filename: str) -> tuple[UploadRecord, str, bool]:
    """Checksums and the content's description of a received file (outside the state lock: files can
    be big); whether it is a plain (uncompressed) qcow2 whose header tells the virtual size."""
    sha256, md5 = _digests(path)
    description = describe_content(path, look_inside=is_compressed_name(filename))
    record = UploadRecord(str(path), filename, path.stat().st_size, sha256, md5)
    return record, description, description.startswith("QEMU QCOW")


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
