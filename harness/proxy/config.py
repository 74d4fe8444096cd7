"""The reference proxy's config file (YAML), validated with file, line and key in errors.

    listen: 127.0.0.1:8080
    generation: 1                # sent back as X-Stickler-Config, so reloads can be awaited
    mode: cookie                 # least-loaded | cookie | hash
    cookie_name: stickler-affinity
    hash_on: client-ip           # client-ip | cookie:<name> | header:<name>
    soft_limit: 20
    hard_limit: 25
    secret: change-me            # signs the affinity cookie
    force_timeout_ms: 5000       # how long a fly-force-instance-id request waits for its replica
    client_ip: peer              # peer | proxy-protocol (required on every connection) | xff
    trusted_proxies: [127.0.0.0/8]   # xff: hops whose X-Forwarded-For is believed
    health: {enabled: true, interval_ms: 500, fall: 2, rise: 1}
    replicas:
      - {id: r1, address: 127.0.0.1:8081, region: ams}
      - {id: r2, address: 127.0.0.1:8082, drain: true}   # no new sessions; pinned ones stay
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.proxy import client_ip as addresses
from harness.proxy.replay_cache import SessionRule
from harness.proxy.routing import RouterConfig
from harness.runtime.net import ensure_cluster_host
from harness.yamlsrc import Doc, load

KEYS = ("listen", "generation", "mode", "cookie_name", "hash_on", "soft_limit", "hard_limit",
        "secret", "force_timeout_ms", "health", "replicas", "replay_cache", "client_ip",
        "trusted_proxies")
RULE_KEYS = ("path_prefix", "ttl_seconds", "type", "name", "allow_bypass")
HEALTH = {"enabled": True, "interval_ms": 500, "fall": 2, "rise": 1}


@dataclass(frozen=True)
class Upstream:
    id: str
    host: str
    port: int
    region: str | None = None
    drain: bool = False


@dataclass(frozen=True)
class ProxyConfig:
    host: str
    port: int
    router: RouterConfig
    replicas: tuple[Upstream, ...]
    generation: int = 1
    force_timeout_ms: int = 5000
    health: dict[str, Any] = field(default_factory=lambda: dict(HEALTH))
    replay_cache: tuple[SessionRule, ...] = ()
    client_ip: str = "peer"
    trusted_proxies: tuple[addresses.Network, ...] = addresses.networks(["127.0.0.0/8"])


def _address(doc: Doc, path: str, value: Any) -> tuple[str, int]:
    host, _, port = str(value).rpartition(":")
    try:
        return ensure_cluster_host(host), int(port)
    except ValueError:
        raise doc.error(path, f"expected a loopback host:port (127.0.0.0/8), got {value!r}") \
            from None


def from_doc(doc: Doc) -> ProxyConfig:
    data = doc.mapping(doc.data, "", KEYS)
    for key in ("listen", "replicas"):
        if key not in data:
            raise doc.error("", f"missing key {key!r}")
    host, port = _address(doc, "listen", data["listen"])
    health = {**HEALTH, **doc.mapping(data.get("health") or {}, "health", HEALTH)}
    replicas = []
    if not isinstance(data["replicas"], list):
        raise doc.error("replicas", "expected a list of {id, address, region}")
    for i, item in enumerate(data["replicas"]):
        item = doc.mapping(item, f"replicas[{i}]", ("id", "address", "region", "drain"))
        rhost, rport = _address(doc, f"replicas[{i}].address", item.get("address"))
        if not isinstance(item.get("drain", False), bool):
            raise doc.error(f"replicas[{i}].drain", "expected true or false")
        replicas.append(Upstream(str(item.get("id")), rhost, rport, item.get("region"),
                                 item.get("drain", False)))
    source = data.get("client_ip", "peer")
    if source not in addresses.SOURCES:
        raise doc.error("client_ip", f"expected one of {', '.join(addresses.SOURCES)}, "
                                     f"got {source!r}")
    trusted = data.get("trusted_proxies", ["127.0.0.0/8"])
    if not isinstance(trusted, list):
        raise doc.error("trusted_proxies", "expected a list of addresses or CIDRs")
    try:
        trusted_nets = addresses.networks(trusted)
    except ValueError as exc:
        raise doc.error("trusted_proxies", str(exc)) from None
    try:
        router = RouterConfig(
            mode=data.get("mode", "least-loaded"),
            cookie_name=data.get("cookie_name", "stickler-affinity"),
            hash_on=data.get("hash_on", "client-ip"),
            soft_limit=int(data.get("soft_limit", 20)),
            hard_limit=int(data.get("hard_limit", 25)),
            secret=str(data.get("secret", "stickler-reference-proxy")).encode(),
        )
    except (ValueError, TypeError) as exc:
        raise doc.error("", str(exc)) from None
    rules = []
    for i, item in enumerate(data.get("replay_cache") or []):
        path = f"replay_cache[{i}]"
        item = doc.mapping(item, path, RULE_KEYS)
        try:
            rules.append(SessionRule(str(item["path_prefix"]), int(item["ttl_seconds"]),
                                     str(item["type"]), str(item["name"]),
                                     bool(item.get("allow_bypass", False))))
        except KeyError as exc:
            raise doc.error(path, f"missing key {exc.args[0]!r}") from None
        except (ValueError, TypeError) as exc:
            raise doc.error(path, str(exc)) from None
    return ProxyConfig(host, port, router, tuple(replicas), int(data.get("generation", 1)),
                       int(data.get("force_timeout_ms", 5000)), health, tuple(rules), source,
                       trusted_nets)


def load_config(path: str | Path) -> ProxyConfig:
    return from_doc(load(path))
