"""The trace format, version 1: JSONL, a header line, then one request per line.

Field names follow the History's `RequestRecord` (harness/history.py) where the meaning is
the same (`t`, `session`, `seq`, `client_ip`, `method`, `path`, `status`, `replica`,
`cookies_sent`, `headers_sent`, `set_cookies`), so a History and a trace can be read by the
same analysis. The JSON Schema is trace.schema.json beside this file; docs/trace.md
describes every field.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "stickler-trace"
VERSION = 1
# Bodies up to this size are kept as text; larger or binary ones by size and hash only.
MAX_INLINE_BODY = 64 * 1024


@dataclass
class TraceHeader:
    start: float  # Unix time of t == 0
    source: dict[str, Any] = field(default_factory=dict)  # where it came from: format, file
    redacted: bool = True
    session_key: str = "auto"  # the rule that made the session keys
    format: str = FORMAT
    version: int = VERSION


@dataclass
class TraceRecord:
    t: float  # seconds since the header's start; in source order, so logs may step back
    session: str  # e.g. "cookie:sid=...", "ip:192.0.2.7", "hash:3f2a..." once redacted
    method: str
    path: str  # origin form: path and query, as sent on the request line
    client_ip: str | None = None
    seq: int = 0  # position of the request in its session, from 0
    host: str | None = None
    headers_sent: dict[str, str] = field(default_factory=dict)  # lower-case, no cookie/host
    cookies_sent: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # the body as text, when it is text and small
    body_size: int = 0
    body_sha256: str | None = None
    status: int | None = None  # recorded response status, where known
    replica: str | None = None  # recorded serving server (name or address), where known
    set_cookies: list[str] = field(default_factory=list)  # recorded Set-Cookie values
    source_line: int | None = None  # line of the imported file the request came from
    type: str = "request"


def header_json(header: TraceHeader) -> str:
    return json.dumps(asdict(header), sort_keys=True, separators=(",", ":"))


def record_json(record: TraceRecord) -> str:
    # vars(), not asdict(): asdict deep-copies every dict and list, 4x the cost of the rest.
    data = {k: v for k, v in vars(record).items()
            if v is not None and v != {} and v != [] and not (k == "body_size" and v == 0)}
    # ASCII only: lone surrogates from a HAR stay writable, and no tool splits a line at
    # U+2028 or U+0085.
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


_TYPES: dict[str, tuple[type, ...]] = {
    "t": (int, float), "session": (str,), "method": (str,), "path": (str,),
    "client_ip": (str, type(None)), "seq": (int,), "host": (str, type(None)),
    "headers_sent": (dict,), "cookies_sent": (dict,), "body": (str, type(None)),
    "body_size": (int,), "body_sha256": (str, type(None)), "status": (int, type(None)),
    "replica": (str, type(None)), "set_cookies": (list,), "source_line": (int, type(None)),
    "type": (str,),
}
_REQUIRED = ("t", "session", "method", "path")
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


# Ten years: any recording is shorter, and time arithmetic stays exact. `t` may be negative:
# a log writes a request when it ends, so one that began before the first logged request
# has a time before the header's start.
MAX_T = 10 * 366 * 86400.0
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB is allowed in field values


_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # none in a request-target or host


def _one_word(text: str) -> bool:
    return _SPACE_OR_CONTROL.search(text) is None


def _sendable(text: str) -> bool:
    """No control characters but HTAB: what an HTTP/1.1 line or field value may hold."""
    return _CONTROL.search(text) is None


def sendable_problem(data: dict[str, Any]) -> str | None:
    """Why a request (a record's fields) cannot be sent as HTTP/1.1, or None: a method or
    header name that is no token, a path not in origin form, a client address that is
    none, control characters where the wire has no room for them. The reader refuses such
    a record; the importers skip it, saying why."""
    method, path, host = data.get("method") or "", data.get("path") or "", data.get("host")
    if not method or not set(method) <= _TOKEN:
        return f"method: not an HTTP method: {method!r}"
    if not (path.startswith("/") or (path == "*" and method == "OPTIONS")) or \
            not _one_word(path):
        return (f"path: expected origin form (/path?query, no spaces or control "
                f"characters), got {path[:60]!r}")
    if data.get("client_ip") is not None:
        try:
            ipaddress.ip_address(data["client_ip"])
        except ValueError:
            return f"client_ip: not an IP address: {data['client_ip'][:60]!r}"
    if host is not None and not _one_word(host):
        return f"host: spaces or control characters in {host[:60]!r}"
    for name, value in data.get("headers_sent", {}).items():
        if not name or not set(name) <= _TOKEN:
            return f"headers_sent: not a header name: {name[:60]!r}"
        if not _sendable(value):
            return (f"headers_sent.{name}: a control character (CR, LF, NUL...) in the "
                    f"value cannot be sent: {value[:60]!r}")
    for name, value in data.get("cookies_sent", {}).items():
        if not name or not set(name) <= _TOKEN:
            return f"cookies_sent: not a cookie name: {name[:60]!r}"
        if not _sendable(value) or ";" in value:
            return (f"cookies_sent.{name}: a ';' or control character in the value cannot "
                    f"be sent: {value[:60]!r}")
    return None


def record_from_dict(data: Any) -> TraceRecord:
    """A request record from parsed JSON; ValueError says which key is wrong.

    A fast structural check for the reader; trace.schema.json is the full contract and
    `stickler trace check` applies it."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("type", "request") != "request":
        raise ValueError(f"type: expected 'request', got {data.get('type')!r}")
    for key in _REQUIRED:
        if key not in data:
            raise ValueError(f"{key}: missing")
    for key, value in data.items():
        kinds = _TYPES.get(key)
        if kinds is None:
            raise ValueError(f"{key}: unknown key")
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ValueError(f"{key}: expected {' or '.join(k.__name__ for k in kinds)}, "
                             f"got {type(value).__name__}")
    t = data["t"]
    if not (isinstance(t, int | float) and math.isfinite(t) and -MAX_T <= t <= MAX_T):
        raise ValueError(f"t: expected seconds since the header's start, within "
                         f"{MAX_T:g} of it, got {t!r}")
    if not data["session"]:
        raise ValueError("session: expected a non-empty string")
    for key in ("headers_sent", "cookies_sent"):
        if not all(isinstance(v, str) for v in data.get(key, {}).values()):
            raise ValueError(f"{key}: expected string values")
    if not all(isinstance(v, str) for v in data.get("set_cookies", [])):
        raise ValueError("set_cookies: expected a list of strings")
    problem = sendable_problem(data)
    if problem:
        raise ValueError(problem)
    return TraceRecord(**data)


def header_from_dict(data: Any) -> TraceHeader:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"expected a header line with \"format\": \"{FORMAT}\"")
    if data.get("version") != VERSION:
        raise ValueError(f"unsupported trace version {data.get('version')!r}; this Stickler "
                         f"reads version {VERSION}")
    if not isinstance(data.get("start"), int | float) or isinstance(data.get("start"), bool):
        raise ValueError("start: expected a number (Unix time)")
    known = set(TraceHeader.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown header key(s): {', '.join(sorted(unknown))}")
    return TraceHeader(**data)
