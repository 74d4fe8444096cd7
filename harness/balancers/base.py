"""What every balancer adapter provides: its modes, its config, how to run and reload it."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from harness.errors import MissingDependency

if TYPE_CHECKING:
    from harness.topology import Topology

TEMPLATES = Path(__file__).resolve().parents[2] / "fixtures" / "balancers"


@dataclass(frozen=True)
class Choice:
    """An option whose value is one of `values` (or, with `multiple`, a list of them).

    Topologies hold the chosen value itself (a str, or a tuple of str), never the Choice."""

    default: str | tuple[str, ...]
    values: tuple[str, ...]
    multiple: bool = False
    alone: tuple[str, ...] = ()  # values that cannot be combined with others (NGINX `off`)


def option_default(value: Any) -> Any:
    """The plain default of an option spec (a Choice's default, or the value itself)."""
    return value.default if isinstance(value, Choice) else value


@dataclass(frozen=True)
class ModeSpec:
    """One affinity mode: its options with their defaults, and what it needs of the app."""

    summary: str
    options: dict[str, Any] = field(default_factory=dict)
    # Which topology option names the cookie the app itself must set (prefix/rewrite modes).
    app_session_cookie_from: str | None = None
    app_affinity_cookie_from: str | None = None
    # It picks servers by the client address: nothing can be judged where addresses are lost.
    keyed_by_address: bool = False


@dataclass(frozen=True)
class Endpoint:
    """Where one process listens."""

    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Layout:
    """Addresses of the balancer and of each replica, plus the run's private directory.

    `generation` counts config renders; balancers send it back as `X-Stickler-Config`, so a
    reload can wait until the new config really answers.
    """

    balancer: Endpoint
    replicas: dict[str, Endpoint]
    workdir: Path
    generation: int = 1
    secret: str = ""  # per-run secrets a balancer keeps across reloads
    draining: set[str] = field(default_factory=set)  # replicas that take no new sessions
    # Where the harness's clients connect from: the hop whose PROXY header or
    # X-Forwarded-For is believed (in containers, the Docker network's gateway).
    trusted: str = "127.0.0.0/8"
    # More listening addresses, for a user's config with several (harness/configs).
    extra: list[Endpoint] = field(default_factory=list)

    @classmethod
    def example(cls, replica_ids: list[str], workdir: Path, extra: int = 0) -> Layout:
        """Addresses for a config that is shown or checked, not run: the balancer on
        127.0.0.1:8080, replicas from 8081, further listeners from 8180."""
        return cls(Endpoint("127.0.0.1", 8080),
                   {rid: Endpoint("127.0.0.1", 8081 + i) for i, rid in enumerate(replica_ids)},
                   workdir, extra=[Endpoint("127.0.0.1", 8180 + i) for i in range(extra)])


class Adapter:
    """Base class: subclasses set the class attributes and `command`."""

    kind: str = ""
    binary: str = ""
    apt_package: str = ""
    template: str = ""
    config_name: str = ""
    modes: dict[str, ModeSpec] = {}
    health_check_keys: dict[str, Any] = {}
    reload_signal: int = signal.SIGHUP
    forks_workers: bool = True  # a reload starts new worker processes (HAProxy, NGINX)
    # Why the balancer cannot drain a replica (no new sessions, pinned ones kept); "" if it can.
    no_drain: str = ""
    # How simulated client addresses can reach it (see harness/traffic/identity.py).
    client_ip_transports: tuple[str, ...] = ("source", "proxy-protocol", "proxy-protocol-v2",
                                             "xff")

    def which(self) -> str:
        path = shutil.which(self.binary) or next(
            (p for p in (f"/usr/sbin/{self.binary}", f"/sbin/{self.binary}") if Path(p).exists()),
            None,
        )
        if not path:
            raise MissingDependency(
                f"{self.binary} is not installed; install it with "
                f"'apt-get install {self.apt_package}' (or run 'make conformance' as root)"
            )
        return path

    def version(self, env: dict[str, str] | None = None) -> str:
        out = subprocess.run([self.which(), *self.version_args()], capture_output=True,
                             text=True, timeout=10, env=env)
        match = re.search(self.version_pattern(), out.stdout + out.stderr)
        return match.group(1) if match else "unknown"

    def version_args(self) -> list[str]:
        return ["-v"]

    def version_pattern(self) -> str:
        return r"version\s+(\S+)"

    def config_name_for(self, topology: Topology) -> str:
        """The config file's name for this topology (a user's config may be in another
        format than the template's)."""
        return self.config_name

    def render(self, topology: Topology, layout: Layout) -> str:
        """The balancer's config file text for this topology and these addresses: from
        the template, or for a config topology the user's file rewritten (harness/configs)."""
        if topology.config is not None:
            from harness.configs import rewrite

            return rewrite(topology.config, topology, layout).text
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        return env.get_template(self.template).render(
            topology=topology,
            mode=topology.mode,
            opt=topology.options,
            hc=topology.health_check,
            layout=layout,
            replicas=[(r.id, layout.replicas[r.id]) for r in topology.replicas
                      if r.id in layout.replicas],
            **self.template_vars(topology, layout),
        )

    def template_vars(self, topology: Topology, layout: Layout) -> dict[str, Any]:
        return {}

    def command(self, config: Path, layout: Layout) -> list[str]:
        raise NotImplementedError

    def check_command(self, config: Path, layout: Layout) -> list[str]:
        raise NotImplementedError

    def reload_command(self, config: Path, layout: Layout) -> list[str] | None:
        """A command that makes the running balancer load `config`, for balancers that reload
        on a request rather than a signal (Caddy's admin API); None: send `reload_signal`."""
        return None

    def environment(self, layout: Layout) -> dict[str, str]:
        """Extra environment for the balancer's commands (run, check, reload)."""
        return {}

    def option_errors(self, mode: str, options: dict[str, Any],
                      health_check: dict[str, Any]) -> dict[str, str]:
        """Values the balancer's config could not carry, as {key under `balancer` (e.g.
        "options.cookie"): what was expected}; the topology loader reports them against the
        file and key."""
        return {}
