"""haproxy.cfg as data: sections of lines, each line's words with their spans, so a rewrite
can replace one word and keep the rest of the line as the user wrote it. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "userlist", "peers",
            "resolvers", "mailers", "program", "http-errors", "ring", "cache", "fcgi-app",
            "crt-store", "traces", "log-forward")
PROXIES = ("frontend", "backend", "listen")
TIME = re.compile(r"^(\d+)(us|ms|s|m|h|d)?$")
UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            None: 1}


@dataclass
class Line:
    no: int  # 1-based
    raw: str
    words: list[str]
    spans: list[tuple[int, int]]  # where each word is in `raw`

    @property
    def keyword(self) -> str:
        return self.words[0] if self.words else ""

    def after(self, index: int) -> str:
        """The raw text after word `index` (its spacing, quotes and comment kept)."""
        return self.raw[self.spans[index][1]:] if index < len(self.spans) else ""

    def replace_word(self, index: int, text: str, append: str = "") -> str:
        """The line with word `index` replaced, and `append` added after its last word
        (before a trailing comment)."""
        start, end = self.spans[index]
        last = self.spans[-1][1]
        tail = self.raw[end:last] + (f" {append}" if append else "") + self.raw[last:]
        return self.raw[:start] + text + tail


@dataclass
class Section:
    kind: str
    name: str
    header: Line
    lines: list[Line] = field(default_factory=list)
    parent: str = ""  # `backend b from d`: the named defaults section

    def find(self, *words: str) -> list[Line]:
        n = len(words)
        return [ln for ln in self.lines if ln.words[:n] == list(words)]

    def last(self, *words: str) -> Line | None:
        found = self.find(*words)
        return found[-1] if found else None

    @property
    def mode(self) -> str | None:
        line = self.last("mode")
        return line.words[1] if line and len(line.words) > 1 else None


@dataclass
class Model:
    file: str
    lines: list[str]  # the file's text, line by line, without newlines
    sections: list[Section]
    preamble: list[Line]  # lines before the first section (comments)

    def proxies(self, *kinds: str) -> list[Section]:
        kinds = kinds or PROXIES
        return [s for s in self.sections if s.kind in kinds]

    def proxy(self, name: str) -> Section | None:
        return next((s for s in self.proxies("backend", "listen") if s.name == name), None)

    def defaults_of(self, section: Section) -> Section | None:
        """The defaults section a proxy takes its settings from: the named one (`from`),
        else the last one above it."""
        if section.parent:
            return next((s for s in self.sections if s.kind == "defaults"
                         and s.name == section.parent), None)
        found = None
        for s in self.sections:
            if s is section:
                return found
            if s.kind == "defaults":
                found = s
        return found


def split(raw: str) -> tuple[list[str], list[tuple[int, int]]]:
    """HAProxy's word splitting: blanks separate words, quotes and backslashes protect,
    an unquoted '#' starts a comment. Returns the unquoted words and their spans."""
    words: list[str] = []
    spans: list[tuple[int, int]] = []
    i, n = 0, len(raw)
    while i < n:
        while i < n and raw[i] in " \t":
            i += 1
        if i >= n or raw[i] == "#":
            break
        start, word, quote = i, [], ""
        while i < n:
            c = raw[i]
            if quote:
                if c == quote:
                    quote = ""
                elif c == "\\" and quote == '"' and i + 1 < n:
                    i += 1
                    word.append(raw[i])
                else:
                    word.append(c)
            elif c in "\"'":
                quote = c
            elif c == "\\" and i + 1 < n:
                i += 1
                word.append(raw[i])
            elif c in " \t" or c == "#":
                break
            else:
                word.append(c)
            i += 1
        words.append("".join(word))
        spans.append((start, i))
    return words, spans


def parse(text: str, file: str) -> Model:
    lines = text.splitlines()
    sections: list[Section] = []
    preamble: list[Line] = []
    for no, raw in enumerate(lines, 1):
        words, spans = split(raw)
        line = Line(no, raw, words, spans)
        if words and words[0] in SECTIONS:
            name = words[1] if len(words) > 1 and words[0] != "global" else ""
            parent = words[3] if len(words) > 3 and words[2] == "from" else ""
            sections.append(Section(words[0], name, line, parent=parent))
        elif sections:
            sections[-1].lines.append(line)  # blanks and comments too: a rewrite keeps them
        else:
            preamble.append(line)
    return Model(file, lines, sections, preamble)


def time_ms(text: str) -> int | None:
    """An HAProxy time (`5s`, `500`, `2m`) in milliseconds."""
    match = TIME.match(text.strip())
    if not match:
        return None
    return int(int(match[1]) * UNITS_MS[match[2]])
