"""The user's nginx.conf: read by crossplane (NGINX's config parser, includes inlined), the
upstream's balancing found, rewritten onto a cluster, and checked by `nginx -t`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import crossplane
from crossplane.builder import _enquote

from harness.configs import (
    SOURCE_AS_PROXY,
    Finding,
    Rewrite,
    Server,
    UserConfig,
    balancer_check,
    closed_address,
    explain,
    reads_proxy_header,
    server_for,
)
from harness.errors import InputError

if TYPE_CHECKING:
    from harness.balancers.base import Layout
    from harness.topology import Topology

Directive = dict[str, Any]
MAIN_DROPPED = ("daemon", "master_process", "pid", "user", "error_log")
ANY_DROPPED = ("error_log", "resolver", "client_body_temp_path", "proxy_temp_path",
               "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path")
# Paths NGINX reads relative to the config's folder (its conf prefix).
CONF_PATHS = ("ssl_certificate", "ssl_certificate_key", "ssl_trusted_certificate",
              "ssl_client_certificate", "ssl_dhparam", "ssl_crl", "ssl_password_file",
              "ssl_stapling_file", "ssl_session_ticket_key", "proxy_ssl_certificate",
              "proxy_ssl_certificate_key", "proxy_ssl_trusted_certificate",
              "auth_basic_user_file", "root", "alias")
PASSES = ("proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "grpc_pass",
          "memcached_pass")
SERVER_DROPPED_PARAMS = ("resolve", "service=", "route=", "drain")
TIME_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "": 1000}


def _parse(path: Path) -> list[Directive]:
    payload = crossplane.parse(str(path), combine=True, check_ctx=True, check_args=True)
    if payload["errors"]:
        err = payload["errors"][0]
        raise InputError(f"not a valid NGINX config: {err['error']}", file=err.get("file"),
                         line=err.get("line"))
    return payload["config"][0]["parsed"]


def _find(block: list[Directive], name: str) -> list[Directive]:
    return [d for d in block if d["directive"] == name]


def _walk(block: list[Directive], parents: tuple[Directive, ...] = ()):
    for d in block:
        yield d, parents
        if "block" in d:
            yield from _walk(d["block"], (*parents, d))


def _ms(text: str) -> int:
    import re

    match = re.match(r"^(\d+)(ms|s|m|h)?$", text)
    return int(match[1]) * TIME_UNITS_MS[match[2] or ""] if match else 0


def _int(text: str, default: int) -> int:
    """A number as written, or `default` (`nginx -t` then names what is wrong with it)."""
    return int(text) if text.isdigit() else default


def read(path: Path, backend: str | None, check: bool = True) -> UserConfig:
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    parsed = _parse(path)
    config = detect(parsed, path, backend)
    if check:
        validate(config)
    return config


def _http(parsed: list[Directive], file: str) -> list[Directive]:
    http = _find(parsed, "http")
    if not http:
        raise InputError("no http block: Stickler judges HTTP session affinity", file=file)
    return http[0]["block"]


def _upstreams(http: list[Directive]) -> list[Directive]:
    return [d for d in http if d["directive"] == "upstream"]


def _routes(http: list[Directive], name: str) -> list[tuple[Directive, Directive]]:
    """(server block, location) pairs whose proxy_pass names upstream `name`."""
    out = []
    for server in _find(http, "server"):
        for d, parents in _walk(server["block"]):
            if d["directive"] == "proxy_pass" and d["args"] and \
                    d["args"][0].split("://", 1)[-1].split("/", 1)[0] == name:
                location = next((p for p in reversed(parents) if p["directive"] == "location"),
                                None)
                out.append((server, location or server))
    return out


def _is_root(server: Directive, location: Directive) -> bool:
    """Does every request path reach this place: the server itself, or `location /`?"""
    return location is server or location["args"] in (["/"], ["^~", "/"])


def _effective(name: str, chain: list[Directive], default: list[str]) -> list[str]:
    """A directive's arguments where it takes effect: the innermost block that sets it."""
    for block in reversed(chain):
        found = _find(block.get("block", []), name)
        if found:
            return found[-1]["args"]
    return default


def _listens(server: Directive) -> list[Directive]:
    return [d for d in _find(server["block"], "listen")
            if not d["args"][0].startswith(("unix:", "["))]


