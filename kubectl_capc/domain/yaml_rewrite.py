"""Edit documents of multi-document YAML files the way a person would: touch only what changes.

GitOps users review the upgrade as a diff of their own files, so everything the upgrade does not change
must stay byte-for-byte as it was: other documents, comments, key order, quoting, indentation, blank
lines. `YamlText.parse` splits a file into documents (each with the comments above it as its `head`),
loads each with ruamel.yaml's round-trip loader and checks the input is safe to expand (size, nesting
and alias limits). `YamlText.render` returns the file with some documents replaced by new values and
new documents inserted after the ones they are copied from.

A changed document is edited on its ruamel node tree (existing nodes, and so their comments and quoting,
are kept wherever the value is unchanged), serialised, and the lines the edit changed are transplanted
into the original text: the rest of the document keeps its original bytes even where ruamel would have
formatted it differently. Every result is loaded again and must equal the value asked for, so a file is
never written with anything but the intended content.
"""

from __future__ import annotations

import difflib
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    NodeEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "Document",
    "YamlText",
    "YamlTextError",
    "canonical",
    "to_plain",
]

MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_DOCUMENT_BYTES = 3 * 1024 * 1024
"""Twice what etcd stores per object by default: a larger document cannot be a Kubernetes object."""
MAX_NODES = 200_000
"""Nodes of one document once every alias is expanded: stops "billion laughs" alias bombs."""
MAX_DEPTH = 64
"""Nesting of collections in one document; Kubernetes objects are far shallower."""

_DEFAULT_INDENT = (2, 4, 2)  # mapping, sequence, offset: the style of kubectl and the CAPC templates


class YamlTextError(ValueError):
    """The text is not YAML this module will read or edit; the message is one line."""


@dataclass(frozen=True)
class Document:
    """One document of a file: `head` (comments, blank lines, `---` before it), `body` (its text from
    its first to its last content line) and `value` (plain dicts, lists and scalars; None when empty)."""

    index: int
    line: int
    head: str
    body: str
    value: Any


