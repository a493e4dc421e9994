"""Render what a plan's writes would change: a coloured unified YAML diff and a compact semantic summary.

Pure: the objects to compare come in (`ObjectPreview`, filled by apply's server dry run or predicted
locally); this module only renders. deepdiff is imported when a summary is made, not at startup.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from kubectl_capc.domain.plan import CreateMachineTemplate, Step

__all__ = [
    "ObjectPreview",
    "clean",
    "merge_patch",
    "paint",
    "render_previews",
    "semantic_summary",
    "unified_diff",
]

# Set by the server on every object: noise in a diff of what the plan changes.
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")
_VALUE_LIMIT = 60

_RED, _GREEN, _CYAN, _BOLD, _RESET = "\033[31m", "\033[32m", "\033[36m", "\033[1m", "\033[0m"


@dataclass(frozen=True)
class ObjectPreview:
    """One write of a plan: the object before and after it, and what the server said about it.

    For a new CloudStackMachineTemplate, `before` is the template it is cloned from. `checked` says the
    write was sent with dryRun=All (`after` is then the server's answer); otherwise `unchecked_reason`
    says why not and `after` is predicted locally. `rejection` is the server's refusal, if any.
    """

    hop: int
    step: Step
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    checked: bool
    rejection: str = ""
    unchecked_reason: str = ""


def clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without status and server-set metadata, so a diff shows only what the plan changes."""
    result = copy.deepcopy(dict(obj))
    result.pop("status", None)
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        for key in _SERVER_METADATA:
            metadata.pop(key, None)
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386) to a copy of `target`."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def unified_diff(
    before: Mapping[str, Any], after: Mapping[str, Any], *, label: str, color: bool
) -> list[str]:
    """A unified diff of the two objects as YAML, with kubectl diff's `---`/`+++` header."""
    old = yaml.safe_dump(clean(before), sort_keys=False, width=1000).splitlines()
    new = yaml.safe_dump(clean(after), sort_keys=False, width=1000).splitlines()
    lines = list(
        difflib.unified_diff(
            old, new, fromfile=f"{label} (current)", tofile=f"{label} (planned)", lineterm=""
        )
    )
    return [paint(line) for line in lines] if color else lines


def paint(line: str) -> str:
    """One line of a unified diff in `kubectl diff`'s colours (ANSI): headers bold, hunks cyan, + green,
    - red."""
    if line.startswith(("+++", "---")):
        return _BOLD + line + _RESET
    if line.startswith("@@"):
        return _CYAN + line + _RESET
    if line.startswith("+"):
        return _GREEN + line + _RESET
    if line.startswith("-"):
        return _RED + line + _RESET
    return line


def semantic_summary(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """One line per changed field, e.g. `spec.version: v1.28.5 → v1.29.3` (computed with deepdiff)."""
    from deepdiff import DeepDiff

    diff = DeepDiff(clean(before), clean(after), view="tree")
    lines = []
    for change_type, label in (
        ("values_changed", "changed"),
        ("type_changes", "changed"),
        ("dictionary_item_added", "added"),
        ("dictionary_item_removed", "removed"),
        ("iterable_item_added", "added"),
        ("iterable_item_removed", "removed"),
    ):
        for level in diff.get(change_type, ()):
            path = _path(level.path(output_format="list"))
            if label == "changed":
                lines.append(f"{path}: {_short(level.t1)} → {_short(level.t2)}")
            elif label == "added":
                lines.append(f"{path}: added {_short(level.t2)}")
            else:
                lines.append(f"{path}: removed")
    return sorted(lines)


def _path(parts: Sequence[Any]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part.replace("-", "").replace("_", "").isalnum():
            text += ("." if text else "") + part
        else:
            text += f"[{part!r}]"
    return text or "(object)"


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        text = "{" + ", ".join(str(key) for key in value) + "}"
    elif isinstance(value, str):
        text = value
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 1] + "…"


def render_previews(previews: Iterable[ObjectPreview], *, color: bool) -> str:
    """Every planned write: header, server verdict, semantic summary and YAML diff."""
    blocks = []
    for preview in previews:
        step = preview.step
        title = f"# hop {preview.hop}: {step.subject}"
        if isinstance(step, CreateMachineTemplate):
            title += f" (new, cloned from {step.cloned_from})"
        lines = [_BOLD + title + _RESET if color else title]
        if preview.rejection:
            lines.append(_verdict(f"REJECTED by the API server: {preview.rejection}", _RED, color))
        elif preview.checked:
            lines.append(_verdict("accepted by the API server (dryRun=All)", _GREEN, color))
        else:
            lines.append(f"not checked by the API server: {preview.unchecked_reason}")
        lines += [f"  {line}" for line in semantic_summary(preview.before, preview.after)]
        lines += unified_diff(preview.before, preview.after, label=step.subject, color=color)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _verdict(text: str, colour: str, color: bool) -> str:
    return colour + text + _RESET if color else text
