"""The user's Apache httpd config (a vhost file or a whole httpd.conf): the `<Proxy
balancer://NAME>` that `ProxyPass /` sends to, its members and stickiness found, and the
file rewritten onto a cluster behind Stickler's own prologue (modules, pid, logs), checked by
`apache2 -t`."""

from __future__ import annotations

import os
import re
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
    reads_proxy_header,
    server_for,
)
from harness.configs.apache_model import Node, params, parse
from harness.errors import InputError

if TYPE_CHECKING:
    from harness.balancers.base import Layout
    from harness.topology import Topology

MODULES = Path("/usr/lib/apache2/modules")
MIME_TYPES = "/etc/mime.types"
# Debian's default modules and mod_proxy's: what a vhost file expects to be loaded.
BASE_MODULES = ("mpm_event", "authz_core", "authz_host", "authz_user", "authn_core",
                "access_compat", "alias", "dir", "env", "mime", "setenvif", "filter",
                "deflate", "headers", "remoteip", "rewrite", "expires", "proxy", "proxy_http",
                "proxy_balancer", "slotmem_shm", "lbmethod_byrequests", "lbmethod_bybusyness",
                "lbmethod_bytraffic", "proxy_hcheck", "status")
# Replaced by the run's own (pid, runtime dir, logs, user), or inlined (Include).
DROPPED = ("serverroot", "pidfile", "defaultruntimedir", "mutex", "user", "group",
           "errorlog", "loadmodule", "scoreboardfile", "lockfile", "listen")
PATH_DIRECTIVES = ("documentroot", "sslcertificatefile", "sslcertificatekeyfile",
                   "sslcertificatechainfile", "sslcacertificatefile")
LBMETHODS = ("byrequests", "bybusyness")


def _balancer(proxy: Node) -> str:
    return proxy.args[0].removeprefix("balancer://").strip("/") if proxy.args else ""


def _proxies(root: Node) -> list[Node]:
    return [n for n, _ in root.walk() if n.section and n.key == "proxy" and n.args
            and n.args[0].lower().startswith("balancer://")]


def _passes(root: Node) -> list[tuple[Node, str, str, tuple[Node, ...]]]:
    """(ProxyPass node, path, target, parents): `ProxyPass /p url` or, in <Location /p>,
    `ProxyPass url`."""
    out = []
    for node, parents in root.walk():
        if node.key != "proxypass" or not node.args:
            continue
        location = next((p for p in reversed(parents) if p.key == "location"), None)
        if location is not None and len(node.args) >= 1 and "://" in node.args[0]:
            out.append((node, location.args[0] if location.args else "/", node.args[0],
                        parents))
        elif len(node.args) >= 2:
            out.append((node, node.args[0], node.args[1], parents))
    return out


def _vhost(parents: tuple[Node, ...]) -> Node | None:
    return next((p for p in reversed(parents) if p.key == "virtualhost"), None)


def _port(address: str) -> int | None:
    match = re.search(r":(\d+)$", address) or (re.fullmatch(r"(\d+)", address))
    return int(match[1]) if match else None


def _ports(root: Node, primary: int) -> list[int]:
    """The ports the config listens on, the primary (the vhost reaching the backend) first."""
    found: list[int] = []
    for node, _ in root.walk():
        candidates = [node.args[0]] if node.key == "listen" and node.args else \
            node.args if node.section and node.key == "virtualhost" else []
        for a in candidates:
            port = _port(a)
            if port is not None and port not in found:
                found.append(port)
    return [primary, *[p for p in found if p != primary]]


def read(path: Path, backend: str | None, check: bool = True) -> UserConfig:
    root = parse(path)
    config = detect(root, path, backend)
    if check:
        validate(config)
    return config


