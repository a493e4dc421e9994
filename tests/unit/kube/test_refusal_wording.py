"""Reading a credentials Secret and the GitOps server dry run: how each answer of the API server ends up.

The API client is the real one with its transport replaced by canned answers, so the requests go
through the same serialisation and error mapping as against a cluster. An RBAC refusal is worded by
`kube.forbidden_error`, like every other refused request; a 403 from admission is a refusal of the
object, not a missing permission.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes.client import ApiClient, Configuration, rest
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import MaxRetryError, NewConnectionError

from kubectl_capc.domain.errors import ConfigError, ExitCode, KubeApiError
from kubectl_capc.domain.model import SecretRef
from kubectl_capc.kube.write import server_dry_run
from kubectl_capc.ops.image_targets import read_secret_credentials

REPO = Path(__file__).resolve().parents[3]
USER = "system:serviceaccount:ci:deployer"
REF = SecretRef("default", "cloudstack-credentials")
# Values a test can look for in any text; they must never show.
API_KEY, SECRET_KEY = "key-5f0b7c", "secret-9d2e41"


class CannedApiClient(ApiClient):
    """The kubernetes ApiClient, answering every request with one canned response, or failing to connect."""

    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        *,
        unreachable: bool = False,
        then: list[tuple[int, Any]] | None = None,
    ) -> None:
        """`then`: the answers to the following requests, in order, once the first one is given."""
        super().__init__(Configuration(host="https://127.0.0.1:6443"))
        self.status, self.body, self.unreachable = status, body, unreachable
        self.then = list(then or [])
        self.requests: list[tuple[str, str]] = []

    server = "https://127.0.0.1:6443"

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> rest.RESTResponse:
        return rest.RESTResponse(self.send(method, url))

    def send(self, method: str, url: str, **_: Any) -> Any:
        """The plugin's plain reads send here, the typed APIs through `call_api`: one canned server."""
        if self.requests and self.then:
            self.status, self.body = self.then.pop(0)
        self.requests.append((method, urlparse(url).path))
        if self.unreachable:
            connection = HTTPSConnection("127.0.0.1", 6443)
            refused = NewConnectionError(
                connection, "Failed to establish a new connection: [Errno 111] refused"
            )
            raise MaxRetryError(None, url, refused)
        return SimpleNamespace(
            status=self.status,
            reason=HTTPStatus(self.status).phrase,
            data=json.dumps(self.body).encode(),
            headers={"content-type": "application/json"},
        )


def status(code: int, message: str, **details: str) -> dict[str, Any]:
    return {"kind": "Status", "status": "Failure", "message": message, "code": code, "details": details}


def secret(**data: str) -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": REF.name, "namespace": REF.namespace}, "data": data}


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


GOOD_SECRET = secret(
    **{
        "api-url": encoded("https://cloudstack.example:8080/client/api"),
        "api-key": encoded(API_KEY),
        "secret-key": encoded(SECRET_KEY),
    }
)


def test_credentials_are_read_with_one_plain_get_of_the_secret() -> None:
    api = CannedApiClient(200, GOOD_SECRET)
    credentials = read_secret_credentials(api, REF, "fd1")
    assert api.requests == [("GET", "/api/v1/namespaces/default/secrets/cloudstack-credentials")]
    assert (credentials.api_key, credentials.secret_key) == (API_KEY, SECRET_KEY)


