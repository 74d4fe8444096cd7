"""HAR 1.2 (browser devtools, Playwright, mitmproxy), streamed entry by entry with ijson
so a large HAR never sits in memory whole.

Where HAR has no field for it: the client IP comes from an X-Forwarded-For request header
if there is one, else `client_ip` (default: none). The serving replica is the response's
X-Replica header (the fixture app's) or `serverIPAddress`. A syntax error names the line;
an entry missing a required field names its index (`log.entries[N]`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import ijson
import ijson.backends.python as ijson_python

from harness.errors import InputError
from harness.trace.importers.base import (
    ImportOptions,
    ImportStats,
    Malformed,
    ParsedRequest,
    RecordBuilder,
    Skip,
    open_input,
    parse_cookie_header,
    parse_request_line,
)

# Not replayed as recorded: they describe the connection or are rebuilt by the client.
DROPPED_HEADERS = {"cookie", "host", "content-length", "connection", "keep-alive",
                   "transfer-encoding", "upgrade", "te", "proxy-connection"}


def _syntax_error_line(path: Path) -> int | None:
    """The line of the first syntax error, found with ijson's pure-Python backend (it
    reports the byte offset; the fast C backend does not). Only run after an error; standard
    input cannot be read again."""
    if str(path) == "-":
        return None
    with path.open("rb") as f:
        try:
            for _ in ijson_python.parse(f):
                pass
        except (ijson.JSONError, ValueError) as exc:  # ValueError: bad string contents
            words = str(exc).rsplit(" at ", 1)
            if len(words) == 2 and words[1].isdigit():
                f.seek(0)
                return f.read(int(words[1])).count(b"\n") + 1
            f.seek(0)
            return f.read().count(b"\n") + 1  # incomplete: the error is at the end
    return None


def _utf16(path: Path) -> bool:
    if str(path) == "-":
        return False
    with path.open("rb") as f:
        return f.read(2) in (b"\xff\xfe", b"\xfe\xff")


def _pairs(items, where: str) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        raise Malformed(f"{where}: expected a list of {{name, value}} objects")
    pairs = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise Malformed(f"{where}: expected {{name, value}} objects")
        value = item.get("value", "")
        pairs.append((item["name"], value if isinstance(value, str) else str(value)))
    return pairs


def _time(value) -> float:
    if not isinstance(value, str):
        raise Malformed("startedDateTime: expected an ISO 8601 string")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        raise Malformed(f"startedDateTime: not an ISO 8601 time: {value[:40]!r}") from None


def _body(post) -> bytes | None:
    if post is None:
        return None
    if not isinstance(post, dict):
        raise Malformed("request.postData: expected an object")
    text = post.get("text")
    if text is None:
        if post.get("params"):
            return "&".join(f"{p.get('name', '')}={p.get('value', '')}"
                            for p in post["params"] if isinstance(p, dict)).encode()
        return None
    if not isinstance(text, str):
        raise Malformed("request.postData.text: expected a string")
    if post.get("encoding") == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise Malformed("request.postData.text: not base64") from None
    return text.encode("utf-8", "surrogatepass")


def parse_entry(entry, default_client_ip: str | None = None) -> ParsedRequest:
    if not isinstance(entry, dict):
        raise Malformed("expected an entry object")
    request, response = entry.get("request"), entry.get("response")
    if not isinstance(request, dict):
        raise Malformed("request: missing")
    method, url = request.get("method"), request.get("url")
    if not isinstance(method, str) or not isinstance(url, str):
        raise Malformed("request.method and request.url: expected strings")
    when = _time(entry.get("startedDateTime"))
    if url.startswith(("data:", "blob:", "chrome-extension:", "about:")):
        raise Skip(f"{url.split(':', 1)[0]}: URL, not a network request")
    url = url.partition("#")[0]  # a fragment never reaches the server
    method, path, host = parse_request_line(f"{method} {url.replace(' ', '%20')} HTTP/1.1")
    headers: dict[str, str] = {}
    cookie_header = ""
    for name, value in _pairs(request.get("headers", []), "request.headers"):
        lower = name.lower()
        if lower == ":authority":
            host = value
        elif lower == "cookie":
            cookie_header = f"{cookie_header}; {value}" if cookie_header else value
        elif lower.startswith(":") or lower in DROPPED_HEADERS:
            continue
        else:
            headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
    cookies = parse_cookie_header(cookie_header)
    if not cookies:
        cookies = dict(_pairs(request.get("cookies", []), "request.cookies"))
    status = replica = None
    set_cookies: list[str] = []
    if isinstance(response, dict):
        raw_status = response.get("status")
        if isinstance(raw_status, int) and 100 <= raw_status <= 999:
            status = raw_status  # 0 or -1: no response (blocked, failed, aborted)
        for name, value in _pairs(response.get("headers", []), "response.headers"):
            if name.lower() == "set-cookie":
                set_cookies.extend(v for v in value.split("\n") if v)
            elif name.lower() == "x-replica":
                replica = value
    server_ip = entry.get("serverIPAddress")
    if replica is None and isinstance(server_ip, str) and server_ip:
        replica = server_ip.strip("[]")
    xff = headers.get("x-forwarded-for", "")
    client_ip = xff.split(",")[0].strip() or default_client_ip
    return ParsedRequest(time=when, method=method, path=path, client_ip=client_ip, host=host,
                         headers=headers, cookies=cookies, body=_body(request.get("postData")),
                         status=status, replica=replica, set_cookies=set_cookies)


def import_har(path: str | Path, options: ImportOptions, stats: ImportStats, *,
               client_ip: str | None = None) -> Iterator:
    path = Path(path)
    builder = RecordBuilder(options.session_key)
    seen_entries = False
    with open_input(path) as raw:
        events = ijson.parse(raw, use_float=True)

        def watched():
            nonlocal seen_entries
            for prefix, event, value in events:
                if prefix == "log.entries" and event == "start_array":
                    seen_entries = True
                yield prefix, event, value

        index = -1
        try:
            for index, entry in enumerate(ijson.items(watched(), "log.entries.item")):
                stats.units += 1
                try:
                    parsed = parse_entry(entry, client_ip)
                except Skip as exc:
                    stats.skip(None, f"log.entries[{index}]: {exc}")
                    continue
                except Malformed as exc:
                    if not options.skip_bad:
                        raise InputError(f"{exc} (use --skip-bad to skip such entries)",
                                         file=str(path), key=f"log.entries[{index}]") from None
                    stats.skip(None, f"log.entries[{index}]: {exc}")
                    continue
                stats.records += 1
                yield builder.build(parsed)
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            # yajl's messages come as bytes, with the offending line and a caret after
            text = exc.args[0] if exc.args else ""
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            reason = str(text).splitlines()[0].strip() if str(text).strip() else "invalid JSON"
            if _utf16(path):
                reason = ("the file is UTF-16; a HAR is UTF-8 (convert it: iconv -f UTF-16 "
                          "-t UTF-8)")
            raise InputError(f"not valid JSON (after {index + 1} entries): {reason}",
                             file=str(path), line=_syntax_error_line(path)) from None
    if not seen_entries:
        raise InputError("not a HAR file: no log.entries array", file=str(path))
