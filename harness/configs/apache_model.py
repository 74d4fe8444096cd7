"""An Apache httpd config as data: directives and <Sections> with their words, file and
line, Include/IncludeOptional inlined (relative to the config's folder). Pure but for
reading the included files."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import InputError

WORD = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


@dataclass
class Node:
    name: str  # as written (BalancerMember, <Proxy> is "Proxy")
    args: list[str]
    file: str
    line: int
    raw: str  # the (joined) line as written, for lines kept as they are
    section: bool = False
    children: list[Node] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.name.lower()

    def find(self, name: str) -> list[Node]:
        return [n for n in self.children if n.key == name.lower()]

    def walk(self, parents: tuple[Node, ...] = ()):
        for child in self.children:
            yield child, parents
            if child.section:
                yield from child.walk((*parents, child))


def words(text: str) -> list[str]:
    return [m[1] if m[1] is not None else m[2] for m in WORD.finditer(text)]


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) with backslash continuations joined, comments and blanks out."""
    try:
        raw = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=str(path)) from None
    out, pending, start = [], "", 0
    for no, line in enumerate(raw, 1):
        if not pending:
            start = no
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text and not text.startswith("#"):
            out.append((start, text))
    return out


def parse(path: Path, folder: Path | None = None, depth: int = 0) -> Node:
    """The config's tree; `folder` is where relative Include paths resolve (ServerRoot)."""
    folder = folder or path.parent
    root = Node("", [], str(path), 0, "", section=True)
    stack = [root]
    for no, text in _lines(path):
        if text.startswith("</"):
            name = text[2:].rstrip(">").strip()
            if len(stack) == 1 or stack[-1].key != name.lower():
                expected = f"</{stack[-1].name}>" if len(stack) > 1 else "no closing tag"
                raise InputError(f"unexpected </{name}>; expected {expected}", file=str(path),
                                 line=no)
            stack.pop()
            continue
        if text.startswith("<"):
            inner = text[1:].rstrip()
            if not inner.endswith(">"):
                raise InputError("a section tag without its closing '>'", file=str(path),
                                 line=no)
            parts = words(inner[:-1])
            node = Node(parts[0], parts[1:], str(path), no, text, section=True)
            stack[-1].children.append(node)
            stack.append(node)
            continue
        parts = words(text)
        if parts[0].lower() in ("include", "includeoptional") and len(parts) > 1:
            if depth > 8:
                raise InputError("Include nested too deeply (a loop?)", file=str(path), line=no)
            pattern = parts[1] if Path(parts[1]).is_absolute() else str(folder / parts[1])
            matches = sorted(glob.glob(pattern))
            if not matches and parts[0].lower() == "include" and not glob.has_magic(pattern):
                raise InputError(f"Include {parts[1]}: no such file", file=str(path), line=no)
            for match in matches:
                if Path(match).is_file():
                    stack[-1].children += parse(Path(match), folder, depth + 1).children
            continue
        stack[-1].children.append(Node(parts[0], parts[1:], str(path), no, text))
    if len(stack) > 1:
        raise InputError(f"<{stack[-1].name}> is never closed", file=str(path),
                         line=stack[-1].line)
    return root


def params(args: list[str]) -> dict[str, str]:
    """key=value words (BalancerMember, ProxySet, ProxyPass parameters), keys lower-case."""
    return {k.lower(): v for k, _, v in (a.partition("=") for a in args if "=" in a)}
