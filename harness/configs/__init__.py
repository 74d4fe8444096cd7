"""The user's own balancer config: read it, find the backend under test and its affinity
mechanism, and rewrite it onto a cluster's addresses.

`read_config(kind, path, backend)` gives a `UserConfig`: what was found (the servers, the
mechanism as one of the adapter's modes with its options, the failover options, how client
addresses arrive) and why some checks cannot apply. `rewrite(config, topology, layout)`
gives the text the runtime starts: the user's file with the servers of the backend under
test replaced by the replicas, the listening addresses by the cluster's, and nothing else
changed but what isolation needs (pid files, sockets, logs), each change listed in
`Rewrite.notes`. The user's file is never written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import InputError

if TYPE_CHECKING:
    from harness.balancers.base import Layout
    from harness.topology import Topology

KINDS = ("haproxy", "nginx", "caddy", "apache")
# Where servers of the backends that are not under test are sent: the discard port of the
# cluster's own address, where nothing listens, so no request ever leaves loopback.
CLOSED_PORT = 9


def closed_address(layout: Layout) -> str:
    """Where a target that is not under test goes: the closed port of the cluster's own
    address (loopback in a container, where the balancer listens on 0.0.0.0)."""
    host = layout.balancer.host
    return f"{'127.0.0.1' if host == '0.0.0.0' else host}:{CLOSED_PORT}"


def reads_proxy_header(config: UserConfig, topology: Topology) -> bool:
    """Whether the rewrite must make the listeners read PROXY protocol: the config takes
    clients by their source address, which this runtime cannot carry (containers: the
    connection comes from Docker's gateway), so the same addresses travel as PROXY
    headers and the balancer reads them where it would have read the source."""
    return config.client_ip == "source" and topology.client_ip.startswith("proxy-protocol")


SOURCE_AS_PROXY = ("clients arrive by PROXY protocol: this runtime cannot carry their "
                   "source addresses, so the listener reads the same address from a PROXY "
                   "header instead")


@dataclass(frozen=True)
class Server:
    """One server line of the backend under test, as the user wrote it."""

    name: str
    address: str
    params: tuple[str, ...]  # the rest of the line, kept (cookie, weight, backup, check...)
    line: int
    file: str = ""

    def param(self, key: str) -> str | None:
        """The value after `key` (HAProxy `cookie w1`), or of `key=value` (NGINX)."""
        for i, token in enumerate(self.params):
            if token == key and i + 1 < len(self.params):
                return self.params[i + 1]
            if token.startswith(f"{key}="):
                return token.split("=", 1)[1]
        return None

    def flag(self, key: str) -> bool:
        return key in self.params


@dataclass(frozen=True)
class Finding:
    """Something the config does that a user may not expect, or that Stickler cannot
    judge; `severity` is `note`, `warning` or `unjudged`."""

    severity: str
    message: str
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "message": self.message, "line": self.line}


@dataclass(frozen=True)
class UserConfig:
    """A balancer config the user wrote, and what Stickler found in it."""

    kind: str
    path: Path
    backend: str
    servers: tuple[Server, ...]
    mechanism: str  # as the balancer spells it: "cookie SRV insert indirect nocache"
    mode: str | None  # the adapter mode whose expectations judge it; None: none applies
    options: dict[str, Any]
    health_check: dict[str, Any]
    client_ip: str
    failover: dict[str, str]  # the options that change failover, as written (or defaults)
    findings: tuple[Finding, ...] = ()
    listeners: int = 1  # listening addresses to give cluster ports (the first is the URL)
    health_path: str = "/healthz"  # where the balancer's active health checks ask
    tls: bool = False  # the frontend under test speaks TLS (clients do, unverified)
    tls_ca: str | None = None  # ...or verified against this CA file (the topology's)
    model: Any = field(default=None, compare=False, repr=False)  # the parsed file

    @property
    def replica_ids(self) -> list[str]:
        return [replica_id(s, i) for i, s in enumerate(self.servers)]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "file": str(self.path), "backend": self.backend,
            "servers": [{"name": s.name, "address": s.address, "params": list(s.params),
                         "line": s.line, "replica": rid}
                        for s, rid in zip(self.servers, self.replica_ids, strict=True)],
            "mechanism": self.mechanism, "mode": self.mode, "options": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()},
            "health_check": dict(self.health_check), "client_ip": self.client_ip,
            "failover": dict(self.failover), "tls": self.tls,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class Rewrite:
    """The config text to start, and what was changed in the user's file to get it."""

    text: str
    notes: list[str] = field(default_factory=list)
    # Line of the rewritten text -> (file, line) of the user's config it came from, so a
    # balancer's complaint about the rewritten file can name the user's line.
    origin: dict[int, tuple[str, int]] = field(default_factory=dict)


def replica_id(server: Server, index: int) -> str:
    """The replica that takes a server's place: the cookie value the user gave it where
    that is a valid replica id (so that the cookie names the replica, as Stickler's own
    configs do), else its name, else r<n>."""
    import re

    valid = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
    for candidate in (server.param("cookie"), server.name.lower().replace("_", "-")):
        if candidate and valid.match(candidate):
            return candidate
    return f"r{index + 1}"


def detect_kind(path: Path) -> str:
    """The balancer kind from a config's name and first directives."""
    name = path.name.lower()
    if "caddy" in name:
        return "caddy"
    if "haproxy" in name or name.endswith(".cfg"):
        return "haproxy"
    if any(w in name for w in ("apache", "httpd")) or name.endswith(".conf") and any(
            w in path.read_text(errors="replace") for w in ("<VirtualHost", "BalancerMember",
                                                             "<Proxy")):
        return "apache"
    if "nginx" in name or name.endswith(".conf"):
        text = path.read_text(errors="replace")
        if any(word in text for word in ("upstream", "proxy_pass", "http {")):
            return "nginx"
    raise InputError(f"cannot tell which balancer this config is for; give --kind "
                     f"({', '.join(KINDS)})", file=str(path))


def read_config(kind: str, path: str | Path, backend: str | None = None) -> UserConfig:
    """Read and validate the user's config with the balancer's own tools."""
    path = Path(path).resolve()
    if kind not in KINDS:
        raise InputError(f"configs of kind {kind!r} cannot be read yet; expected one of: "
                         f"{', '.join(KINDS)}", key="kind")
    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "not a regular file",
                         file=str(path))
    return _module(kind).read(path, backend)


