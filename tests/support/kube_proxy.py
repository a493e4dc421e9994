"""A loopback HTTPS proxy in front of the test bed's kube-apiserver that answers chosen requests itself.

Clients reach it through `kubeconfig()`, a copy of the bed's kubeconfig pointing at the proxy (the proxy
presents the apiserver's own serving certificate, valid for 127.0.0.1, and forwards with the bed's admin
identity). A `Fault` answers matching requests with an error status, optionally with `Retry-After`, either
instead of forwarding them (the apiserver never sees the request) or after forwarding them (the apiserver
acted, the client hears an error). Responses are relayed chunk by chunk, so watches work through it.
`stop()` and `start()` on the same port make it refuse connections for a while. `log` records requests.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.testenv.bed import TestBed

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})
_REASONS = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


@dataclass
class Fault:
    """Answer the next `times` requests with `method` whose path (with query) matches `path`."""

    method: str
    path: str
    status: int
    times: int = 1
    retry_after: int | None = None
    after_forwarding: bool = False

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    status: int
    injected: bool
    forwarded: bool


class KubeProxy:
    def __init__(self, bed: TestBed) -> None:
        pki = bed.dir / "pki"
        upstream = urlsplit(bed.endpoint)
        self.bed = bed
        self.upstream = (str(upstream.hostname), int(upstream.port or 443))
        self.client_context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.client_context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_context.load_cert_chain(str(pki / "serving.crt"), str(pki / "serving.key"))
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self.lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> KubeProxy:
        """Listen (again) on 127.0.0.1, on the same port as before if there was one."""
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.socket = self.server_context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused until `start()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubeconfig(self, directory: Path) -> Path:
        """The bed's kubeconfig with its server pointing at this proxy."""
        document = yaml.safe_load(self.bed.kubeconfig.read_text())
        for cluster in document["clusters"]:
            cluster["cluster"]["server"] = self.url
        path = directory / "proxy-kubeconfig"
        path.write_text(yaml.safe_dump(document))
        return path

    # -- faults -------------------------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def record(self, entry: Logged) -> None:
        with self.lock:
            self.log.append(entry)

    def requests(self, method: str, path: str, *, forwarded: bool | None = None) -> list[Logged]:
        """Logged requests with `method` whose path matches `path` (and, if given, were forwarded or not)."""
        with self.lock:
            return [
                e for e in self.log
                if e.method == method and re.search(path, e.path) and forwarded in (None, e.forwarded)
            ]  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    owner: KubeProxy
    protocol_version = "HTTP/1.1"  # chunked responses: clients read a watch event as soon as it is relayed

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _proxy(self) -> None:
        proxy = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        fault = proxy.take(self.command, self.path)
        if fault is not None and not fault.after_forwarding:
            self._answer(fault)
            proxy.record(Logged(self.command, self.path, fault.status, True, False))
            return
        upstream = http.client.HTTPSConnection(*proxy.upstream, context=proxy.client_context, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            if fault is not None:
                response.read()
                self._answer(fault)
                proxy.record(Logged(self.command, self.path, fault.status, True, True))
                return
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            proxy.record(Logged(self.command, self.path, response.status, False, True))
            while chunk := response.read1(65536):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):
            pass  # the client or the apiserver went away: nothing left to relay
        finally:
            upstream.close()

    def _answer(self, fault: Fault) -> None:
        reason = _REASONS.get(fault.status, "InternalError")
        body = json.dumps(
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": fault.status,
             "reason": reason, "message": f"injected by the test proxy: {reason}"}
        ).encode()  # fmt: skip
        self.send_response(fault.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if fault.retry_after is not None:
            self.send_header("Retry-After", str(fault.retry_after))
        self.end_headers()
        self.wfile.write(body)
