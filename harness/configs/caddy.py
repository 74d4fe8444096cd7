"""The user's Caddyfile (or Caddy JSON): adapted by `caddy adapt` (Caddy's own parser), the
reverse_proxy that serves `/` found by following the routes as Caddy does, and the JSON
rewritten onto a cluster. The rewrite is JSON too: Caddy runs it as it would the adapted
Caddyfile."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.configs import (
    Finding,
    Rewrite,
    Server,
    UserConfig,
    balancer_check,
    closed_address,
    server_for,
)
from harness.errors import InputError

if TYPE_CHECKING:
    from harness.balancers.base import Layout
    from harness.topology import Topology

Json = dict[str, Any]
# The paths Stickler's sessions ask for: the reverse_proxy under test must serve them all.
PATHS = ("/", "/cart", "/checkout")
POLICIES = {"round_robin": "roundrobin", "random": "random", "first": "first",
            "cookie": "cookie", "ip_hash": "ip-hash", "header": "header-hash"}
UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}


def _env(home: str) -> dict[str, str]:
    # Caddy creates $HOME/.step and XDG dirs even to adapt: a throwaway home.
    return {**os.environ, "HOME": home, "XDG_CONFIG_HOME": home, "XDG_DATA_HOME": home}


def adapt(path: Path) -> Json:
    """The config as Caddy's JSON: a Caddyfile through `caddy adapt`, or JSON as it is."""
    from harness.balancers import get_adapter

    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg}", file=str(path),
                             line=exc.lineno) from None
    with tempfile.TemporaryDirectory(prefix="stickler-caddy-adapt-") as home:
        done = subprocess.run([get_adapter("caddy").which(), "adapt", "--config", str(path),
                               "--adapter", "caddyfile"], capture_output=True, text=True,
                              timeout=30, env=_env(home), cwd=path.parent)
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        match = re.search(r":(\d+)", message.split(str(path))[-1]) if str(path) in message \
            else None
        raise InputError(f"caddy adapt rejects this Caddyfile: {message}", file=str(path),
                         line=int(match[1]) if match else None)
    return json.loads(done.stdout)


def duration_ns(value: Any) -> int:
    """A Caddy JSON duration: nanoseconds, or a string such as "2s" or "1m30s"."""
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)", value)
        if parts and "".join(a + b for a, b in parts) == value:
            return int(sum(float(a) * UNITS_NS[b] for a, b in parts))
    return 0


# ---- following routes -------------------------------------------------------------------


def _path_matches(pattern: str, path: str) -> bool:
    if pattern == "*" or pattern == path:
        return True
    if pattern.endswith("*") and not pattern.startswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.startswith("*") and not pattern.endswith("*"):
        return path.endswith(pattern[1:])
    if pattern.startswith("*") and pattern.endswith("*"):
        return pattern[1:-1] in path
    return False


def _set_matches(matcher: Json, path: str) -> bool | None:
    """One matcher set for a GET or POST of `path` from the harness: True, False, or None
    (a matcher Stickler cannot evaluate). Host matchers count as matching: the rewrite
    lifts them from the route that leads to the backend under test."""
    result: bool | None = True
    for kind, value in matcher.items():
        if kind == "host":
            continue
        if kind == "path":
            ok = any(_path_matches(p, path) for p in value)
        elif kind == "not":
            inner = [_set_matches(m, path) for m in value]
            ok = None if None in inner else not any(inner)
        elif kind == "method":
            ok = {"GET", "POST"} <= {m.upper() for m in value}
        else:
            return None
        if ok is None:
            result = None
        elif not ok:
            return False
    return result


def _route_matches(route: Json, path: str) -> bool | None:
    sets = route.get("match")
    if not sets:
        return True
    results = [_set_matches(m, path) for m in sets]
    return True if True in results else (None if None in results else False)


