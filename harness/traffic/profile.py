"""Profile: a seeded description of a user population for the load driver (pure).

`load_profile(path)` validates a YAML file, naming the file, line and key of any mistake;
`population(profile, seed)` turns it into one `UserSpec` per simulated user.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.traffic.identity import GROUPS, client_address
from harness.yamlsrc import Doc, load, parse

MAX_USERS = 5000
MOBILE_ADDRESSES = 4  # addresses a mobile user rotates through, each in its own /24
KINDS = ("plain", "nat", "mobile", "cdn", "hot", "dropper")
# Labels for the addresses CDN users claim in X-Forwarded-For (never sent to): 198.51.100.0/24
# first, then 100.64.0.0/10.
DOC_NET_HOSTS = 254


@dataclass(frozen=True)
class SessionLength:
    min: int = 3
    alpha: float = 1.5
    max: int = 60


@dataclass(frozen=True)
class ThinkTime:
    min: float = 50
    max: float = 500


@dataclass(frozen=True)
class Nat:
    share: float = 0.0
    group_size: int = 20


@dataclass(frozen=True)
class Mobile:
    share: float = 0.0
    switch_every: int = 5


@dataclass(frozen=True)
class Cdn:
    share: float = 0.0
    edges: int = 3


@dataclass(frozen=True)
class Hot:
    count: int = 0
    multiplier: float = 100


@dataclass(frozen=True)
class Profile:
    name: str = "profile"
    users: int = 50
    spawn_rate: float = 10
    session_length: SessionLength = SessionLength()
    think_time_ms: ThinkTime = ThinkTime()
    nat: Nat = Nat()
    mobile: Mobile = Mobile()
    cdn: Cdn = Cdn()
    hot: Hot = Hot()
    cookie_droppers: float = 0.0
    seed: int | None = None  # pins the run's seed when set
    description: str = ""
    source: str | None = None

    def counts(self) -> dict[str, int]:
        """Users per kind; shares are rounded half up."""
        def share(s: float) -> int:
            return int(s * self.users + 0.5)

        special = {"nat": share(self.nat.share), "mobile": share(self.mobile.share),
                   "cdn": share(self.cdn.share), "hot": self.hot.count,
                   "dropper": share(self.cookie_droppers)}
        return {"plain": self.users - sum(special.values()), **special}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UserSpec:
    id: str
    index: int
    kind: str
    addresses: tuple[str, ...]  # source addresses; a mobile user rotates through them
    xff: str | None  # the address a CDN user claims in X-Forwarded-For
    keep_cookies: bool
    think_ms: tuple[float, float]
    switch_every: int  # requests per address (mobile); 0: never switches
    session_length: tuple[int, float, int]  # Pareto min, alpha, cap
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserSpec:
        return cls(**{**data, "addresses": tuple(data["addresses"]),
                      "think_ms": tuple(data["think_ms"]),
                      "session_length": tuple(data["session_length"])})


def session_length(rng: random.Random, spec: UserSpec) -> int:
    """Requests in one session: Pareto(alpha) scaled by min, capped at max."""
    low, alpha, cap = spec.session_length
    return min(cap, int(low * rng.paretovariate(alpha)))


def population(profile: Profile, seed: int) -> list[UserSpec]:
    """One UserSpec per user, the same for the same (profile, seed)."""
    rng = random.Random(f"stickler-population:{seed}")
    counts = profile.counts()
    kinds = [k for k in KINDS[1:] for _ in range(counts[k])]
    kinds += ["plain"] * counts["plain"]
    rng.shuffle(kinds)
    nat_groups = -(-counts["nat"] // profile.nat.group_size)
    edges = profile.cdn.edges if counts["cdn"] else 0
    needed = (counts["plain"] + counts["hot"] + counts["dropper"]
              + MOBILE_ADDRESSES * counts["mobile"] + nat_groups + edges)
    groups = iter(rng.sample(range(GROUPS), needed))  # seeds vary the /24s a balancer hashes

    def fresh() -> str:
        return client_address(next(groups), rng.randint(1, 254))

    nat_ips = [fresh() for _ in range(nat_groups)]
    edge_ips = [fresh() for _ in range(edges)]
    seen = {"nat": 0, "cdn": 0}
    think = profile.think_time_ms
    length = (profile.session_length.min, profile.session_length.alpha,
              profile.session_length.max)
    specs = []
    for index, kind in enumerate(kinds):
        xff, switch, think_ms = None, 0, (think.min, think.max)
        if kind == "nat":
            addresses = (nat_ips[seen["nat"] // profile.nat.group_size],)
        elif kind == "cdn":
            addresses = (edge_ips[seen["cdn"] % edges],)
            xff = _xff_label(seen["cdn"])
        elif kind == "mobile":
            addresses = tuple(fresh() for _ in range(MOBILE_ADDRESSES))
            switch = profile.mobile.switch_every
        else:
            addresses = (fresh(),)
        if kind in seen:
            seen[kind] += 1
        if kind == "hot":
            think_ms = (think.min / profile.hot.multiplier, think.max / profile.hot.multiplier)
        specs.append(UserSpec(
            id=f"u{index}", index=index, kind=kind, addresses=addresses, xff=xff,
            keep_cookies=kind != "dropper", think_ms=think_ms, switch_every=switch,
            session_length=length, seed=rng.getrandbits(64)))
    return specs


def _xff_label(i: int) -> str:
    if i < DOC_NET_HOSTS:
        return f"198.51.100.{i + 1}"
    j = i - DOC_NET_HOSTS
    return f"100.{64 + j // (256 * 254)}.{(j // 254) % 256}.{j % 254 + 1}"


# ---- loading -------------------------------------------------------------------------

TOP_KEYS = ("name", "description", "users", "spawn_rate", "session_length", "think_time_ms",
            "nat", "mobile", "cdn", "hot", "cookie_droppers", "seed")


def _number(doc: Doc, path: str, value: Any, *, integer: bool = False, low: float = 0,
            high: float | None = None, above: bool = False) -> Any:
    """`value` as an int (or a number) in [low, high] (or (low, high] with `above`)."""
    kinds = (int,) if integer else (int, float)
    what = "an integer" if integer else "a number"
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise doc.error(path, f"expected {what}, got {value!r}")
    if not math.isfinite(value):
        raise doc.error(path, f"expected a finite number, got {value}")
    if value < low or (above and value == low) or (high is not None and value > high):
        bound = f"above {low}" if above else f"at least {low}"
        if high is not None:
            bound += f" and at most {high}"
        raise doc.error(path, f"expected {what} {bound}, got {value}")
    return value


def _section(doc: Doc, data: dict, key: str, cls: type) -> dict[str, Any]:
    fields = list(cls.__dataclass_fields__)
    given = doc.mapping(data.get(key) or {}, key, fields)
    defaults = asdict(cls())
    return {f: given.get(f, defaults[f]) for f in fields}


def from_doc(doc: Doc) -> Profile:
    data = doc.mapping(doc.data, "", TOP_KEYS)
    num = _number
    users = num(doc, "users", data.get("users", 50), integer=True, low=1, high=MAX_USERS)
    spawn_rate = num(doc, "spawn_rate", data.get("spawn_rate", 10), above=True)

    s = _section(doc, data, "session_length", SessionLength)
    low = num(doc, "session_length.min", s["min"], integer=True, low=1)
    length = SessionLength(
        low, num(doc, "session_length.alpha", s["alpha"], above=True),
        num(doc, "session_length.max", s["max"], integer=True, low=low))
    t = _section(doc, data, "think_time_ms", ThinkTime)
    t_min = num(doc, "think_time_ms.min", t["min"])
    think = ThinkTime(t_min, num(doc, "think_time_ms.max", t["max"], low=t_min))

    n = _section(doc, data, "nat", Nat)
    nat = Nat(num(doc, "nat.share", n["share"], high=1),
              num(doc, "nat.group_size", n["group_size"], integer=True, low=2, high=254))
    m = _section(doc, data, "mobile", Mobile)
    mobile = Mobile(num(doc, "mobile.share", m["share"], high=1),
                    num(doc, "mobile.switch_every", m["switch_every"], integer=True, low=1))
    c = _section(doc, data, "cdn", Cdn)
    cdn = Cdn(num(doc, "cdn.share", c["share"], high=1),
              num(doc, "cdn.edges", c["edges"], integer=True, low=1, high=254))
    h = _section(doc, data, "hot", Hot)
    hot = Hot(num(doc, "hot.count", h["count"], integer=True, high=users),
              num(doc, "hot.multiplier", h["multiplier"], low=1))
    droppers = num(doc, "cookie_droppers", data.get("cookie_droppers", 0.0), high=1)

    seed = data.get("seed")
    if seed is not None:
        num(doc, "seed", seed, integer=True)
    name = data.get("name") or Path(doc.file).stem
    if not isinstance(name, str):
        raise doc.error("name", f"expected a string, got {name!r}")
    profile = Profile(name=name, users=users, spawn_rate=spawn_rate, session_length=length,
                      think_time_ms=think, nat=nat, mobile=mobile, cdn=cdn, hot=hot,
                      cookie_droppers=droppers, seed=seed,
                      description=str(data.get("description", "")), source=doc.file)
    if profile.counts()["plain"] < 0:
        special = {k: v for k, v in profile.counts().items() if k != "plain"}
        raise doc.error("users", f"the special kinds need more users than {users}: {special}")
    return profile


def load_profile(path: str | Path) -> Profile:
    return from_doc(load(path))


def parse_profile(text: str, file: str = "<string>") -> Profile:
    return from_doc(parse(text, file))
