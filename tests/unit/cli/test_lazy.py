"""The command tree loads each command on first use, and converts option values as typer would.

`kubectl capc --help` lists the commands from the table in `cli/app.py`; these tests hold the table to
the commands themselves, check that a command's run imports no other command's module, and compare the
option converter of `cli/lazy.py` with typer's own for every option of every command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from kubectl_capc.cli import lazy
from kubectl_capc.cli.app import COMMANDS, app

REPO = Path(__file__).resolve().parents[3]
COMMAND_MODULES = {entry.module for entry in COMMANDS.values()}


def root() -> Any:
    return typer.main.get_command(app)


def every_command(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name in getattr(command, "commands", {}):
        found += every_command(command.commands[name], (*path, name))
    return found


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_table_summary_is_what_the_command_help_lists(name: str) -> None:
    command = root().commands[name]
    for limit in (30, 45, 61, 80, 200):
        assert lazy._short_help(COMMANDS[name].summary, limit) == command.get_short_help_str(limit)


def test_help_lists_every_command_of_the_table_in_order_without_loading_one() -> None:
    group = root()
    formatter = typer.Context(group, info_name="kubectl capc").make_formatter()
    group.format_commands(typer.Context(group, info_name="kubectl capc"), formatter)
    listed = [line.split()[0] for line in formatter.getvalue().splitlines()[1:]]
    assert listed == list(COMMANDS)
    assert not any(group.commands.is_loaded(name) for name in COMMANDS)
    group.commands["version"]  # loading one changes nothing in the listing
    again = typer.Context(group, info_name="kubectl capc").make_formatter()
    group.format_commands(typer.Context(group, info_name="kubectl capc"), again)
    assert again.getvalue() == formatter.getvalue()


def test_an_unknown_command_is_refused_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    from kubectl_capc.__main__ import main

    assert main(["validat"]) == 2
    assert "No such command 'validat'. Did you mean 'validate'?" in capsys.readouterr().err


def loaded_command_modules(*argv: str) -> set[str]:
    probe = (
        "import sys\n"
        "from kubectl_capc.__main__ import main\n"
        f"code = main({list(argv)!r})\n"
        "print(code)\n"
        f"print(sorted(m for m in sys.modules if m in {sorted(COMMAND_MODULES)!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    *_, code, last = done.stdout.strip().splitlines()
    assert code == "0", done.stdout + done.stderr  # a crash before loading anything must not pass
    return set(eval(last))


@pytest.mark.parametrize(
    ("argv", "modules"),
    [
        (("--help",), set()),
        (("version",), {"kubectl_capc.cli.version"}),
        (("validate", "--help"), {"kubectl_capc.cli.validate"}),
        (("image", "list", "--help"), {"kubectl_capc.cli.image"}),
    ],
)
def test_a_command_imports_its_own_module_only(argv: tuple[str, ...], modules: set[str]) -> None:
    assert loaded_command_modules(*argv) == modules


def options() -> list[tuple[str, Any]]:
    found = []
    for path, command in every_command(root()):
        for param in command.params:
            found.append((" ".join((*path, param.name)), param))
    return found


SAMPLES = (
    "",
    " ",
    "0",
    "3",
    " 5 ",
    "=4",
    "1m30s",
    "json",
    " yaml",
    "table",
    "leave",
    "x y",
    "-1",
    "/tmp/a b",
)


def outcome(convert: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        return "value", convert(value, param=param, ctx=ctx)
    except typer.BadParameter as err:
        return "error", err.message
    except Exception as err:  # compared as well: typer's converter raises what it raises
        return type(err).__name__, str(err)


@pytest.mark.parametrize(
    ("label", "param"), options(), ids=lambda value: value if isinstance(value, str) else ""
)
def test_every_option_converts_values_as_typer_does(label: str, param: Any) -> None:
    from typer._coercion import build_runtime_param

    fast = param._runtime_param
    assert isinstance(fast, lazy._FastParam), label  # every option gets the light converter
    typer_own = build_runtime_param(param.type_descriptor)
    ctx = typer.Context(root(), info_name="kubectl capc")
    values: list[Any] = [param.default, *SAMPLES]
    if param.multiple or param.nargs == -1:
        values = [(), ("a",), ("3", "=4"), ("images=1h", "control-plane=0")]
    for value in values:
        if value is None:
            continue
        assert outcome(fast.coerce, value, param, ctx) == outcome(typer_own.coerce, value, param, ctx), (
            label,
            value,
        )


def test_values_the_light_converter_cannot_tell_go_to_typers() -> None:
    from typer.models import OptionInfo

    info = OptionInfo()
    assert lazy._convert(int, info, "7") is lazy._UNHANDLED  # typer parses the text
    assert lazy._convert(int, info, 7) == 7
    assert lazy._convert(int, info, True) is lazy._UNHANDLED  # a bool is no int here
    assert lazy._convert(Path, info, "a") is lazy._UNHANDLED
    assert lazy._convert(list[str], info, ("a", "b")) == ["a", "b"]
    assert lazy._convert(list[int], info, ("1",)) is lazy._UNHANDLED

    def refuse(text: str) -> str:
        raise ValueError(text)

    assert lazy._convert(str, OptionInfo(parser=refuse), "x") is lazy._UNHANDLED  # typer words the error