def listeners(http: list[Directive], primary: Directive | None) -> list[Directive]:
    """Every TCP listen, the URL's first: the primary server block's first plain one, else
    its first TLS one (spoken to in TLS)."""
    ordered = [d for s in _find(http, "server") for d in _listens(s)]
    if primary is not None:
        own = _listens(primary)
        first = next((d for d in own if not _is_tls(d)), own[0] if own else None)
        if first is not None:
            ordered.remove(first)
            ordered.insert(0, first)
    return ordered


def _is_tls(listen: Directive) -> bool:
    return "ssl" in listen["args"][1:]


def detect(parsed: list[Directive], path: Path, backend: str | None) -> UserConfig:
    file = str(path)
    http = _http(parsed, file)
    upstreams = _upstreams(http)
    if backend is not None:
        chosen = [u for u in upstreams if u["args"][0] == backend]
        if not chosen:
            names = ", ".join(u["args"][0] for u in upstreams) or "(none)"
            raise InputError(f"no upstream {backend!r}; this file has: {names}", file=file,
                             key="backend")
    else:
        chosen = [u for u in upstreams if _find(u["block"], "server")]
        if len(chosen) > 1:  # the one `location /` passes to
            rooted = [u for u in chosen
                      if any(_is_root(s, loc) for s, loc in _routes(http, u["args"][0]))]
            chosen = rooted if len(rooted) == 1 else chosen
        if len(chosen) != 1:
            names = ", ".join(f"{u['args'][0]} (line {u['line']})" for u in chosen) or "(none)"
            raise InputError(f"name the upstream to test (--backend, or `backend:` in the "
                             f"topology); upstreams with servers: {names}", file=file,
                             key="backend")
    upstream = chosen[0]
    name = upstream["args"][0]
    servers = tuple(Server(d["args"][0], d["args"][0], tuple(d["args"][1:]), d["line"],
                           d.get("file", file)) for d in _find(upstream["block"], "server"))
    if not servers:
        raise InputError(f"upstream {name} has no server lines", file=file,
                         line=upstream["line"], key=name)
    routes = _routes(http, name)
    root = [(s, loc) for s, loc in routes if _is_root(s, loc)]
    if not root:
        where = ", ".join(f"location {' '.join(loc['args'])} (line {loc['line']})"
                          for _, loc in routes) or "nowhere"
        raise InputError(f"no `location /` passes its requests to upstream {name}; "
                         f"Stickler's sessions ask for /, /cart and /checkout, so they would "
                         f"not reach it (it is proxied from: {where})", file=file,
                         line=upstream["line"], key=name)
    server, location = root[0]
    binds = listeners(http, server)
    if not binds or binds[0] not in _listens(server):
        raise InputError(f"the server block that passes requests to {name} has no IPv4 "
                         f"TCP listen (only IPv6 or UNIX sockets, or none)",
                         file=file, line=server["line"], key="listen")
    findings: list[Finding] = []
    options: dict[str, Any] = {}
    mode: str | None
    mechanism = "round robin (no balancing directive)"
    why = ""
    hashing = next((d for d in upstream["block"] if d["directive"] in
                    ("ip_hash", "hash", "least_conn", "random", "sticky", "ntlm")), None)
    if hashing is None:
        mode = "roundrobin"
    else:
        mechanism = " ".join([hashing["directive"], *hashing["args"]])
        kind, args = hashing["directive"], hashing["args"]
        if kind == "ip_hash":
            mode = "ip-hash"
        elif kind == "hash" and args[0].startswith("$cookie_"):
            mode = "cookie-hash"
            options.update(cookie=args[0].removeprefix("$cookie_"),
                           consistent="consistent" in args[1:])
        elif kind == "hash" and args[0].startswith("$http_"):
            mode = "header-hash"
            options.update(header=args[0].removeprefix("$http_").replace("_", "-"),
                           consistent="consistent" in args[1:])
        else:
            mode = None
            why = f"`{mechanism}` has no checks yet"
    if mode is None:
        findings.append(Finding("unjudged", why, hashing["line"] if hashing else None))
    chain = [{"block": http}, server] + ([location] if location is not server else [])
    next_upstream = _effective("proxy_next_upstream", chain, ["error", "timeout"])
    options.update(
        next_upstream=tuple(next_upstream),
        next_upstream_tries=_int(_effective("proxy_next_upstream_tries", chain, ["0"])[0], 0),
        next_upstream_timeout_ms=_ms(_effective("proxy_next_upstream_timeout", chain,
                                                ["0"])[0]),
        connect_timeout_ms=_ms(_effective("proxy_connect_timeout", chain, ["0"])[0]),
        read_timeout_ms=_ms(_effective("proxy_read_timeout", chain, ["0"])[0]),
    )
    first = servers[0]
    max_fails = _int(first.param("max_fails") or "1", 1)
    fail_timeout = _ms(first.param("fail_timeout") or "10s") // 1000
    health = {"enabled": max_fails > 0, "max_fails": max(max_fails, 1),
              "fail_timeout_s": fail_timeout}
    failover = {
        "proxy_next_upstream": " ".join(next_upstream),
        "proxy_next_upstream_tries": str(options["next_upstream_tries"]) + " (0: no limit)",
        "passive checks": (f"max_fails={max_fails} fail_timeout={fail_timeout}s"
                           if max_fails else "off (max_fails=0)"),
    }
    if next_upstream == ["off"] and max_fails == 0:
        findings.append(Finding("warning", "proxy_next_upstream off and max_fails=0: when a "
                                "server dies, its users get errors until it returns",
                                upstream["line"]))
    if mode in ("cookie-hash", "header-hash") and not options["consistent"]:
        findings.append(Finding("warning", f"`{mechanism}` without `consistent`: adding or "
                                "removing a server remaps most keys, not 1/n", hashing["line"]))
    real_ip = _effective("real_ip_header", chain, [])
    client_ip = "source"
    if real_ip[:1] == ["proxy_protocol"] or "proxy_protocol" in binds[0]["args"][1:]:
        client_ip = "proxy-protocol"
    elif real_ip and real_ip[0].lower() == "x-forwarded-for":
        client_ip = "xff"
    return UserConfig(
        kind="nginx", path=path, backend=name, servers=servers, mechanism=mechanism,
        mode=mode, options=options, health_check=health, client_ip=client_ip,
        failover=failover, findings=tuple(findings), listeners=len(binds),
        tls=_is_tls(binds[0]), model=parsed,
    )


