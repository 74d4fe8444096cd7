"""NGINX access logs in a `log_format` the user gives (default: the harness's own
`stickler` format from fixtures/balancers/nginx.conf.j2).

The format string is compiled to one anchored regular expression: literal text must match
exactly, each `$variable` becomes a field. Variables the importer understands:
$remote_addr, $time_iso8601, $time_local, $msec, $request, $status, $upstream_addr,
$http_cookie, $http_x_forwarded_for, $http_<name> (any request header), $cookie_<name>,
$host. Others are matched and ignored. Inside quotes a field runs to the next quote (NGINX
escapes `"` in values as \\x22); outside quotes to the next space, except $upstream_*
lists ("a, b" when NGINX tried a second server) and a $remote_addr chain. A JSON format
(`escape=json '{"time": "$time_iso8601", ...}'`) reads each line as a JSON object instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from harness.errors import InputError
from harness.trace.importers.base import (
    ImportOptions,
    ImportStats,
    Malformed,
    ParsedRequest,
    Skip,
    import_lines,
    open_input,
    parse_cookie_header,
    parse_request_line,
)

STICKLER_FORMAT = ('$remote_addr - [$time_iso8601] "$request" $status '
                   'upstream=$upstream_addr cookie="$http_cookie" xff="$http_x_forwarded_for"')
COMBINED_FORMAT = ('$remote_addr - $remote_user [$time_local] "$request" $status '
                   '$body_bytes_sent "$http_referer" "$http_user_agent"')
NAMED_FORMATS = {"stickler": STICKLER_FORMAT, "combined": COMBINED_FORMAT}
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})")
TIME_FIELDS = ("msec", "time_iso8601", "time_local")
REQUEST_HEADERS_SKIPPED = {"cookie", "host"}


def compile_format(log_format: str) -> tuple[re.Pattern[str], list[str]]:
    """The regex of a log_format and its variable names in group order."""
    pattern, names = format_parts(log_format)
    return re.compile("".join(pattern)), names


def format_parts(log_format: str) -> tuple[list[str], list[str]]:
    """The regex of a log_format in parts (literal, field, literal, ...) and its variables."""
    pattern, names, pos = ["^"], [], 0
    for m in VARIABLE.finditer(log_format):
        literal = log_format[pos:m.start()]
        pattern.append(re.escape(literal))
        name = m.group(1) or m.group(2)
        before = log_format[:m.start()]
        quoted = before.count('"') % 2 == 1
        if name == "time_local":
            field = r"[^\]]*"
        elif name == "request" and not quoted:
            # An unquoted request line still has its spaces: method, target, version.
            field = r"\S+ \S+(?: HTTP/[0-9.]+)?"
        elif quoted:
            field = r'[^"]*'
        elif name.startswith("upstream_"):
            # Lists: "a, b" (the next server was tried) and "a : b" (internal redirect).
            field = r"\S*(?:(?:, | : )\S+)*"
        elif name in ("remote_addr", "realip_remote_addr", "proxy_add_x_forwarded_for"):
            # A chain "client, proxy" where a log writes what realip or a proxy passed on.
            field = r"\S*(?:, \S+)*"
        else:
            field = r"\S*"
        pattern.append(f"({field})")
        names.append(name)
        pos = m.end()
    pattern.append(re.escape(log_format[pos:]) + "$")
    _check_names(names)
    return pattern, names


def _check_names(names: list[str]) -> None:
    if not names:
        raise InputError("the log_format has no $variables", key="--log-format")
    if "request" not in names:
        raise InputError("the log_format must contain $request", key="--log-format")
    if not any(t in names for t in TIME_FIELDS):
        raise InputError(f"the log_format must contain one of ${', $'.join(TIME_FIELDS)}",
                         key="--log-format")


def json_template(log_format: str) -> dict[str, str] | None:
    """For a JSON log_format (`escape=json '{"time": "$time_iso8601", ...}'`): which key
    holds which variable; None for a text format."""
    if not log_format.lstrip().startswith("{"):
        return None
    # Numbers are often logged bare ("status":$status): quote them for the template.
    quoted = re.sub(r'(:\s*)(\$(?:\{\w+\}|\w+))(?=\s*[,}])', r'\1"\2"', log_format)
    try:
        template = json.loads(quoted)
    except ValueError as exc:
        raise InputError(f"a log_format that starts with '{{' is read as JSON (escape=json), "
                         f"and this one is not valid JSON: {exc}", key="--log-format") from None
    if not isinstance(template, dict):
        raise InputError("expected a JSON object of \"key\": \"$variable\"",
                         key="--log-format")
    keys = {}
    for key, value in template.items():
        m = VARIABLE.fullmatch(value) if isinstance(value, str) else None
        if m is None:
            raise InputError(f"{key!r}: expected one $variable as the value, got {value!r}",
                             key="--log-format")
        keys[key] = m.group(1) or m.group(2)
    return keys


def mismatch(parts: list[str], names: list[str], log_format: str, text: str) -> str:
    """Where a line stops matching the log_format: after which variable, and at which
    column, so a user can see which field differs."""
    for end in range(len(parts) - 1, 0, -1):
        m = re.match("".join(parts[:end]), text)
        if m:
            # parts: "^", then a literal (odd index) and a field (even) by turns: parts[:end]
            # ends with a field when `end` is odd, so a literal is next, and the reverse.
            fields = (end - 1) // 2
            after = f"${names[fields - 1]}" if fields else "the start"
            nxt = f"${names[fields]}" if end % 2 == 0 and fields < len(names) else \
                repr(_literal_after(log_format, fields))
            return (f"does not match the log_format after {after} (column {m.end() + 1}): "
                    f"expected {nxt} there, found {text[m.end():m.end() + 20]!r}")
    return "does not match the log_format"


def _literal_after(log_format: str, fields: int) -> str:
    """The literal text of the log_format after its `fields`-th variable."""
    spans = [m.span() for m in VARIABLE.finditer(log_format)]
    start = spans[fields - 1][1] if fields else 0
    end = spans[fields][0] if fields < len(spans) else len(log_format)
    return log_format[start:end]


def _unescape(value: str) -> str:
    if "\\x" not in value:
        return value
    raw = ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    # NGINX escaped the bytes of UTF-8 text one by one; put the characters back together.
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


@lru_cache(maxsize=4096)  # one-second resolution: consecutive lines share the text
def _iso_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@lru_cache(maxsize=4096)
def _local_time(text: str) -> float:
    return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").timestamp()


def _time(fields: dict[str, str]) -> float:
    if fields.get("msec"):
        value = float(fields["msec"])
        if not math.isfinite(value):
            raise ValueError(f"{fields['msec']!r} is not a time")
        return value
    if fields.get("time_iso8601"):
        return _iso_time(fields["time_iso8601"])
    return _local_time(fields["time_local"])


class NginxLineParser:
    def __init__(self, log_format: str = STICKLER_FORMAT):
        self.log_format = NAMED_FORMATS.get(log_format, log_format)
        escape, _, rest = self.log_format.partition(" ")
        if escape in ("escape=json", "escape=default", "escape=none"):
            self.log_format = rest.strip().strip("'")
        self.json_keys = json_template(self.log_format)
        if self.json_keys is not None:
            self.names = list(self.json_keys.values())
            _check_names(self.names)
        else:
            self.parts, self.names = format_parts(self.log_format)
            self.pattern = re.compile("".join(self.parts))
        # Which variables are request headers and cookies, worked out once per format.
        self.header_vars = [(name, name[5:].replace("_", "-")) for name in self.names
                            if name.startswith("http_")
                            and name[5:] not in REQUEST_HEADERS_SKIPPED]
        self.cookie_vars = [(name, name[7:]) for name in self.names
                            if name.startswith("cookie_")]

    def _fields(self, text: str) -> dict[str, str]:
        m = self.pattern.match(text)
        if m is None:
            raise Malformed(mismatch(self.parts, self.names, self.log_format, text))
        return {name: _unescape(value) for name, value in zip(self.names, m.groups(),
                                                              strict=True)
                if value not in ("", "-")}

    def _json_fields(self, text: str) -> dict[str, str]:
        """A line of an `escape=json` log: one JSON object, its keys those of the format."""
        try:
            line = json.loads(text)
        except ValueError as exc:
            raise Malformed(f"not a JSON object (escape=json log_format): {exc}") from None
        if not isinstance(line, dict):
            raise Malformed("not a JSON object (escape=json log_format)")
        assert self.json_keys is not None
        return {name: str(line[key]) for key, name in self.json_keys.items()
                if line.get(key) not in (None, "", "-")}

    def __call__(self, text: str) -> ParsedRequest:
        fields = self._json_fields(text) if self.json_keys is not None else \
            self._fields(text)
        try:
            when = _time(fields)
        except (ValueError, KeyError, OverflowError) as exc:
            raise Malformed(f"bad time: {exc}") from None
        if "request" not in fields:
            raise Skip("empty request line (the client sent nothing NGINX could parse)")
        method, path, host = parse_request_line(fields["request"])
        headers = {header: fields[name] for name, header in self.header_vars if name in fields}
        cookies = parse_cookie_header(fields.get("http_cookie", ""))
        for name, cookie in self.cookie_vars:
            if name in fields:
                cookies.setdefault(cookie, fields[name])
        status = fields.get("status", "")
        if status and not (status.isdigit() and (100 <= int(status) <= 999 or
                                                 int(status) == 0)):
            raise Malformed(f"$status: expected a status code (100 to 999), got {status!r}")
        xff = headers.get("x-forwarded-for", "")
        # The first X-Forwarded-For hop is the client the request was sent for (the harness
        # sends simulated client IPs that way); without one, the connection's address.
        remote = fields.get("remote_addr", "").split(",")[0].strip() or None
        client_ip = xff.split(",")[0].strip() or remote
        upstream = fields.get("upstream_addr", "")
        # "a, b" lists retried upstreams and "a : b" internal redirects: the last one served.
        replica = re.split(r", | : ", upstream)[-1] if upstream else None
        return ParsedRequest(
            time=when, method=method, path=path, client_ip=client_ip,
            host=fields.get("host") or host, headers=headers, cookies=cookies,
            status=int(status) if status.isdigit() and 100 <= int(status) <= 999 else None,
            replica=replica)


def import_nginx(path: str | Path, options: ImportOptions, stats: ImportStats, *,
                 log_format: str = STICKLER_FORMAT) -> Iterator:
    parser = NginxLineParser(log_format)
    with open_input(path) as f:
        yield from import_lines(str(path), f, parser, options, stats)
