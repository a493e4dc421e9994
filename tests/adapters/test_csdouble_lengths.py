"""String parameter lengths on the CloudStack double, as CloudStack's ParamProcessWorker checks them:
a value longer than the parameter's `length` fails the request with error 431 before the command runs,
and the text names the Java field. Driven through the real `cs` client, so the error shape it sees is
the one real CloudStack sends."""

from __future__ import annotations

from typing import Any

import pytest
from cs import CloudStackApiException

from kubectl_capc.cloudstack.client import CloudStackClient
from kubectl_capc.cloudstack.credentials import Credentials
from kubectl_capc.cloudstack.errors import CloudStackError
from kubectl_capc.cloudstack.rows import TemplateSpec
from kubectl_capc.domain.errors import ExitCode
from tests.csdouble import CloudStackDouble

UBUNTU_2204 = "46f966f7-d8d7-461e-9b51-46642c22c1bc"
URL = "http://images.example.com/capi/ubuntu-2404-kube-v1.30.1-kvm.qcow2"


def too_long(command: str, limit: int, field: str) -> str:
    return (
        f"Unable to execute API command {command} due to invalid value. "
        f"Value greater than max allowed length {limit} for param: {field}"
    )


def register(api: Any, double: CloudStackDouble, **params: Any) -> Any:
    return api.registerTemplate(
        **{
            "name": "ubuntu-2404-kube-v1.30.1",
            "displaytext": "Ubuntu 24.04 Kubernetes v1.30.1",
            "format": "QCOW2",
            "hypervisor": "KVM",
            "ostypeid": UBUNTU_2204,
            "url": URL,
            "zoneid": double.state.zone_id("zone1"),
            **params,
        }
    )


def refused(call: Any) -> CloudStackApiException:
    with pytest.raises(CloudStackApiException) as caught:
        call()
    return caught.value


def template_count(double: CloudStackDouble) -> int:
    with double.state.lock:
        return len(double.state.templates)


def test_a_name_of_255_characters_is_taken_and_256_are_refused_with_cloudstacks_error(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    (row,) = register(cloudstack_api, cloudstack, name="n" * 255)["template"]
    assert row["name"] == "n" * 255
    before = template_count(cloudstack)
    error = refused(lambda: register(cloudstack_api, cloudstack, name="n" * 256))
    assert error.response.status_code == 431
    assert error.error == {
        "uuidList": [],
        "errorcode": 431,
        "cserrorcode": 9999,
        "errortext": too_long("registertemplate", 255, "templateName"),
    }
    assert template_count(cloudstack) == before  # refused before the command ran


@pytest.mark.parametrize(
    ("param", "limit", "field"),
    [("url", 2048, "url"), ("displaytext", 4096, "displayText"), ("checksum", 255, "checksum")],
)
def test_registertemplate_limits_per_parameter(
    cloudstack: CloudStackDouble, cloudstack_api: Any, param: str, limit: int, field: str
) -> None:
    def value(length: int) -> str:
        if param == "url":  # still a URL with the format's extension
            return URL.replace("/capi/", "/" + "d" * (length - len(URL) - 1) + "/capi/")
        return "v" * length

    assert len(value(limit)) == limit
    register(cloudstack_api, cloudstack, **{param: value(limit)})
    error = refused(lambda: register(cloudstack_api, cloudstack, **{param: value(limit + 1)}))
    assert error.error["errortext"] == too_long("registertemplate", limit, field)


def test_upload_params_name_the_response_not_the_command(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    params = {
        "format": "QCOW2",
        "hypervisor": "KVM",
        "ostypeid": UBUNTU_2204,
        "zoneid": cloudstack.state.zone_id("zone1"),
    }
    error = refused(lambda: cloudstack_api.getUploadParamsForTemplate(name="u" * 256, **params))
    assert (error.error["errorcode"], error.error["errortext"]) == (
        431,
        too_long("postuploadtemplate", 255, "name"),
    )
    missing = refused(lambda: cloudstack_api.getUploadParamsForTemplate(**params))
    assert missing.error["errortext"] == (
        "Unable to execute API command postuploadtemplate due to missing parameter name"
    )


def test_a_listing_by_a_too_long_name_is_refused_too(cloudstack_api: Any) -> None:
    error = refused(lambda: cloudstack_api.listTemplates(templatefilter="self", name="l" * 256))
    assert error.error["errortext"] == too_long("listtemplates", 255, "templateName")
    assert cloudstack_api.listTemplates(templatefilter="self", name="l" * 255) == {}


def test_length_counts_utf16_units_as_java_does(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    emoji = "\U0001f680"  # outside the BMP: two UTF-16 units
    error = refused(lambda: register(cloudstack_api, cloudstack, name=emoji * 128))
    assert error.error["errortext"] == too_long("registertemplate", 255, "templateName")
    (row,) = register(cloudstack_api, cloudstack, name=emoji * 127 + "x")["template"]
    assert row["name"] == emoji * 127 + "x"


def test_an_async_command_is_refused_at_once_not_as_a_failed_job(cloudstack_api: Any) -> None:
    (template,) = cloudstack_api.listTemplates(templatefilter="self", fetch_list=True)[:1]
    error = refused(
        lambda: cloudstack_api.createTags(
            resourceids=template["id"], resourcetype="T" * 256, tags=[{"key": "k", "value": "v"}]
        )
    )
    assert error.response.status_code == 431
    assert error.error["errortext"] == too_long("createtags", 255, "resourceType")


def test_the_plugin_reports_cloudstacks_refusal_in_one_line(cloudstack: CloudStackDouble) -> None:
    credentials = Credentials(cloudstack.endpoint, cloudstack.api_key, cloudstack.secret_key)
    client = CloudStackClient(credentials, poll_interval=0.01, job_timeout=10)
    spec = TemplateSpec("t" * 256, "display", "KVM", "QCOW2", UBUNTU_2204)
    with pytest.raises(CloudStackError) as caught:
        client.register_template(spec, URL, [cloudstack.state.zone_id("zone1")])
    message = str(caught.value)
    assert "\n" not in message
    assert "CloudStack error 431: " + too_long("registertemplate", 255, "templateName") in message
    assert message.endswith("; a parameter was refused: check the values given on the command line")
    assert caught.value.exit_code == ExitCode.KUBE_API
