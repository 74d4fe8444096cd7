"""Session keys (pure): which requests of an imported trace belong to one user session.

Rules (`--session-key`):
- `auto` (default): the first session cookie present, by name, from SESSION_COOKIES; for
  a request without one, the session cookie its recorded response set (HAR only); else
  the client IP.
- `cookie:NAME`: that cookie (sent, or set by the recorded response), else the client IP.
- `header:NAME`: that request header, else the client IP.
- `ip`: the client IP.
Keys read `cookie:NAME=VALUE`, `header:NAME=VALUE` or `ip:ADDRESS`, so redaction can tell
which keys carry a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import InputError

# Application session cookies, most specific first. Affinity cookies such as SRVID name a
# replica, shared by many sessions, so they are not session keys.
SESSION_COOKIES = ("sid", "session", "sessionid", "session_id", "JSESSIONID", "PHPSESSID",
                   "ASP.NET_SessionId", "connect.sid", "_session_id")
RULE = re.compile(r"^(auto|ip|cookie:[!#$%&'*+.^_`|~0-9A-Za-z-]+|header:[0-9A-Za-z-]+)$")


@dataclass(frozen=True)
class SessionKeyRule:
    kind: str  # auto, ip, cookie, header
    name: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind

    def key(self, *, cookies: dict[str, str], headers: dict[str, str],
            client_ip: str | None, set_cookies: list[str] = ()) -> str:
        if self.kind == "header":
            value = headers.get(self.name.lower())
            if value:
                return f"header:{self.name.lower()}={value}"
        elif self.kind in ("cookie", "auto"):
            names = (self.name,) if self.kind == "cookie" else SESSION_COOKIES
            for name in names:
                if cookies.get(name):
                    return f"cookie:{name}={cookies[name]}"
            set_by_response = set_cookie_values(set_cookies)
            for name in names:
                if set_by_response.get(name):
                    return f"cookie:{name}={set_by_response[name]}"
        return f"ip:{client_ip or 'unknown'}"


def set_cookie_values(set_cookies: list[str] | tuple[str, ...]) -> dict[str, str]:
    values = {}
    for header in set_cookies:
        name, eq, value = header.partition(";")[0].partition("=")
        if eq:
            values[name.strip()] = value.strip()
    return values


def parse_rule(text: str) -> SessionKeyRule:
    if not RULE.match(text):
        raise InputError(f"expected auto, ip, cookie:NAME or header:NAME, got {text!r}",
                         key="--session-key")
    kind, _, name = text.partition(":")
    return SessionKeyRule(kind, name)
