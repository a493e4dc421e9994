"""Unsigned admin endpoint (loopback clients only) so another process can drive the double.

GET  /admin/calls        the call log: [{"command", "params"}] (credentials and signing fields removed)
DELETE /admin/calls      clear the call log
GET  /admin/templates    every template with its per-zone status and upload record
POST /admin/templates    add one template (seed format); answers {"id"}
GET  /admin/faults       the active faults
POST /admin/faults       replace the faults (seed `faults:` format)
POST /admin/seed         replace the cloud with this seed (keys stay unless the seed pins them)
POST /admin/reset        back to the seed the double started with
POST /admin/credentials  new API keys: {"api_key", "secret_key"} or {} for random ones
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from werkzeug.wrappers import Request, Response

from .downloads import status_text
from .faults import parse_faults
from .model import ZoneState
from .seed import SeedError, add_template
from .state import State
from .upload import upload_summary

LOOPBACK = ("127.0.0.1", "::1")


class AdminTarget(Protocol):
    state: State

    def apply_seed(self, seed: dict[str, Any]) -> None: ...

    def reset(self) -> None: ...

    def rotate_keys(self, api_key: str | None = None, secret_key: str | None = None) -> None: ...


def _json(status: int, document: Any) -> Response:
    return Response(json.dumps(document), status=status, mimetype="application/json")


def _templates(state: State) -> list[dict[str, Any]]:
    with state.lock:
        state.tick_downloads(tick=False)
        return [
            {"id": t.id, "name": t.name, "removed": t.removed, "upload": upload_summary(t),
             "zones": {state.zones[z].name: {"zoneid": z, "status": status_text(r),
                                             "isready": r.state is ZoneState.READY}
                       for z, r in t.zones.items()}}
            for t in state.templates.values()
        ]  # fmt: skip


def handle_admin(target: AdminTarget, request: Request, action: str) -> Response:
    if request.remote_addr not in LOOPBACK:
        return _json(403, {"error": "the admin endpoint only serves loopback clients"})
    state = target.state
    route = (request.method, action)
    try:
        body = request.get_json(silent=True) if request.method == "POST" else None
        if request.method == "POST" and not isinstance(body, dict):
            return _json(400, {"error": "a JSON object body is required"})
        assert body is None or isinstance(body, dict)
        if route == ("GET", "calls"):
            with state.lock:
                return _json(200, [{"command": c.command, "params": c.params} for c in state.calls])
        if route == ("DELETE", "calls"):
            with state.lock:
                state.calls.clear()
            return _json(200, {})
        if route == ("GET", "templates"):
            return _json(200, _templates(state))
        if route == ("POST", "templates"):
            return _json(200, {"id": add_template(state, body or {}).id})
        if route == ("GET", "faults"):
            with state.lock:
                return _json(200, state.faults.to_dict())
        if route == ("POST", "faults"):
            with state.lock:
                state.faults = parse_faults(body or {}, state.zone_id)
            return _json(200, {})
        if route == ("POST", "seed"):
            target.apply_seed(body or {})
            return _json(200, {})
        if route == ("POST", "reset"):
            target.reset()
            return _json(200, {})
        if route == ("POST", "credentials"):
            target.rotate_keys((body or {}).get("api_key"), (body or {}).get("secret_key"))
            with state.lock:
                creds = state.credentials
                return _json(200, {"api_key": creds.api_key, "secret_key": creds.secret_key})
    except (SeedError, ValueError, KeyError, TypeError) as exc:
        return _json(400, {"error": str(exc)})
    return _json(404, {"error": f"no admin route {request.method} /admin/{action}"})
