"""The /client/api endpoint: command lookup, authentication, fault injection, dispatch, envelopes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .commands import COMMANDS
from .errors import AUTH_FAILED_TEXT, UNAUTHORIZED, UNKNOWN_COMMAND_TEXT, UNSUPPORTED_ACTION, ApiError
from .lengths import check_lengths
from .model import Call
from .params import Context
from .signing import signature_matches
from .state import State

# Parameters that authenticate a request rather than describe it; kept out of the call log.
SIGNING_PARAMS = frozenset({"apikey", "signature", "signatureversion", "expires", "response", "command"})


def _error(response_name: str, error: ApiError) -> tuple[int, dict[str, Any]]:
    return error.errorcode, {response_name: error.body()}


def _authenticated(state: State, params: Mapping[str, str]) -> bool:
    lowered = {name.lower(): value for name, value in params.items()}
    creds = state.credentials
    if state.faults.key_expired or lowered.get("apikey") != creds.api_key:
        return False
    if state.caller().state != "enabled":
        return False
    return signature_matches(params, creds.secret_key, datetime.now(timezone.utc))


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
        if not _authenticated(state, params):
            return _error(spec.response_name, ApiError(UNAUTHORIZED, AUTH_FAILED_TEXT, cserrorcode=None))
        state.calls.append(
            Call(command, {k: v for k, v in params.items() if k.lower() not in SIGNING_PARAMS})
        )
        injected = state.faults.take_error(command)
        if injected is not None:
            return _error(spec.response_name, injected)
        try:
            check_lengths(command, spec.response_name, params)
            body = spec.handler(Context(state, state.caller(), command, params, spec.response_name))
        except ApiError as error:
            return _error(spec.response_name, error)
    return 200, {spec.response_name: body}
