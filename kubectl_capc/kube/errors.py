"""One mapping from failed Kubernetes requests to the plugin's errors, for every kube module: the
library's `ApiException` and the transport's `ApiError` alike (both carry `status`, `reason`, `body`)."""

from __future__ import annotations

import json
import re
from typing import Any

from kubectl_capc.domain.errors import KubeApiError, one_line
from kubectl_capc.kube.retries import certificate_refused, transport_failure

__all__ = ["forbidden_error", "server_message", "unreachable_error"]

# How the RBAC authorizer words a refusal (k8s.io/apiserver's forbidden message).
_RBAC_REFUSAL = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>[^ ]+) resource "(?P<resource>[^"]+)" '
    r'in API group "(?P<group>[^"]*)"(?: in the namespace "(?P<namespace>[^"]*)")?'
)


def forbidden_error(what: str, err: Any) -> KubeApiError | None:
    """The error for a request that RBAC refused: who may not do which verb on which resource, where.

    `err` is an `ApiError` or the library's `ApiException`. A 403 without RBAC's wording (an admission
    webhook, a policy, a quota) gives None: the caller reports it as a refusal of the object instead.
    """
    if getattr(err, "status", None) != 403:
        return None
    status = _status_body(err)
    match = _RBAC_REFUSAL.search(str(status.get("message") or ""))
    if match is None:
        return None
    resource, _, subresource = match["resource"].partition("/")
    target = f"{resource}.{match['group']}" if match["group"] else resource
    name = (status.get("details") or {}).get("name")
    target += "".join(f"/{part}" for part in (name, subresource) if part)
    scope = f"in namespace {match['namespace']}" if match["namespace"] else "at cluster scope"
    return KubeApiError(
        f"{what}: forbidden: {match['user']} cannot {match['verb']} {target} {scope}",
        hint="grant it with a Role bound to that user (the RBAC page of the documentation lists what "
        "each command needs)",
    )


def _status_body(err: Any) -> dict[str, Any]:
    try:
        body = json.loads(getattr(err, "body", None) or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def unreachable_error(what: str, err: BaseException, *, hint: str | None = None) -> KubeApiError:
    """The error for request `what` that got no answer: `err` is urllib3's `HTTPError` or an `OSError`.
    A server certificate that fails verification is not a cluster that is down: the hint says so;
    otherwise `hint` (default: check the cluster and the context) says what to do."""
    if certificate_refused(err):
        hint = (
            "the server's certificate is not trusted for this address: check the kubeconfig's "
            "certificate-authority(-data) and tls-server-name for this context"
        )
    elif hint is None:
        hint = "check that the cluster is running and that --context/--kubeconfig select it"
    return KubeApiError(f"{what}: cannot reach the API server: {transport_failure(err)}", hint=hint)


def server_message(err: Any) -> str:
    """The message of the Status the server answered an `ApiError` or `ApiException` with, on one line."""
    try:
        body = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return one_line(str(message or err.reason or "no message"))
