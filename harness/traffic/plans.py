"""Session plans: what each simulated user will send, as plain seeded data (no I/O)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from harness.traffic.identity import client_address

PAUSE = "PAUSE"  # a Step that sends nothing: the session waits `path` seconds


@dataclass(frozen=True)
class Step:
    method: str  # an HTTP method, or PAUSE
    path: str


@dataclass(frozen=True)
class SessionPlan:
    user: str
    session: str
    client_ip: str
    steps: tuple[Step, ...]
    keep_cookies: bool = True  # False: a client that never returns cookies
    connection: str = "new"  # "new": a connection per request; "keepalive": one per session
    headers: dict[str, str] = field(default_factory=dict)  # sent on every request
    initial_cookies: dict[str, str] = field(default_factory=dict)  # e.g. a forged cookie
    body_bytes: int = 0  # size of each POST body (an upload), zero bytes by default
    cart_before: int = 0  # items already in the cart: a session that goes on from earlier


ITEMS = ("apple", "bread", "cheese", "dates", "eggs", "flour", "grapes", "honey")


def shopper_steps(rng: random.Random, n: int, first: str = "POST") -> tuple[Step, ...]:
    """A shopper who browses and adds to the cart. With `first` POST (the default) the cart
    holds an item from request 0, so a session whose first request is misplaced shows it;
    GET-cacheable starts with a response carrying freshness information (max-age)."""
    firsts = {"POST": Step("POST", f"/cart?item={rng.choice(ITEMS)}"),
              "GET": Step("GET", "/cart"),
              "GET-cacheable": Step("GET", "/cart?cacheable=1")}
    if first not in firsts:
        raise ValueError(f"first must be one of {', '.join(firsts)}, got {first!r}")
    steps = [firsts[first]]
    while len(steps) < n:
        if rng.random() < 0.5:
            steps.append(Step("POST", f"/cart?item={rng.choice(ITEMS)}"))
        else:
            steps.append(Step("GET", "/cart"))
    return tuple(steps)


def _moved(steps: tuple[Step, ...], move: tuple[int, str] | None) -> tuple[Step, ...]:
    """Ask the app (query move_to) to move the session to another replica at request n."""
    if not move or not move[1] or move[0] >= len(steps):
        return steps
    at, target = move
    step = steps[at]
    joiner = "&" if "?" in step.path else "?"
    return (*steps[:at], Step(step.method, f"{step.path}{joiner}move_to={target}"),
            *steps[at + 1:])


def _paused(steps: tuple[Step, ...], pause: tuple[int, float] | None) -> tuple[Step, ...]:
    """Insert a pause of `pause[1]` seconds after the first `pause[0]` requests."""
    if not pause or pause[1] <= 0:
        return steps
    at, seconds = pause
    return (*steps[:at], Step(PAUSE, f"{seconds:g}"), *steps[at:])


def _reversing(pause: tuple[int, float] | None, i: int, count: int,
               stagger: float) -> tuple[int, float] | None:
    if not pause or not stagger or pause[1] <= 0:
        return pause
    return pause[0], max(0.0, pause[1] + (count - 1 - 2 * i) * stagger)


def _staggered(steps: tuple[Step, ...], delay: float) -> tuple[Step, ...]:
    return (Step(PAUSE, f"{delay:g}"), *steps) if delay > 0 else steps


def sessions(rng: random.Random, count: int, length: int, *, prefix: str = "s",
             connection: str = "new", keep_cookies: bool = True,
             header: str | None = None, initial_cookies: dict[str, str] | None = None,
             same_prefix_group: int | None = None, first_group: int = 0,
             first: str = "POST",
             extra_headers: dict[str, str] | None = None,
             pause: tuple[int, float] | None = None,
             move: tuple[int, str] | None = None, body_bytes: int = 0,
             stagger: float = 0.0) -> list[SessionPlan]:
    """`count` sessions of `length` requests, each from its own /24 unless
    `same_prefix_group` puts them all in one /24 (varying only the last octet).

    With `stagger`, session i starts i * stagger seconds in, and its `pause` is cut so that
    the sessions come back from it in the reverse order, `stagger` apart: a balancer that
    balances them again (round robin) then sees them in another order than the first time,
    whatever the threads' timing."""
    if connection not in ("new", "keepalive"):
        raise ValueError(f"connection must be new or keepalive, got {connection!r}")
    plans = []
    for i in range(count):
        if same_prefix_group is not None:
            ip = client_address(same_prefix_group, host=1 + i % 254)
        else:
            ip = client_address(first_group + i, host=rng.randint(1, 254))
        headers = {header: f"{prefix}{i}-{rng.getrandbits(32):08x}"} if header else {}
        headers.update(extra_headers or {})
        plans.append(SessionPlan(
            user=f"{prefix}{i}", session=f"{prefix}{i}", client_ip=ip,
            steps=_staggered(_paused(_moved(shopper_steps(rng, length, first), move),
                                     _reversing(pause, i, count, stagger)), i * stagger),
            keep_cookies=keep_cookies,
            connection=connection, headers=headers,
            initial_cookies=dict(initial_cookies or {}), body_bytes=body_bytes,
        ))
    return plans