def _module(kind: str):
    import importlib

    return importlib.import_module(f"harness.configs.{kind}")


def rewrite(config: UserConfig, topology: Topology, layout: Layout) -> Rewrite:
    return _module(config.kind).rewrite(config, topology, layout)


def balancer_check(config: UserConfig, name: str, command, env: dict | None = None,
                   extra_dirs: tuple[str, ...] = ()):
    """The balancer's own check of the config as it would run: rewritten onto a throwaway
    layout in a temporary directory, written as `name`, and `command(path, layout)` run in
    the config's folder. Gives (completed process, the Rewrite, the path it was written
    to, gone by then: for mapping messages back)."""
    import subprocess
    import tempfile

    from harness.balancers import Layout
    from harness.configs.topology import build
    from harness.runtime import reaper

    with tempfile.TemporaryDirectory(prefix=f"stickler-{config.kind}-check-") as tmp:
        work = Path(tmp)
        reaper.claim_dir(work)  # a SIGKILLed run's is swept by the next one
        for folder in extra_dirs:
            (work / folder).mkdir()
        topology = build(config, name="check")
        layout = Layout.example(topology.replica_ids, work, config.listeners - 1)
        result = rewrite(config, topology, layout)
        candidate = work / name
        candidate.write_text(result.text)
        done = subprocess.run(command(candidate, layout), capture_output=True, text=True,
                              timeout=60, cwd=config.folder,
                              env=env(tmp) if callable(env) else env)
        reaper.untrack_dir(work)
    return done, result, candidate


def server_for(config: UserConfig, rid: str) -> Server:
    """The user's server line a replica takes the place of; a replica added later (a
    scale-up) copies the first non-backup server's options."""
    for server, sid in zip(config.servers, config.replica_ids, strict=True):
        if sid == rid:
            return server
    template = next((s for s in config.servers if not s.flag("backup")), config.servers[0])
    return Server(rid, "", template.params, template.line, template.file)


def explain(message: str, candidate: str, result: Rewrite) -> str:
    """A balancer's message about the rewritten file, with the user's file and line."""
    import re

    def where(match: re.Match) -> str:
        source = result.origin.get(int(match[1]))
        return f"{source[0]}:{source[1]}" if source else match[0]

    return re.sub(re.escape(candidate) + r":(\d+)", where, message).strip()
