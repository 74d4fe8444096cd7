"""Replay caching of the reference proxy: remembered `fly-replay` decisions (which replica a
request is replayed to), as Fly.io's proxy documents them (docs/research/fly-citations.md,
section 8). Values in, values out; no I/O. The only state is the cache itself, and time comes
from an injectable clock.

Two kinds of entries, both with a TTL of at least 10 seconds:

- session-based: rules from the proxy config (fly.toml's `replay_cache`) name a cookie or a
  header; after the origin replies `fly-replay`, the decision is cached per
  (hostname, rule, session value). Only the rule with the longest matching path applies.
- path-based: the origin's response carries `fly-replay-cache: <pattern>` and
  `fly-replay-cache-ttl-secs`; the decision is cached per (hostname, pattern).

`lookup` checks the session entry first, then path entries (longest pattern first). The server
shell sends a hit straight to its target with `fly-replay-cache-status: hit`; on a miss it asks
the origin and, when the origin replays, sets `fly-replay-cache-status: miss` itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

MIN_TTL_SECONDS = 10  # "Minimum value is 10 seconds." / "a minimum of 10 seconds"
RULE_TYPES = ("cookie", "header")
CACHE_STATUS = "fly-replay-cache-status"
CACHE_CONTROL = "fly-replay-cache-control"  # "skip": the client asks to bypass the cache
SKIP = "skip"
HIT = "hit"
BYPASS = "bypass"


def parse_pattern(pattern: str) -> tuple[str | None, str]:
    """`/api`, `/api/`, `/api/*`, `example.com/api` -> (host or None, normalised path prefix).

    The prefix has no trailing slash ("/" becomes ""), because every pattern implicitly ends
    with `/*`. Raises ValueError for an empty pattern, a protocol, a port, or a `*` anywhere
    but a trailing `/*` (the docs only describe that wildcard)."""
    if not pattern:
        raise ValueError("empty path pattern")
    if "://" in pattern:
        raise ValueError(f"pattern must not include a protocol: {pattern!r}")
    if pattern.startswith("/"):
        host, path = None, pattern
    else:
        host, slash, rest = pattern.partition("/")
        path = slash + rest if slash else "/"
        if ":" in host:
            raise ValueError(f"pattern must not include a port: {pattern!r}")
        host = host.lower()
    if path.endswith("/*"):
        path = path[:-2]
    if "*" in path:
        raise ValueError(f"only a trailing /* wildcard is supported: {pattern!r}")
    return host, path.rstrip("/")


def prefix_matches(prefix: str, path: str) -> bool:
    """Implicit `/*`: "/api" matches "/api", "/api/" and "/api/x", not "/apix"."""
    return path == prefix or path.startswith(prefix + "/")


def _request_path(path: str) -> str:
    path = path.partition("?")[0]
    return path if path.startswith("/") else "/" + path


def _check_ttl(ttl_seconds: float) -> None:
    if ttl_seconds < MIN_TTL_SECONDS:
        raise ValueError(f"ttl must be at least {MIN_TTL_SECONDS} seconds, got {ttl_seconds}")


@dataclass(frozen=True)
class SessionRule:
    path_prefix: str  # "/api" (any host) or "example.com/api"; implicitly ends with /*
    ttl_seconds: int  # minimum 10
    type: str  # "cookie" or "header"
    name: str  # the cookie or header whose value keys the cache
    allow_bypass: bool = False  # clients may send fly-replay-cache-control: skip

    def __post_init__(self) -> None:
        parse_pattern(self.path_prefix)
        _check_ttl(self.ttl_seconds)
        if self.type not in RULE_TYPES:
            raise ValueError(f"type must be cookie or header, got {self.type!r}")
        if not self.name:
            raise ValueError("name must be a cookie or header name")

    @property
    def host(self) -> str | None:
        return parse_pattern(self.path_prefix)[0]

    @property
    def prefix(self) -> str:
        return parse_pattern(self.path_prefix)[1]

    def applies_to(self, host: str, path: str) -> bool:
        rule_host, prefix = parse_pattern(self.path_prefix)
        return rule_host in (None, host.lower()) and prefix_matches(prefix, _request_path(path))

    def key(self, cookies: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
        """The session value of a request, or None when it carries none (an empty value
        counts as none, as in routing.hash_key)."""
        value = (cookies.get(self.name) if self.type == "cookie"
                 else headers.get(self.name.lower()))
        return value or None


@dataclass(frozen=True)
class CachedTarget:
    instance: str  # the replica the cached decision points to
    source: str  # "session" or "path"


@dataclass(frozen=True)
class Lookup:
    target: str | None  # replica to send the request to directly; None: ask the origin
    status: str | None  # fly-replay-cache-status for the target: "hit", "bypass" or None


@dataclass(frozen=True)
class _Entry:
    target: CachedTarget
    expires_at: float
    allow_bypass: bool


MISS = Lookup(None, None)


def validate_cacheable(replay_fields: Mapping[str, str]) -> list[str]:
    """Why a `fly-replay` (its fields, e.g. {"instance": "abc", "state": "x"}) cannot be cached,
    per the docs' "Requirements and limitations"; an empty list means it can be. A field that is
    present counts as set, whatever its value."""
    fields = {k.lower() for k in replay_fields}
    reasons = []
    if "state" in fields:
        reasons.append("the state field cannot be set in a cached fly-replay")
    transforms = sorted(f for f in fields if f.startswith("transform"))
    if transforms:
        reasons.append("header or path transformations cannot be defined in a cached "
                       f"fly-replay ({', '.join(transforms)})")
    reasons.extend(f"the {name} field cannot be set in a cached fly-replay"
                   for name in ("timeout", "fallback") if name in fields)
    return reasons


class ReplayCache:
    """Session- and path-based replay caches. Hostnames are compared case-insensitively and
    passed without a port; header names in `headers` are lower-case."""

    def __init__(self, rules: Sequence[SessionRule] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        seen: dict[tuple[str | None, str], SessionRule] = {}
        for rule in rules:
            where = (rule.host, rule.prefix)
            if where in seen:
                raise ValueError(f"two replay_cache rules for the same path: "
                                 f"{seen[where].path_prefix!r} and {rule.path_prefix!r}")
            seen[where] = rule
        # "the longest matching path takes precedence": longest path prefix first; for equal
        # prefixes a host-qualified rule (more specific) before one for any host.
        self._rules = sorted(rules, key=lambda r: (len(r.prefix), r.host is not None),
                             reverse=True)
        self._clock = clock
        self._sessions: dict[tuple[str, SessionRule, str], _Entry] = {}
        self._paths: dict[str, dict[str, _Entry]] = {}  # host -> path prefix -> entry
        self._next_sweep = float("-inf")

    # ---- helpers -------------------------------------------------------------------------

    def rule_for(self, host: str, path: str) -> SessionRule | None:
        """The one session rule that applies to a request: the longest matching one."""
        return next((r for r in self._rules if r.applies_to(host, path)), None)

    def _session_key(self, host: str, path: str, cookies: Mapping[str, str],
                     headers: Mapping[str, str]) -> tuple[str, SessionRule, str] | None:
        rule = self.rule_for(host, path)
        value = rule.key(cookies, headers) if rule else None
        return (host.lower(), rule, value) if rule and value else None

    def _live(self, entry: _Entry, now: float) -> bool:
        return now < entry.expires_at

    def _sweep(self, now: float) -> None:
        """Drop expired entries, at most once per MIN_TTL_SECONDS, so session entries of
        clients that never come back do not accumulate."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + MIN_TTL_SECONDS
        self._sessions = {k: e for k, e in self._sessions.items() if self._live(e, now)}
        for host in list(self._paths):
            live = {p: e for p, e in self._paths[host].items() if self._live(e, now)}
            if live:
                self._paths[host] = live
            else:
                del self._paths[host]

    # ---- the API -------------------------------------------------------------------------

    def lookup(self, host: str, path: str, cookies: Mapping[str, str],
               headers: Mapping[str, str]) -> Lookup:
        now = self._clock()
        host = host.lower()
        path = _request_path(path)
        # Bypass is honoured only where the rule/entry allows it; otherwise the skip header is
        # ignored and a cached decision is used. Fly's docs are silent on this case; they make
        # bypass opt-in so that clients cannot load the replaying machine at will, and ignoring
        # the header keeps that protection.
        skip = headers.get(CACHE_CONTROL, "").strip().lower() == SKIP

        key = self._session_key(host, path, cookies, headers)
        if key is not None:
            if skip and key[1].allow_bypass:
                # "even though the cache might have been set": bypass whether or not it is
                return Lookup(None, BYPASS)
            entry = self._sessions.get(key)
            if entry is not None:
                if self._live(entry, now):
                    return Lookup(entry.target.instance, HIT)
                del self._sessions[key]

        entries = self._paths.get(host, {})
        for prefix in sorted(entries, key=len, reverse=True):
            if not prefix_matches(prefix, path):
                continue
            entry = entries[prefix]
            if not self._live(entry, now):
                del entries[prefix]
                continue
            if skip and entry.allow_bypass:
                return Lookup(None, BYPASS)
            return Lookup(entry.target.instance, HIT)
        return MISS

    def store_session(self, host: str, path: str, cookies: Mapping[str, str],
                      headers: Mapping[str, str], instance: str) -> bool:
        """The origin replied `fly-replay` to `instance`: remember it for this request's session
        under the rule that applies. False when no rule applies or the request has no key."""
        if not instance:
            raise ValueError("instance must be a replica id")
        now = self._clock()
        self._sweep(now)
        key = self._session_key(host, path, cookies, headers)
        if key is None:
            return False
        self._sessions[key] = _Entry(CachedTarget(instance, "session"),
                                     now + key[1].ttl_seconds, key[1].allow_bypass)
        return True

    def store_path(self, host: str, pattern: str, ttl_seconds: int, instance: str,
                   allow_bypass: bool = False, request_path: str | None = None) -> None:
        """`fly-replay-cache: <pattern>` with `fly-replay-cache-ttl-secs: <ttl_seconds>` (and
        `fly-replay-cache-allow-bypass: yes` -> allow_bypass). A host in the pattern overrides
        `host`. With `request_path`, the pattern must match the current request: its host (if
        any) must be `host` and its path must cover `request_path`; else ValueError."""
        if not instance:
            raise ValueError("instance must be a replica id")
        _check_ttl(ttl_seconds)
        pattern_host, prefix = parse_pattern(pattern)
        host = host.lower()
        if request_path is not None and not (
                pattern_host in (None, host)
                and prefix_matches(prefix, _request_path(request_path))):
            raise ValueError(f"pattern {pattern!r} does not match the current request "
                             f"{host}{request_path}")
        now = self._clock()
        self._sweep(now)
        self._paths.setdefault(pattern_host or host, {})[prefix] = _Entry(
            CachedTarget(instance, "path"), now + ttl_seconds, allow_bypass)

    def invalidate(self, host: str, path: str, cookies: Mapping[str, str],
                   headers: Mapping[str, str]) -> int:
        """`fly-replay-cache: invalidate` from the replay target: drop this request's session
        entry (under the rule that applies) and every path entry of this host matching the
        path. Returns how many live entries were dropped (expired ones go silently)."""
        now = self._clock()
        host = host.lower()
        path = _request_path(path)
        dropped = 0
        key = self._session_key(host, path, cookies, headers)
        if key is not None and key in self._sessions:
            dropped += self._live(self._sessions.pop(key), now)
        entries = self._paths.get(host, {})
        for prefix in [p for p in entries if prefix_matches(p, path)]:
            dropped += self._live(entries.pop(prefix), now)
        return dropped

    def __len__(self) -> int:
        now = self._clock()
        return (sum(self._live(e, now) for e in self._sessions.values())
                + sum(self._live(e, now) for es in self._paths.values() for e in es.values()))