def test_reading_credentials_does_not_load_the_typed_core_api() -> None:
    """The typed CoreV1Api builds every core model (about half a second of CPU) to read one Secret."""
    code = (
        "import sys\n"
        "from tests.unit.kube.test_refusal_wording import GOOD_SECRET, REF, CannedApiClient\n"
        "from kubectl_capc.ops.image_targets import read_secret_credentials\n"
        "read_secret_credentials(CannedApiClient(200, GOOD_SECRET), REF, 'fd1')\n"
        "print(sorted(m for m in sys.modules if m.startswith('kubernetes.client.models.v1_')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_rbac_refusal_of_the_secret_is_worded_like_every_other() -> None:
    refusal = status(
        403,
        f'secrets "{REF.name}" is forbidden: User "{USER}" cannot get resource "secrets" in API group "" '
        'in the namespace "default"',
        name=REF.name,
        kind="secrets",
    )
    with pytest.raises(KubeApiError) as raised:
        read_secret_credentials(CannedApiClient(403, refusal), REF, "fd1")
    assert raised.value.exit_code == ExitCode.KUBE_API
    assert raised.value.message == (
        f"read Secret {REF}: forbidden: {USER} cannot get secrets/{REF.name} in namespace default"
    )
    assert "Role" in (raised.value.hint or "")


def test_a_missing_secret_and_other_refusals_keep_their_own_messages() -> None:
    with pytest.raises(ConfigError, match=r"credentials of failure domain fd1\) does not exist"):
        read_secret_credentials(CannedApiClient(404, status(404, "not found")), REF, "fd1")
    with pytest.raises(KubeApiError) as raised:
        read_secret_credentials(CannedApiClient(401, status(401, "Unauthorized")), REF, "fd1")
    assert raised.value.message == f"read Secret {REF}: HTTP 401 Unauthorized"
    assert "get secrets" in (raised.value.hint or "")


def test_an_unreachable_api_server_is_an_error_not_a_crash() -> None:
    with pytest.raises(KubeApiError, match=rf"read Secret {REF}: cannot reach the API server: .*refused"):
        read_secret_credentials(CannedApiClient(unreachable=True), REF, "fd1")


def test_a_value_that_is_not_base64_text_names_the_key_and_shows_no_value() -> None:
    broken = secret(**{"api-url": encoded("https://cs.example/client/api"), "api-key": "%%" + API_KEY})
    with pytest.raises(ConfigError) as raised:
        read_secret_credentials(CannedApiClient(200, broken), REF, "fd1")
    assert raised.value.message == f"Secret {REF}: key api-key is not valid base64 UTF-8 text"
    assert API_KEY not in str(raised.value)


TEMPLATE = {
    "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
    "kind": "CloudStackMachineTemplate",
    "metadata": {"name": "c1-md-0-v1-29-3", "namespace": "prod"},
    "spec": {"template": {"spec": {"template": {"name": "ubuntu-2204-kube-v1.29.3"}}}},
}


def test_server_dry_run_words_an_rbac_refusal_like_every_other() -> None:
    refusal = status(
        403,
        'cloudstackmachinetemplates.infrastructure.cluster.x-k8s.io "c1-md-0-v1-29-3" is forbidden: User '
        f'"{USER}" cannot patch resource "cloudstackmachinetemplates" in API group '
        '"infrastructure.cluster.x-k8s.io" in the namespace "prod"',
        name="c1-md-0-v1-29-3",
        group="infrastructure.cluster.x-k8s.io",
        kind="cloudstackmachinetemplates",
    )
    with pytest.raises(KubeApiError) as raised:
        server_dry_run(CannedApiClient(403, refusal), [TEMPLATE])
    assert raised.value.message == (
        f"server dry run of CloudStackMachineTemplate/c1-md-0-v1-29-3: forbidden: {USER} cannot patch "
        "cloudstackmachinetemplates.infrastructure.cluster.x-k8s.io/c1-md-0-v1-29-3 in namespace prod"
    )


def test_server_dry_run_reports_an_admission_refusal_as_the_objects_verdict() -> None:
    # A policy's own words may say "cannot": that does not make it a missing permission.
    message = (
        'cloudstackmachinetemplates.infrastructure.cluster.x-k8s.io "c1-md-0-v1-29-3" is forbidden: '
        "ValidatingAdmissionPolicy 'pinned-images' denied request: cannot use an unpinned image"
    )
    api = CannedApiClient(403, status(403, message), then=[(200, TEMPLATE)])
    assert server_dry_run(api, [TEMPLATE]) == [("CloudStackMachineTemplate/c1-md-0-v1-29-3", message)]
    path = (
        "/apis/infrastructure.cluster.x-k8s.io/v1beta3/namespaces/prod/cloudstackmachinetemplates/"
        "c1-md-0-v1-29-3"
    )
    # the object as stored, sent back unchanged, is accepted: the refusal is the change's
    assert api.requests == [("PATCH", path), ("PATCH", path)]


def test_server_dry_run_says_when_the_stored_object_is_refused_even_unchanged() -> None:
    message = (
        'cloudstackmachinetemplates.infrastructure.cluster.x-k8s.io "c1-md-0-v1-29-3" is invalid: '
        "spec.template.spec.offering: Required value"
    )
    api = CannedApiClient(422, status(422, message))
    [(subject, verdict)] = server_dry_run(api, [TEMPLATE])
    assert subject == "CloudStackMachineTemplate/c1-md-0-v1-29-3"
    assert verdict.startswith(
        "server dry run of CloudStackMachineTemplate/c1-md-0-v1-29-3: "
        "CloudStackMachineTemplate/c1-md-0-v1-29-3 as it is stored in the cluster is invalid: "
        "the API server refuses it even unchanged (" + message
    )
    assert "the change is not the cause" in verdict


def test_server_dry_run_against_an_unreachable_api_server_names_the_object_and_the_cause() -> None:
    with pytest.raises(KubeApiError) as raised:
        server_dry_run(CannedApiClient(unreachable=True), [TEMPLATE])
    assert raised.value.message.startswith(
        "server dry run of CloudStackMachineTemplate/c1-md-0-v1-29-3: cannot reach the API server: "
    )
    assert raised.value.message.endswith(
        "cannot reach the API server: Failed to establish a new connection: [Errno 111] refused"
    )
