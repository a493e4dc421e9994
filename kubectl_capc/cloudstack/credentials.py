"""CloudStack credentials: the endpoint and keys a client signs with, read from a CAPC failure-domain
Secret or from the `cs` client configuration; the keys never appear in a repr or a message."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kubectl_capc.cloudstack.library import cs
from kubectl_capc.domain.errors import ConfigError, one_line

__all__ = ["Credentials", "credentials_from_config", "credentials_from_secret_data"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    """Where and as whom to call the CloudStack API; `source` says where they came from, for messages."""

    endpoint: str
    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    verify_ssl: bool = True
    ca_bundle: str | None = None
    source: str = "the CloudStack client configuration"


def credentials_from_secret_data(data: Mapping[str, str], source: str) -> Credentials:
    """Credentials from a CAPC failure-domain Secret's decoded data (`api-url`, `api-key`, `secret-key`,
    `verify-ssl`), used verbatim as CAPC uses them: a value with a trailing newline is sent with it (and
    refused by CloudStack), and only the exact string "false" turns TLS verification off."""
    missing = [key for key in ("api-url", "api-key", "secret-key") if not data.get(key)]
    if missing:
        raise ConfigError(
            f"{source} lacks {', '.join(missing)}",
            hint="CAPC failure-domain Secrets need the keys api-url, api-key and secret-key",
        )
    endpoint = data["api-url"]
    _check_endpoint(endpoint, source)
    verify = data.get("verify-ssl") != "false"
    if not verify:
        _log.warning("%s sets verify-ssl to false: TLS certificates of %s are not checked", source, endpoint)
    return Credentials(endpoint, data["api-key"], data["secret-key"], verify, None, source)


def credentials_from_config(region: str | None = None) -> Credentials:
    """Credentials from the `cs` client configuration: `CLOUDSTACK_*` variables or `~/.cloudstack.ini`
    (section `region`, else `$CLOUDSTACK_REGION`, else `cloudstack`)."""
    hint = (
        "set CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY and CLOUDSTACK_SECRET, write ~/.cloudstack.ini, "
        "or pass --cluster"
    )
    try:
        config = cs().read_config(region)
    except SystemExit as err:  # cs exits when it finds no configuration file at all
        raise ConfigError(
            f"no CloudStack client configuration found: {one_line(str(err))}", hint=hint
        ) from None
    except ValueError as err:
        raise ConfigError(f"the CloudStack client configuration is incomplete: {err}", hint=hint) from None
    source = "$CLOUDSTACK_* variables" if os.environ.get("CLOUDSTACK_ENDPOINT") else "~/.cloudstack.ini"
    endpoint = str(config.get("endpoint") or "")
    if not endpoint:
        raise ConfigError(f"no CloudStack endpoint in {source}", hint=hint)
    _check_endpoint(endpoint, source)
    key, secret = config.get("key"), config.get("secret")
    if not key or not secret:
        raise ConfigError(f"no API key or secret key in {source}", hint=hint)
    verify = config.get("verify")
    ca_bundle = (
        verify if isinstance(verify, str) and verify and verify.lower() not in ("true", "false") else None
    )
    insecure = config.get("dangerous_no_tls_verify") is True
    return Credentials(endpoint, str(key), str(secret), not insecure, ca_bundle, source)


def _check_endpoint(endpoint: str, source: str) -> None:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"the CloudStack API URL {endpoint!r} in {source} is not an http(s) URL",
            hint="use the management server's API URL, e.g. https://cloud.example.com/client/api",
        )
