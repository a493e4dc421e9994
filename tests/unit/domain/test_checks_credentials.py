"""Credential checks (CAPC-S0xx): the Secret, its keys, the URL, reaching CloudStack, the tenancy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubectl_capc.domain.checks import Severity
from kubectl_capc.domain.checks.credentials import display_url, url_problem
from kubectl_capc.domain.checks.facts import Connection, Reach, SecretFacts, SecretState
from tests.support.checks_support import API_URL, Cloud, ids, render


def test_healthy_credentials_have_no_findings() -> None:
    assert Cloud().check(render()) == []


@pytest.mark.parametrize(
    ("state", "wording"),
    [
        (SecretState.MISSING, "does not exist"),
        (SecretState.FORBIDDEN, "cannot be read with your permissions"),
        (SecretState.FAILED, "could not be read"),
    ],
)
def test_unreadable_secret_is_reported_once_for_all_its_failure_domains(
    state: SecretState, wording: str
) -> None:
    cloud = Cloud()
    findings = cloud.check(
        render(),
        secret=lambda s: SecretFacts(s.ref, state, "HTTP 404 Not Found"),
        connection=lambda c: c,
    )
    secret_findings = [f for f in findings if f.check_id == "CAPC-S001"]
    [finding] = secret_findings
    assert str(finding.subject) == "Secret/cloudstack-credentials"
    assert wording in finding.message and "fd-zone1, fd-zone2" in finding.message


def test_missing_keys_are_named() -> None:
    findings = Cloud().check(render(), secret=lambda s: replace(s, keys=frozenset({"api-url"})))
    [missing] = [f for f in findings if f.check_id == "CAPC-S002"]
    assert "lacks api-key, secret-key" in missing.message


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://cloud.example.com/client/api", "is not an http or https URL"),
        ("https:///client/api", "names no host"),
        ("cloud.example.com/client/api", "is not an http or https URL"),
        ("https://cloud.example.com:99999/client/api", "is malformed"),
    ],
)
def test_invalid_api_url(url: str, problem: str) -> None:
    findings = Cloud().check(render(), secret=lambda s: replace(s, api_url=url))
    [invalid] = [f for f in findings if f.check_id == "CAPC-S003"]
    assert problem in invalid.message
    assert url_problem(API_URL) is None


def test_display_url_drops_user_info_and_query() -> None:
    assert display_url("https://user:pw@cloud.example.com:8443/client/api?apiKey=abc#x") == (
        "https://cloud.example.com:8443/client/api"
    )


@pytest.mark.parametrize(
    ("reach", "check_id"),
    [(Reach.UNREACHABLE, "CAPC-S004"), (Reach.REJECTED, "CAPC-S005"), (Reach.FAILED, "CAPC-S008")],
)
def test_connection_failures(reach: Reach, check_id: str) -> None:
    findings = Cloud().check(
        render(), connection=lambda c: Connection(c.tenant, reach, "list zones: something went wrong")
    )
    # One tenant (same Secret, no account) serves both failure domains: one finding, and nothing
    # zone-scoped is checked without a working connection.
    [finding] = findings
    assert finding.check_id == check_id
    assert finding.failure_domain == "fd-zone1, fd-zone2"
    assert finding.message == "list zones: something went wrong (failure domain fd-zone1, fd-zone2)"


def test_verify_ssl_false_is_a_warning_and_only_the_exact_string_counts() -> None:
    [warning] = Cloud().check(render(), secret=lambda s: replace(s, verify_ssl="false"))
    assert (warning.check_id, warning.severity) == ("CAPC-S006", Severity.WARNING)
    assert Cloud().check(render(), secret=lambda s: replace(s, verify_ssl="False")) == []
    assert Cloud().check(render(), secret=lambda s: replace(s, verify_ssl="true")) == []


def test_a_value_with_whitespace_is_an_error_naming_the_secret_and_key() -> None:
    findings = Cloud().check(
        render(), secret=lambda s: replace(s, padded=frozenset({"api-key", "verify-ssl"}))
    )
    assert [(f.check_id, f.severity) for f in findings] == [("CAPC-S009", Severity.ERROR)] * 2
    api_key, verify = findings
    assert str(api_key.subject) == "Secret/cloudstack-credentials"
    assert api_key.message.startswith("api-key has leading or trailing whitespace")
    assert "signs every request wrongly" in api_key.message
    assert 'is not "false", so CAPC verifies TLS' in verify.message
    assert "--from-literal" in api_key.hint and "echo -n" in api_key.hint


def test_scope_problems_are_errors_on_the_cloudstack_cluster() -> None:
    findings = Cloud().check(
        render(),
        connection=lambda c: Connection(c.tenant, Reach.OK, scope_problems=("account 'ops' does not exist",)),
    )
    [scope] = findings
    assert (scope.check_id, str(scope.subject)) == ("CAPC-S007", "CloudStackCluster/c1")
    assert "ops" in scope.message


def test_an_account_without_keyed_users_is_its_own_error() -> None:
    findings = Cloud().check(
        render(),
        connection=lambda c: Connection(c.tenant, Reach.OK, keyless="account 'ops' has no keyed user"),
    )
    [keyless] = findings
    assert (keyless.check_id, str(keyless.subject)) == ("CAPC-S010", "CloudStackCluster/c1")
    assert "ops" in keyless.message and "registerUserKeys" in keyless.hint


def test_failure_domains_with_their_own_secrets_are_judged_separately() -> None:
    from tests.support.fixtures_capc import Zone

    objects = render(zones=(Zone("zone1", "net1"), Zone("zone2", "net2", secret_name="zone2-creds")))
    findings = Cloud().check(
        objects,
        secret=lambda s: s if s.ref.name != "zone2-creds" else SecretFacts(s.ref, SecretState.MISSING),
    )
    assert ids(findings) == ["CAPC-S001"]
    assert "fd-zone2" in findings[0].message and "fd-zone1" not in findings[0].message