def follow(routes: list[Json], path: str, trail: tuple[int, ...] = ()) -> list[tuple]:
    """The handlers a request for `path` runs through, in order, as (trail, handler): a
    route's handlers while no terminal route has matched; in each group the first
    matching route only; into subroutes. Stops at the first handler that answers."""
    out: list[tuple] = []
    groups: set[str] = set()
    for i, route in enumerate(routes):
        group = route.get("group")
        if group and group in groups:
            continue
        matched = _route_matches(route, path)
        if matched is None:
            raise _Unsure(f"route {'.'.join(map(str, (*trail, i)))} has a matcher Stickler "
                          f"cannot evaluate ({', '.join(sorted(_kinds(route)))})")
        if not matched:
            continue
        if group:
            groups.add(group)
        for j, handler in enumerate(route.get("handle", [])):
            where = (*trail, i, j)
            if handler.get("handler") == "subroute":
                inner = follow(handler.get("routes", []), path, where)
                out += inner
                if inner and _answers(inner[-1][1]):
                    return out
                continue
            out.append((where, handler))
            if _answers(handler):
                return out
        if route.get("terminal"):
            return out
    return out


class _Unsure(Exception):
    pass


def _kinds(route: Json) -> set[str]:
    return {k for m in route.get("match", []) for k in m}


def _answers(handler: Json) -> bool:
    return handler.get("handler") in ("reverse_proxy", "static_response", "file_server",
                                      "php_fastcgi", "error")


def _servers(doc: Json) -> dict[str, Json]:
    return doc.get("apps", {}).get("http", {}).get("servers", {})


def _proxies(routes: list[Json], trail: tuple[int, ...] = ()) -> list[tuple]:
    """Every reverse_proxy handler under `routes`, as (trail, handler), in config order."""
    out = []
    for i, route in enumerate(routes):
        for j, handler in enumerate(route.get("handle", [])):
            if handler.get("handler") == "reverse_proxy":
                out.append(((*trail, i, j), handler))
            elif handler.get("handler") == "subroute":
                out += _proxies(handler.get("routes", []), (*trail, i, j))
    return out


def _describe(handler: Json) -> str:
    dials = [u.get("dial", "?") for u in handler.get("upstreams", [])]
    return "reverse_proxy " + " ".join(dials)


# ---- detect -----------------------------------------------------------------------------


def read(path: Path, backend: str | None, check: bool = True) -> UserConfig:
    doc = adapt(path)
    config = detect(doc, path, backend)
    if check:
        validate(config)
    return config


