"""Round-trip editing of multi-document YAML: only what changes changes, and unsafe input is refused."""

from __future__ import annotations

import copy
import difflib
import functools
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_capc.domain.yaml_rewrite import MAX_NODES, YamlText, YamlTextError, canonical
from tests.testenv.upstream import capc_templates_dir

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "mycluster"

KCP = """\
# The control plane.
---
kind: KubeadmControlPlane   # kind first, as in the CAPC templates
apiVersion: controlplane.cluster.x-k8s.io/v1beta1
metadata:
  name: "c1-control-plane"
spec:
  machineTemplate:
    infrastructureRef:
      kind: CloudStackMachineTemplate
      name: 'c1-control-plane'   # single-quoted on purpose
  replicas: 3
  version: v1.28.5
"""

CSMT = """\
---
# Machines of the control plane.
apiVersion: infrastructure.cluster.x-k8s.io/v1beta3
kind: CloudStackMachineTemplate
metadata:
  name: c1-control-plane
spec:
  template:
    spec:
      offering: {name: Large,   id: ""}
      template:
        name: ubuntu-2204-kube-v1.28.5   # node image
      details:
          odd: indent
...
"""


def _render(flavor: str) -> str:
    """An upstream template with every `${VAR}` filled in (the value is the variable's name)."""
    text = (capc_templates_dir() / flavor).read_text()
    return re.sub(r"\$\{([A-Z0-9_]+)(?:=[^}]*)?\}", lambda match: match.group(1).lower(), text)


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    removed, added = [], []
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0):
        if line.startswith("-") and not line.startswith("---"):
            removed.append(line[1:])
        elif line.startswith("+") and not line.startswith("+++"):
            added.append(line[1:])
    return removed, added


def edited(value: Any, **changes: Any) -> Any:
    result = copy.deepcopy(value)
    for path, new in changes.items():
        node = result
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = new
    return result


# -- splitting and identity -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        KCP + CSMT,
        "",
        "# only a comment\n",
        "---\n---\na: 1\n",
        "a: 1",  # no newline at the end
        "a: |\n  x\n\n\n# c\nb: 2 # end\n# trailing\n---\n# head\n[1, 2]\n...\n",
        "--- |\n  text\n",
        "--- !!map\nx: 1\n",
        "a: 1\r\nb: [x, y]\r\n---\r\nc: 2\r\n",
        "base: &b {x: 1}\nuse: *b\nmerged:\n  <<: *b\n  y: 2\n",
        "a:\n  - \n\n# c\n---\nb: 1\n",  # a null sequence item, then a comment
        "a: 1\nb:\n# c\n",  # a null value, then a comment
    ],
)
def test_rendering_without_changes_gives_back_the_same_bytes(text: str) -> None:
    assert YamlText.parse(text).render() == text


def test_documents_keep_their_heads_lines_and_values() -> None:
    parsed = YamlText.parse(KCP + CSMT)
    first, second = parsed.documents
    assert first.head == "# The control plane.\n---\n"
    assert first.line == 3
    assert first.value["spec"]["version"] == "v1.28.5"
    assert second.head == "---\n# Machines of the control plane.\n"
    assert second.body.startswith("apiVersion:")
    assert second.value["spec"]["template"]["spec"]["offering"] == {"name": "Large", "id": ""}
    assert parsed.tail == "...\n"


@pytest.mark.parametrize(
    "flavor", sorted(p.name for p in capc_templates_dir().glob("cluster-template*.yaml"))
)
def test_every_upstream_template_flavor_round_trips_and_loads_like_pyyaml(flavor: str) -> None:
    text = _render(flavor)
    parsed = YamlText.parse(text)
    assert parsed.render() == text
    assert [d.value for d in parsed.documents] == [d for d in yaml.safe_load_all(text) if d is not None]


# -- edits ----------------------------------------------------------------------------------------


def test_a_scalar_edit_changes_that_line_only_and_keeps_quoting_and_comments() -> None:
    parsed = YamlText.parse(KCP + CSMT)
    kcp = parsed.documents[0].value
    new = edited(
        kcp,
        spec__version="v1.29.3",
        spec__machineTemplate__infrastructureRef__name="c1-control-plane-v1-29-3",
    )
    out = parsed.render({0: new})
    removed, added = changed_lines(KCP + CSMT, out)
    assert removed == ["      name: 'c1-control-plane'   # single-quoted on purpose", "  version: v1.28.5"]
    assert added == [
        "      name: 'c1-control-plane-v1-29-3'   # single-quoted on purpose",
        "  version: v1.29.3",
    ]
    assert YamlText.parse(out).documents[0].value == new


