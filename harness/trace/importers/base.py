"""What every importer shares: options, counts of skipped lines, and turning one parsed
request into a TraceRecord (session key, body by size and hash)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from harness.errors import InputError
from harness.trace.format import MAX_INLINE_BODY, TraceRecord
from harness.trace.session_key import SessionKeyRule

MAX_EXAMPLES = 5


class Skip(Exception):  # noqa: N818 - a signal, not a failure
    """Not a request line (a balancer's own message, an unparseable request line):
    skipped and counted, never an error."""


class Malformed(Exception):  # noqa: N818
    """Looks like nothing the format allows: an error, or skipped with --skip-bad."""


@dataclass
class ImportOptions:
    session_key: SessionKeyRule = field(default_factory=lambda: SessionKeyRule("auto"))
    skip_bad: bool = False  # skip malformed lines (counted) instead of stopping
    link_window: float = 30.0  # seconds; see harness.trace.sessions (0: off)


@dataclass
class ImportStats:
    units: int = 0  # lines read (HAR: entries)
    records: int = 0
    skipped: int = 0
    # (line, reason); HAR entries have no line (the reason names the entry)
    examples: list[tuple[int | None, str]] = field(default_factory=list)

    def skip(self, line: int | None, reason: str) -> None:
        self.skipped += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((line, reason))


@dataclass
class ParsedRequest:
    """One request as a source tells it; `time` is Unix time."""

    time: float
    method: str
    path: str
    client_ip: str | None = None
    host: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    status: int | None = None
    replica: str | None = None
    set_cookies: list[str] = field(default_factory=list)
    line: int | None = None


UTF8_BOM = b"\xef\xbb\xbf"


def open_input(path: str | Path) -> BinaryIO:
    """The file, read from after a UTF-8 byte order mark if it starts with one (Windows
    tools and some browsers' HAR exports write it)."""
    if str(path) == "-":  # standard input: no seeking back, so the mark is peeked at
        stdin = io.BufferedReader(io.FileIO(sys.stdin.fileno(), closefd=False))
        if stdin.peek(len(UTF8_BOM))[:len(UTF8_BOM)] == UTF8_BOM:
            stdin.read(len(UTF8_BOM))
        return stdin
    if Path(path).is_dir():
        raise InputError("is a directory; expected a file", file=str(path))
    try:
        f = Path(path).open("rb")  # noqa: SIM115 (the caller closes it)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from None
    if f.read(len(UTF8_BOM)) != UTF8_BOM:
        f.seek(0)
    return f


def parse_cookie_header(value: str) -> dict[str, str]:
    cookies = {}
    for part in value.split(";"):
        name, eq, cookie_value = part.strip().partition("=")
        if eq and name:
            cookies[name] = cookie_value.strip().strip('"')
    return cookies


def body_fields(body: bytes | None) -> dict:
    if not body:
        return {}
    fields = {"body_size": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}
    if len(body) <= MAX_INLINE_BODY:
        with contextlib.suppress(UnicodeDecodeError):  # binary: size and hash only
            fields["body"] = body.decode("utf-8")
    return fields


class RecordBuilder:
    """Turns parsed requests into records with a session key (`seq` comes later, from
    harness.trace.sessions, once first requests are linked to their sessions)."""

    def __init__(self, rule: SessionKeyRule):
        self.rule = rule

    def build(self, req: ParsedRequest) -> TraceRecord:
        session = self.rule.key(cookies=req.cookies, headers=req.headers,
                                client_ip=req.client_ip, set_cookies=req.set_cookies)
        return TraceRecord(t=req.time, session=session, method=req.method,
                           path=req.path, client_ip=req.client_ip, host=req.host,
                           headers_sent=req.headers, cookies_sent=req.cookies,
                           status=req.status, replica=req.replica,
                           set_cookies=req.set_cookies, source_line=req.line,
                           **body_fields(req.body))


def import_lines(path: str, lines: Iterable[bytes], parse_line, options: ImportOptions,
                 stats: ImportStats) -> Iterator[TraceRecord]:
    """Records of a line-based log; `parse_line(text)` returns a ParsedRequest or raises
    Skip or Malformed. Every non-blank line is either a record or counted as skipped."""
    builder = RecordBuilder(options.session_key)
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        stats.units += 1
        try:
            parsed = parse_line(text)
        except Skip as exc:
            stats.skip(number, str(exc))
            continue
        except Malformed as exc:
            if not options.skip_bad:
                raise InputError(f"{exc} (use --skip-bad to skip such lines)", file=path,
                                 line=number) from None
            stats.skip(number, str(exc))
            continue
        parsed.line = number
        stats.records += 1
        yield builder.build(parsed)


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def parse_request_line(text: str) -> tuple[str, str, str | None]:
    """`GET /a?b HTTP/1.1` -> (method, origin-form path, host or None); Skip otherwise."""
    parts = text.split(" ")
    if len(parts) == 2:
        parts.append("HTTP/0.9")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN:
        raise Skip(f"not a replayable request line: {text[:80]!r}")
    method, target, _version = parts
    host = None
    if target.startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        host, slash, path = rest.partition("/")
        target = slash + path or "/"
    if not target.startswith("/"):
        # `*` (OPTIONS) and authority form (CONNECT) do not replay through a balancer.
        raise Skip(f"request target {target[:80]!r} is not a path")
    return method, target, host or None
