"""Label selector semantics and parsing of the deprecated-API metric."""

from __future__ import annotations

import pytest

from kubectl_capc.domain.checks.workload import (
    DeprecatedApiUse,
    Pod,
    PodDisruptionBudget,
    parse_deprecated_api_metrics,
)
from kubectl_capc.domain.selectors import LabelSelector, Operator, Requirement

APP = {"app": "web", "tier": "front"}
R = Requirement


def S(x: tuple[Requirement, ...]) -> LabelSelector:
    return LabelSelector(match_expressions=x)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (LabelSelector(), {}, True),
        (LabelSelector({"app": "web"}), APP, True),
        (LabelSelector({"app": "db"}), APP, False),
        (LabelSelector({"app": "web"}, (Requirement("tier", Operator.IN, frozenset({"back"})),)), APP, False),
        (
            S(x=(R("tier", Operator.IN, frozenset({"front"})),)),
            APP,
            True,
        ),
        (S(x=(R("zone", Operator.IN, frozenset({"a"})),)), APP, False),
        (
            S(x=(R("zone", Operator.NOT_IN, frozenset({"a"})),)),
            APP,
            True,
        ),
        (
            S(x=(R("app", Operator.NOT_IN, frozenset({"web"})),)),
            APP,
            False,
        ),
        (S(x=(R("app", Operator.EXISTS),)), APP, True),
        (S(x=(R("zone", Operator.EXISTS),)), APP, False),
        (S(x=(R("zone", Operator.DOES_NOT_EXIST),)), APP, True),
        (S(x=(R("app", Operator.DOES_NOT_EXIST),)), APP, False),
    ],
)
def test_selector_semantics(selector: LabelSelector, labels: dict[str, str], expected: bool) -> None:
    assert selector.matches(labels) is expected


def test_unknown_operator_is_refused() -> None:
    with pytest.raises(ValueError):
        Operator("Gt")


def test_pdb_null_selects_none_empty_selects_its_namespace_only() -> None:
    pod = Pod("prod", "web-1", "n1", APP)
    other = Pod("dev", "web-1", "n1", APP)
    null = PodDisruptionBudget("prod", "p", None, 0, 1, 1, 1)
    empty = PodDisruptionBudget("prod", "p", LabelSelector(), 0, 1, 1, 1)
    assert (null.selects(pod), empty.selects(pod), empty.selects(other)) == (False, True, False)


_M = "apiserver_requested_deprecated_apis"
SCRAPE = "\n".join(
    [
        f"# HELP {_M} [STABLE] Gauge of deprecated APIs",
        f"# TYPE {_M} gauge",
        _M + '{group="batch",removed_release="1.25",resource="cronjobs",subresource="",version="v1beta1"} 1',
        _M + '{version="v2beta2",resource="horizontalpodautoscalers",group="autoscaling",'
        'removed_release="1.26"} 1 1700000000000',
        _M + r'{group="x.io",removed_release="",resource="we\"ird\\na\nme",subresource="status",'
        'version="v1",} 1.0',
        _M + '{group="policy",removed_release="1.25",resource="podsecuritypolicies",version="v1beta1"} 0',
        _M + '{group="batch",removed_release="1.25",resource="cronjobs",subresource="",version="v1beta1"} 1',
        _M + '_total{group="a",version="v1",resource="r"} 5',
        'apiserver_request_total{code="200"} 7',
    ]
)


def test_metric_parsing_counts_set_samples_in_any_label_order_with_escapes() -> None:
    assert parse_deprecated_api_metrics(SCRAPE) == [
        DeprecatedApiUse("batch", "v1beta1", "cronjobs", "", "1.25"),
        DeprecatedApiUse("autoscaling", "v2beta2", "horizontalpodautoscalers", "", "1.26"),
        DeprecatedApiUse("x.io", "v1", 'we"ird\\na\nme', "status", ""),
    ]


@pytest.mark.parametrize(
    "line",
    [
        'apiserver_requested_deprecated_apis{group="a" 1',
        "apiserver_requested_deprecated_apis{group=a} 1",
        'apiserver_requested_deprecated_apis{group="a"} one',
    ],
)
def test_malformed_samples_are_refused(line: str) -> None:
    with pytest.raises(ValueError, match="apiserver_requested_deprecated_apis"):
        parse_deprecated_api_metrics(line)


def test_nan_and_empty_scrapes_count_nothing() -> None:
    assert parse_deprecated_api_metrics('apiserver_requested_deprecated_apis{group="a"} NaN\n') == []
    assert parse_deprecated_api_metrics("") == []
