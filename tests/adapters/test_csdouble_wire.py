"""The CloudStack double's wire protocol against the real `cs` client: signing, envelopes, errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from cs import CloudStack, CloudStackApiException, CloudStackException

from tests.csdouble import CloudStackDouble
from tests.csdouble.signing import api_signature, java_url_encode, parse_expires, string_to_sign


def client(double: CloudStackDouble, **options: Any) -> CloudStack:
    options.setdefault("poll_interval", 0.01)
    return CloudStack(
        double.endpoint,
        options.pop("key", double.api_key),
        options.pop("secret", double.secret_key),
        **options,
    )


def test_java_url_encoding_differs_from_python_quote_where_java_does() -> None:
    assert java_url_encode("a b*c~d/é") == "a%20b*c%7Ed%2F%C3%A9"
    assert java_url_encode("A-Z_0.9") == "A-Z_0.9"


def test_string_to_sign_sorts_case_sensitively_and_lowercases() -> None:
    params = {"command": "listZones", "apiKey": "KEY", "Zed": "Upper", "signature": "ignored"}
    assert string_to_sign(params) == "zed=upper&apikey=key&command=listzones"


@pytest.mark.parametrize("method", ["get", "post"])
def test_signed_requests_from_cs_are_accepted(cloudstack: CloudStackDouble, method: str) -> None:
    zones = client(cloudstack, method=method).listZones(name="zone2")
    assert [z["name"] for z in zones["zone"]] == ["zone2"]
    assert cloudstack.state.calls[-1].command == "listZones"
    assert cloudstack.state.calls[-1].params == {"name": "zone2"}


def test_values_with_spaces_and_stars_verify(cloudstack: CloudStackDouble) -> None:
    found = client(cloudstack).listServiceOfferings(name="Large Instance", keyword="Large*")
    assert "serviceoffering" not in found  # the keyword matched nothing, but the signature was accepted


def test_tilde_in_a_value_is_signed_differently_by_cs_and_rejected(cloudstack: CloudStackDouble) -> None:
    """cs encodes '~' as itself, Java's URLEncoder as %7E: CloudStack would refuse such a request."""
    with pytest.raises(CloudStackApiException) as caught:
        client(cloudstack).listZones(keyword="~zone")
    assert caught.value.response.status_code == 401


