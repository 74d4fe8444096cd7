"""Routing decisions of the reference proxy (pure: values in, a Route out; randomness and
state are passed in). The server shell applies a Route; it decides nothing itself.

Order of precedence, as Fly.io's proxy documents it: `fly-force-instance-id`, then
`fly-prefer-instance-id`, then the configured affinity mode (a signed cookie, or consistent
hashing on a cookie, a header or the client address), then the default balancing: the least
loaded replica under `soft_limit` concurrent requests, random among equals, then under
`hard_limit`. Citations are in fixtures/expectations/reference.yaml.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.proxy import affinity_cookie
from harness.proxy.ring import HashRing

MODES = ("least-loaded", "cookie", "hash")
FORCE = "fly-force-instance-id"
PREFER = "fly-prefer-instance-id"
PREFERRED_UNAVAILABLE = "fly-preferred-instance-unavailable"


@dataclass(frozen=True)
class Backend:
    id: str
    region: str | None = None
    healthy: bool = True
    inflight: int = 0  # requests in flight to it now
    draining: bool = False  # takes no new sessions; requests pinned to it still go there


@dataclass(frozen=True)
class RouteRequest:
    headers: Mapping[str, str]  # lower-case names
    cookies: Mapping[str, str]
    client_ip: str
    path: str = "/"


@dataclass(frozen=True)
class RouterConfig:
    mode: str = "least-loaded"
    cookie_name: str = "stickler-affinity"  # the proxy's own cookie, in cookie mode
    hash_on: str = "client-ip"  # "cookie:<name>", "header:<name>" or "client-ip"
    soft_limit: int = 20
    hard_limit: int = 25
    secret: bytes = b"stickler-reference-proxy"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        source, _, name = self.hash_on.partition(":")
        if not (self.hash_on == "client-ip" or (source in ("cookie", "header") and name)):
            raise ValueError("hash_on must be client-ip, cookie:<name> or header:<name>, "
                             f"got {self.hash_on!r}")
        if not 0 < self.soft_limit <= self.hard_limit:
            raise ValueError("expected 0 < soft_limit <= hard_limit")


@dataclass(frozen=True)
class Route:
    replica: str | None  # None: no replica; answer `status` to the client
    reason: str
    status: int = 0
    set_cookie: str | None = None  # the affinity cookie value to set on the response
    request_headers: dict[str, str] = field(default_factory=dict)  # added upstream


def least_loaded(backends: Sequence[Backend], config: RouterConfig,
                 rng: random.Random) -> Backend | None:
    """Fly's default: least loaded under soft_limit, random among equals; then under
    hard_limit; None when every healthy replica is at hard_limit (or draining)."""
    healthy = [b for b in backends if b.healthy and not b.draining]
    for limit in (config.soft_limit, config.hard_limit):
        under = [b for b in healthy if b.inflight < limit]
        if under:
            low = min(b.inflight for b in under)
            return rng.choice([b for b in under if b.inflight == low])
    return None


def hash_key(request: RouteRequest, hash_on: str) -> str:
    if hash_on == "client-ip":
        return request.client_ip
    source, _, name = hash_on.partition(":")
    if source == "cookie":
        return request.cookies.get(name, "")
    return request.headers.get(name.lower(), "")


def _balanced(backends: Sequence[Backend], config: RouterConfig, rng: random.Random,
              reason: str, **extra) -> Route:
    chosen = least_loaded(backends, config, rng)
    if chosen is None:
        return Route(None, "no-capacity", status=503, **extra)
    cookie = (affinity_cookie.sign(chosen.id, config.secret) if config.mode == "cookie"
              else None)
    return Route(chosen.id, reason, set_cookie=cookie, **extra)


def route(request: RouteRequest, backends: Sequence[Backend], config: RouterConfig,
          ring: HashRing | None, rng: random.Random) -> Route:
    by_id = {b.id: b for b in backends}
    forced = request.headers.get(FORCE)
    if forced:
        target = by_id.get(forced)
        if target is None:
            return Route(None, "forced-unknown", status=404)
        if not target.healthy or target.inflight >= config.hard_limit:
            # No fallback: the shell retries this decision until its timeout.
            return Route(None, "forced-unavailable", status=503)
        return Route(forced, "forced")

    preferred = request.headers.get(PREFER)
    unavailable: dict[str, str] = {}
    if preferred:
        target = by_id.get(preferred)
        if target and target.healthy and target.inflight < config.hard_limit:
            return Route(preferred, "preferred")
        unavailable = {PREFERRED_UNAVAILABLE: preferred}

    if config.mode == "cookie":
        pinned = affinity_cookie.verify(request.cookies.get(config.cookie_name), config.secret)
        target = by_id.get(pinned) if pinned else None
        if target and target.healthy:
            return Route(target.id, "cookie", request_headers=unavailable)
        reason = ("cookie-missing" if config.cookie_name not in request.cookies
                  else "cookie-invalid" if pinned is None else "cookie-target-down")
        return _balanced(backends, config, rng, reason, request_headers=unavailable)

    if config.mode == "hash":
        key = hash_key(request, config.hash_on)
        if key and ring is not None:
            # A draining replica leaves the ring as a down one does: a hash cannot tell a
            # session it already holds from a new one (HAProxy's weight 0 does the same).
            down = {b.id for b in backends if not b.healthy or b.draining}
            owner = ring.lookup(key, skip=down)
            if owner is not None:
                return Route(owner, "hash", request_headers=unavailable)
        return _balanced(backends, config, rng, "hash-key-empty" if not key else "no-healthy",
                         request_headers=unavailable)

    return _balanced(backends, config, rng, "least-loaded", request_headers=unavailable)
