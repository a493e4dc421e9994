"""docs/reference.md is exactly what scripts/gen_cli_reference.py makes from the CLI, and that covers
every command and flag, so the command reference cannot drift from the code."""

from __future__ import annotations

import difflib
import subprocess
import sys

import typer

from kubectl_capc.cli.app import PROG_NAME, app
from scripts import gen_cli_reference


def all_commands() -> list[tuple[str, list[str]]]:
    """(command path, its flags) for every command of the CLI."""
    root = typer.main.get_command(app)
    return [
        (ctx.command_path, [opt for p in command.get_params(ctx) for opt in (*p.opts, *p.secondary_opts)])
        for command, ctx in gen_cli_reference.commands(root, typer.Context(root, info_name=PROG_NAME))
    ]


def test_committed_reference_is_the_generated_one() -> None:
    committed = gen_cli_reference.REFERENCE.read_text()
    generated = gen_cli_reference.render()
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True), generated.splitlines(keepends=True), "committed", "generated"
        )
    )
    assert not diff, f"docs/reference.md is out of date; run scripts/gen_cli_reference.py\n{diff}"


def test_reference_has_every_command_and_flag() -> None:
    text = gen_cli_reference.render()
    commands = all_commands()
    assert len(commands) > 5
    for path, flags in commands[1:]:
        assert f"# {path}\n" in text, path
        for flag in flags:
            if flag.startswith("-") and flag not in ("-h", "--help"):
                assert f"`{flag}" in text or f", {flag}" in text or f"/ {flag}" in text, (path, flag)


def test_check_mode_reports_a_stale_reference(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "reference.md"
    stale.write_text(gen_cli_reference.render().replace("## kubectl capc version", "## kubectl capc ver"))
    monkeypatch.setattr(gen_cli_reference, "REFERENCE", stale)
    monkeypatch.setattr(sys, "argv", ["gen_cli_reference.py", "--check"])
    assert gen_cli_reference.main() == 1
    stale.write_text(gen_cli_reference.render())
    assert gen_cli_reference.main() == 0


def test_generator_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, str(gen_cli_reference.REPO / "scripts" / "gen_cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
