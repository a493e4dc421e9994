"""Shell completion without servers: cobra's `__complete` output, what each position of the command line
offers (read from the Typer app), `--to` versions, and the time budget of server lookups."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import typer.main

from kubectl_capc.cli.app import app
from kubectl_capc.cli.completion import (
    DEFAULT,
    FILTER_DIRS,
    KEEP_ORDER,
    KNOWN_MINORS,
    NO_FILE_COMP,
    NOTHING,
    Answer,
    Candidate,
    Plan,
    plan,
    read_line,
    render,
    resolve,
    version_candidates,
)
from kubectl_capc.domain.versions import parse_version
from tests.unit.cli.test_kubeconfig import kubeconfig_text, write

REPO = Path(__file__).resolve().parents[3]
ROOT = typer.main.get_command(app)


def values(words: list[str]) -> list[str]:
    return [c.value for c in plan(words).answer.candidates]


def run_completion(*words: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubectl_capc.cli.completion", *words],
        capture_output=True, text=True, timeout=30, cwd=REPO, env={**os.environ, **(env or {})},
    )  # fmt: skip


# -- protocol ----------------------------------------------------------------------------------------


def test_render_prints_a_candidate_a_line_with_its_description_then_the_directive() -> None:
    answer = Answer((Candidate("validate", "Check clusters.\nMore text"), Candidate("version")), NO_FILE_COMP)
    assert render(answer) == "validate\tCheck clusters.\nversion\n:4\n"
    assert render(answer, descriptions=False) == "validate\nversion\n:4\n"
    assert render(NOTHING) == ":4\n"


def test_the_executable_answers_with_or_without_a_leading_complete_word() -> None:
    plain = run_completion("image", "")
    cobra = run_completion("__complete", "image", "")
    bare = run_completion("__completeNoDesc", "image", "")
    assert plain.returncode == cobra.returncode == bare.returncode == 0
    assert plain.stdout == cobra.stdout
    assert plain.stdout.splitlines()[-1] == ":4"
    assert [line.split("\t")[0] for line in plain.stdout.splitlines()] == ["list", "register", "build", ":4"]
    assert bare.stdout == "list\nregister\nbuild\n:4\n"
    assert plain.stderr == cobra.stderr == bare.stderr == ""


# -- commands and flags --------------------------------------------------------------------------------


def test_commands_are_the_apps_own_and_filtered_by_the_typed_prefix() -> None:
    assert values([""]) == list(ROOT.commands)  # type: ignore[attr-defined]
    assert values(["im"]) == ["image-upgrade", "image"]
    assert values(["image", ""]) == ["list", "register", "build"]
    assert values(["image", "r"]) == ["register"]
    described = dict((c.value, c.description) for c in plan([""]).answer.candidates)
    assert described["validate"].startswith("Check that clusters can be upgraded")
    assert plan([""]).answer.directive == NO_FILE_COMP


def test_flags_of_the_current_command_long_and_short_with_the_global_ones() -> None:
    flags = values(["validate", "-"])
    for flag in ("--to", "--strict", "-A", "--all-namespaces", "-n", "--namespace", "--context",
                 "--kubeconfig", "-o", "--output", "--request-timeout", "-v", "--help", "-h"):  # fmt: skip
        assert flag in flags
    assert "--zones" not in flags
    assert {"--zones", "--no-zones"} <= set(values(["describe", "--"]))
    assert values(["validate", "--st"]) == ["--strict"]
    described = dict((c.value, c.description) for c in plan(["validate", "--to"]).answer.candidates)
    assert described == {"--to": "Also check an upgrade to this version: v1.MINOR or v1.MINOR.PATCH."}


def test_a_flag_already_given_is_not_offered_again_unless_it_can_repeat() -> None:
    flags = values(["image-upgrade", "c1", "--dry-run", "--timeout", "1h", "--"])
    assert "--dry-run" not in flags
    assert "--timeout" in flags


def test_enum_and_metavar_choices_complete_a_flags_value() -> None:
    assert values(["validate", "-o", ""]) == ["table", "json", "yaml"]
    assert values(["validate", "--output", "y"]) == ["yaml"]
    assert values(["validate", "--output=j"]) == ["--output=json"]
    assert values(["image-upgrade", "c1", "--image-source", ""]) == ["existing", "url", "prebuilt", "build"]
    assert values(["image", "build", "--hypervisor", "x"]) == ["xenserver"]
    assert values(["validate", "--timeout", ""]) == []  # a free value: nothing to offer


def test_path_flags_leave_completion_to_the_shell() -> None:
    assert plan(["describe", "--kubeconfig", ""]).answer == Answer((), DEFAULT)
    assert plan(["image", "register", "--file", ""]).answer == Answer((), DEFAULT)
    assert plan(["image-upgrade", "c1", "--image-builder-dir", ""]).answer == Answer((), FILTER_DIRS)


def test_contexts_come_from_the_kubeconfig_named_on_the_line_without_its_secrets(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        kubeconfig_text(
            current="dev",
            clusters={"dev": {"server": "https://127.0.0.1:6443"}, "prod": {"server": "https://10.0.0.1"}},
            users={"admin": {"token": "s3cret-token"}},
            contexts={
                "dev": {"cluster": "dev", "user": "admin"},
                "prod": {"cluster": "prod", "user": "admin"},
            },
        ),
    )
    done = run_completion("validate", "--kubeconfig", str(config), "--context", "")
    assert done.stdout == "dev\tcluster dev\nprod\tcluster prod\n:4\n"
    assert values(["validate", f"--kubeconfig={config}", "--context", "p"]) == ["prod"]
    assert "s3cret-token" not in done.stdout + done.stderr


def test_read_line_takes_option_values_in_every_spelling_and_stops_at_double_dash() -> None:
    line = read_line(ROOT, ["validate", "-n=ns1", "--context", "ctx", "--kubeconfig=/k", "c1", ""])
    assert line.given == {"namespace": ["ns1"], "context": ["ctx"], "kubeconfig": ["/k"]}
    assert line.arguments == ["c1"]
    assert read_line(ROOT, ["validate", "-nns2", ""]).value("namespace") == "ns2"
    after = read_line(ROOT, ["validate", "--", "-n", ""])
    assert after.arguments == ["-n"] and after.given == {}
    pending = read_line(ROOT, ["validate", "-n", ""])
    assert pending.pending is not None and pending.pending.name == "namespace"


# -- what needs a server -------------------------------------------------------------------------------


def test_cluster_argument_namespace_and_cluster_flags_plan_a_lookup_and_offer_nothing_without_it() -> None:
    for words in (["validate", ""], ["describe", "-n", "ns", "c"], ["validate", "-n", ""],
                  ["image", "list", "--cluster", ""]):  # fmt: skip
        planned = plan(words)
        assert planned.lookup is not None, words
        assert planned.answer == NOTHING
    assert plan(["validate", "c1", ""]).lookup is None  # validate takes one cluster


def test_to_offers_the_known_minors_at_once_and_looks_up_templates_only_for_a_named_cluster() -> None:
    alone = plan(["validate", "-A", "--to", ""])
    assert alone.lookup is None
    assert [c.value for c in alone.answer.candidates] == [
        f"v1.{m}" for m in sorted(KNOWN_MINORS, reverse=True)
    ]
    assert alone.answer.directive == NO_FILE_COMP | KEEP_ORDER
    assert [c.value for c in plan(["validate", "--to=v1.3"]).answer.candidates][:2] == [
        "--to=v1.37",
        "--to=v1.36",
    ]
    named = plan(["image-upgrade", "c1", "--to", "v1.3"])
    assert named.lookup is not None
    assert all(c.value.startswith("v1.3") for c in named.answer.candidates)


def test_version_candidates_merge_templates_and_known_minors_newest_first_without_downgrades() -> None:
    templates = [
        (parse_version("v1.29.3"), "ubuntu-2204-kube-v1.29.3"),
        (parse_version("v1.29.10"), "ubuntu-2204-kube-v1.29.10"),
        (parse_version("v1.41.2"), "ubuntu-2204-kube-v1.41.2"),
        (parse_version("v1.30.0-rc.1"), "ubuntu-2204-kube-v1.30.0-rc.1"),
    ]
    found = [c.value for c in version_candidates(templates, parse_version("v1.29.5"))]
    newest_known = max(KNOWN_MINORS)
    assert found[:3] == ["v1.41", "v1.41.2", f"v1.{newest_known}"]
    assert found[-3:] == ["v1.30", "v1.29", "v1.29.10"]  # v1.29.3 and v1.28 would be downgrades
    assert "v1.30.0-rc.1" not in found
    described = {c.value: c.description for c in version_candidates(templates)}
    assert described["v1.29.3"] == "ubuntu-2204-kube-v1.29.3"
    assert [c.value for c in version_candidates(templates, partial="1.29")] == ["1.29", "1.29.10", "1.29.3"]


def test_resolve_takes_a_lookup_that_finishes_in_time_and_the_planned_answer_otherwise() -> None:
    found = Answer((Candidate("c1"),))
    assert resolve(Plan(NOTHING, lambda seconds: found), time.monotonic() + 5) == (found, False)

    def fails(seconds: float) -> Answer:
        raise RuntimeError("connection refused")

    assert resolve(Plan(NOTHING, fails), time.monotonic() + 5) == (NOTHING, False)

    release = threading.Event()
    started = time.monotonic()
    late = resolve(Plan(NOTHING, lambda seconds: release.wait(10) and found), started + 0.2)
    release.set()
    assert late == (NOTHING, True)
    assert time.monotonic() - started < 0.5


def test_a_lookup_gets_the_time_left_as_its_request_timeout() -> None:
    seen: list[float] = []

    def lookup(seconds: float) -> Answer:
        seen.append(seconds)
        return NOTHING

    resolve(Plan(NOTHING, lookup), time.monotonic() + 0.5)
    assert 0.3 < seen[0] <= 0.5


def test_the_budget_can_be_set_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubectl_capc.cli.completion import BUDGET_ENV, BUDGET_SECONDS, _budget

    monkeypatch.setenv(BUDGET_ENV, "1500ms")
    assert _budget() == 1.5
    for unusable in ("soon", "0", ""):
        monkeypatch.setenv(BUDGET_ENV, unusable)
        assert _budget() == BUDGET_SECONDS


# -- the executable ------------------------------------------------------------------------------------


def test_static_completion_does_not_import_the_kubernetes_client() -> None:
    probe = (
        "import sys; from kubectl_capc.cli.completion import plan\n"
        "for words in ([''], ['validate', '-'], ['validate', '-o', ''], ['validate', '--to', '']):\n"
        "    plan(words)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'kubernetes', 'cs', 'urllib3'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


def test_a_broken_kubeconfig_offers_nothing_at_once_and_prints_no_error(tmp_path: Path) -> None:
    broken = tmp_path / "config"
    broken.write_text("clusters: [\n  token: s3cret\n")
    from kubectl_capc.cli.completion import BUDGET_ENV

    started = time.monotonic()  # with a budget of 30 s, "at once" is far below it however busy the machine
    done = run_completion("__complete", "validate", "--kubeconfig", str(broken), "", env={BUDGET_ENV: "30s"})
    assert time.monotonic() - started < 10
    assert (done.returncode, done.stdout, done.stderr) == (0, ":4\n", "")


def test_a_line_the_cli_would_reject_still_answers() -> None:
    for words in (
        ["no-such-command", ""],
        ["validate", "--no-such-flag", "-"],
        ["image", "list", "x", "y", ""],
    ):
        done = run_completion(*words)
        assert done.returncode == 0 and done.stdout.endswith(":4\n") and done.stderr == ""


@pytest.mark.parametrize("words", [[""], ["validate", "--"]])
def test_the_completion_module_runs_well_within_the_budget(words: list[str]) -> None:
    """Answers that need no server cost a fraction of the 1 s budget. Counted in CPU seconds of the
    process (start-up included), which a busy machine does not inflate as it does wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = run_completion("__complete", *words)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 0.6, cpu
