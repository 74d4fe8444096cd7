"""Secret redaction of trace records (pure): applied on import unless the user opts out.

Redacted by default: the Authorization and Proxy-Authorization headers and any header
named like token/key/password/secret, every cookie value except the affinity cookies
(kept, since replay and diagnosis need them), the values of recorded Set-Cookie headers
(again except affinity cookies), query and form parameters named like token/key/password,
and session keys made from a redacted cookie (replaced by a hash, so requests of one
session still share a key).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode

from harness.trace.format import TraceRecord

REDACTED = "REDACTED"
# Affinity cookies of the balancers Stickler drives (HAProxy's usual names, the reference
# proxy's default); `--keep-cookie` adds more.
DEFAULT_KEEP_COOKIES = ("SRVID", "SERVERID", "stickler-affinity")
DEFAULT_SECRET_NAMES = r"token|key|password|passwd|secret"
ALWAYS_SECRET_HEADERS = ("authorization", "proxy-authorization")


@dataclass(frozen=True)
class RedactionPolicy:
    keep_cookies: frozenset[str] = frozenset(DEFAULT_KEEP_COOKIES)
    secret_names: str = DEFAULT_SECRET_NAMES  # regex, searched case-insensitively

    @cached_property
    def _secret(self) -> re.Pattern[str]:
        return re.compile(self.secret_names, re.IGNORECASE)

    @cached_property
    def _verdicts(self) -> dict[str, bool]:
        return {}

    def is_secret(self, name: str) -> bool:
        # Header, cookie and parameter names repeat on every request: remember verdicts.
        verdict = self._verdicts.get(name)
        if verdict is None:
            verdict = self._secret.search(name) is not None
            if len(self._verdicts) < 4096:
                self._verdicts[name] = verdict
        return verdict


def hash_value(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def redact_query(query: str, policy: RedactionPolicy) -> str:
    if not query or not any(policy.is_secret(unquote_plus(part.partition("=")[0]))
                            for part in query.split("&")):
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(policy.is_secret(k) for k, _ in pairs):
        return query  # leave the bytes exactly as recorded when nothing is secret
    return urlencode([(k, REDACTED if policy.is_secret(k) else v) for k, v in pairs],
                     quote_via=quote, safe="/:@")


def redact_path(path: str, policy: RedactionPolicy) -> str:
    base, sep, query = path.partition("?")
    return base + sep + redact_query(query, policy) if sep else path


def redact_set_cookie(value: str, policy: RedactionPolicy) -> str:
    pair, sep, attributes = value.partition(";")
    name, eq, _ = pair.partition("=")
    if not eq or name.strip() in policy.keep_cookies:
        return value
    return f"{name.strip()}={REDACTED}{sep}{attributes}"


@lru_cache(maxsize=65536)  # a session's key recurs on each of its requests
def _hashed_session(session: str) -> str:
    return f"hash:{hash_value(session)}"


def redact_session(session: str, policy: RedactionPolicy) -> str:
    """`cookie:NAME=VALUE` and `header:NAME=VALUE` keys carry secrets unless NAME is kept."""
    kind, _, rest = session.partition(":")
    name = rest.partition("=")[0]
    if (kind == "cookie" and name not in policy.keep_cookies) or kind == "header":
        return _hashed_session(session)
    return session


def redact(record: TraceRecord, policy: RedactionPolicy) -> TraceRecord:
    headers = {k: REDACTED if k in ALWAYS_SECRET_HEADERS or policy.is_secret(k) else v
               for k, v in record.headers_sent.items()}
    cookies = {k: v if k in policy.keep_cookies else REDACTED
               for k, v in record.cookies_sent.items()}
    body, body_sha256, body_size = record.body, record.body_sha256, record.body_size
    content_type = record.headers_sent.get("content-type", "")
    if body is not None and content_type.startswith("application/x-www-form-urlencoded"):
        redacted_body = redact_query(body, policy)
        if redacted_body != body:
            # The hash would let a dictionary attack recover the secret: drop it too.
            body, body_sha256 = redacted_body, None
            body_size = len(body.encode("utf-8", "surrogatepass"))
    # A new record sharing the unchanged values (copy.copy is 3x slower per record).
    redacted = object.__new__(TraceRecord)
    redacted.__dict__.update(
        record.__dict__, headers_sent=headers, cookies_sent=cookies, body=body,
        body_size=body_size, body_sha256=body_sha256, path=redact_path(record.path, policy),
        set_cookies=[redact_set_cookie(c, policy) for c in record.set_cookies],
        session=redact_session(record.session, policy))
    return redacted
