"""The user's haproxy.cfg: validated by `haproxy -c`, its backend's affinity mechanism found,
and rewritten onto a cluster (servers, binds, isolation), every change noted."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from harness.configs.haproxy_model import Line, Model, Section, parse, time_ms
from harness.errors import InputError

if TYPE_CHECKING:
    from harness.balancers.base import Layout
    from harness.topology import Topology

# Global keywords that would reach outside the run (system paths, privileges, daemonizing).
GLOBAL_DROPPED = ("daemon", "chroot", "user", "group", "uid", "gid", "pidfile", "nbproc",
                  "master-worker", "log", "stats", "unix-bind", "node", "localpeer")
# Server keywords that resolve names, which a replica's fixed address does not need.
SERVER_DROPPED = {"resolvers": 1, "resolve-prefer": 1, "resolve-net": 1, "init-addr": 1,
                  "resolve-opts": 1}
NOT_LOCAL_SOCKETS = ("unix@", "abns@", "fd@", "sockpair@", "/")


def validate(config: UserConfig) -> None:
    """`haproxy -c` on the config as it would run (rewritten onto a throwaway layout: the
    servers' names need not resolve here), its complaints mapped back to the user's lines."""
    from harness.balancers import get_adapter

    done, result, candidate = balancer_check(config, "haproxy.cfg",
                                             get_adapter("haproxy").check_command)
    if done.returncode != 0:
        lines = [ln for ln in (done.stdout + done.stderr).splitlines()
                 if "ALERT" in ln or "error" in ln.lower()] or [done.stderr.strip()]
        raise InputError("haproxy -c rejects this config:\n"
                         + explain("\n".join(lines), str(candidate), result),
                         file=str(config.path))


def read(path: Path, backend: str | None, check: bool = True) -> UserConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=str(path)) from None
    config = detect(parse(text, str(path)), path, backend)
    if check:
        validate(config)
    return config


def _choose(model: Model, backend: str | None, file: str) -> Section:
    candidates = [s for s in model.proxies("backend", "listen") if s.find("server")
                  or s.find("server-template")]
    if backend is not None:
        found = model.proxy(backend)
        if found is None:
            names = ", ".join(s.name for s in candidates) or "(none)"
            raise InputError(f"no backend or listen section {backend!r}; this file has: "
                             f"{names}", file=file, key="backend")
        return found
    if len(candidates) > 1:  # the one every request goes to unless a rule says otherwise
        defaults = [s for s in candidates
                    if any(how in ("self", "default") for _, how in frontends_of(model, s))]
        candidates = defaults if len(defaults) == 1 else candidates
    if not candidates:
        raise InputError("no backend or listen section has server lines: there is nothing "
                         "to put the replicas in place of", file=file, key="backend")
    if len(candidates) != 1:
        names = ", ".join(f"{s.name} (line {s.header.no})" for s in candidates) or "(none)"
        raise InputError(f"name the backend to test (--backend, or `backend:` in the "
                         f"topology); backends with servers: {names}", file=file, key="backend")
    return candidates[0]


def _option(section: Section, defaults: Section | None, name: str) -> bool:
    """`option <name>`, with `no option <name>` and a backend overriding its defaults."""
    value = False
    for part in (defaults, section):
        for line in part.lines if part else ():
            if line.words[:2] == ["option", name]:
                value = True
            elif line.words[:3] == ["no", "option", name]:
                value = False
    return value


def _setting(section: Section, defaults: Section | None, *words: str) -> Line | None:
    return section.last(*words) or (defaults.last(*words) if defaults else None)


def frontends_of(model: Model, backend: Section) -> list[tuple[Section, str]]:
    """The proxies that send requests to `backend`: (section, how: default|rule|self)."""
    out: list[tuple[Section, str]] = []
    if backend.kind == "listen":
        out.append((backend, "self"))
    for section in model.proxies("frontend", "listen"):
        if section is backend:
            continue
        default = section.last("default_backend")
        if default and default.words[1:2] == [backend.name]:
            out.append((section, "default"))
        elif any(ln.words[1:2] == [backend.name] for ln in section.find("use_backend")):
            out.append((section, "rule"))
    return out


def _binds(section: Section) -> list[Line]:
    return [ln for ln in section.find("bind") if len(ln.words) > 1
            and not ln.words[1].startswith(NOT_LOCAL_SOCKETS)]


def listeners(model: Model, backend: Section) -> list[tuple[Section, Line]]:
    """Every TCP bind line, the URL's first: a plain bind of a proxy that sends the backend
    its requests by default, else its TLS bind (`ssl`: spoken to in TLS)."""
    routes = frontends_of(model, backend)
    primaries = [s for s, how in routes if how in ("self", "default")]
    ordered = [(s, ln) for s in model.proxies("frontend", "listen") for ln in _binds(s)]
    candidates = [(s, ln) for s in primaries for ln in _binds(s) if not _is_tls(ln)] or \
        [(s, ln) for s in primaries for ln in _binds(s)]
    if candidates:
        ordered.remove(candidates[0])
        ordered.insert(0, candidates[0])
    return ordered


def local_peer(model: Model, backend: Section) -> tuple[Section, Line] | None:
    """The peers section the backend's stick table syncs through, and the line that makes
    this process a peer in it (its `bind`, else the `peer` named by `localpeer`, else the
    first): given a port, it hands the table over to the new process on a reload."""
    table = backend.last("stick-table")
    if table is None or "peers" not in table.words[:-1]:
        return None
    name = table.words[table.words.index("peers") + 1]
    section = next((s for s in model.sections if s.kind == "peers" and s.name == name), None)
    if section is None:
        return None
    bind = section.last("bind")
    if bind is not None:
        return section, bind
    glob = next((s for s in model.sections if s.kind == "global"), None)
    named = glob.last("localpeer") if glob else None
    peers = section.find("peer")
    mine = [ln for ln in peers if named and len(named.words) > 1 and
            ln.words[1:2] == named.words[1:2]] or peers[:1]
    return (section, mine[0]) if mine else None


def _is_tls(bind: Line) -> bool:
    return "ssl" in bind.words[2:]


def detect(model: Model, path: Path, backend_name: str | None) -> UserConfig:
    file = str(path)
    section = _choose(model, backend_name, file)
    defaults = model.defaults_of(section)
    findings: list[Finding] = []
    if section.find("server-template"):
        line = section.find("server-template")[0]
        raise InputError("server-template is not supported: write the servers out, one "
                         "`server` line each", file=file, line=line.no, key="server-template")
    servers = tuple(Server(ln.words[1], ln.words[2] if len(ln.words) > 2 else "",
                           tuple(ln.words[3:]), ln.no, file) for ln in section.find("server"))
    if not servers:
        raise InputError(f"{section.kind} {section.name} has no server lines", file=file,
                         line=section.header.no, key=section.name)
    mode = (section.mode or (defaults.mode if defaults else None) or "tcp")
    if mode != "http":
        raise InputError(f"{section.kind} {section.name} is in mode {mode}; Stickler judges "
                         f"HTTP session affinity (mode http)", file=file,
                         line=section.header.no, key="mode")

    routes = frontends_of(model, section)
    if not any(how in ("self", "default") for _, how in routes):
        where = ", ".join(f"{s.kind} {s.name} (line {s.header.no})" for s, _ in routes)
        raise InputError(f"no frontend sends its requests to {section.name} by default "
                         f"(default_backend {section.name}); Stickler's sessions ask for /, "
                         f"/cart and /checkout, so they would not reach it"
                         + (f": only use_backend rules do, in {where}" if where else ""),
                         file=file, line=section.header.no, key=section.name)
    binds = listeners(model, section)
    if not binds or binds[0][0] not in [s for s, how in routes if how in ("self", "default")]:
        raise InputError(f"the proxy that sends requests to {section.name} has no TCP bind "
                         f"(a UNIX socket or none)", file=file, line=section.header.no,
                         key="bind")
    primary = binds[0][0]
    for rule in primary.find("use_backend"):
        if rule.words[1:2] != [section.name]:
            findings.append(Finding("note", f"requests matching `{' '.join(rule.words)}` go "
                                    f"to another backend; the checks' requests (/, /cart, "
                                    f"/checkout, pages) are meant to reach {section.name}",
                                    rule.no))

    balance = _setting(section, defaults, "balance")
    algo = balance.words[1] if balance and len(balance.words) > 1 else "roundrobin"
    hash_line = _setting(section, defaults, "hash-type")
    hash_type = hash_line.words[1] if hash_line and len(hash_line.words) > 1 else "map-based"
    cookie = section.last("cookie") or (defaults.last("cookie") if defaults else None)
    stick = [ln for ln in section.lines if ln.keyword in ("stick", "stick-table")]

    options: dict[str, Any] = {}
    mechanism = f"balance {algo}"
    chosen: str | None
    why = ""
    if cookie is not None and len(cookie.words) > 1:
        name, flags = cookie.words[1], cookie.words[2:]
        mechanism = f"cookie {' '.join(cookie.words[1:])} with {mechanism}"
        method = next((f for f in flags if f in ("insert", "prefix", "rewrite")), "rewrite")
        chosen = f"cookie-{method}"
        options["cookie"] = name
        if method == "insert":
            options.update(indirect="indirect" in flags, nocache="nocache" in flags,
                           maxidle_s=_seconds(flags, "maxidle"),
                           maxlife_s=_seconds(flags, "maxlife"))
        for flag in ("postonly", "preserve", "dynamic", "domain", "attr"):
            if flag in flags:
                findings.append(Finding("note", f"cookie option {flag!r} has no check of its "
                                        f"own yet; the {method} checks still apply", cookie.no))
        missing = [s.name for s in servers if s.param("cookie") is None]
        if missing:
            findings.append(Finding("warning", f"servers without a `cookie` value get no "
                                    f"persistence: {', '.join(missing)}", cookie.no))
    elif stick:
        chosen = None
        mechanism = f"{' '.join(stick[0].words)} with {mechanism}"
        why = ("stick tables have no checks yet (they are planned); the verdicts would rest "
               "on the roundrobin baseline, which does not apply")
    elif algo == "source":
        chosen = "source-consistent" if hash_type.startswith("consistent") else "source"
        mechanism += f", hash-type {hash_type}"
    elif algo.startswith("hdr("):
        options["header"] = algo[4:].rstrip(")").split(",")[0]
        mechanism += f", hash-type {hash_type}"
        chosen = "header" if hash_type.startswith("consistent") else None
        why = "" if chosen else "only hdr() with hash-type consistent has checks yet"
    elif algo in ("roundrobin", "static-rr"):
        chosen = "roundrobin"
    else:
        chosen = None
        why = f"balance {algo} without a cookie has no checks yet"
    table = section.last("stick-table")
    if table is not None and "peers" not in table.words:
        findings.append(Finding("warning", "stick-table without `peers`: a reload (a new "
                                "server, any config change) starts with an empty table, and "
                                "every session is balanced afresh", table.no))
    if chosen is None:
        findings.append(Finding("unjudged", f"{mechanism}: {why}", (cookie or balance
                                                                    or section.header).no))

    retries = _setting(section, defaults, "retries")
    connect = _setting(section, defaults, "timeout", "connect")
    server_timeout = _setting(section, defaults, "timeout", "server")
    options.update(
        redispatch=_option(section, defaults, "redispatch"),
        retries=int(retries.words[1]) if retries and retries.words[1].isdigit() else 3,
        persist=_option(section, defaults, "persist"),
        connect_timeout_ms=(time_ms(connect.words[2]) or 0) if connect else 0,
        server_timeout_ms=(time_ms(server_timeout.words[2]) or 0) if server_timeout else 0,
        on_marked_down="shutdown-sessions" if servers and all(
            s.param("on-marked-down") == "shutdown-sessions" for s in servers) else "",
    )
    health = _health(section, defaults, servers)
    failover = {
        "redispatch": "option redispatch" if options["redispatch"] else "off (no option "
                      "redispatch: a dead server's users keep being sent to it)",
        "retries": str(options["retries"]) + ("" if retries else " (default)"),
        "health checks": (f"check inter {health['interval_ms']}ms fall {health['fall']} rise "
                          f"{health['rise']}" if health["enabled"] else
                          "none (no `check` on the servers)"),
        "persist": "option persist" if options["persist"] else "off",
    }
    if chosen and chosen.startswith("cookie") and not options["redispatch"] \
            and not health["enabled"]:
        findings.append(Finding("warning", "no redispatch and no health checks: when a "
                                "server dies, its users get errors until it returns",
                                section.header.no))
    httpchk = _setting(section, defaults, "option", "httpchk")
    health_path = "/"
    if httpchk is not None:
        words = httpchk.words[2:]
        health_path = next((w for w in words if w.startswith("/")), "/")
    send = next((ln for ln in reversed(section.find("http-check", "send"))), None)
    if send is not None and "uri" in send.words:
        health_path = send.words[send.words.index("uri") + 1]
    return UserConfig(
        kind="haproxy", path=path, backend=section.name, servers=servers,
        mechanism=mechanism, mode=chosen, options=options, health_check=health,
        client_ip=_client_ip(primary, binds[0][1]), failover=failover,
        findings=tuple(findings), tls=_is_tls(binds[0][1]),
        listeners=len(binds) + (1 if local_peer(model, section) else 0),
        health_path=health_path.split("?")[0], model=model,
    )


def _seconds(flags: list[str], key: str) -> int:
    if key in flags and flags.index(key) + 1 < len(flags):
        return (time_ms(flags[flags.index(key) + 1]) or 0) // 1000
    return 0


def _health(section: Section, defaults: Section | None,
            servers: tuple[Server, ...]) -> dict[str, Any]:
    params: dict[str, str] = {}
    checked = False
    for part in (defaults, section):
        for line in part.find("default-server") if part else ():
            checked = checked or "check" in line.words
            for key in ("inter", "fall", "rise"):
                if key in line.words[1:-1]:
                    params[key] = line.words[line.words.index(key) + 1]
    checked = checked or any(s.flag("check") for s in servers)
    for key in ("inter", "fall", "rise"):
        value = servers[0].param(key) if servers else None
        if value:
            params[key] = value
    return {"enabled": checked, "interval_ms": time_ms(params.get("inter", "2s")) or 2000,
            "fall": _int(params.get("fall", "3"), 3), "rise": _int(params.get("rise", "2"), 2)}


def _int(text: str, default: int) -> int:
    return int(text) if text.isdigit() else default


def _client_ip(frontend: Section, bind: Line) -> str:
    if "accept-proxy" in bind.words:
        return "proxy-protocol"
    for line in frontend.find("http-request", "set-src"):
        if "x-forwarded-for" in " ".join(line.words).lower():
            return "xff"
    return "source"


# ---- rewrite ----------------------------------------------------------------------------


def rewrite(config: UserConfig, topology: Topology, layout: Layout) -> Rewrite:
    model: Model = config.model
    backend = model.proxy(config.backend)
    assert backend is not None
    out: list[str] = []
    origin: dict[int, tuple[str, int]] = {}
    notes: list[str] = []
    ports = [layout.balancer, *layout.extra]
    binds = listeners(model, backend)
    bind_port = {id(ln): ports[i] for i, (_, ln) in enumerate(binds) if i < len(ports)}
    peer = local_peer(model, backend)
    if peer is not None and len(binds) < len(ports):
        bind_port[id(peer[1])] = ports[len(binds)]
    closed = closed_address(layout)
    proxy = reads_proxy_header(config, topology)

    def emit(text: str, line: int | None = None) -> None:
        out.append(text)
        if line is not None:
            origin[len(out)] = (config.path.name, line)

    emit(f"# Rewritten by Stickler from {config.path} for topology {topology.name}; "
         f"the user's file is unchanged.")
    for line in model.preamble:
        emit(line.raw, line.no)
    if not any(s.kind == "global" for s in model.sections):
        emit("global")
        _global_tail(emit, layout, config)
        notes.append("added a global section (pidfile, stats socket, log to stderr)")
    for section in model.sections:
        emit(section.header.raw, section.header.no)
        for line in section.lines:
            kw = line.keyword
            if section.kind == "global" and kw in GLOBAL_DROPPED:
                notes.append(f"line {line.no}: dropped `{line.raw.strip()}` (the run keeps "
                             f"its own pid, sockets and logs, in its directory)")
                continue
            if section.kind == "global" and kw == "maxconn" and len(line.words) > 1 and \
                    line.words[1].isdigit() and int(line.words[1]) > _maxconn_cap():
                cap = _maxconn_cap()
                emit(line.replace_word(1, str(cap)), line.no)
                notes.append(f"line {line.no}: maxconn {line.words[1]} -> {cap} (this "
                             f"machine's open-file limit allows no more; HAProxy would not "
                             f"start)")
                continue
            if kw == "bind" and section.kind in ("frontend", "listen"):
                ep = bind_port.get(id(line))
                if ep is None:
                    notes.append(f"line {line.no}: dropped `{line.raw.strip()}` (a socket "
                                 f"that is not TCP, or no port for it)")
                    continue
                add = "accept-proxy" if proxy and "accept-proxy" not in line.words else ""
                emit(line.replace_word(1, ep.address, add), line.no)
                if add:
                    notes.append(f"line {line.no}: added accept-proxy ({SOURCE_AS_PROXY})")
                if line.words[1] != ep.address:
                    notes.append(f"line {line.no}: bind {line.words[1]} -> {ep.address}")
                continue
            if kw == "server" and section is backend:
                continue  # the replicas take their place, below
            if section.kind == "peers" and id(line) in bind_port:
                ep = bind_port[id(line)]
                index = 1 if kw == "bind" else 2
                emit(line.replace_word(index, ep.address), line.no)
                notes.append(f"line {line.no}: local peer {' '.join(line.words[:index])} -> "
                             f"{ep.address} (a reload hands the stick table over there)")
                continue
            if kw in ("server", "nameserver", "mailer", "peer") and len(line.words) > 2:
                index = 2
                emit(line.replace_word(index, closed), line.no)
                notes.append(f"line {line.no}: {kw} {line.words[1]} {line.words[index]} -> "
                             f"{closed} (not under test; nothing listens there)")
                continue
            emit(line.raw, line.no)
        if section.kind == "global":
            _global_tail(emit, layout, config)
        if section is backend:
            for rid in topology.replica_ids:
                if rid in layout.replicas:
                    emit(_server_line(config, rid, layout), server_for(config, rid).line)
            notes.append(f"backend {backend.name}: servers "
                         f"{', '.join(s.name for s in config.servers)} -> replicas "
                         f"{', '.join(topology.replica_ids)} (their options kept)")
        if section.kind in ("frontend", "listen"):
            # Every answer (also HAProxy's own errors) names the config generation, so a
            # reload can wait until the new config answers.
            emit(f"    http-after-response set-header X-Stickler-Config {layout.generation}")
    notes.append("frontends: added `http-after-response set-header X-Stickler-Config` "
                 "(how a reload is seen to be done)")
    return Rewrite("\n".join(out) + "\n", notes, origin)


def _maxconn_cap() -> int:
    """The largest global maxconn HAProxy can start with here: it needs about two file
    descriptors per connection, under the hard open-file limit."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1_000_000 if hard == resource.RLIM_INFINITY else max(hard // 2 - 100, 256)


def _global_tail(emit, layout: Layout, config: UserConfig) -> None:
    emit("    # Added by Stickler: the run's own pid, socket and log; relative paths of the "
         "user's file resolve against its folder.")
    emit(f"    pidfile {layout.workdir}/haproxy.pid")
    emit(f"    stats socket {layout.workdir}/haproxy.sock mode 600 level admin")
    emit("    log stderr format raw local0 info")
    emit(f"    default-path origin {config.folder}")
    peer = local_peer(config.model, config.model.proxy(config.backend))
    if peer is not None:  # the user's host name (HAProxy's default local peer) is not ours
        section, line = peer
        local = [line] if line.keyword == "peer" else \
            [ln for ln in section.find("server") if len(ln.words) == 2]
        if local:
            emit(f"    localpeer {local[0].words[1]}")


def _server_line(config: UserConfig, rid: str, layout: Layout) -> str:
    server = server_for(config, rid)
    params: list[str] = []
    skip = 0
    for i, word in enumerate(server.params):
        if skip:
            skip -= 1
            continue
        if word in SERVER_DROPPED:
            skip = SERVER_DROPPED[word]
            continue
        if word == "cookie" and server.name == rid and server.address == "" and \
                i + 1 < len(server.params):
            params += ["cookie", rid]  # a scale-up: the copied server needs its own value
            skip = 1
            continue
        params.append(_quote(word))
    if server.address == "" and "cookie" not in server.params and \
            any(s.param("cookie") for s in config.servers):
        params += ["cookie", rid]
    if rid in layout.draining:
        params += ["weight", "0"]
    name = server.name if server.address else rid
    return f"    server {name} {layout.replicas[rid].address} {' '.join(params)}".rstrip()


def _quote(word: str) -> str:
    if word and not any(c in word for c in " \t#\"'\\"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
