"""Kubernetes label selectors (metav1.LabelSelector) with the exact matching rules of the API server.

A selector matches when every `matchLabels` pair and every `matchExpressions` requirement holds. For a
PodDisruptionBudget (policy/v1) an empty selector selects every pod of its namespace and a null one
selects none; the caller models null as `None`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["LabelSelector", "Operator", "Requirement"]


class Operator(str, enum.Enum):
    """The operators `matchExpressions` allows; constructing one from another string raises ValueError."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator is Operator.IN:
            return self.key in labels and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """`matchLabels` AND every `matchExpressions` requirement; empty matches everything."""

    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels.items()) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )
