"""The containers runtime: a topology as Docker containers on a private network.

    with ContainerCluster(topology) as cluster:
        ... send traffic to cluster.url (a port published on 127.0.0.1) ...

Each cluster gets its own bridge network with a fixed address per part (the balancer .2,
replicas from .10), so a replica that is killed and started again, or disconnected and
reconnected, comes back where the balancer's config says it is. Replicas are also reachable
by their id as a network alias.

A replica is two containers, as a Kubernetes pod is: a holder that owns the network
namespace (address, alias, published port) and does nothing else, and the app, which joins
the holder's namespace. Killing the app leaves the address in place, so the balancer's next
connect is refused at once (RST), as when a pod's container or a host's process crashes,
and as in the processes runtime. Without the holder a killed container's address vanishes
and connects hang until the balancer's connect timeout (measured: NGINX's clients waited
about 40 s with the default proxy_connect_timeout of 60 s). That "host gone" fault is
`disconnect`: the holder leaves the network, and packets to the address go nowhere.

A config topology (the user's own balancer config) runs here too: the rewrite of the user's
file onto these addresses, the user's folder copied into the balancer's container at its own
path (the rewrite names certificates and maps there), further listeners on the ports after
the balancer's.

Everything is labelled with the run id, the owning pid and
the host name: leaving the `with` block (normally, by exception, SIGTERM or Ctrl-C) removes
it, and `stickler clean` removes what a SIGKILLed run left.

Testcontainers starts the containers; the docker SDK does the rest (networks, faults, exec).
Client addresses: connections reach the balancer from Docker's gateway, not from the 127.x
source address the harness bound. The PROXY-protocol and X-Forwarded-For transports carry
the simulated address as a label, with the gateway as the trusted hop (`Layout.trusted`);
with the `source` transport the address is lost (see `carries_client_address`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import ipaddress
import os
import socket
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.balancers import Adapter, Endpoint, Layout, get_adapter
from harness.errors import ClusterError
from harness.history import FaultRecord
from harness.runtime import docker_env, images, net, reaper, store, wait
from harness.runtime.commands import replica_command
from harness.runtime.replica_set import ReplicaSetMixin
from harness.topology import Topology

START_TIMEOUT = 30.0
OLD_WORKER_GRACE = 5.0
PORT = 8080
WORKDIR = Path("/srv/stickler")  # inside the image (compose/images/node/Dockerfile)
LABEL_RUN, LABEL_PID, LABEL_HOST = "stickler.run", "stickler.pid", "stickler.host"
# The `stickler` command a cluster belongs to: in a concurrent run its clusters live in
# worker processes (LABEL_PID, which owns them), and this names the command the user ran.
LABEL_COMMAND = "stickler.command"
LABEL_CLUSTER, LABEL_ROLE = "stickler.cluster", "stickler.role"
# argv[0] inside the image, per balancer kind (the adapters name the host's binaries).
BINARIES = {"haproxy": "haproxy", "nginx": "nginx", "caddy": "caddy", "apache": "apache2",
            "reference": "python3"}
BALANCER_OFFSET, STORE_OFFSET, REPLICA_OFFSET = 2, 3, 10


def container_adapter(kind: str) -> Adapter:
    """The balancer's adapter as it runs in the image: binaries on PATH, running as root."""
    adapter = copy.copy(get_adapter(kind))
    adapter.which = lambda: BINARIES[kind]  # type: ignore[method-assign]
    host_vars = adapter.template_vars

    def template_vars(topology: Topology, layout: Layout) -> dict[str, Any]:
        found = host_vars(topology, layout)
        return {**found, "run_as_root": True} if "run_as_root" in found else found

    adapter.template_vars = template_vars  # type: ignore[method-assign]
    return adapter


def in_image(kind: str, argv: list[str]) -> list[str]:
    """A balancer command line with argv[0] as named in the image."""
    return [BINARIES[kind], *argv[1:]]


@dataclass
class Node:
    name: str
    container: Any  # testcontainers DockerContainer: the process (app or balancer)
    endpoint: Endpoint  # on the cluster network
    published: Endpoint  # on 127.0.0.1
    paused: bool = False
    connected: bool = True
    holder: Any = None  # a replica's network holder (docker SDK container), see module doc

    @property
    def docker(self):
        return self.container.get_wrapped_container()

    @property
    def netns(self):
        """The container that owns this node's address: the holder, if it has one."""
        return self.holder or self.docker


class ContainerCluster(ReplicaSetMixin):
    runtime = "containers"
    @staticmethod
    def carries_client_address(topology: Topology) -> bool:
        """Whether the balancer can learn the simulated client address: the connection comes
        from Docker's gateway, so only the label transports (PROXY protocol, X-Forwarded-For
        from the gateway, the trusted hop) carry it; `source` addresses are lost."""
        return topology.client_ip != "source"

    def __init__(self, topology: Topology, *,
                 on_event: Callable[[FaultRecord], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, image: str | None = None):
        self.topology = topology
        self.adapter = container_adapter(topology.kind)
        self.on_event = on_event
        self.clock = clock
        self.t0 = clock()
        self.image = image
        self.run_id = uuid.uuid4().hex[:12]
        self.labels = {LABEL_RUN: self.run_id, LABEL_PID: str(os.getpid()),
                       LABEL_COMMAND: os.environ.get(reaper.COMMAND_PID_ENV, str(os.getpid())),
                       LABEL_HOST: socket.gethostname(), LABEL_CLUSTER: topology.name}
        self.client = None
        self.network = None
        self.subnet: ipaddress.IPv4Network | None = None
        self.gateway = ""
        self.layout: Layout | None = None
        self.replicas: dict[str, Node] = {}
        self.balancer: Node | None = None
        self.store: Node | None = None  # the shared session store, if the app uses one
        self._next_index = len(topology.replicas) + 1
        self._addresses: dict[str, str] = {}

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self.client = docker_env.client()
        reaper.track_cleanup(f"containers:{self.run_id}", self.stop)
        clean(self.client)  # what SIGKILLed runs left
        self.image = self.image or images.ensure_node_image(self.client)
        self._create_network()
        self.layout = Layout(Endpoint("0.0.0.0", PORT), {}, WORKDIR, trusted=self.gateway)
        if self.topology.config is not None:  # a user's config with more listeners
            self.layout.extra = extra_listeners(self.topology)
        if self.topology.app.session_store == "redis":
            self._start_store()
        for replica in self.topology.replicas:
            self._start_replica(replica.id)
        self._start_balancer()

    def stop(self) -> None:
        reaper.untrack_cleanup(f"containers:{self.run_id}")
        if self.client is None:
            return
        remove_run(self.client, self.run_id)
        self.replicas.clear()
        self.balancer = None
        self.store = None
        self.network = None
        self.client.close()
        self.client = None

    # ---- handles ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.balancer, "cluster not started"
        scheme = "https" if self.topology.tls else "http"  # a user's TLS frontend
        return f"{scheme}://{self.balancer.published.address}"

    def versions(self) -> dict[str, str]:
        import re

        assert self.balancer
        kind = self.adapter.kind
        out = {"image": str(self.image)}
        cmd = [BINARIES[kind], *(["-V"] if kind == "reference" else self.adapter.version_args())]
        code, text = self.balancer.docker.exec_run(cmd, environment={"HOME": "/tmp"})
        match = re.search(self.adapter.version_pattern(), text.decode(errors="replace"))
        out[kind] = match.group(1) if match and kind != "reference" else self.adapter.version()
        code, text = self.balancer.docker.exec_run(["python3", "-V"])
        out["python"] = text.decode().split()[-1] if code == 0 else "unknown"
        if self.store:
            code, text = self.store.docker.exec_run(["redis-server", "--version"])
            found = re.search(r"v=(\S+)", text.decode(errors="replace"))
            out["redis"] = found.group(1) if code == 0 and found else "unknown"
        return out

    def logs(self, name: str) -> str:
        node = {"balancer": self.balancer, store.NAME: self.store}.get(name) \
            or self.replicas.get(name)
        if node is None:
            raise KeyError(f"no container named {name!r}; have balancer, {self.replica_ids}"
                           + (f", {store.NAME}" if self.store else ""))
        return node.docker.logs().decode(errors="replace")

    def alive(self, replica: str) -> bool:
        node = self.store if replica == store.NAME else self.replicas.get(replica)
        if not node:
            return False
        node.docker.reload()
        return node.docker.status in ("running", "paused")

    # ---- faults ----------------------------------------------------------------------

    def replica_endpoint(self, replica: str) -> Endpoint:
        return self._replica(replica).published  # its port published on 127.0.0.1

    def kill(self, replica: str) -> None:
        node = self._part(replica)
        with contextlib.suppress(Exception):
            node.docker.kill()
        node.paused = False
        self._event("kill", replica)

    def pause(self, replica: str) -> None:
        node = self._part(replica)
        node.docker.pause()
        node.paused = True
        self._event("pause", replica)

    def resume(self, replica: str) -> None:
        node = self._part(replica)
        node.docker.unpause()
        node.paused = False
        self._event("resume", replica)

    def restart(self, replica: str) -> None:
        """Kill and start the same container again: same address, empty memory."""
        node = self._part(replica)
        node.docker.reload()
        if node.docker.status == "paused":
            node.docker.unpause()
        if node.docker.status in ("running", "paused"):
            node.docker.kill()
            wait.until(lambda: self._status(node) == "exited", START_TIMEOUT,
                       f"{replica} to stop")
        node.docker.start()
        node.paused = False
        self._wait_store() if node is self.store else self._wait_replica(node)
        self._event("restart", replica)

    def disconnect(self, replica: str) -> None:
        """Take the replica off the cluster network: the balancer's packets go nowhere."""
        node = self._part(replica)
        self.network.disconnect(node.netns, force=True)
        node.connected = False
        self._event("disconnect", replica)

    def reconnect(self, replica: str) -> None:
        node = self._part(replica)
        self.network.connect(node.netns, ipv4_address=node.endpoint.host, aliases=[replica])
        node.connected = True
        self._event("reconnect", replica)

    def reload(self) -> None:
        """Re-render, check and install the config, signal the balancer, and return once new
        connections are served by the new config (its generation header)."""
        assert self.balancer and self.layout
        self.layout.generation += 1
        docker = self.balancer.docker
        self._install_config(docker)
        old = _workers(docker) if self.adapter.forks_workers else set()
        command = self.adapter.reload_command(self._config_path(), self.layout)
        if command:
            code, out = docker.exec_run(self._command(command),
                                        environment=self.adapter.environment(self.layout))
            if code != 0:
                raise ClusterError(f"{self.adapter.kind} refused the reload (in {docker.name}):"
                                   f"\n{out.decode(errors='replace').strip()[-2000:]}")
        else:
            docker.kill(signal=int(self.adapter.reload_signal))
        if self.adapter.forks_workers:
            # As in the processes runtime: new workers up, then old ones gone (they may
            # linger while they drain open connections; new ones no longer reach them).
            wait.until(lambda: bool(_workers(docker) - old), START_TIMEOUT,
                       f"{self.adapter.kind} to start new workers after reload",
                       check=lambda: self._check_running(self.balancer))
            with contextlib.suppress(TimeoutError):
                wait.until(lambda: not _workers(docker) & old, OLD_WORKER_GRACE,
                           "old workers to finish", interval=0.1)
        self._wait_balancer(self.layout.generation)

    # ---- internals -------------------------------------------------------------------

    def _discard(self, node: Node) -> None:
        for part in (node.docker, node.holder):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.remove(force=True, v=True)

    def _status(self, node: Node) -> str:
        node.docker.reload()
        return node.docker.status

    def _create_network(self) -> None:
        """A bridge network with a subnet Docker chose as free, declared explicitly so that
        every part can have a fixed address."""
        from docker.errors import APIError
        from docker.types import IPAMConfig, IPAMPool

        name = f"stickler-{self.run_id}"
        for attempt in range(8):
            probe = self.client.networks.create(f"{name}-probe", driver="bridge",
                                                labels=self.labels)
            try:
                probe.reload()
                subnet = probe.attrs["IPAM"]["Config"][0]["Subnet"]
            finally:
                probe.remove()
            try:
                self.network = self.client.networks.create(
                    name, driver="bridge", labels=self.labels,
                    ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]))
                break
            except APIError as exc:
                # Another cluster of a concurrent run took the subnet between the probe
                # and the create: probe again.
                if "overlap" not in str(exc).lower() or attempt == 7:
                    raise
        self.subnet = ipaddress.ip_network(subnet)
        self.network.reload()
        config = self.network.attrs["IPAM"]["Config"][0]
        self.gateway = config.get("Gateway") or str(self.subnet.network_address + 1)

    def _address(self, offset: int) -> str:
        assert self.subnet
        return str(self.subnet.network_address + offset)

    def _published(self, container) -> Endpoint:
        def port() -> str | None:
            container.reload()
            bound = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{PORT}/tcp")
            return bound[0]["HostPort"] if bound else None

        wait.until(lambda: port() is not None, START_TIMEOUT, f"{container.name}'s port")
        host = os.environ.get("TC_HOST", "127.0.0.1")
        return Endpoint(net.ensure_loopback(host), int(port() or 0))

    def _run(self, name: str, role: str, cmd: list[str], address: str,
             files: dict[str, bytes] | None = None, netns: Any = None,
             env: dict[str, str] | None = None,
             folders: dict[str, Path] | None = None) -> Any:
        """Start a container on the cluster network at `address` with its port published
        on 127.0.0.1, or, given `netns` (a holder), inside that container's namespace."""
        from docker.types import EndpointConfig
        from testcontainers.core.container import DockerContainer

        assert self.network
        aliases = [name] if role in ("replica", "holder", "store") else ["balancer"]
        kwargs: dict[str, Any] = {"labels": {**self.labels, LABEL_ROLE: role}, "init": True}
        if netns is None:
            kwargs.update(network=self.network.name, networking_config={
                self.network.name: EndpointConfig("1.41", ipv4_address=address,
                                                  aliases=aliases)})
        else:
            kwargs["network_mode"] = f"container:{netns.id}"
        suffix = "-net" if role == "holder" else ""
        container = (DockerContainer(self.image)
                     .with_name(f"stickler-{self.run_id}-{name}{suffix}")
                     .with_command(cmd)
                     .with_kwargs(**kwargs))
        for key, value in (env or {}).items():
            container = container.with_env(key, value)
        if netns is None:
            container.ports[PORT] = ("127.0.0.1",)  # published on 127.0.0.1, any free port
        for path, data in (files or {}).items():
            container = container.with_copy_into_container(data, path)
        for path, folder in (folders or {}).items():  # copied as `path`
            container = container.with_copy_into_container(folder, str(Path(path).parent))
        try:
            container.start()
        except Exception as exc:
            raise ClusterError(f"cannot start container {name}{suffix} from {self.image}: "
                               f"{exc}") from None
        return container

    def _start_replica(self, rid: str) -> None:
        assert self.layout
        index = self._addresses.get(rid)
        if index is None:
            index = self._address(REPLICA_OFFSET + len(self._addresses))
            self._addresses[rid] = index
        endpoint = Endpoint(index, PORT)
        holder = self._run(rid, "holder", ["sleep", "infinity"], endpoint.host)
        holder_docker = holder.get_wrapped_container()
        cmd = replica_command(self.topology, rid, port=PORT, store_url=store.url(
            self.store.endpoint.host, store.PORT) if self.store else None)
        container = self._run(rid, "replica", cmd, endpoint.host, netns=holder_docker)
        node = Node(rid, container, endpoint, self._published(holder_docker),
                    holder=holder_docker)
        self.replicas[rid] = node
        self.layout.replicas[rid] = endpoint
        self._wait_replica(node)

    def _start_store(self) -> None:
        # A pod like a replica's: killing Redis leaves an address that refuses connects, as
        # a crashed process does; `disconnect` of the holder is the vanished host.
        address = self._address(STORE_OFFSET)
        holder = self._run(store.NAME, "holder", ["sleep", "infinity"], address)
        holder_docker = holder.get_wrapped_container()
        cmd = store.redis_command("0.0.0.0", store.PORT, "/tmp", binary="redis-server")
        container = self._run(store.NAME, "store", cmd, address, netns=holder_docker)
        self.store = Node(store.NAME, container, Endpoint(address, store.PORT),
                          self._published(holder_docker), holder=holder_docker)
        self._wait_store()

    def _wait_store(self) -> None:
        assert self.store

        def answers() -> bool:
            from docker.errors import APIError

            try:
                code, out = self.store.docker.exec_run(["redis-cli", "-p", str(store.PORT),
                                                        "ping"])
            except APIError:  # not running (yet)
                return False
            return code == 0 and out.strip() == b"PONG"

        try:
            wait.until(answers, START_TIMEOUT, f"redis-server in {self.store.docker.name}",
                       check=lambda: self._check_running(self.store))
        except TimeoutError as exc:
            raise ClusterError(str(exc)) from None

    def _wait_replica(self, node: Node) -> None:
        ep = node.published
        try:
            wait.until(lambda: wait.http_status(ep.host, ep.port, "/healthz") == 200,
                       START_TIMEOUT, f"replica {node.name} (container {node.docker.name})",
                       check=lambda: self._check_running(node))
        except TimeoutError as exc:
            raise ClusterError(str(exc)) from None

    def _check_running(self, node: Node | None) -> None:
        if node and self._status(node) in ("exited", "dead"):
            tail = node.docker.logs(tail=40).decode(errors="replace")
            raise ClusterError(f"container {node.docker.name} exited during start-up; "
                               f"its log ends with:\n{tail}")

    def _config_path(self) -> Path:
        return WORKDIR / self.adapter.config_name_for(self.topology)

    def _command(self, argv: list[str]) -> list[str]:
        return in_image(self.adapter.kind, argv)

    def _render(self) -> str:
        assert self.layout
        return self.adapter.render(self.topology, self.layout)

    def _install_config(self, container) -> None:
        """Copy the rendered config in next to the live one, let the balancer check it, then
        move it into place: a rejected config never replaces a working one."""
        assert self.layout
        config = self._config_path()
        candidate = config.with_name(f"{config.stem}.new{config.suffix}")  # the format stays
        _put_file(container, candidate, self._render().encode())
        code, out = container.exec_run(
            self._command(self.adapter.check_command(candidate, self.layout)),
            environment=self.adapter.environment(self.layout))
        if code != 0:
            message = out.decode(errors="replace").strip()
            if self.topology.config is not None:
                from harness.configs import explain, rewrite

                message = explain(message, str(candidate),
                                  rewrite(self.topology.config, self.topology, self.layout))
            raise ClusterError(f"{self.adapter.kind} rejected the rendered config "
                               f"{candidate} (in {container.name}):\n{message}")
        code, out = container.exec_run(["mv", str(candidate), str(config)])
        if code != 0:
            raise ClusterError(f"cannot install {config} in {container.name}: {out.decode()}")

    def _start_balancer(self) -> None:
        assert self.layout
        config = self._config_path()
        text = self._render().encode()
        address = self._address(BALANCER_OFFSET)
        cmd = self._command(self.adapter.command(config, self.layout))
        folders = {}
        if self.topology.config is not None:
            # The user's folder at the same path: the rewrite names its certificates, maps
            # and error pages there. A copy: nothing in the container can change the files.
            folders[str(self.topology.config.folder)] = config_folder(self.topology)
        container = self._run("balancer", "balancer", cmd, address, {str(config): text},
                              env=self.adapter.environment(self.layout), folders=folders)
        self.balancer = Node("balancer", container, Endpoint(address, PORT),
                             self._published(container.get_wrapped_container()))
        self._wait_balancer(1)

    def _wait_balancer(self, generation: int) -> None:
        assert self.balancer
        ep = self.balancer.published

        proxy_header = self.topology.client_ip.startswith("proxy-protocol")

        def answers() -> bool:
            resp = wait.http_get(ep.host, ep.port, "/healthz", proxy_header=proxy_header,
                                 tls=self.topology.tls)
            return resp is not None and resp.getheader("X-Stickler-Config") == str(generation)

        try:
            wait.until(answers, START_TIMEOUT,
                       f"{self.adapter.kind} in {self.balancer.docker.name} to serve config "
                       f"{generation}", check=lambda: self._check_running(self.balancer))
        except TimeoutError as exc:
            raise ClusterError(f"{exc}; balancer log:\n{self.logs('balancer')[-2000:]}") \
                from None


# Run inside the balancer's container: the pids of the master's children (its workers).
# PID 1 is docker-init; its one child is the balancer's master.
WORKERS_PY = """
import os
def kids(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(p))
    return out
masters = kids(1)
print(" ".join(str(k) for m in masters for k in kids(m)))
"""


def extra_listeners(topology: Topology) -> list[Endpoint]:
    """A user's config's further listeners (frontends, a stick table's local peer): the
    ports after the balancer's, in its own network namespace."""
    assert topology.config is not None
    return [Endpoint("0.0.0.0", PORT + 1 + i) for i in range(topology.config.listeners - 1)]


MAX_FOLDER_BYTES = 64 * 2**20


def config_folder(topology: Topology) -> Path:
    """The folder of a user's config, checked to be one that can be copied into the
    balancer's container: not the root, not larger than MAX_FOLDER_BYTES."""
    assert topology.config is not None
    folder = topology.config.folder
    if folder == folder.parent:
        raise ClusterError(f"{topology.config.path}: the containers runtime copies the "
                           f"config's folder into the balancer's container; put the config "
                           f"in a folder of its own")
    size = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size += path.stat().st_size
            if size > MAX_FOLDER_BYTES:
                raise ClusterError(
                    f"{folder}: the containers runtime copies the config's folder into the "
                    f"balancer's container, and this one holds more than "
                    f"{MAX_FOLDER_BYTES // 2**20} MiB; put the config and the files it "
                    f"names (certificates, maps, error pages) in a folder of their own")
    return folder


def _workers(container) -> set[int]:
    code, out = container.exec_run(["python3", "-c", WORKERS_PY])
    if code != 0:
        return set()
    return {int(p) for p in out.split()}


def _put_file(container, path: Path, data: bytes) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(path.name)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    if not container.put_archive(str(path.parent), buf.getvalue()):
        raise ClusterError(f"cannot copy {path} into {container.name}")


# ---- cleanup by label ------------------------------------------------------------------

def remove_run(client, run_id: str) -> list[tuple[str, str]]:
    """Remove every container and network labelled with this run id."""
    return _remove(client, {"label": f"{LABEL_RUN}={run_id}"})


def _remove(client, filters: dict[str, str],
            keep: Callable[[dict[str, str]], bool] = lambda labels: False
            ) -> list[tuple[str, str]]:
    removed = []
    # The low-level list: the high-level one inspects each container, and a container that
    # another cluster of a concurrent run removes meanwhile would make it fail (404).
    for container in client.api.containers(all=True, filters=filters):
        if keep(container.get("Labels") or {}):
            continue
        with contextlib.suppress(Exception):
            client.api.remove_container(container["Id"], force=True, v=True)
            removed.append(("container", (container.get("Names") or [""])[0].lstrip("/")))
    for network in client.networks.list(filters=filters):
        if keep(network.attrs.get("Labels") or {}):
            continue
        with contextlib.suppress(Exception):
            network.remove()
            removed.append(("network", network.name))
    return removed


def owner_alive(labels: dict[str, str], host: str | None = None) -> bool:
    """Whether the process that made a container or network still runs. Another host's
    runs (a shared daemon) are taken as alive: their pids mean nothing here."""
    if labels.get(LABEL_HOST) != (host or socket.gethostname()):
        return True
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    return pid == os.getpid() or wait.pid_alive(pid)


def clean(client=None, everything: bool = False) -> list[tuple[str, str]]:
    """Remove leftovers of dead runs (or, with `everything`, of every Stickler run)."""
    client = client or docker_env.client()
    keep = (lambda labels: False) if everything else owner_alive
    return _remove(client, {"label": LABEL_RUN}, keep)