def validate(config: UserConfig) -> None:
    """`nginx -t` on the config as it would run (rewritten onto a throwaway layout), its
    complaints mapped back to the user's file and line."""
    from harness.balancers import get_adapter

    done, result, candidate = balancer_check(config, "nginx.conf",
                                             get_adapter("nginx").check_command,
                                             extra_dirs=("nginx-tmp",))
    if done.returncode != 0:
        raise InputError("nginx -t rejects this config:\n"
                         + explain(done.stderr + done.stdout, str(candidate), result),
                         file=str(config.path))


# ---- rewrite ----------------------------------------------------------------------------


def rewrite(config: UserConfig, topology: Topology, layout: Layout) -> Rewrite:
    parsed: list[Directive] = config.model
    http = _http(parsed, str(config.path))
    upstream = next(u for u in _upstreams(http) if u["args"][0] == config.backend)
    primary = next(s for s, loc in _routes(http, config.backend) if _is_root(s, loc))
    ports = [layout.balancer, *layout.extra]
    port_of = {id(d): ports[i] for i, d in enumerate(listeners(http, primary))
               if i < len(ports)}
    upstream_names = {u["args"][0] for u in _upstreams(http)}
    closed = closed_address(layout)
    proxy = reads_proxy_header(config, topology)
    # The address from the PROXY header becomes $remote_addr, as the source was; unless
    # the user's config names a real_ip_header of its own (a second one would be refused).
    real_ip = proxy and not any(d["directive"] == "real_ip_header" for d, _ in _walk(parsed))
    out: list[str] = [f"# Rewritten by Stickler from {config.path} for topology "
                      f"{topology.name}; the user's file is unchanged."]
    origin: dict[int, tuple[str, int]] = {}
    notes: list[str] = []
    header = f"add_header X-Stickler-Config {layout.generation} always"

    def emit(depth: int, text: str, d: Directive | None = None) -> None:
        out.append("    " * depth + text)
        if d is not None:
            origin[len(out)] = (Path(d.get("file", config.path)).name, d["line"])

    def note(d: Directive, text: str) -> None:
        notes.append(f"{Path(d.get('file', config.path)).name}:{d['line']}: {text}")

    def args_text(args: list[str]) -> str:
        return " ".join(_enquote(a) for a in args)

    def block(items: list[Directive], depth: int, context: str, node: Directive | None):
        if context == "main":
            emit(depth, "daemon off;")
            emit(depth, "master_process on;")
            emit(depth, f"pid {layout.workdir}/nginx.pid;")
            emit(depth, "error_log stderr notice;")
            if os.geteuid() == 0:
                # Workers as 'nobody' could not use the run's 0700 directory.
                emit(depth, "user root;")
        if context == "http":
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
                emit(depth, f"{kind}_temp_path {layout.workdir}/nginx-tmp/{kind};")
            if real_ip:
                emit(depth, f"set_real_ip_from {layout.trusted};")
                emit(depth, "real_ip_header proxy_protocol;")
                notes.append(f"http: added set_real_ip_from {layout.trusted} and "
                             f"real_ip_header proxy_protocol ({SOURCE_AS_PROXY})")
        if context in ("http", "server", "location", "if") and (
                context == "http" or _find(items, "add_header")):
            # Only where the block has add_header of its own, or at the top: NGINX inherits
            # add_header only into blocks that set none, so this leaves the user's headers
            # exactly as they were.
            emit(depth, header + ";")
        if node is upstream:
            for rid in topology.replica_ids:
                if rid in layout.replicas:
                    server = server_for(config, rid)
                    params = [p for p in server.params
                              if not p.startswith(SERVER_DROPPED_PARAMS)]
                    emit(depth, f"server {layout.replicas[rid].address}"
                         f"{' ' + args_text(params) if params else ''};",
                         {"line": server.line, "file": server.file})
            note(upstream, f"upstream {config.backend}: servers "
                 f"{', '.join(s.address for s in config.servers)} -> replicas "
                 f"{', '.join(topology.replica_ids)} (their parameters kept)")
        for d in items:
            name, args = d["directive"], list(d["args"])
            if (context == "main" and name in MAIN_DROPPED) or name in ANY_DROPPED:
                note(d, f"dropped `{name} {args_text(args)}` (the run keeps its own pid, "
                        f"logs and temp files, and resolves no names)")
                continue
            if node is upstream and name == "server":
                continue
            if name == "server" and context == "upstream":
                note(d, f"server {args[0]} -> {closed} (not under test; nothing listens)")
                args[0] = closed
            if name == "listen":
                ep = port_of.get(id(d))
                if ep is None:
                    note(d, f"dropped `listen {args_text(args)}` (not an IPv4 TCP address)")
                    continue
                note(d, f"listen {args[0]} -> {ep.address}")
                args[0] = ep.address
                if proxy and "proxy_protocol" not in args:
                    args.append("proxy_protocol")
                    note(d, f"added proxy_protocol ({SOURCE_AS_PROXY})")
            if name in PASSES and args:
                target = args[0].split("://", 1)[-1].split("/", 1)[0]
                if target not in upstream_names and not target.startswith("unix:") \
                        and "$" not in target:
                    scheme = args[0].split("://", 1)[0] + "://" if "://" in args[0] else ""
                    note(d, f"{name} {args[0]} -> {scheme}{closed} (not under test)")
                    args[0] = f"{scheme}{closed}"
            if name == "access_log" and args and args[0] != "off":
                args[0] = f"{layout.workdir}/nginx-access.log"
            if name in CONF_PATHS and args and not os.path.isabs(args[0]) and \
                    not args[0].startswith(("data:", "engine:", "$")):
                args[0] = str(config.folder / args[0])
            if name == "set_real_ip_from":
                emit(depth, f"set_real_ip_from {layout.trusted};")
                note(d, f"added set_real_ip_from {layout.trusted} beside it: the harness's "
                        f"clients stand where your trusted proxy does")
            if "block" in d:
                emit(depth, f"{name}{' ' + args_text(args) if args else ''} {{", d)
                inner = {"events": "events", "http": "http", "server": "server",
                         "location": "location", "if": "if", "upstream": "upstream"}
                block(d["block"], depth + 1, inner.get(name, name), d)
                emit(depth, "}")
            else:
                emit(depth, f"{name}{' ' + args_text(args) if args else ''};", d)

    block(parsed, 0, "main", None)
    notes.append(f"added `{header}` at http level and in each block with add_header of its "
                 f"own (how a reload is seen to be done)")
    return Rewrite("\n".join(out) + "\n", notes, origin)
