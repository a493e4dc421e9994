"""The /client/api endpoint: command lookup, authentication, fault injection, dispatch, envelopes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .commands import COMMANDS
from .errors import AUTH_FAILED_TEXT, UNAUTHORIZED, UNKNOWN_COMMAND_TEXT, UNSUPPORTED_ACTION, ApiError
from .lengths import check_lengths
from .model import Account, Call
from .params import Context
from .signing import signature_matches
from .state import State

# Parameters that authenticate a request rather than describe it; kept out of the call log.
SIGNING_PARAMS = frozenset({"apikey", "signature", "signatureversion", "expires", "response", "command"})


def _error(response_name: str, error: ApiError) -> tuple[int, dict[str, Any]]:
    return error.errorcode, {response_name: error.body()}


def _authenticated(state: State, params: Mapping[str, str]) -> Account | None:
    """The account the request acts as, or None when its key or signature is refused."""
    lowered = {name.lower(): value for name, value in params.items()}
    found = None if state.faults.key_expired else state.key_owner(lowered.get("apikey"))
    if found is None or found[0].state != "enabled":
        return None
    account, secret = found
    return account if signature_matches(params, secret, datetime.now(timezone.utc)) else None


def handle(state: State, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """Answer one API request: (HTTP status, JSON document)."""
    command = params.get("command")
    if not command:
        return _error("errorresponse", ApiError(UNSUPPORTED_ACTION, "Invalid request, no command sent"))
    spec = COMMANDS.get(command)
    if spec is None:
        return _error("errorresponse", ApiError(UNSUPPORTED_ACTION, UNKNOWN_COMMAND_TEXT))
    with state.lock:
        delay = state.faults.latency_for(command)
    if delay:
        time.sleep(delay)
    with state.lock:
        caller = _authenticated(state, params)
        if caller is None:
            return _error(spec.response_name, ApiError(UNAUTHORIZED, AUTH_FAILED_TEXT, cserrorcode=None))
        state.calls.append(
            Call(command, {k: v for k, v in params.items() if k.lower() not in SIGNING_PARAMS})
        )
        injected = state.faults.take_error(command)
        if injected is not None:
            return _error(spec.response_name, injected)
        try:
            check_lengths(command, spec.response_name, params)
            body = spec.handler(Context(state, caller, command, params, spec.response_name))
        except ApiError as error:
            return _error(spec.response_name, error)
    return 200, {spec.response_name: body}
