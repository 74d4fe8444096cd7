"""HAProxy HTTP logs (`option httplog`), as written to stderr (`log stderr format raw`, the
harness's own config) or through syslog (any prefix ending in `]: `).

The httplog format (HAProxy 2.6 configuration.txt, 8.2.3 "HTTP log format"):
  client_ip:port [accept_date] frontend backend/server TR/Tw/Tc/Tr/Ta status bytes_read
  captured_request_cookie captured_response_cookie termination_state
  actconn/feconn/beconn/srv_conn/retries srv_queue/backend_queue
  {captured_request_headers} {captured_response_headers} "http_request"
The header blocks appear only when `capture request header` / `capture response header`
are configured. `request_headers` names the captured request headers in the order of the
`capture request header` lines (the harness captures only Cookie). The accept date has no
zone; it is read as `utc_offset` (else the zone of an ISO 8601 syslog timestamp before the
line, else UTC).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

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
from harness.trace.importers.haproxy_format import compile_log_format, request_line

MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
LINE = re.compile(
    r"(?P<ip>\S+):(?P<port>\d+) "
    r"\[(?P<day>\d\d)/(?P<mon>[A-Z][a-z]{2})/(?P<year>\d{4}):(?P<h>\d\d):(?P<m>\d\d):"
    r"(?P<s>\d\d)(?:\.(?P<ms>\d{3}))?\] "
    r"(?P<frontend>\S+) (?P<backend>[^/ ]+)/(?P<server>\S+) "
    r"(?P<timers>[+-]?\d+(?:/[+-]?\d+){2,4}) (?P<status>-?\d+) (?P<bytes>\+?\d+) "
    r"(?P<req_cookie>\S+) (?P<res_cookie>\S+) (?P<termination>\S{4}) "
    r"(?P<conns>\+?\d+(?:/\+?\d+){4}) (?P<queues>\d+/\d+)"
    r"(?: \{(?P<req_headers>[^}]*)\})?(?: \{(?P<res_headers>[^}]*)\})?"
    r" \"(?P<request>[^\"]*)\"$")
SYSLOG_PREFIX = r"(?:<\d+>)?\S.*? [\w.-]+\[\d+\]: "
# Where an access-log line starts: after a syslog prefix (`... haproxy[123]: `) or at 0.
START = re.compile(rf"^(?:{SYSLOG_PREFIX})?(?=\S+:\d+ \[)")
# HAProxy's own messages: start-up notices on stderr, and events it logs (a server going
# down, a proxy starting), raw or behind a syslog prefix.
EVENTS = (r"Server |Proxy |[Bb]ackend |Frontend |Stopping |Pausing |Resuming |"
          r"Health check |Agent check |Connect from ")
# With a format of the user's, a syslog-prefixed line is HAProxy's own message only if it
# says one of these; any other line that does not match the format is a bad line.
OWN_EVENT = re.compile(rf"^(?:{SYSLOG_PREFIX})?(?:\[(?:NOTICE|WARNING|ALERT)\]|{EVENTS})")
OWN_MESSAGE = re.compile(rf"^(?:\[(?:NOTICE|WARNING|ALERT)\]|{SYSLOG_PREFIX}|(?:{EVENTS}))")
# Access-log lines of a connection that carried no HTTP request: the connection error log
# (`%ci:%cp [%tr] %ft/%fp: %[fc_err_str]`, e.g. "fe/1: SSL handshake failure") and the TCP
# log of a `mode tcp` proxy (`... frontend backend/server Tw/Tc/Tt bytes termination ...`,
# no quoted request).
CONNECTION_ERROR = re.compile(r"\S+:\d+ \[[^\]]+\] [^ /]+/[^ :]+: (?P<error>.+)$")
TCP_LOG = re.compile(r"\S+:\d+ \[[^\]]+\] \S+ [^/ ]+/\S+ [+-]?\d+/[+-]?\d+/[+-]?\d+ \+?\d+ "
                     r"\S{2} [\d/+]+ \d+/\d+$")
ENCODED = re.compile(r"#([0-9A-Fa-f]{2})")


def _decode(text: str) -> str:
    # HAProxy writes '"', '#', '{', '|', '}' and control characters as #XX in logs.
    return ENCODED.sub(lambda m: chr(int(m.group(1), 16)), text) if "#" in text else text


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Days since 1970-01-01 (Howard Hinnant's algorithm); faster than strptime per line.
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _date(text: str, utc_offset: float) -> float:
    """Unix time of HAProxy's `06/Feb/2009:12:14:14[.655][ +0100]`: with a zone when it has
    one (%T, %Tl, %trg, %trl), else local time `utc_offset` seconds east of UTC."""
    m = DATE.fullmatch(text)
    month = MONTHS.get(m["mon"]) if m else None
    if m is None or month is None or not 1 <= int(m["day"]) <= 31:
        raise Malformed(f"bad date: {text[:40]!r}")
    if int(m["h"]) > 23 or int(m["m"]) > 59 or int(m["s"]) > 60:
        raise Malformed("bad accept time")
    offset = utc_offset
    if m["zone"]:
        sign = -1 if m["zone"][0] == "-" else 1
        offset = sign * (int(m["zone"][1:3]) * 3600 + int(m["zone"][3:5]) * 60)
    return (_days_from_civil(int(m["year"]), month, int(m["day"])) * 86400
            + int(m["h"]) * 3600 + int(m["m"]) * 60 + int(m["s"])
            + int(m["ms"] or 0) / 1000 - offset)


DATE = re.compile(r"(?P<day>\d\d)/(?P<mon>[A-Z][a-z]{2})/(?P<year>\d{4}):(?P<h>\d\d):"
                  r"(?P<m>\d\d):(?P<s>\d\d)(?:\.(?P<ms>\d{3}))?(?: (?P<zone>[+-]\d{4}))?")


ISO_PREFIX_ZONE = re.compile(r"^(?:<\d+>\d* )?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?"
                             r"(?P<z>Z|z|[+-]\d\d:\d\d) ")
CAPTURED_SAMPLE = re.compile(r"\[capture\.req\.hdr\((\d+)\)")


class HAProxyLineParser:
    def __init__(self, request_headers: tuple[str, ...] = ("cookie",),
                 utc_offset: float | None = None,
                 log_format: str | None = None):
        self.request_headers = tuple(h.lower() for h in request_headers)
        self.utc_offset = utc_offset
        # None: `option httplog` (the fast path below); else a compiled custom format.
        self.custom = None if log_format in (None, "httplog") else \
            compile_log_format(log_format)

    def _offset(self, prefix: str) -> float:
        """The accept date's zone, in seconds east of UTC: --utc-offset when given, else
        the zone of an RFC 5424 / ISO 8601 syslog timestamp before the line (rsyslog's
        `2026-11-25T15:25:41.123+01:00 host haproxy[1]: `), else UTC."""
        if self.utc_offset is not None:
            return self.utc_offset
        zone = ISO_PREFIX_ZONE.match(prefix)
        if zone is None:
            return 0.0
        if zone["z"] in ("Z", "z"):
            return 0.0
        sign = -1 if zone["z"][0] == "-" else 1
        return sign * (int(zone["z"][1:3]) * 3600 + int(zone["z"][4:6]) * 60)

    def _custom(self, text: str) -> ParsedRequest:
        assert self.custom is not None
        m = self.custom.pattern.match(text)
        if m is None:
            prefix = re.match(SYSLOG_PREFIX, text)
            m = self.custom.pattern.match(text[prefix.end():]) if prefix else None
        if m is None:
            if OWN_EVENT.match(text):
                raise Skip("not an access-log line (HAProxy's own message)")
            raise Malformed(f"does not match the log-format {self.custom.text[:60]!r}")
        v = self.custom.values(m)
        if "Ts" in v:
            try:
                when = int(v["Ts"], 16 if not v["Ts"].isdigit() else 10) + \
                    int(v.get("ms") or 0) / 1000
            except ValueError:
                raise Malformed(f"bad %Ts: {v['Ts']!r}") from None
        else:
            when = _date(next(v[t] for t in ("tr", "trg", "trl", "t", "T", "Tl") if t in v),
                         self._offset(text[:len(text) - len(m.string)] if m.string != text
                                      else ""))
        request = request_line(v)
        if request is None or _decode(request) == "<BADREQ>":
            raise Skip("no request (HAProxy could not parse one)")
        method, path, host = parse_request_line(_decode(request))
        block = v.get("hr")
        if block is None and v.get("hrl") is not None:  # CLF style: "a" "b"
            block = "{" + "|".join(re.findall(r'"([^"]*)"', v["hrl"])) + "}"
        if block == "{}" and not self.request_headers:
            block = None
        headers, cookies = self._captured(block, v.get("CC") or "-")
        for key, value in v.items():  # %[capture.req.hdr(N)]: the N-th --capture header
            n = CAPTURED_SAMPLE.match(key)
            if n and int(n[1]) < len(self.request_headers) and value not in ("", "-"):
                name = self.request_headers[int(n[1])]
                if name == "cookie":
                    cookies.update(parse_cookie_header(_decode(value)))
                else:
                    headers[name] = _decode(value)
        status = int(v["ST"]) if v.get("ST", "").lstrip("-").isdigit() else 0
        server = v.get("s", "<NOSRV>")
        return ParsedRequest(
            time=when, method=method, path=path, client_ip=v.get("ci"),
            host=headers.pop("host", host), headers=headers, cookies=cookies,
            set_cookies=[_decode(v["CS"])] if v.get("CS") not in (None, "", "-") else [],
            status=status if 100 <= status <= 999 else None,
            replica=None if server.startswith("<") else server)

    def _captured(self, block: str | None, req_cookie: str) -> tuple[dict, dict]:
        """The captured request headers (a `{a|b}` block, named by --capture) and cookies."""
        headers: dict[str, str] = {}
        cookies: dict[str, str] = {}
        if block is not None:
            values = block.strip("{}").split("|")
            if len(values) != len(self.request_headers):
                raise Malformed(f"the line has {len(values)} captured request header"
                                f"{'s' if len(values) != 1 else ''}, and --capture names "
                                f"{len(self.request_headers)} "
                                f"({', '.join(self.request_headers)}): name them all, in "
                                f"the order of the `capture request header` lines")
            for name, value in zip(self.request_headers, values, strict=True):
                if value:
                    headers[name] = _decode(value)
            if "=" not in headers.get("cookie", "="):
                raise Malformed(f"the captured header read as Cookie is "
                                f"{headers['cookie'][:40]!r}, which is no Cookie header: "
                                f"name the captured headers with --capture, in the order "
                                f"of the `capture request header` lines")
        if "cookie" in headers:
            cookies.update(parse_cookie_header(headers.pop("cookie")))
        if req_cookie != "-":  # `capture cookie NAME`: NAME=value as sent
            cookies.update(parse_cookie_header(_decode(req_cookie)))
        return headers, cookies

    def __call__(self, text: str) -> ParsedRequest:
        if self.custom is not None:
            return self._custom(text)
        start = START.match(text)
        if start is None:
            if OWN_MESSAGE.match(text):
                raise Skip("not an access-log line (HAProxy's own message)")
            raise Malformed("not an HAProxy log line")
        m = LINE.match(text, start.end())
        if m is None:
            error = CONNECTION_ERROR.match(text, start.end())
            if error:
                raise Skip(f"a connection that sent no request ({error['error'][:60]})")
            if TCP_LOG.match(text, start.end()):
                raise Skip("a TCP log line (`mode tcp`): no HTTP request")
            raise Malformed("not an `option httplog` line: expected 'ip:port [date] "
                            "frontend backend/server timers status bytes cookies "
                            "termination conns queues {headers} \"request\"' (for "
                            "`option httpslog` or your own log-format, give --log-format)")
        month = MONTHS.get(m["mon"])
        if month is None or not (1 <= int(m["day"]) <= 31):
            raise Malformed(f"bad accept date: {m['day']}/{m['mon']}/{m['year']}")
        if int(m["h"]) > 23 or int(m["m"]) > 59 or int(m["s"]) > 60:
            raise Malformed("bad accept time")
        when = (_days_from_civil(int(m["year"]), month, int(m["day"])) * 86400
                + int(m["h"]) * 3600 + int(m["m"]) * 60 + int(m["s"])
                + int(m["ms"] or 0) / 1000 - self._offset(text[:start.end()]))
        request = _decode(m["request"])
        if request == "<BADREQ>":
            raise Skip("<BADREQ>: HAProxy could not parse the request")
        method, path, host = parse_request_line(request)
        headers, cookies = self._captured(m["req_headers"], m["req_cookie"])
        set_cookies = [_decode(m["res_cookie"])] if m["res_cookie"] != "-" else []
        if "host" in headers:
            host = headers.pop("host")
        status = int(m["status"])
        server = m["server"]
        return ParsedRequest(
            time=when, method=method, path=path, client_ip=m["ip"], host=host,
            headers=headers, cookies=cookies, set_cookies=set_cookies,
            status=status if 100 <= status <= 999 else None,
            replica=None if server.startswith("<") else server)


def import_haproxy(path: str | Path, options: ImportOptions, stats: ImportStats, *,
                   request_headers: tuple[str, ...] = ("cookie",),
                   utc_offset: float | None = None, log_format: str | None = None) -> Iterator:
    parser = HAProxyLineParser(request_headers, utc_offset, log_format)
    with open_input(path) as f:
        yield from import_lines(str(path), f, parser, options, stats)