def detect(root: Node, path: Path, backend: str | None) -> UserConfig:
    file = str(path)
    proxies = {_balancer(p): p for p in _proxies(root)}
    if not proxies:
        raise InputError("no <Proxy balancer://...> section: there is no balancer to put the "
                         "replicas in", file=file)
    passes = _passes(root)
    if backend is None:
        rooted = {t.removeprefix("balancer://").strip("/") for _, p, t, _ in passes
                  if p == "/" and t.lower().startswith("balancer://")}
        candidates = rooted if rooted else set(proxies) if len(proxies) == 1 else set()
        if len(candidates) != 1:
            raise InputError(f"name the balancer to test (--backend); balancers: "
                             f"{', '.join(sorted(proxies))}", file=file, key="backend")
        backend = candidates.pop()
    if backend not in proxies:
        raise InputError(f"no <Proxy balancer://{backend}>; this file has: "
                         f"{', '.join(sorted(proxies))}", file=file, key="backend")
    proxy = proxies[backend]
    route = [(n, parents) for n, p, t, parents in passes if p == "/" and
             t.removeprefix("balancer://").strip("/") == backend]
    if not route:
        raise InputError(f"no `ProxyPass / balancer://{backend}/`: Stickler's sessions ask "
                         f"for /, /cart and /checkout, so they would not reach it", file=file,
                         line=proxy.line, key=backend)
    pass_node, parents = route[0]
    vhost = _vhost(parents)
    tls = vhost is not None and any(n.key == "sslengine" and n.args[:1] in (["on"], ["On"])
                                    for n in vhost.children)
    primary = next((p for p in map(_port, vhost.args) if p), 80) if vhost is not None else \
        next((_port(n.args[0]) for n, _ in root.walk() if n.key == "listen" and n.args), 80)
    members = proxy.find("BalancerMember")
    if not members:
        raise InputError(f"balancer://{backend} has no BalancerMember", file=file,
                         line=proxy.line, key=backend)
    servers = tuple(Server(params(m.args[1:]).get("route") or m.args[0],
                           m.args[0].split("://", 1)[-1].rstrip("/"), tuple(m.args[1:]),
                           m.line, m.file) for m in members)
    settings: dict[str, str] = {}
    for node in proxy.find("ProxySet"):
        settings.update(params(node.args))
    settings.update(params(pass_node.args[1:] if pass_node.args[0].startswith("/")
                           else pass_node.args))
    findings: list[Finding] = []
    first = params(servers[0].params)
    options: dict[str, Any] = {
        "retry_s": int(first.get("retry", "60")) if first.get("retry", "60").isdigit() else 60,
        "timeout_s": int(first.get("timeout", "0")) if first.get("timeout", "0").isdigit()
        else 0,
        "connect_timeout_ms": _ms(first.get("connectiontimeout", "")),
    }
    lbmethod = settings.get("lbmethod", "byrequests")
    sticky = settings.get("stickysession")
    mechanism = f"lbmethod={lbmethod}"
    mode: str | None
    if sticky:
        mechanism = f"stickysession={sticky} with {mechanism}"
        cookie = sticky.split("|")[0]
        sets = any(n.key == "header" and "set-cookie" in " ".join(n.args).lower()
                   and "balancer_worker_route" in " ".join(n.args).lower()
                   for n, _ in root.walk())
        missing = [s.name for s in servers if "route" not in params(s.params)]
        mode = "cookie-route" if sets and lbmethod in LBMETHODS and not missing else None
        options.update(cookie=cookie, nofailover=settings.get("nofailover", "off").lower()
                       == "on", lbmethod=lbmethod)
        if missing:
            findings.append(Finding("warning", f"members without route=: "
                                    f"{', '.join(missing)}; stickysession needs a route per "
                                    f"member", proxy.line))
        if not sets:
            findings.append(Finding("unjudged", f"stickysession={sticky} but nothing here "
                                    f"sets {cookie} with the route (Header add Set-Cookie "
                                    f"...%{{BALANCER_WORKER_ROUTE}}e): the app must append "
                                    f".<route> itself (Tomcat's jvmRoute), and the fixture app "
                                    f"does not", proxy.line))
        elif mode is None:
            findings.append(Finding("unjudged", f"{mechanism} has no checks yet", proxy.line))
    elif lbmethod in LBMETHODS:
        mode = lbmethod
    else:
        mode = None
        findings.append(Finding("unjudged", f"lbmethod={lbmethod} has no checks yet",
                                proxy.line))
    health = {"enabled": "hcmethod" in first or "hcuri" in first,
              "uri": first.get("hcuri", "/"), "interval_s": _int(first.get("hcinterval"), 30),
              "fails": _int(first.get("hcfails"), 1), "passes": _int(first.get("hcpasses"), 1)}
    failover = {
        "nofailover": "On (a dead member's sessions get 503)" if settings.get(
            "nofailover", "off").lower() == "on" else "Off (they move to another member)",
        "retry": f"{options['retry_s']} s before a member in error is tried again",
        "health checks": (f"{first.get('hcmethod', 'GET')} {health['uri']} every "
                          f"{health['interval_s']} s" if health["enabled"] else
                          "none (mod_proxy_hcheck not used)"),
    }
    client_ip = "source"
    if any(n.key == "remoteipproxyprotocol" and n.args[:1] == ["On"] for n, _ in root.walk()):
        client_ip = "proxy-protocol"
    elif any(n.key == "remoteipheader" and n.args[:1] and n.args[0].lower() ==
             "x-forwarded-for" for n, _ in root.walk()):
        client_ip = "xff"
    ports = _ports(root, primary)
    return UserConfig(
        kind="apache", path=path, backend=backend, servers=servers, mechanism=mechanism,
        mode=mode, options=options, health_check=health, client_ip=client_ip,
        failover=failover, findings=tuple(findings), listeners=len(ports), tls=tls,
        health_path=health["uri"] if health["enabled"] else "/healthz",
        model={"root": root, "ports": ports},
    )


def _int(text: str | None, default: int) -> int:
    return int(text) if text and text.isdigit() else default


def _ms(text: str) -> int:
    match = re.fullmatch(r"(\d+)(ms)?", text or "")
    return (int(match[1]) if match[2] else int(match[1]) * 1000) if match else 0


# ---- rewrite ----------------------------------------------------------------------------


def _quote(word: str) -> str:
    return word if word and not any(c in word for c in " \t\"'#") else \
        '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rewrite(config: UserConfig, topology: Topology, layout: Layout) -> Rewrite:
    from harness.balancers.apache import MODULES as MODULE_DIR

    root: Node = config.model["root"]
    ports: list[int] = config.model["ports"]
    endpoints = [layout.balancer, *layout.extra]
    port_ep = {p: endpoints[i] for i, p in enumerate(ports) if i < len(endpoints)}
    closed = closed_address(layout)
    out: list[str] = []
    origin: dict[int, tuple[str, int]] = {}
    notes: list[str] = []

    def emit(text: str, node: Node | None = None) -> None:
        out.append(text)
        if node is not None:
            origin[len(out)] = (Path(node.file).name, node.line)

    def note(node: Node, text: str) -> None:
        notes.append(f"{Path(node.file).name}:{node.line}: {text}")

    modules = [m for m in BASE_MODULES if m != "mime" or Path(MIME_TYPES).exists()]
    if any(n.key == "sslengine" for n, _ in root.walk()):
        modules += ["socache_shmcb", "ssl"]  # a TLS vhost: mod_ssl and its session cache
    for node, _ in root.walk():
        if node.key == "loadmodule" and len(node.args) == 2:
            name = node.args[0].removesuffix("_module")
            if name not in modules and (MODULE_DIR / f"mod_{name}.so").exists():
                modules.append(name)
    emit(f"# Rewritten by Stickler from {config.path} for topology {topology.name}; the "
         f"user's file is unchanged. Prologue: the run's own root, pid, logs and modules.")
    emit(f"ServerRoot {layout.workdir}")
    emit("ServerName stickler-balancer")
    emit(f"PidFile {layout.workdir}/apache.pid")
    emit(f"DefaultRuntimeDir {layout.workdir}")
    emit(f"Mutex file:{layout.workdir} default")
    emit("ErrorLog /dev/stderr")
    for name in modules:
        emit(f"LoadModule {name}_module {MODULE_DIR}/mod_{name}.so")
    if "mime" in modules:
        emit(f"TypesConfig {MIME_TYPES}")
    if os.geteuid() == 0:
        emit("User nobody")
        emit("Group nogroup")
    for ep in dict.fromkeys(port_ep.values()):
        emit(f"Listen {ep.address}")
    emit(f"Header always set X-Stickler-Config {layout.generation}")
    if topology.client_ip == "xff":
        emit(f"RemoteIPInternalProxy {layout.trusted}")
    if reads_proxy_header(config, topology):
        emit("RemoteIPProxyProtocol On")
        notes.append(f"prologue: added RemoteIPProxyProtocol On ({SOURCE_AS_PROXY})")
    notes.append(f"prologue: ServerRoot, PidFile, logs and LoadModule ({len(modules)} "
                 f"modules) are the run's own; Listen "
                 f"{', '.join(f'{p} -> {ep.address}' for p, ep in port_ep.items())}")
    target = next(p for p in _proxies(root) if _balancer(p) == config.backend)

    def block(nodes: list[Node], depth: int) -> None:
        pad = "    " * depth
        for node in nodes:
            if node.section:
                args = node.args
                if node.key == "virtualhost":
                    eps = {port_ep[p].address for p in map(_port, args) if p in port_ep}
                    if not eps:
                        note(node, f"dropped <VirtualHost {' '.join(args)}> (no port for it)")
                        continue
                    note(node, f"<VirtualHost {' '.join(args)}> -> {' '.join(sorted(eps))}")
                    args = sorted(eps)
                emit(f"{pad}<{node.name}{' ' if args else ''}{' '.join(map(_quote, args))}>",
                     node)
                if node is target:
                    for rid in topology.replica_ids:
                        if rid in layout.replicas:
                            server = server_for(config, rid)
                            extra = [p for p in server.params if not p.lower().startswith(
                                ("route=", "status="))]
                            route = f" route={rid}" if any(
                                p.lower().startswith("route=") for p in server.params) else ""
                            drain = " status=+N" if rid in layout.draining else ""
                            emit(f"{pad}    BalancerMember \"http://"
                                 f"{layout.replicas[rid].address}\"{route}"
                                 f"{' ' + ' '.join(map(_quote, extra)) if extra else ''}"
                                 f"{drain}", Node("", [], server.file, server.line, ""))
                    note(node, f"balancer://{config.backend}: members "
                         f"{', '.join(s.address for s in config.servers)} -> replicas "
                         f"{', '.join(topology.replica_ids)} (their parameters kept)")
                block([c for c in node.children
                       if not (node is target and c.key == "balancermember")], depth + 1)
                emit(f"{pad}</{node.name}>")
                continue
            key, args = node.key, list(node.args)
            if key in DROPPED:
                note(node, f"dropped `{node.raw}` (the prologue has the run's own)")
                continue
            if key in ("balancermember", "proxypass", "proxypassreverse", "proxypassmatch"):
                changed = False
                for i, a in enumerate(args):
                    if re.match(r"^(https?|ws|wss|ajp|fcgi|h2c?)://", a, re.I) and \
                            not a.lower().startswith("balancer://"):
                        scheme = a.split("://", 1)[0]
                        rest = a.split("://", 1)[1]
                        tail = rest[rest.find("/"):] if "/" in rest else ""
                        args[i] = f"{scheme}://{closed}{tail}"
                        changed = True
                if changed:
                    note(node, f"{node.name} -> {closed} (not under test; nothing listens)")
                    emit(f"{pad}{node.name} {' '.join(map(_quote, args))}", node)
                    continue
            if key == "customlog" and args:
                args[0] = f"{layout.workdir}/apache-access.log"
                emit(f"{pad}{node.name} {' '.join(map(_quote, args))}", node)
                continue
            if key in PATH_DIRECTIVES and args and not args[-1].startswith("/"):
                args[-1] = str(config.folder / args[-1])  # relative to the config's folder
                emit(f"{pad}{node.name} {' '.join(map(_quote, args))}", node)
                continue
            emit(f"{pad}{node.raw}", node)

    block(root.children, 0)
    return Rewrite("\n".join(out) + "\n", notes, origin)


def validate(config: UserConfig) -> None:
    """`apache2 -t` on the rewritten config (a throwaway layout), its complaint mapped back
    to the user's file and line."""
    from harness.balancers import get_adapter

    done, result, candidate = balancer_check(config, "apache.conf",
                                             get_adapter("apache").check_command)
    if done.returncode != 0:
        message = (done.stderr + done.stdout).strip()

        def where(match: re.Match) -> str:
            source = result.origin.get(int(match[1]))
            return f"{source[0]}:{source[1]}" if source else match[0]

        message = re.sub(r"line (\d+) of " + re.escape(str(candidate)), where, message)
        raise InputError(f"apache2 -t rejects this config:\n{message}", file=str(config.path))
