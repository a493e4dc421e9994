"""Start-up support for the command tree: commands loaded on first use, and option values converted
without pydantic.

- `LazyGroup` is a command group whose commands are named in a table (`LazyCommand`: the module, the
  attribute and the one-line summary) and imported only when one is used. `kubectl capc --help` lists
  them from the table, and `kubectl capc version` imports the version command's module alone, not the
  upgrade, image and status modules and what they import.
- `fast_coercion` gives each option of a command a converter for the values this plugin's options take
  (a `parser=` function, a string, a default already of the declared type, `None`). typer's own
  converter builds a pydantic `TypeAdapter` for every option, and imports pydantic to do it (about 50 ms,
  plus several milliseconds per option); any other value is still handed to typer's converter, so
  what typer accepts and the errors it prints stay the same.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, get_args, get_origin

import typer
import typer.core
import typer.main

__all__ = ["LazyCommand", "LazyGroup", "fast_coercion"]


@dataclass(frozen=True)
class LazyCommand:
    """A command of a `LazyGroup`: `attribute` of `module` is a command function or a `typer.Typer`;
    `summary` is the first sentence of its help, what the group's help lists before it is loaded."""

    module: str
    attribute: str
    summary: str

    def load(self, name: str, parent: typer.Typer) -> Any:
        """The click command for `name`, built the way typer builds the commands registered on `parent`."""
        target = getattr(importlib.import_module(self.module), self.attribute)
        if isinstance(target, typer.Typer):
            command: Any = typer.main.get_group_from_info(
                typer.models.TyperInfo(target, name=name),
                pretty_exceptions_short=parent.pretty_exceptions_short,
                rich_markup_mode=parent.rich_markup_mode,
                suggest_commands=parent.suggest_commands,
            )
        else:
            command = typer.main.get_command_from_info(
                typer.models.CommandInfo(name=name, callback=target),
                pretty_exceptions_short=parent.pretty_exceptions_short,
                rich_markup_mode=parent.rich_markup_mode,
            )
        fast_coercion(command)
        return command


class _Commands(MutableMapping[str, Any]):
    """The group's commands by name, in table order; a lazy one is built on first access."""

    def __init__(
        self, loaded: Mapping[str, Any], lazy: Mapping[str, LazyCommand], parent: typer.Typer
    ) -> None:
        self._order = [*lazy, *(name for name in loaded if name not in lazy)]
        self._loaded = dict(loaded)
        self._lazy = dict(lazy)
        self._parent = parent

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            entry = self._lazy[name]  # KeyError for an unknown name, as a dict
            self._loaded[name] = entry.load(name, self._parent)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._order:
            self._order.append(name)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._order.remove(name)
        self._loaded.pop(name, None)
        self._lazy.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._order


class LazyGroup(typer.core.TyperGroup):
    """A `TyperGroup` whose commands come from `table` (set by a subclass, see `with_table`), besides
    those registered on the Typer app itself."""

    table: ClassVar[Mapping[str, LazyCommand]] = {}
    app: ClassVar[typer.Typer | None] = None

    def __init__(self, *, commands: Any = None, **attrs: Any) -> None:
        super().__init__(commands=commands, **attrs)
        for command in self.commands.values():
            fast_coercion(command)
        self.commands = _Commands(self.commands, self.table, self.app or typer.Typer())

    @classmethod
    def with_table(cls, table: Mapping[str, LazyCommand]) -> type[LazyGroup]:
        """A subclass serving `table`; give it to `typer.Typer(cls=...)`, then call `bind(app)`."""
        return type(cls.__name__, (cls,), {"table": dict(table)})

    @classmethod
    def bind(cls, app: typer.Typer) -> None:
        """Build the table's commands with `app`'s settings (pretty exceptions, markup mode)."""
        cls.app = app

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _fast_coercion_of(option)
        return option

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def short_helps(self, limit: int) -> dict[str, str]:
        """Each visible command's one-line help, as click shows it; a command not loaded yet is
        described from its summary in the table, without importing it."""
        commands = self.commands
        assert isinstance(commands, _Commands)
        helps = {}
        for name in commands:
            if not commands.is_loaded(name):
                helps[name] = _short_help(self.table[name].summary, limit)
            elif not commands[name].hidden:
                helps[name] = commands[name].get_short_help_str(limit)
        return helps

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """As typer's, but a command not loaded yet is listed with its summary from the table."""
        names = self.short_helps(limit=80)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        with formatter.section("Commands"):
            formatter.write_dl(list(self.short_helps(limit).items()))


def _short_help(text: str, limit: int) -> str:
    """What click shows for a command's help in a group's listing, from its text."""
    from typer._click.utils import make_default_short_help

    return make_default_short_help(text, limit)


# Converting option values


def fast_coercion(command: Any) -> None:
    """Give each parameter of `command` (and of its subcommands, when loaded) the converter of
    `_FastParam`, and its help option too once click makes it; a typer release without the converter
    interface keeps its own."""
    for param in getattr(command, "params", ()):
        _fast_coercion_of(param)
    if "get_help_option" not in vars(command):
        make_help_option = command.get_help_option

        def get_help_option(ctx: Any) -> Any:
            option = make_help_option(ctx)
            _fast_coercion_of(option)
            return option

        command.get_help_option = get_help_option
    commands = getattr(command, "commands", None)
    if isinstance(commands, dict):
        for sub in commands.values():
            fast_coercion(sub)


def _fast_coercion_of(param: Any) -> None:
    if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
        fast = _fast_param(param.type_descriptor)
        if fast is not None:
            param._runtime_param = fast


def _fast_param(descriptor: Any) -> Any:
    if _RuntimeParam is None or descriptor.file_annotation is not None:
        return None
    return _FastParam(
        parameter_info=descriptor.parameter_info, annotation=descriptor.annotation, descriptor=descriptor
    )


def _typer_runtime_param() -> Any:
    try:
        from typer._coercion import RuntimeParam
    except ImportError:  # another typer release: its own converter stays
        return None
    return RuntimeParam


_RuntimeParam: Any = _typer_runtime_param()
if _RuntimeParam is not None:

    @dataclass(frozen=True)
    class _FastParam(_RuntimeParam):  # type: ignore[misc]
        """Converts the values `_convert` can tell apart without pydantic, and hands the rest to typer."""

        descriptor: Any = field(default=None)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            converted = _convert(self.annotation, self.parameter_info, value)
            if converted is _UNHANDLED:
                return self._typer_param._coerce_value(value, param=param, ctx=ctx)
            return converted

        @cached_property
        def _typer_param(self) -> Any:
            from typer._coercion import build_runtime_param

            return build_runtime_param(self.descriptor)


_UNHANDLED = object()


def _convert(annotation: Any, info: Any, value: Any) -> Any:
    """`value` as typer's converter would return it, or `_UNHANDLED` when this cannot tell."""
    if get_origin(annotation) is list:
        if not isinstance(value, (list, tuple)):
            value = [value]
        (item_type,) = get_args(annotation)
        items = [_convert(item_type, info, item) for item in value]
        return _UNHANDLED if any(item is _UNHANDLED for item in items) else items
    if info.parser is not None:
        try:
            return info.parser(value)
        except (ValueError, AssertionError):
            return _UNHANDLED  # typer words these errors through pydantic
    if annotation is str:
        return value if isinstance(value, str) else _UNHANDLED
    if isinstance(annotation, type) and type(value) is annotation:
        return value  # a default already of its type: an int, a float, an enum member, a Path
    return _UNHANDLED