@dataclass(frozen=True)
class YamlText:
    """A multi-document YAML text split into documents; `tail` is whatever follows the last one."""

    documents: tuple[Document, ...]
    tail: str
    newline: str = "\n"

    @classmethod
    def parse(cls, text: str) -> YamlText:
        """Split and load `text`; raises YamlTextError for invalid, oversized or alias-bomb input."""
        if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
            raise YamlTextError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        newline = "\r\n" if "\r\n" in text else "\n"
        if newline != "\n" and text.count("\r\n") != text.count("\n"):
            raise YamlTextError("mixes CRLF and LF line ends")
        text = text.replace("\r\n", "\n")
        spans = _document_spans(text)
        documents = []
        previous_end = 0
        for index, (start, end) in enumerate(spans):
            body = text[start:end]
            if len(body.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
                line = text.count("\n", 0, start) + 1
                raise YamlTextError(
                    f"document at line {line} is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB"
                )
            value = to_plain(_load(body)) if body else None
            documents.append(
                Document(index, text.count("\n", 0, start) + 1, text[previous_end:start], body, value)
            )
            previous_end = max(previous_end, end)
        return cls(tuple(documents), text[previous_end:], newline)

    def render(
        self,
        replacements: Mapping[int, Any] | None = None,
        insertions: Mapping[int, Sequence[Any]] | None = None,
    ) -> str:
        """The text with document `i` changed to `replacements[i]`, and after it new documents with the
        values `insertions[i]`, each written as an edited copy of document `i`'s text.

        Raises YamlTextError when an edit cannot be expressed without reformatting unrelated lines.
        """
        replacements = replacements or {}
        insertions = insertions or {}
        parts: list[str] = []
        expected: list[Any] = []
        for document in self.documents:
            body = document.body
            value = document.value
            if document.index in replacements:
                value = replacements[document.index]
                body = _edited(document, value)
            parts += [document.head, body]
            expected.append(value)
            for new_value in insertions.get(document.index, ()):
                if parts[-1] and not parts[-1].endswith("\n"):
                    parts[-1] += "\n"
                parts += ["---\n", _edited(document, new_value)]
                expected.append(new_value)
        parts.append(self.tail)
        text = "".join(parts)
        _verify(text, expected)
        return text.replace("\n", self.newline) if self.newline != "\n" else text


def canonical(value: Any) -> str:
    """A comparison key that tells `1` from `"1"` and `true` from `1`, and ignores key order."""
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except TypeError:  # keys of mixed types cannot be sorted
        return repr(value)


def to_plain(node: Any) -> Any:
    """ruamel's round-trip objects as plain dicts, lists, str, int, float, bool and None."""
    if isinstance(node, Mapping):
        return {(str(k) if isinstance(k, str) else k): to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(item) for item in node]
    if isinstance(node, (bool, ScalarBoolean)):
        return bool(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, date):
        return node.isoformat()
    return node


# -- reading --------------------------------------------------------------------------------------


def _round_trip_yaml(indent: tuple[int, int, int] = _DEFAULT_INDENT) -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    yaml.width = 1 << 30  # never fold long lines
    mapping, sequence, offset = indent
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _load(text: str) -> Any:
    try:
        return _round_trip_yaml().load(text)
    except RecursionError:
        raise YamlTextError("nested too deeply") from None
    except YAMLError as err:
        raise YamlTextError(_describe(err)) from None


def _describe(err: YAMLError) -> str:
    if isinstance(err, MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = err.problem or err.context or "invalid YAML"
        return " ".join(f"{where}{problem}".split())
    return " ".join(str(err).split()) or "invalid YAML"


def _events(text: str) -> Iterable[Event]:
    try:
        yield from _round_trip_yaml().parse(text)
    except YAMLError as err:
        raise YamlTextError(_describe(err)) from None


def _document_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of each document's body: whole lines from its first to its last content.

    Empty documents get an empty span. Also enforces MAX_NODES and MAX_DEPTH on the event stream, before
    anything is constructed, so an alias bomb is refused without being expanded.
    """
    spans: list[tuple[int, int]] = []
    counter = _NodeCounter()
    first = last = -1
    for event in _events(text):
        if isinstance(event, DocumentStartEvent):
            first = last = -1
            counter = _NodeCounter()
        elif isinstance(event, DocumentEndEvent):
            if first < 0:
                spans.append((event.start_mark.index, event.start_mark.index))
            else:
                spans.append((_line_start(text, first), _line_end(text, last)))
        elif isinstance(event, NodeEvent):
            in_sequence = counter.in_sequence
            counter.add(event)
            if _is_empty_scalar(event):
                # A null with nothing written: its mark is right after its `-` in a sequence, but may be
                # lines further on after a mapping key (whose own line already counts).
                if in_sequence:
                    last = max(last, event.end_mark.index)
                continue
            if first < 0:
                first = event.start_mark.index
            if isinstance(event, (ScalarEvent, AliasEvent)):
                last = max(last, event.end_mark.index)
        elif isinstance(event, (MappingEndEvent, SequenceEndEvent)) and counter.close():
            last = max(last, event.end_mark.index)  # the closing bracket of a flow collection
    return spans


def _is_empty_scalar(event: Event) -> bool:
    return (
        isinstance(event, ScalarEvent)
        and event.value == ""
        and event.start_mark.index == event.end_mark.index
        and event.anchor is None
    )


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """The end of the line holding the character before `index` (a content end offset), newline included."""
    if index > 0 and text[index - 1] == "\n":
        return index
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


class _NodeCounter:
    """Counts one document's nodes as they would be after alias expansion, and its nesting depth."""

    def __init__(self) -> None:
        self._anchors: dict[str, int] = {}
        # Per open collection: anchor, nodes so far, flow style, is a sequence.
        self._open: list[list[Any]] = [[None, 0, False, False]]
        self._total = 0

    @property
    def in_sequence(self) -> bool:
        """The next node is an item of a sequence."""
        return bool(self._open[-1][3])

    def add(self, event: NodeEvent) -> None:
        line = event.start_mark.line + 1
        if isinstance(event, AliasEvent):
            size = self._anchors.get(str(event.anchor))
            if size is None:
                raise YamlTextError(
                    f"line {line}: alias *{event.anchor} refers to an unknown or unfinished anchor "
                    "(recursive data is not accepted)"
                )
            self._count(size, line)
        elif isinstance(event, CollectionStartEvent):
            if len(self._open) > MAX_DEPTH:
                raise YamlTextError(f"line {line}: nested deeper than {MAX_DEPTH} levels")
            self._open.append(
                [event.anchor, 0, bool(event.flow_style), isinstance(event, SequenceStartEvent)]
            )
            self._count(1, line)
        else:
            self._count(1, line)
            if event.anchor is not None:
                self._anchors[str(event.anchor)] = 1

    def close(self) -> bool:
        """A collection ends; True when it was written in flow style (`[...]`, `{...}`)."""
        anchor, size, flow, _ = self._open.pop()
        if anchor is not None:
            self._anchors[str(anchor)] = size
        self._open[-1][1] += size
        return bool(flow)

    def _count(self, size: int, line: int) -> None:
        self._open[-1][1] += size
        self._total += size
        if self._total > MAX_NODES:
            raise YamlTextError(f"line {line}: more than {MAX_NODES} nodes once aliases are expanded")


# -- editing --------------------------------------------------------------------------------------


def _edited(document: Document, value: Any) -> str:
    """`document`'s body changed to `value`, keeping every line the change does not touch."""
    if not document.body:
        raise YamlTextError(f"document at line {document.line} is empty and cannot be edited")
    yaml = _round_trip_yaml(_guess_indent(document.body))
    data = _load(document.body)
    before = _dump(yaml, data)
    after = _dump(yaml, _reconcile(data, value))
    return _transplant(document.body, before, after, document.line)


def _dump(yaml: YAML, data: Any) -> str:
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


@dataclass
class _Frame:
    """An open block collection while guessing indentation."""

    mapping: bool
    column: int  # of its keys (mapping) or dashes (sequence)
    key_column: int  # of the key that holds it
    flow: bool
    at_key: bool = True


def _guess_indent(text: str) -> tuple[int, int, int]:
    """The document's most common indentation as ruamel's (mapping, sequence, offset), from event columns.

    mapping: nested keys relative to their parent key; offset: a dash relative to the key holding the
    sequence; sequence: an item's content relative to that key.
    """
    mapping: Counter[int] = Counter()
    sequence: Counter[int] = Counter()
    offset: Counter[int] = Counter()
    stack: list[_Frame] = []
    for event in _events(text):
        if isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            stack.pop()
            continue
        if not isinstance(event, NodeEvent):
            continue
        column = event.start_mark.column
        parent = stack[-1] if stack else None
        block = isinstance(event, CollectionStartEvent) and not event.flow_style
        if parent is not None and not parent.flow:
            if parent.mapping and not parent.at_key and block:
                counter = offset if isinstance(event, SequenceStartEvent) else mapping
                counter[column - parent.column] += 1
            elif not parent.mapping and parent.key_column >= 0:
                sequence[column - parent.key_column] += 1
            if parent.mapping:
                parent.at_key = not parent.at_key
        if isinstance(event, CollectionStartEvent):
            holder = parent.column if parent is not None and parent.mapping else -1
            mapping_start = not isinstance(event, SequenceStartEvent)
            stack.append(_Frame(mapping_start, column, holder, not block))

    def most_common(counter: Counter[int], default: int, minimum: int) -> int:
        found = [value for value, _ in counter.most_common() if value >= minimum]
        return found[0] if found else default

    mapping_indent = most_common(mapping, _DEFAULT_INDENT[0], 1)
    seq_offset = most_common(offset, _DEFAULT_INDENT[2], 0)
    seq_indent = most_common(sequence, seq_offset + 2, seq_offset + 2)
    return mapping_indent, seq_indent, seq_offset


def _reconcile(node: Any, value: Any) -> Any:
    """`node` changed in place to equal `value`; unchanged parts keep their nodes (comments, quoting)."""
    if isinstance(node, CommentedMap) and isinstance(value, Mapping):
        for key in [key for key in node if key not in value]:
            del node[key]
        wanted = list(value)
        for position, key in enumerate(wanted):
            if key in node:
                node[key] = _reconcile(node[key], value[key])
            else:
                before = [k for k in wanted[:position] if k in node]
                index = list(node).index(before[-1]) + 1 if before else 0
                node.insert(index, key, _new_node(value[key]))
        return node
    if isinstance(node, CommentedSeq) and isinstance(value, list) and len(node) == len(value):
        for index, item in enumerate(value):
            node[index] = _reconcile(node[index], item)
        return node
    if canonical(to_plain(node)) == canonical(value):
        return node
    return _new_node(value, like=node)


def _new_node(value: Any, like: Any = None) -> Any:
    """Round-trip objects for a new value; a string replacing a quoted one is quoted the same way."""
    if isinstance(value, Mapping):
        result = CommentedMap()
        for key, item in value.items():
            result[key] = _new_node(item)
        return result
    if isinstance(value, list):
        return CommentedSeq(_new_node(item) for item in value)
    if isinstance(value, str):
        if isinstance(like, (DoubleQuotedScalarString, SingleQuotedScalarString)):
            return type(like)(value)
        if isinstance(like, (LiteralScalarString, FoldedScalarString)) and "\n" in value:
            return type(like)(value)
        if _ambiguous(value):
            return DoubleQuotedScalarString(value)
    return value


def _ambiguous(text: str) -> bool:
    """Whether a plain scalar `text` could be read as something else by a YAML 1.1 reader (kubectl's).

    ruamel writes YAML 1.2, where `yes`, `on` or `0777` are strings; Kubernetes tools read YAML 1.1.
    """
    import yaml

    try:
        return bool(yaml.safe_load(text) != text)
    except yaml.YAMLError:
        return True


def _transplant(original: str, before: str, after: str, first_line: int) -> str:
    """Apply the line changes between `before` and `after` (two serialisations) to `original`.

    `original` is the text `before` was loaded from. Lines `before` writes differently are matched to it
    position by position; a changed line of that kind gets the change character by character where it
    can, so even it keeps its original layout.
    """
    old = original.splitlines(keepends=True)
    base = before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    to_original = _line_map(old, base)
    edits: list[tuple[int, int, list[str]]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, base, new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i2 > i1:
            lines = [to_original.get(k) for k in range(i1, i2)]
            start = lines[0]
            if start is None or lines != list(range(start, start + len(lines))):
                raise _unmappable(first_line + (start or 0))
            if i2 - i1 == j2 - j1:
                replacement = [_merge_line(old[start + k], base[i1 + k], new[j1 + k]) for k in range(i2 - i1)]
            elif j2 > j1:
                replacement = _shifted(new[j1:j2], _merge_line(old[start], base[i1], new[j1]))
            else:  # the lines are gone
                replacement = []
            edits.append((start, start + len(lines), replacement))
        elif i1 - 1 in to_original:
            at = to_original[i1 - 1] + 1
            edits.append((at, at, new[j1:j2]))
        elif i1 in to_original or i1 == 0:
            at = to_original.get(i1, 0)
            edits.append((at, at, new[j1:j2]))
        else:
            raise _unmappable(first_line)
    result = list(old)
    if result and not result[-1].endswith("\n") and any(start == len(old) for start, _, _ in edits):
        result[-1] += "\n"
    for start, end, replacement in sorted(edits, key=lambda edit: edit[0], reverse=True):
        result[start:end] = replacement
    return "".join(result)


def _shifted(lines: Sequence[str], first: str) -> list[str]:
    """`lines` (a block ruamel wrote) with `first` for its first line, and the others moved by as many
    columns as that moved its content: where the original lays a compact `- - item` out narrower than
    ruamel would, the lines that follow keep to the original's columns."""
    delta = _content_column(first) - _content_column(lines[0])
    moved = [first]
    for line in lines[1:]:
        indent = len(line) - len(line.lstrip(" "))
        moved.append(" " * max(0, indent + delta) + line[indent:] if line.strip() else line)
    return moved


def _content_column(line: str) -> int:
    """The column where a line's content starts, after its indentation and sequence dashes (`- `)."""
    column = len(line) - len(line.lstrip(" "))
    while line.startswith("- ", column):
        column = len(line) - len(line[column + 2 :].lstrip(" "))
    return column


def _line_map(old: Sequence[str], base: Sequence[str]) -> dict[int, int]:
    """Line of `base` -> line of `old` it stands for: equal lines, and same-sized blocks of changed ones."""
    to_original: dict[int, int] = {}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, base, autojunk=False).get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            to_original.update({j1 + k: i1 + k for k in range(j2 - j1)})
    return to_original


def _merge_line(original: str, before: str, after: str) -> str:
    """`after`, made as a character-level edit of `original` (which `before` may have written differently).

    Whitespace ruamel moves in front of an end-of-line comment is left as it was, as an editor would.
    Falls back to `after` when a changed character of `before` has no counterpart in `original`.
    """
    to_original: dict[int, int] = {}
    for block in difflib.SequenceMatcher(None, before, original, autojunk=False).get_matching_blocks():
        to_original.update({block.a + k: block.b + k for k in range(block.size)})
    edits = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if tag == "equal" or _comment_spacing(before, i1, i2, after[j1:j2]):
            continue
        if i2 > i1:
            start, end = to_original.get(i1), to_original.get(i2 - 1)
            if start is None or end is None or end - start != i2 - 1 - i1:
                return after
            edits.append((start, end + 1, after[j1:j2]))
        elif i1 - 1 in to_original or i1 in to_original:
            at = to_original[i1 - 1] + 1 if i1 - 1 in to_original else to_original[i1]
            edits.append((at, at, after[j1:j2]))
        else:
            return after
    result = original
    for start, end, text in sorted(edits, reverse=True):
        result = result[:start] + text + result[end:]
    return result


def _comment_spacing(line: str, start: int, end: int, replacement: str) -> bool:
    """The change only alters the blanks in front of an end-of-line comment."""
    return (
        not (line[start:end] + replacement).strip()
        and line[end:].lstrip(" ").startswith("#")
        and ((start > 0 and line[start - 1] == " ") or line[end:].startswith(" "))
    )


def _unmappable(line: int) -> YamlTextError:
    return YamlTextError(
        f"document at line {line}: the change cannot be made without reformatting lines around it"
    )


def _verify(text: str, expected: Sequence[Any]) -> None:
    """The rendered text must load to exactly the intended documents."""
    try:
        documents = YamlText.parse(text).documents
    except YamlTextError as err:
        raise YamlTextError(f"the edited text would not be valid YAML ({err})") from None
    got = [canonical(document.value) for document in documents]
    if got != [canonical(value) for value in expected]:
        raise YamlTextError("the edited text would not hold the intended documents; nothing was changed")