def test_bad_secret_gives_cloudstacks_401(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        client(cloudstack, secret="not-the-secret").listZones()
    assert caught.value.response.status_code == 401
    assert caught.value.error == {
        "uuidList": [],
        "errorcode": 401,
        "errortext": "unable to verify user credentials and/or request signature",
    }
    assert cloudstack.state.calls == []


def test_unknown_api_key_gives_401(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        client(cloudstack, key="someone-else").listZones()
    assert caught.value.response.status_code == 401


def test_expired_signature_gives_401(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        client(cloudstack).listZones(expires="2020-01-01T00:00:00+0000", signatureVersion="3")
    assert caught.value.response.status_code == 401


def test_unsigned_expiry_is_not_checked_without_signature_version_3(cloudstack: CloudStackDouble) -> None:
    api = client(cloudstack, expiration=-1)
    assert api.listZones()["count"] == 2


def test_rotated_keys_make_old_clients_fail(cloudstack: CloudStackDouble) -> None:
    old = client(cloudstack)
    cloudstack.rotate_keys()
    with pytest.raises(CloudStackApiException) as caught:
        old.listZones()
    assert caught.value.response.status_code == 401
    assert client(cloudstack).listZones()["count"] == 2


def test_expired_key_fault_gives_401_until_cleared(cloudstack: CloudStackDouble) -> None:
    api = client(cloudstack)
    cloudstack.state.faults.key_expired = True
    with pytest.raises(CloudStackApiException) as caught:
        api.listZones()
    assert caught.value.response.status_code == 401
    cloudstack.state.faults.key_expired = False
    assert api.listZones()["count"] == 2


def test_missing_parameter_is_431_with_cloudstacks_text(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        client(cloudstack).listTemplates()
    error = caught.value.error
    assert caught.value.response.status_code == 431
    assert error["errorcode"] == 431 and error["cserrorcode"] == 9999
    assert (
        error["errortext"]
        == "Unable to execute API command listtemplates due to missing parameter templatefilter"
    )
    assert "HTTP 431 response from CloudStack" in str(caught.value)


def test_unknown_uuid_is_431_like_param_process_worker(cloudstack: CloudStackDouble) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(CloudStackApiException) as caught:
        client(cloudstack).listTemplates(templatefilter="executable", zoneid=missing)
    assert caught.value.error["errortext"] == (
        "Unable to execute API command listtemplates due to invalid value. Invalid parameter zoneid "
        f"value={missing} due to incorrect long value format, or entity does not exist or due to incorrect "
        "parameter annotation for the field in api cmd class."
    )


def test_unknown_command_is_432_errorresponse(cloudstack: CloudStackDouble) -> None:
    raw = requests.get(
        cloudstack.endpoint, params={"command": "listKubernetesClusters", "response": "json"}, timeout=5
    )
    assert raw.status_code == 432
    assert raw.json() == {
        "errorresponse": {
            "uuidList": [],
            "errorcode": 432,
            "cserrorcode": 9999,
            "errortext": "The given command does not exist or it is not available for user",
        }
    }


def test_command_names_are_case_sensitive(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        client(cloudstack).listzones()
    assert caught.value.response.status_code == 432


def test_injected_530_is_returned_n_times(cloudstack: CloudStackDouble) -> None:
    api = client(cloudstack)
    cloudstack.state.faults.errors.append(_fault("listZones", times=2))
    for _ in range(2):
        with pytest.raises(CloudStackApiException) as caught:
            api.listZones()
        assert caught.value.response.status_code == 530
        assert caught.value.error["errorcode"] == 530
        assert caught.value.error["cserrorcode"] == 4250
        assert caught.value.error["errortext"].startswith("Internal error executing command")
    assert api.listZones()["count"] == 2


def _fault(command: str, times: int) -> Any:
    from tests.csdouble.faults import CommandFault

    return CommandFault(command=command, times=times)


def test_json_is_the_only_response_type(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(CloudStackException) as caught:
        client(cloudstack).listZones(json=False, response="xml")
    assert caught.value.response.status_code == 400


def test_empty_list_is_an_empty_object_and_count_counts_all_pages(cloudstack: CloudStackDouble) -> None:
    api = client(cloudstack)
    assert api.listTemplates(templatefilter="self", name="no-such-template") == {}
    page = api.listTemplates(templatefilter="executable", page=2, pagesize=2)
    assert page["count"] == 6 and len(page["template"]) == 2
    beyond = api.listTemplates(templatefilter="executable", page=9, pagesize=2)
    assert beyond == {"count": 6}


def test_fetch_list_walks_every_page(cloudstack: CloudStackDouble) -> None:
    api = client(cloudstack)
    rows = api.listTemplates(templatefilter="executable", fetch_list=True)
    assert len(rows) == 6
    assert len({(r["id"], r["zoneid"]) for r in rows}) == 6
    pages = [c.params.get("page") for c in cloudstack.state.calls if c.command == "listTemplates"]
    assert pages == ["1"]  # one full page of 500 holds them all; cs stops when count is reached


def test_fetch_list_with_small_pages(cloudstack: CloudStackDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    import cs.client

    monkeypatch.setattr(cs.client, "PAGE_SIZE", 4)
    rows = client(cloudstack).listTemplates(templatefilter="executable", fetch_list=True)
    assert len(rows) == 6
    pages = [c.params["page"] for c in cloudstack.state.calls if c.command == "listTemplates"]
    assert pages == ["1", "2"]


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"pagesize": "2"}, '"page" parameter is required when "pagesize" is specified'),
        ({"page": "1"}, '"pagesize" parameter is required when "page" is specified'),
        ({"page": "1", "pagesize": "501"}, "Page size can't exceed max allowed page size value: 500"),
        (
            {"page": "x", "pagesize": "5"},
            "Unable to execute API command listzones due to invalid value x for parameter page",
        ),
    ],
)
def test_paging_parameter_errors(cloudstack: CloudStackDouble, params: dict[str, str], text: str) -> None:
    answer = signed_get(cloudstack, command="listZones", **params)  # cs would add the missing pagesize
    assert answer.status_code == 431
    assert answer.json()["listzonesresponse"]["errortext"] == text


def signed_get(double: CloudStackDouble, **params: str) -> requests.Response:
    """A request signed by hand (v2, no expiry), for parameters `cs` would rewrite."""
    params.update(apiKey=double.api_key, response="json")
    params["signature"] = api_signature(params, double.secret_key)
    return requests.get(double.endpoint, params=params, timeout=5)


@pytest.mark.parametrize(
    "text",
    [
        "2030-01-02T02:04:05Z",
        "2030-01-02T03:04:05+0100",
        "2030-01-02T03:04:05+01:00",
        "2030-01-02T02:04:05.123456Z",
        "2030-01-02T02:04:05Z+0000",
    ],
)
def test_expires_formats_cloudstack_parses(text: str) -> None:
    assert parse_expires(text) == datetime(2030, 1, 2, 2, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text", ["2030-01-02T02:04:05", "2030-01-02 02:04:05Z", "yesterday", "2030-13-02T02:04:05Z"]
)
def test_expires_without_offset_or_malformed_is_refused(text: str) -> None:
    assert parse_expires(text) is None


def test_rfc3339_expiry_as_cloudstack_go_sends_it_is_honoured(cloudstack: CloudStackDouble) -> None:
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = (datetime.now(timezone.utc) + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert client(cloudstack).listZones(expires=future, signatureVersion="3")["count"] == 2
    with pytest.raises(CloudStackApiException) as caught:
        client(cloudstack).listZones(expires=past, signatureVersion="3")
    assert caught.value.response.status_code == 401


def test_api_signature_matches_an_independent_recomputation() -> None:
    import base64
    import hashlib
    import hmac

    params = {"command": "listZones", "apiKey": "k", "response": "json", "name": "a b"}
    digest = hmac.new(b"s", b"apikey=k&command=listzones&name=a%20b&response=json", hashlib.sha1).digest()
    assert api_signature(params, "s") == base64.b64encode(digest).decode()


def test_future_expiry_within_window_is_accepted(cloudstack: CloudStackDouble) -> None:
    api = client(cloudstack, expiration=timedelta(minutes=1))
    assert api.listZones()["count"] == 2