def test_an_inserted_copy_follows_its_source_with_its_body_comments_but_not_its_head() -> None:
    parsed = YamlText.parse(KCP + CSMT)
    source = parsed.documents[1].value
    clone = edited(source, metadata={"name": "c1-control-plane-v1-29-3", "annotations": {"a": "b"}})
    clone["spec"]["template"]["spec"]["template"] = {"name": "ubuntu-2204-kube-v1.29.3"}
    out = parsed.render(insertions={1: [clone]})
    assert out.startswith(KCP + CSMT[: -len("...\n")])  # everything before stays as it was
    inserted = out[len(KCP + CSMT) - len("...\n") :]
    assert inserted == (
        "---\n"
        "apiVersion: infrastructure.cluster.x-k8s.io/v1beta3\n"
        "kind: CloudStackMachineTemplate\n"
        "metadata:\n"
        "  name: c1-control-plane-v1-29-3\n"
        "  annotations:\n"
        "    a: b\n"
        "spec:\n"
        "  template:\n"
        "    spec:\n"
        '      offering: {name: Large,   id: ""}\n'
        "      template:\n"
        "        name: ubuntu-2204-kube-v1.29.3   # node image\n"
        "      details:\n"
        "          odd: indent\n"
        "...\n"
    )
    assert [d.value for d in YamlText.parse(out).documents] == [parsed.documents[0].value, source, clone]


def test_insertion_after_a_last_document_without_a_final_newline() -> None:
    text = "a: 1\n---\nname: x"
    out = YamlText.parse(text).render(insertions={1: [{"name": "y"}]})
    assert out == "a: 1\n---\nname: x\n---\nname: y"  # as the file, without a final newline


@pytest.mark.parametrize(
    ("text", "indent"),
    [
        ("metadata:\n    name: a\nspec:\n    items:\n    - one\n", "    "),
        ("metadata:\n  name: a\nspec:\n  items:\n  - one\n", "  "),
    ],
)
def test_new_keys_follow_the_documents_own_indentation(text: str, indent: str) -> None:
    parsed = YamlText.parse(text)
    value = edited(parsed.documents[0].value, metadata={"name": "a", "labels": {"k": "v"}})
    value["spec"]["items"] = ["one", "two"]
    out = parsed.render({0: value})
    assert f"{indent}labels:\n{indent}{indent}k: v\n" in out
    assert YamlText.parse(out).documents[0].value == value


def test_lines_ruamel_would_reformat_keep_their_bytes_when_untouched() -> None:
    text = "a:   1\nb: [x,y]\nc: {k:  v}\nversion: v1.28.5\nd: 'single'\n"
    parsed = YamlText.parse(text)
    out = parsed.render({0: edited(parsed.documents[0].value, version="v1.29.3")})
    assert out == text.replace("v1.28.5", "v1.29.3")


def test_crlf_files_stay_crlf() -> None:
    text = "a: 1\r\nversion: v1\r\n"
    parsed = YamlText.parse(text)
    assert parsed.render({0: {"a": 1, "version": "v2"}}) == "a: 1\r\nversion: v2\r\n"


def test_new_strings_a_yaml_1_1_reader_would_misread_are_quoted() -> None:
    parsed = YamlText.parse("a: x\n")
    out = parsed.render({0: {"a": "x", "b": "yes", "c": "0777", "d": "1.10", "e": "plain"}})
    assert out == 'a: x\nb: "yes"\nc: "0777"\nd: "1.10"\ne: plain\n'
    assert yaml.safe_load(out) == {"a": "x", "b": "yes", "c": "0777", "d": "1.10", "e": "plain"}


def test_types_are_compared_strictly() -> None:
    assert canonical({"a": 1}) != canonical({"a": "1"})
    assert canonical({"a": True}) != canonical({"a": 1})
    assert canonical({"a": 1, "b": 2}) == canonical({"b": 2, "a": 1})
    parsed = YamlText.parse("port: 6443\n")
    assert parsed.render({0: {"port": "6443"}}) == 'port: "6443"\n'


def test_a_mapping_in_a_compact_nested_sequence_keeps_to_the_original_columns() -> None:
    """The original writes `- - item` where ruamel would write `-   - item`: the lines of the new
    mapping follow the original's columns, and the untouched item after it keeps its bytes."""
    parsed = YamlText.parse("mounts:\n  - - LABEL=data\n    - /data\n")
    out = parsed.render({0: {"mounts": [[{"name": "data", "k": "x"}, "/data"]]}})
    assert out == "mounts:\n  - - name: data\n      k: x\n    - /data\n"


