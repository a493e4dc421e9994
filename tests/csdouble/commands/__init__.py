"""The API commands the double implements, by their (case-sensitive) CloudStack names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..params import Context

Handler = Callable[[Context], dict[str, Any]]


@dataclass(frozen=True)
class Command:
    handler: Handler
    response_name: str


def _registry() -> dict[str, Command]:
    from . import (
        catalog,
        jobs,
        resource_limits,
        tags,
        templates_change,
        templates_list,
        templates_register,
        users,
        vms,
    )

    table: dict[str, Command] = {}
    for module in (
        catalog,
        jobs,
        tags,
        templates_change,
        templates_list,
        templates_register,
        resource_limits,
        users,
        vms,
    ):
        for name, (handler, response_name) in module.COMMANDS.items():
            table[name] = Command(handler, response_name or f"{name.lower()}response")
    return table


COMMANDS = _registry()
