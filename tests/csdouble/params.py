"""Request parameters as CloudStack's ParamProcessWorker reads them, with its error texts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import ApiError, param_error
from .model import Account
from .state import State

T = TypeVar("T")
_MAP_KEY = re.compile(r"^(?P<name>[a-z]+)\[(?P<index>\d+)\]\.(?P<field>.+)$")


@dataclass
class Context:
    """One API call: the state, the authenticated caller and the raw parameters."""

    state: State
    caller: Account
    command: str
    raw: Mapping[str, str]
    response_name: str = ""

    @property
    def api_name(self) -> str:
        """The name CloudStack uses in its error texts: the response name without "response"
        (`postuploadtemplate` for getUploadParamsForTemplate), else the lower-case command name."""
        return self.response_name.removesuffix("response") or self.command.lower()

    def has(self, name: str) -> bool:
        return name in self.raw

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.raw.get(name)
        if value is None and required:
            raise param_error(
                f"Unable to execute API command {self.api_name} due to missing parameter {name}"
            )
        return value

    def required(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def flag(self, name: str) -> bool | None:
        """Boolean.valueOf: only a case-insensitive 'true' is true."""
        value = self.raw.get(name)
        return None if value is None else value.lower() == "true"

    def integer(self, name: str) -> int | None:
        value = self.raw.get(name)
        if value is None or not value.strip():
            return None
        try:
            return int(value)
        except ValueError:
            raise self.invalid_value(name, value) from None

    def invalid_value(self, name: str, value: str) -> ApiError:
        return param_error(
            f"Unable to execute API command {self.api_name} due to invalid value {value} for parameter {name}"
        )

    def entity(self, name: str, table: Mapping[str, T], required: bool = False) -> T | None:
        """A UUID parameter resolved against `table`; unknown ids fail like CloudStack's."""
        value = self.text(name, required)
        if value is None:
            return None
        found = table.get(value)
        if found is None:
            raise self.unknown_uuid(name, value)
        return found

    def unknown_uuid(self, name: str, value: str) -> ApiError:
        return param_error(
            f"Unable to execute API command {self.api_name} due to invalid value. Invalid parameter {name} "
            f"value={value} due to incorrect long value format, or entity does not exist or due to incorrect "
            "parameter annotation for the field in api cmd class."
        )

    def csv(self, name: str, required: bool = False) -> list[str] | None:
        value = self.text(name, required)
        if value is None:
            return None
        return [token for token in value.split(",") if token]

    def uuid_list(self, name: str, table: Mapping[str, Any], required: bool = False) -> list[str] | None:
        """A comma-separated UUID list; "-1" passes through (CloudStack's 'all zones')."""
        values = self.csv(name, required)
        if values is None:
            return None
        for value in values:
            if value != "-1" and value not in table:
                raise self.unknown_uuid(name, value)
        return values

    def groups(self, name: str) -> list[dict[str, str]]:
        """`name[i].field=value` parameters grouped by index, in index order."""
        groups: dict[int, dict[str, str]] = {}
        for key, value in self.raw.items():
            match = _MAP_KEY.match(key)
            if match and match["name"] == name:
                groups.setdefault(int(match["index"]), {})[match["field"]] = value
        return [groups[i] for i in sorted(groups)]

    def key_value_map(self, name: str) -> dict[str, str]:
        """A `name[i].key/.value` map such as tags (pairs without a key are ignored)."""
        return {g["key"]: g.get("value", "") for g in self.groups(name) if "key" in g}


def keyword_match(keyword: str | None, *texts: str) -> bool:
    """SQL `LIKE %keyword%` under MySQL's case-insensitive collation."""
    return keyword is None or any(keyword.lower() in text.lower() for text in texts)


def same_name(a: str, b: str) -> bool:
    """Name equality as CloudStack's database compares it (case-insensitive collation)."""
    return a.lower() == b.lower()