def test_an_edit_whose_serialisation_drops_lines_is_applied() -> None:
    """Found by the property below: emptying these leaves of the example's health checks makes ruamel's
    text lose lines against the original's; the lines are dropped, not mapped to a line that is gone."""
    parsed = YamlText.parse("".join(p.read_text() for p in sorted(EXAMPLE.glob("*.yaml"))))
    for document in parsed.documents:
        if not document.value or document.value.get("kind") != "MachineHealthCheck":
            continue
        value = copy.deepcopy(document.value)
        value["apiVersion"] = value["kind"] = ""
        value["spec"]["unhealthyConditions"][0]["timeout"] = ""
        value["spec"]["unhealthyConditions"][1]["status"] = ""
        out = YamlText.parse(parsed.render({document.index: value}))
        assert canonical(out.documents[document.index].value) == canonical(value)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_edits_of_any_leaves_give_exactly_the_wanted_documents(data: st.DataObject) -> None:
    """Property: whatever leaves change, the result loads to the wanted values, other documents and
    every line outside the edited documents keep their bytes."""
    parsed = _parsed_example()
    indices = [d.index for d in parsed.documents if d.value]
    chosen = data.draw(st.sets(st.sampled_from(indices), min_size=1, max_size=3))
    replacements = {}
    for index in chosen:
        value = copy.deepcopy(parsed.documents[index].value)
        leaves = list(_leaves(value))
        for path in data.draw(st.lists(st.sampled_from(leaves), min_size=1, max_size=4, unique=True)):
            new = data.draw(
                st.one_of(
                    st.text(alphabet="abcxyz-.019 :#'\"", max_size=12),
                    st.integers(-5, 5),
                    st.booleans(),
                    st.none(),
                    st.dictionaries(st.sampled_from(["k", "name"]), st.text("ab", max_size=3), max_size=2),
                    st.lists(st.text("ab#", max_size=2), max_size=2),
                )
            )
            _set(value, path, new)
        replacements[index] = value
    out = parsed.render(replacements)
    result = YamlText.parse(out)
    assert len(result.documents) == len(parsed.documents)
    for before, after in zip(parsed.documents, result.documents, strict=True):
        if before.index in replacements:
            assert canonical(after.value) == canonical(replacements[before.index])
        else:
            assert (after.head, after.body) == (before.head, before.body)


@functools.cache
def _parsed_example() -> YamlText:
    """The example parsed once for every example of the property (rendering leaves it as it is)."""
    return YamlText.parse("".join(p.read_text() for p in sorted(EXAMPLE.glob("*.yaml"))))


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Any:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path


def _set(value: Any, path: tuple[Any, ...], new: Any) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = new


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1, 2\n", "line 2"),
        ("a: 1\na: 2\n", "duplicate"),
        ("a: *nowhere\n", "unknown"),
        ("a: 1\r\nb: 2\n", "mixes CRLF and LF"),
        ("[" * 70 + "]" * 70 + "\n", "nested deeper than 64"),
        ("k: \x07\n", "special characters"),
    ],
)
def test_invalid_input_is_refused_with_one_line(text: str, message: str) -> None:
    with pytest.raises(YamlTextError) as err:
        YamlText.parse(text)
    assert message in str(err.value).lower() or message in str(err.value)
    assert "\n" not in str(err.value)


def test_an_alias_bomb_is_refused_before_it_is_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    started = time.monotonic()
    with pytest.raises(YamlTextError, match=f"more than {MAX_NODES} nodes"):
        YamlText.parse("\n".join(lines) + "\n")
    assert time.monotonic() - started < 5


def test_a_modest_use_of_anchors_is_accepted() -> None:
    parsed = YamlText.parse("defaults: &d {cpu: 2}\nsmall: *d\nlarge:\n  <<: *d\n  cpu: 4\n")
    assert parsed.documents[0].value == {"defaults": {"cpu": 2}, "small": {"cpu": 2}, "large": {"cpu": 4}}


def test_a_huge_document_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import kubectl_capc.domain.yaml_rewrite as module

    monkeypatch.setattr(module, "MAX_DOCUMENT_BYTES", 1000)
    YamlText.parse("a: " + "x" * 900 + "\n---\nb: " + "y" * 900 + "\n")
    with pytest.raises(YamlTextError, match="document at line 3 is larger than"):
        YamlText.parse("a: 1\n---\nb: " + "y" * 1100 + "\n")


def test_a_document_ends_with_its_last_content_line_even_a_null_item() -> None:
    first, second = YamlText.parse("a:\n  - \n\n# about b\n---\nb: 1\n").documents
    assert (first.body, first.value) == ("a:\n  - \n", {"a": [None]})
    assert second.head == "\n# about b\n---\n"
