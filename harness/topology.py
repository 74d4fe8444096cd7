"""Topology: one balancer (kind, affinity mode, options) in front of N replicas, as a value.

`load_topology(path)` validates a YAML file and names the file, line and key of any mistake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.app.replay import MODES as REPLAY_MODES
from harness.balancers import ADAPTERS, Choice, option_default
from harness.yamlsrc import Doc, load, parse

REPLICA_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
TOP_KEYS = ("name", "description", "balancer", "replicas", "app", "expect", "suites")
SUITE_NAME = re.compile(r"^[a-z][a-z_]{0,40}$")
BALANCER_KEYS = ("kind", "mode", "options", "health_check", "client_ip")
CONFIG_KEYS = ("kind", "config", "backend", "client_ip", "tls_ca")  # a config topology's balancer
APP_KEYS = ("session_cookie", "affinity_cookie", "replay_mode", "leader", "replay_cache_ttl",
            "replay_options", "session_store")
SESSION_STORES = ("memory", "redis")
MAX_REPLICAS = 64
REPLAY_OPTIONS = re.compile(r"^([a-z_]+=[A-Za-z0-9_.,-]+(;[a-z_]+=[A-Za-z0-9_.,-]+)*)?$")
TOKEN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Replica:
    id: str
    region: str | None = None


@dataclass(frozen=True)
class AppSettings:
    """What the fixture app does with cookies: its session cookie, and an optional extra
    cookie it sets for balancers that rewrite an app cookie (HAProxy `cookie ... rewrite`)."""

    session_cookie: str = "sid"
    affinity_cookie: str | None = None
    replay_mode: str = ""  # fly-replay behaviour: pin-cookie, hash, leader (harness/app/replay.py)
    leader: str | None = None
    replay_cache_ttl: int = 0  # ask the proxy to cache replays of the request path
    replay_options: str = ""  # appended to fly-replay, e.g. "timeout=500ms;fallback=prefer_self"
    # Where sessions live: each replica's memory, or one Redis all replicas share
    # (harness/runtime/store.py).
    session_store: str = "memory"
    health_path: str = "/healthz"  # where the balancer's active checks ask


@dataclass(frozen=True)
class Topology:
    name: str
    kind: str
    mode: str
    replicas: tuple[Replica, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    health_check: Mapping[str, Any] = field(default_factory=dict)
    app: AppSettings = AppSettings()
    expect: str = ""  # the mode whose expectations judge this topology; default: `mode`
    client_ip: str = "source"  # how simulated client addresses reach it (traffic/identity.py)
    source: str | None = None
    description: str = ""
    suites: tuple[str, ...] = ()  # the suites that judge it by default; empty: every suite
    # The user's own balancer config, rewritten onto the cluster instead of a template
    # (harness/configs); `mode` and `options` are then what was found in it.
    config: Any = field(default=None, compare=False)

    @property
    def tls(self) -> bool:
        """Is the balancer spoken to in TLS (a user's config whose frontend is TLS)?"""
        return bool(self.config is not None and self.config.tls)

    @property
    def tls_ca(self) -> str | None:
        """The CA file a TLS frontend's certificate is checked against (None: unchecked)."""
        return self.config.tls_ca if self.config is not None else None

    @property
    def replica_ids(self) -> list[str]:
        return [r.id for r in self.replicas]

    def with_replicas(self, replicas: tuple[Replica, ...]) -> Topology:
        return Topology(**{**self.__dict__, "replicas": replicas})

    def as_claimed(self) -> Topology:
        """The topology as its `expect` mode would have it: that mode's default options under
        this topology's own, so checks measure e.g. the cookie the claimed mode would set."""
        if self.expect == self.mode:
            return self
        defaults = {k: option_default(v)
                    for k, v in ADAPTERS[self.kind].modes[self.expect].options.items()}
        return Topology(**{**self.__dict__,
                           "options": MappingProxyType({**defaults, **self.options})})

    def to_dict(self) -> dict[str, Any]:
        """A plain value for reports and diffs."""
        return {
            "name": self.name,
            "source": self.source,
            "balancer": {"kind": self.kind, "mode": self.mode,
                         "options": {k: list(v) if isinstance(v, tuple) else v
                                     for k, v in self.options.items()},
                         "health_check": dict(self.health_check), "client_ip": self.client_ip},
            "replicas": [{"id": r.id, "region": r.region} for r in self.replicas],
            "app": dict(self.app.__dict__),
            "expect": self.expect,
            "suites": list(self.suites),
            **({"config": self.config.to_dict()} if self.config is not None else {}),
        }

    def in_suite(self, suite: str) -> bool:
        return not self.suites or suite in self.suites


def _choices(values: Any) -> str:
    return ", ".join(sorted(values)) or "(none)"


def _chosen(doc: Doc, path: str, value: Any, choice: Choice) -> Any:
    """Check `value` is one of the choice's values (a list of them, if `multiple`)."""
    allowed = ", ".join(choice.values)
    if not choice.multiple:
        if not isinstance(value, str) or value not in choice.values:
            raise doc.error(path, f"expected one of: {allowed or repr('')}, got {value!r}")
        return value
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise doc.error(path, f"expected a non-empty list of: {allowed}, got {value!r}")
    for i, item in enumerate(items):
        if item not in choice.values:
            hint = (" (YAML reads unquoted off/on/yes/no as booleans: quote it, 'off')"
                    if isinstance(item, bool) else "")
            raise doc.error(f"{path}[{i}]", f"expected one of: {allowed}, got {item!r}{hint}")
        if item in choice.alone and len(items) > 1:
            raise doc.error(f"{path}[{i}]", f"{item!r} cannot be combined with other values")
    if len(set(items)) != len(items):
        raise doc.error(path, f"duplicate values in {items!r}")
    return tuple(items)


def _typed(doc: Doc, path: str, value: Any, default: Any) -> Any:
    """Check `value` has the type of `default` (bool, int or str), or is one of a Choice's."""
    if isinstance(default, Choice):
        return _chosen(doc, path, value, default)
    kind = type(default)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise doc.error(path, f"expected {kind.__name__}, got {value!r}")
    if kind is int and value < 0:
        raise doc.error(path, f"expected a non-negative integer, got {value}")
    if kind is str and not TOKEN.match(value):
        raise doc.error(path, f"expected a cookie or header name (letters, digits, '_', '.', "
                        f"'-'), got {value!r}")
    return value


def _options(doc: Doc, given: Any, defaults: Mapping[str, Any], path: str) -> dict[str, Any]:
    what = "option" if path.endswith("options") else "key"
    given = doc.mapping(given or {}, path, defaults, what)
    return {k: (_typed(doc, f"{path}.{k}", given[k], d) if k in given else option_default(d))
            for k, d in defaults.items()}


def _replicas(doc: Doc, value: Any) -> tuple[Replica, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_REPLICAS:
            raise doc.error("replicas", f"expected 1 to {MAX_REPLICAS} replicas, got {value}")
        return tuple(Replica(f"r{i}") for i in range(1, value + 1))
    if not isinstance(value, list) or not value:
        raise doc.error("replicas", "expected a replica count or a list of replicas "
                        "(each an id, or a mapping with id and region)")
    out: list[Replica] = []
    for i, item in enumerate(value):
        path = f"replicas[{i}]"
        if isinstance(item, str):
            item = {"id": item}
        doc.mapping(item, path, ("id", "region"))
        rid = item.get("id")
        if not isinstance(rid, str) or not REPLICA_ID.match(rid):
            raise doc.error(f"{path}.id", f"expected an id of lower-case letters, digits and "
                            f"'-' (at most 31), got {rid!r}")
        if rid in (r.id for r in out):
            raise doc.error(f"{path}.id", f"duplicate replica id {rid!r}")
        region = item.get("region")
        if region is not None and not isinstance(region, str):
            raise doc.error(f"{path}.region", f"expected a region name, got {region!r}")
        out.append(Replica(rid, region))
    if len(out) > MAX_REPLICAS:
        raise doc.error("replicas", f"at most {MAX_REPLICAS} replicas")
    return tuple(out)


def from_doc(doc: Doc) -> Topology:
    data = doc.mapping(doc.data, "", TOP_KEYS)
    if isinstance(data.get("balancer"), dict) and "config" in data["balancer"]:
        from harness.configs.topology import config_topology

        return config_topology(doc, data)
    for required in ("balancer", "replicas"):
        if required not in data:
            raise doc.error("", f"missing key {required!r}")
    bal = doc.mapping(data["balancer"], "balancer", BALANCER_KEYS)
    kind = bal.get("kind")
    if kind not in ADAPTERS:
        raise doc.error("balancer.kind", f"unknown balancer kind {kind!r}; expected one of: "
                        f"{_choices(ADAPTERS)}")
    adapter = ADAPTERS[kind]
    mode = bal.get("mode")
    if mode not in adapter.modes:
        raise doc.error("balancer.mode", f"unknown mode {mode!r} for {kind}; expected one of: "
                        f"{_choices(adapter.modes)}")
    spec = adapter.modes[mode]
    options = _options(doc, bal.get("options"), spec.options, "balancer.options")
    health = _options(doc, bal.get("health_check"), adapter.health_check_keys,
                      "balancer.health_check")
    for key, expected in adapter.option_errors(mode, options, health).items():
        raise doc.error(f"balancer.{key}", expected)

    client_ip = bal.get("client_ip", "source")
    if client_ip not in adapter.client_ip_transports:
        raise doc.error("balancer.client_ip", f"{kind} takes client addresses by "
                        f"{_choices(adapter.client_ip_transports)}; got {client_ip!r}")

    app_raw = doc.mapping(data.get("app") or {}, "app", APP_KEYS)
    session_cookie = app_raw.get("session_cookie", "sid")
    affinity_cookie = app_raw.get("affinity_cookie")
    # Prefix and rewrite modes work on a cookie the app sets; make the app set that one.
    if spec.app_session_cookie_from:
        session_cookie = options[spec.app_session_cookie_from]
    if spec.app_affinity_cookie_from:
        affinity_cookie = options[spec.app_affinity_cookie_from]
    for key, value in (("session_cookie", session_cookie), ("affinity_cookie", affinity_cookie)):
        if value is not None and not (isinstance(value, str) and TOKEN.match(value)):
            raise doc.error(f"app.{key}", f"expected a cookie name, got {value!r}")

    replay_mode = app_raw.get("replay_mode", "")
    if replay_mode not in REPLAY_MODES:
        raise doc.error("app.replay_mode", f"expected one of: {', '.join(REPLAY_MODES[1:])}")
    replicas = _replicas(doc, data["replicas"])
    leader = app_raw.get("leader")
    if leader is not None and leader not in [r.id for r in replicas]:
        raise doc.error("app.leader", f"no replica {leader!r}")
    cache_ttl = app_raw.get("replay_cache_ttl", 0)
    if not isinstance(cache_ttl, int) or isinstance(cache_ttl, bool) or \
            not (cache_ttl == 0 or cache_ttl >= 10):
        raise doc.error("app.replay_cache_ttl", "expected 0 (off) or at least 10 seconds")
    replay_options = app_raw.get("replay_options", "")
    if replay_mode == "always" and not replay_options:
        raise doc.error("app.replay_options", "replay_mode always needs the fly-replay to send, "
                        "e.g. 'region=lhr' or 'elsewhere=true'")
    if not isinstance(replay_options, str) or not REPLAY_OPTIONS.match(replay_options):
        raise doc.error("app.replay_options", "expected fly-replay fields like "
                        "'timeout=500ms;fallback=prefer_self'")
    session_store = app_raw.get("session_store", "memory")
    if session_store not in SESSION_STORES:
        raise doc.error("app.session_store", f"expected one of: {', '.join(SESSION_STORES)}; "
                        f"got {session_store!r}")
    expect = data.get("expect", mode)
    if expect not in adapter.modes:
        raise doc.error("expect", f"unknown mode {expect!r} for {kind}; expected one of: "
                        f"{_choices(adapter.modes)}")
    suites = data.get("suites", [])
    if not isinstance(suites, list) or not all(isinstance(x, str) and SUITE_NAME.match(x)
                                                 for x in suites):
        raise doc.error("suites", "expected a list of suite names, e.g. [failover]")
    name = data.get("name") or Path(doc.file).stem
    if not isinstance(name, str):
        raise doc.error("name", f"expected a string, got {name!r}")
    return Topology(
        name=name,
        kind=kind,
        mode=mode,
        replicas=replicas,
        options=MappingProxyType(options),
        health_check=MappingProxyType(health),
        app=AppSettings(session_cookie, affinity_cookie, replay_mode, leader, cache_ttl,
                        replay_options, session_store),
        expect=expect,
        client_ip=client_ip,
        source=doc.file,
        description=str(data.get("description", "")),
        suites=tuple(suites),
    )


def load_topology(path: str | Path) -> Topology:
    return from_doc(load(path))


def parse_topology(text: str, file: str = "<string>") -> Topology:
    return from_doc(parse(text, file))