def detect(doc: Json, path: Path, backend: str | None) -> UserConfig:
    file = str(path)
    servers = _servers(doc)
    if not servers:
        raise InputError("no HTTP server in this config (apps.http.servers is empty)",
                         file=file)
    every = [(name, trail, h) for name, srv in servers.items()
             for trail, h in _proxies(srv.get("routes", []))]
    if not every:
        raise InputError("no reverse_proxy in this config: there is nothing to put the "
                         "replicas behind", file=file)
    names = {f"#{i + 1}": item for i, item in enumerate(every)}
    if backend is not None:
        key = backend if backend.startswith("#") else f"#{backend}"
        if key not in names:
            listed = ", ".join(f"{k} ({_describe(h)})" for k, (_, _, h) in names.items())
            raise InputError(f"no reverse_proxy {backend!r}; name one by its number: {listed}",
                             file=file, key="backend")
        chosen = names[key]
    else:
        reached = []
        for name, srv in servers.items():
            try:
                chain = follow(srv.get("routes", []), "/")
            except _Unsure as exc:
                raise InputError(f"cannot tell which reverse_proxy serves / in server {name}: "
                                 f"{exc}; name it with --backend", file=file,
                                 key="backend") from None
            if chain and chain[-1][1].get("handler") == "reverse_proxy":
                reached.append((name, chain[-1][0], chain[-1][1]))
        if len(reached) != 1:
            listed = ", ".join(f"{k} ({_describe(h)})" for k, (_, _, h) in names.items())
            raise InputError(("no reverse_proxy serves /" if not reached else
                              "several servers' reverse_proxy serve /") +
                             f"; name the one to test with --backend: {listed}",
                             file=file, key="backend")
        chosen = reached[0]
    server_name, trail, handler = chosen
    number = next(k for k, v in names.items() if v[1] == trail and v[0] == server_name)
    if "dynamic_upstreams" in handler:
        raise InputError(f"reverse_proxy {number} takes its upstreams from DNS "
                         f"(dynamic_upstreams): list them in the config to test it",
                         file=file, key="backend")
    upstreams = handler.get("upstreams", [])
    if not upstreams:
        raise InputError(f"reverse_proxy {number} has no upstreams", file=file, key="backend")
    servers_found = tuple(Server(u.get("dial", f"upstream{i + 1}"), u.get("dial", ""),
                                 tuple(f"{k}={json.dumps(v)}" for k, v in u.items()
                                       if k != "dial"), 0,
                                 file) for i, u in enumerate(upstreams))
    findings: list[Finding] = []
    for p in PATHS[1:]:
        try:
            chain = follow(servers[server_name].get("routes", []), p)
        except _Unsure:
            continue
        if not chain or chain[-1][0] != trail:
            findings.append(Finding("warning", f"requests for {p} do not reach reverse_proxy "
                                    f"{number}; the checks' sessions use /, /cart and "
                                    f"/checkout"))
    lb = handler.get("load_balancing", {})
    policy = lb.get("selection_policy", {}).get("policy", "random")
    mode = POLICIES.get(policy)
    options: dict[str, Any] = {
        "lb_try_duration_ms": duration_ns(lb.get("try_duration", 0)) // 1_000_000,
        "lb_try_interval_ms": duration_ns(lb.get("try_interval", 0)) // 1_000_000 or 250,
    }
    selection = lb.get("selection_policy", {})
    mechanism = f"lb_policy {policy}"
    if mode == "cookie":
        options.update(cookie=selection.get("name", "lb"), secret=selection.get("secret", ""))
        mechanism += f" {options['cookie']}" + (" <secret>" if options["secret"] else "")
    elif mode == "header-hash":
        options["header"] = selection.get("field", "")
        mechanism += f" {options['header']}"
    elif mode is None:
        findings.append(Finding("unjudged", f"lb_policy {policy} has no checks yet"))
    if policy == "random" and "selection_policy" not in lb:
        mechanism = "lb_policy random (Caddy's default: no lb_policy)"
    checks = handler.get("health_checks", {})
    active, passive = checks.get("active", {}), checks.get("passive", {})
    health = {"enabled": bool(active), "uri": active.get("uri") or active.get("path")
              or "/healthz",
              "interval_ms": duration_ns(active.get("interval", 30_000_000_000)) // 1_000_000,
              "timeout_ms": duration_ns(active.get("timeout", 5_000_000_000)) // 1_000_000,
              "fail_duration_s": duration_ns(passive.get("fail_duration", 0)) // 1_000_000_000,
              "max_fails": int(passive.get("max_fails", 1) or 1)}
    failover = {
        "lb_try_duration": f"{options['lb_try_duration_ms']} ms" + (
            " (no retries on another upstream)" if not options["lb_try_duration_ms"] else ""),
        "active health checks": (f"{health['uri']} every {health['interval_ms']} ms"
                                 if health["enabled"] else "none"),
        "passive health checks": (f"fail_duration {health['fail_duration_s']}s max_fails "
                                  f"{health['max_fails']}" if health["fail_duration_s"]
                                  else "none"),
    }
    if not health["enabled"] and not health["fail_duration_s"] and \
            not options["lb_try_duration_ms"]:
        findings.append(Finding("warning", "no health checks and no lb_try_duration: a dead "
                                "upstream stays in the pool, and its users get 502"))
    srv = servers[server_name]
    if any(str(a).endswith(":443") for a in srv.get("listen", [])) or \
            srv.get("tls_connection_policies") is not None:
        findings.append(Finding("note", f"server {server_name} serves HTTPS; Stickler turns "
                                "TLS off and speaks plain HTTP to it (for now)"))
    return UserConfig(
        kind="caddy", path=path, backend=number, servers=servers_found, mechanism=mechanism,
        mode=mode, options=options, health_check=health, client_ip="source",
        failover=failover, findings=tuple(findings), listeners=len(servers),
        health_path=health["uri"] if health["enabled"] else "/healthz",
        model={"doc": doc, "server": server_name, "trail": trail},
    )


# ---- rewrite ----------------------------------------------------------------------------


def _at(routes: list[Json], trail: tuple[int, ...]) -> Json:
    """The handler at `trail` (route, handler, route, handler, ...)."""
    node: Any = None
    items = routes
    for k in range(0, len(trail), 2):
        node = items[trail[k]]["handle"][trail[k + 1]]
        items = node.get("routes", [])
    return node


