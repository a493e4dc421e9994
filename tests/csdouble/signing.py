"""Server-side request signing, written from CloudStack's documented algorithm (ApiServer.verifyRequest).

Kept independent of any client library on purpose: if a client signs differently from CloudStack,
the double must reject it just like a real management server would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime, timezone

_JAVA_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-*_")
# DateUtil.parseTZDateString: ISO offset or instant ("Z", "+01:00"), RFC 822 offset ("+0100"),
# optional fractional seconds, and the legacy "...Z+0000" form.
_EXPIRES = re.compile(
    r"^(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d{1,9})?(?:Z(?=[+-]))?"
    r"(?P<offset>Z|[+-]\d{2}:?\d{2})$"
)
EXPIRES_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def java_url_encode(value: str) -> str:
    """java.net.URLEncoder.encode(value, "UTF-8") followed by CloudStack's '+' -> '%20'."""
    out = []
    for byte in value.encode("utf-8"):
        if byte in _JAVA_SAFE:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def string_to_sign(params: Mapping[str, str]) -> str:
    """Parameters sorted by name (case-sensitive), values Java-encoded, joined, lower-cased."""
    pairs = [
        f"{name}={java_url_encode(params[name])}" for name in sorted(params) if name.lower() != "signature"
    ]
    return "&".join(pairs).lower()


def hmac_sha1_b64(key: str, message: str) -> str:
    """Base64 of HMAC-SHA1, the primitive behind both API and upload signatures."""
    digest = hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def api_signature(params: Mapping[str, str], secret: str) -> str:
    """The signature CloudStack expects for these request parameters."""
    return hmac_sha1_b64(secret, string_to_sign(params))


def parse_expires(text: str) -> datetime | None:
    """Parse an `expires` value the way current CloudStack does; None when it would not parse."""
    match = _EXPIRES.match(text)
    if not match:
        return None
    offset = match["offset"].replace(":", "")
    try:
        return datetime.strptime(match["stamp"] + ("+0000" if offset == "Z" else offset), EXPIRES_FORMAT)
    except ValueError:
        return None


def format_expires(moment: datetime) -> str:
    """The inverse of parse_expires, in UTC."""
    return moment.astimezone(timezone.utc).strftime(EXPIRES_FORMAT)


def signature_matches(params: Mapping[str, str], secret: str, now: datetime) -> bool:
    """Check the signature and, for signatureVersion 3, that `expires` is well-formed and not past."""
    lowered = {name.lower(): value for name, value in params.items()}
    signature = lowered.get("signature")
    if not signature:
        return False
    if lowered.get("signatureversion") == "3":
        expires = parse_expires(lowered.get("expires", ""))
        if expires is None or expires < now:
            return False
    return hmac.compare_digest(signature.encode(), api_signature(params, secret).encode())


def upload_signature(metadata: str, post_url: str, expires: str, key: str) -> str:
    """The SSVM upload handler's HMAC over metadata + POST URL + expires."""
    return hmac_sha1_b64(key, metadata + post_url + expires)
