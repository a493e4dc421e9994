"""`read_inventories` with a label selector: only for a namespace or all namespaces, refused with a
cluster name before any request is sent."""

from __future__ import annotations

import pytest

from kubectl_capc.domain.errors import UsageError
from kubectl_capc.kube.read import read_inventories


def test_a_cluster_name_and_a_label_selector_are_refused_before_any_request() -> None:
    with pytest.raises(UsageError, match="a cluster name cannot be combined with -l"):
        read_inventories(None, namespace="prod", cluster="c1", label_selector="env=prod")