def _lift_hosts(routes: list[Json], trail: tuple[int, ...], notes: list[str]) -> None:
    """Remove host matchers from the routes on the way to `trail`: the harness's requests
    name the cluster's address, not the site."""
    items = routes
    for k in range(0, len(trail), 2):
        route = items[trail[k]]
        sets = route.get("match")
        if sets and any("host" in m for m in sets):
            hosts = sorted({h for m in sets for h in m.get("host", [])})
            kept = [{kk: v for kk, v in m.items() if kk != "host"} for m in sets]
            if any(not m for m in kept):
                route.pop("match")
            else:
                route["match"] = kept
            notes.append(f"route to the reverse_proxy under test: host matcher "
                         f"{', '.join(hosts)} lifted (requests name the cluster's address)")
        items = route["handle"][trail[k + 1]].get("routes", [])


def _absolutize(node: Any, folder: Path) -> None:
    """Relative file paths (roots, certificates) resolve against the config's folder, as
    they would when Caddy runs there."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "certificate", "key", "filename") and isinstance(value, str) \
                    and value and not value.startswith(("/", "{")):
                node[key] = str(folder / value)
            else:
                _absolutize(value, folder)
    elif isinstance(node, list):
        for item in node:
            _absolutize(item, folder)


def rewrite(config: UserConfig, topology: Topology, layout: Layout) -> Rewrite:
    from harness.balancers.caddy import Caddy

    model = config.model
    doc = copy.deepcopy(model["doc"])
    notes: list[str] = []
    closed = closed_address(layout)
    _absolutize(doc, config.folder)
    doc["admin"] = {"listen": Caddy.admin_socket(layout)}
    notes.append("admin endpoint -> the run's own unix socket")
    doc["storage"] = {"module": "file_system", "root": str(layout.workdir / "caddy-data")}
    if doc.pop("logging", None) is not None:
        notes.append("dropped `logging` (the run's log is Caddy's stderr)")
    if doc.get("apps", {}).pop("tls", None) is not None:
        notes.append("dropped the tls app (certificates, ACME): TLS is off in the run")
    servers = _servers(doc)
    ports = [layout.balancer, *layout.extra]
    order = [model["server"], *[n for n in servers if n != model["server"]]]
    target = _at(servers[model["server"]]["routes"], model["trail"])
    for i, name in enumerate(order):
        srv = servers[name]
        if i < len(ports):
            notes.append(f"server {name}: listen {', '.join(map(str, srv.get('listen', [])))}"
                         f" -> {ports[i].address}")
            srv["listen"] = [ports[i].address]
        else:
            srv["listen"] = []
        srv["automatic_https"] = {"disable": True}
        srv.pop("tls_connection_policies", None)
        srv.pop("listener_wrappers", None)
        for _, handler in _proxies(srv.get("routes", [])):
            if handler is target:
                continue
            for upstream in handler.get("upstreams", []):
                notes.append(f"server {name}: reverse_proxy upstream {upstream.get('dial')} "
                             f"-> {closed} (not under test)")
                upstream["dial"] = closed
            handler.pop("dynamic_upstreams", None)
        srv["routes"] = [{"handle": [{"handler": "headers", "response": {
            "set": {"X-Stickler-Config": [str(layout.generation)]}}}]},
            *srv.get("routes", [])]
    _lift_hosts(servers[model["server"]]["routes"][1:], model["trail"], notes)
    upstreams = []
    for rid in topology.replica_ids:
        if rid not in layout.replicas:
            continue
        server = server_for(config, rid)
        # The user's other keys of the upstream (max_requests...), kept as JSON.
        upstream = {k: json.loads(v) for k, v in (p.split("=", 1) for p in server.params)}
        upstream["dial"] = layout.replicas[rid].address
        upstreams.append(upstream)
    target["upstreams"] = upstreams
    notes.append(f"reverse_proxy {config.backend}: upstreams "
                 f"{', '.join(s.address for s in config.servers)} -> replicas "
                 f"{', '.join(topology.replica_ids)}")
    notes.append("every server: a first route sets X-Stickler-Config (how a reload is seen "
                 "to be done); automatic HTTPS off")
    return Rewrite(json.dumps(doc, indent=2) + "\n", notes, {})


def validate(config: UserConfig) -> None:
    """`caddy validate` on the rewritten JSON (a throwaway layout)."""
    from harness.balancers import get_adapter

    done, _, _ = balancer_check(config, "caddy.json", get_adapter("caddy").check_command,
                                env=_env)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if "Error" in ln or "error" in ln]
        raise InputError("caddy validate rejects this config (rewritten onto the cluster):\n"
                         + "\n".join(lines[-3:] or [done.stderr.strip()]),
                         file=str(config.path))
