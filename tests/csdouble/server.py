"""CloudStackDouble: the HTTP server (werkzeug, threaded, loopback) around the in-memory cloud.

The API is served over plain HTTP; the upload URLs that getUploadParamsForTemplate hands out point at a
second, HTTPS-only server standing in for the secondary-storage VM, whose certificate is signed by the
double's own CA (`upload_ca_file`), as a real SSVM's is signed by CloudStack's.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from . import api
from .admin import handle_admin
from .seed import apply_seed
from .state import State, random_key
from .tls import make_certificates
from .upload import UploadRequest, handle_upload

UPLOAD_CA_FILE = "ssvm-ca.crt"

HOST = "127.0.0.1"


class QuietRequestHandler(WSGIRequestHandler):
    """No access or error logs: request lines carry API keys and signatures."""

    def log(self, type: str, message: str, *args: Any) -> None:
        return


class CloudStackDouble:
    """A CloudStack management server double on 127.0.0.1.

    `seed` is a parsed seed file (see load_seed); `poll_steps`, `job_polls` and `download_seconds`,
    when given, override the `settings` of every seed the double loads. Use as a context manager or
    call start()/stop().
    """

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        allow_loopback_urls: bool = False,
        poll_steps: int | None = None,
        *,
        job_polls: int | None = None,
        download_seconds: float | None = None,
        port: int = 0,
        data_dir: str | Path | None = None,
        on_credentials_change: Callable[[CloudStackDouble], None] | None = None,
    ) -> None:
        self.state = State()
        self.state.allow_loopback_urls = allow_loopback_urls
        self._initial_seed = copy.deepcopy(seed or {})
        self._overrides = {
            "poll_steps": poll_steps,
            "job_polls": job_polls,
            "download_seconds": download_seconds,
        }
        self._port = port
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._upload_dir: Path | None = None
        self._owns_upload_dir = False
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._upload_server: BaseWSGIServer | None = None
        self._upload_thread: threading.Thread | None = None
        self._upload_ca_file: Path | None = None
        self._on_credentials_change = on_credentials_change
        self._load(self._initial_seed, keep_credentials=False)

    # ----- lifecycle -----------------------------------------------------------------------------

    def start(self) -> CloudStackDouble:
        if self._server is not None:
            return self
        if self._data_dir is not None:
            self._upload_dir = self._data_dir / "uploads"
            self._upload_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._upload_dir = Path(tempfile.mkdtemp(prefix="csdouble-uploads-"))
            self._owns_upload_dir = True
        self._server = make_server(
            HOST, self._port, self._wsgi, threaded=True, request_handler=QuietRequestHandler
        )
        certificates = make_certificates(HOST)
        self._upload_ca_file = (self._data_dir or self._upload_dir) / UPLOAD_CA_FILE
        self._upload_ca_file.write_bytes(certificates.ca_pem)
        self._upload_server = make_server(
            HOST,
            0,
            self._upload_wsgi,
            threaded=True,
            request_handler=QuietRequestHandler,
            ssl_context=certificates.server_context(),
        )
        self.state.upload_base_url = f"https://{HOST}:{self._upload_server.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cloudstack-double",
            daemon=True,
        )
        self._thread.start()
        self._upload_thread = threading.Thread(
            target=self._upload_server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cloudstack-double-ssvm",
            daemon=True,
        )
        self._upload_thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        for server, thread in ((self._server, self._thread), (self._upload_server, self._upload_thread)):
            if server is not None:
                server.shutdown()
                server.server_close()
            if thread is not None:
                thread.join()
        self._server, self._thread = None, None
        self._upload_server, self._upload_thread = None, None
        if self._owns_upload_dir and self._upload_dir is not None:
            shutil.rmtree(self._upload_dir, ignore_errors=True)

    def __enter__(self) -> CloudStackDouble:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # ----- what tests and the admin endpoint use -------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the CloudStack double is not started")
        return f"http://{HOST}:{self._server.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/client/api"

    @property
    def api_key(self) -> str:
        return self.state.credentials.api_key

    @property
    def secret_key(self) -> str:
        return self.state.credentials.secret_key

    @property
    def upload_dir(self) -> Path | None:
        return self._upload_dir

    @property
    def upload_base_url(self) -> str:
        """Where the upload URLs point: `https://127.0.0.1:PORT` (then `/upload/<template id>`)."""
        return self.state.upload_base_url

    @property
    def upload_ca_file(self) -> Path:
        """The PEM file of the CA that signed the upload server's certificate."""
        if self._upload_ca_file is None:
            raise RuntimeError("the CloudStack double is not started")
        return self._upload_ca_file

    def apply_seed(self, seed: dict[str, Any]) -> None:
        """Replace the cloud; the API keys stay unless the seed's `credentials` pins new ones."""
        self._load(seed, keep_credentials=True)

    def reset(self) -> None:
        """Back to the seed the double was built with (same API keys)."""
        self._load(self._initial_seed, keep_credentials=True)

    def rotate_keys(self, api_key: str | None = None, secret_key: str | None = None) -> None:
        """Replace the API key pair; requests signed with the old pair then get 401."""
        with self.state.lock:
            self.state.credentials.api_key = api_key or random_key()
            self.state.credentials.secret_key = secret_key or random_key()
        self._credentials_changed()

    # ----- internals -----------------------------------------------------------------------------

    def _load(self, seed: dict[str, Any], keep_credentials: bool) -> None:
        before = (self.state.credentials.api_key, self.state.credentials.secret_key)
        apply_seed(self.state, seed, keep_credentials=keep_credentials)
        settings = self.state.settings
        with self.state.lock:
            if self._overrides["poll_steps"] is not None:
                settings.download.poll_steps = int(self._overrides["poll_steps"])
            if self._overrides["job_polls"] is not None:
                settings.job_polls = int(self._overrides["job_polls"])
            if self._overrides["download_seconds"] is not None:
                settings.download.seconds = float(self._overrides["download_seconds"])
        if keep_credentials and before != (self.state.credentials.api_key, self.state.credentials.secret_key):
            self._credentials_changed()

    def _credentials_changed(self) -> None:
        if self._on_credentials_change is not None:
            self._on_credentials_change(self)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        response: Response
        if path == "/client/api":
            response = self._api(Request(environ))
        elif path.startswith("/admin/"):
            response = handle_admin(self, Request(environ), path[len("/admin/") :])
        else:
            response = Response("not found", status=404, mimetype="text/plain")
        return response(environ, start_response)

    def _upload_wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The SSVM's upload server: POST /upload/<template id>, nothing else."""
        path = environ.get("PATH_INFO", "")
        response: Response
        template_id = path[len("/upload/") :] if path.startswith("/upload/") else ""
        if not template_id:
            response = Response("not found", status=404, mimetype="text/plain")
        elif template_id not in self.state.tickets:
            response = Response("unknown upload id", status=404, mimetype="text/plain")
        else:
            request = UploadRequest(environ)
            assert self._upload_dir is not None
            request.upload_dir = self._upload_dir
            response = handle_upload(self.state, request, template_id)
        return response(environ, start_response)

    def _api(self, request: Request) -> Response:
        if request.method not in ("GET", "POST"):
            return Response("GET or POST only", status=405, mimetype="text/plain")
        params = {name: value for name, value in request.args.items()}
        for name, value in request.form.items():
            params.setdefault(name, value)  # the servlet lists query-string values first
        if params.get("response") != "json":
            return Response(
                "this CloudStack double only answers response=json", status=400, mimetype="text/plain"
            )
        status, document = api.handle(self.state, params)
        return Response(json.dumps(document), status=status, content_type="application/json;charset=UTF-8")
