"""YAML loading that remembers where each value came from, so errors can name the line.

`load(path)` returns a `Doc`: plain Python data plus a map from key paths to line numbers.
Validation code asks `doc.line("balancer.mode")` when it rejects a value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import InputError


@dataclass
class Doc:
    file: str
    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line(self, path: str) -> int | None:
        """Line of `path` (dotted, list items as [i]); falls back to the nearest parent."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.lines.get("", 1)

    def error(self, path: str, message: str) -> InputError:
        return InputError(message, file=self.file, line=self.line(path), key=path or None)

    def mapping(self, value: Any, path: str, allowed: Iterable[str], what: str = "key") -> dict:
        """`value` as a mapping whose keys are all in `allowed`, or an error naming the line."""
        allowed = list(allowed)
        names = ", ".join(sorted(allowed)) or "(none)"
        if not isinstance(value, dict):
            raise self.error(path, f"expected a mapping with {what}s: {names}")
        for key in value:
            if key not in allowed:
                raise self.error(f"{path}.{key}" if path else str(key),
                                 f"unknown {what} {key!r}; allowed: {names}")
        return value


def _walk(node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            child = f"{path}.{key}" if path else str(key)
            if key in out:
                raise InputError(f"duplicate key {key!r}", line=key_node.start_mark.line + 1,
                                 key=child)
            lines[child] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, f"{path}[{i}]", lines) for i, item in enumerate(node.value)]
    # Scalars: PyYAML's resolver gave the tag (int, bool, null, float); its constructor makes
    # the value (an empty value, `key:`, is a null like any other).
    return yaml.constructor.SafeConstructor().construct_object(node)


def parse(text: str, file: str) -> Doc:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(f"not valid YAML: {exc.problem or exc}", file=file, line=line) from None
    except yaml.YAMLError as exc:  # the reader's: a character YAML does not allow (NUL...)
        raise InputError(f"not valid YAML: {exc}".splitlines()[0], file=file,
                         line=text.count("\n", 0, getattr(exc, "position", 0)) + 1) from None
    if node is None:
        raise InputError("the file is empty; expected a YAML mapping", file=file, line=1)
    lines: dict[str, int] = {}
    try:
        data = _walk(node, "", lines)
    except InputError as exc:
        exc.file = file
        raise
    return Doc(file=file, data=data, lines=lines)


def load(path: str | Path) -> Doc:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=str(path)) from None
    return parse(text, str(path))
