"""The processes runtime: a topology as local processes on a private loopback address.

    with ProcessCluster(topology) as cluster:
        ... send traffic to cluster.url ...

Each cluster gets its own 127.x.y.1, free ports, a temp dir for configs and logs, and its own
process group per child. Leaving the `with` block (normally, by exception, SIGTERM or
Ctrl-C) kills every process and removes the temp dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.balancers import Endpoint, Layout, get_adapter
from harness.errors import ClusterError
from harness.history import FaultRecord
from harness.runtime import net, reaper, store, wait
from harness.runtime.commands import replica_command
from harness.runtime.replica_set import ReplicaSetMixin
from harness.topology import Topology

START_TIMEOUT = 15.0
OLD_WORKER_GRACE = 5.0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen  # the process we started (for a balancer: its guard shell)
    log: Path
    endpoint: Endpoint
    paused: bool = False
    main_pid: int = 0  # the process to signal: the balancer's master, or proc.pid


class ProcessCluster(ReplicaSetMixin):
    runtime = "processes"

    def __init__(self, topology: Topology, *,
                 on_event: Callable[[FaultRecord], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 keep_workdir: bool = False):
        self.topology = topology
        self.adapter = get_adapter(topology.kind)
        self.on_event = on_event
        self.clock = clock
        self.keep_workdir = keep_workdir
        self.t0 = clock()
        self.host = ""
        self.workdir = Path()
        self.layout: Layout | None = None
        self.replicas: dict[str, Child] = {}
        self.balancer: Child | None = None
        self.store: Child | None = None  # the shared session store, if the app uses one
        self._next_index = len(topology.replicas) + 1
        self._ports: set[int] = set()

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self.adapter.which()  # fail early, naming the package, if the binary is missing
        self.workdir = Path(tempfile.mkdtemp(prefix=f"stickler-{self.topology.name}-"))
        reaper.claim_dir(self.workdir)
        (self.workdir / "nginx-tmp").mkdir()
        self.host = net.cluster_address()
        balancer = Endpoint(self.host, self._new_port())
        self.layout = Layout(balancer, {}, self.workdir)
        if self.topology.config is not None:  # a user's config with more listeners
            self.layout.extra = [Endpoint(self.host, self._new_port())
                                 for _ in range(self.topology.config.listeners - 1)]
        if self.topology.app.session_store == "redis":
            self._start_store()
        # All replicas start at once; then each is waited for (start-up is mostly import).
        waits = [self._launch_replica(replica.id) for replica in self.topology.replicas]
        for ready in waits:
            ready()
        self._start_balancer()

    def stop(self) -> None:
        if self.balancer:
            # A master that is SIGKILLed cannot reap its workers; ask it to stop first.
            self._kill(self.balancer, grace=3.0)
        for child in self.replicas.values():
            self._kill(child)
        self.replicas.clear()
        if self.store:
            self._kill(self.store)
            self.store = None
        self.balancer = None
        if self.workdir != Path() and not self.keep_workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)
            reaper.untrack_dir(self.workdir)

    # ---- handles ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.layout, "cluster not started"
        scheme = "https" if self.topology.tls else "http"  # a user's TLS frontend
        return f"{scheme}://{self.layout.balancer.address}"

    def versions(self) -> dict[str, str]:
        out = {self.adapter.kind: self.adapter.version(), "python": sys.version.split()[0]}
        if self.store:
            out["redis"] = store.redis_version()
        return out

    def logs(self, name: str) -> str:
        child = {"balancer": self.balancer, store.NAME: self.store}.get(name) \
            or self.replicas.get(name)
        if child is None:
            raise KeyError(f"no process named {name!r}; have balancer, {self.replica_ids}"
                           + (f", {store.NAME}" if self.store else ""))
        return child.log.read_text(errors="replace") if child.log.exists() else ""

    def alive(self, replica: str) -> bool:
        child = self.store if replica == store.NAME else self.replicas.get(replica)
        return bool(child and child.proc.poll() is None)

    # ---- faults ----------------------------------------------------------------------

    def replica_endpoint(self, replica: str) -> Endpoint:
        return self._replica(replica).endpoint

    def kill(self, replica: str) -> None:
        self._kill(self._part(replica))
        self._event("kill", replica)

    def pause(self, replica: str) -> None:
        child = self._part(replica)
        os.killpg(child.proc.pid, signal.SIGSTOP)
        child.paused = True
        self._event("pause", replica)

    def resume(self, replica: str) -> None:
        child = self._part(replica)
        os.killpg(child.proc.pid, signal.SIGCONT)
        child.paused = False
        self._event("resume", replica)

    def disconnect(self, replica: str) -> None:
        """Not here: replicas share the host's loopback, there is no network to cut."""
        self._part(replica)
        raise ClusterError(f"cannot disconnect {replica}: the processes runtime has no network "
                           f"between the balancer and its replicas (use --runtime containers)")

    reconnect = disconnect

    def restart(self, replica: str) -> None:
        """Kill and start again on the same port; the new process has empty memory (a
        restarted store too: it persists nothing)."""
        child = self._part(replica)
        self._kill(child)
        if child is self.store:
            self._start_store(port=child.endpoint.port)
        else:
            self._start_replica(replica, port=child.endpoint.port)
        self._event("restart", replica)

    def reload(self) -> None:
        """Re-render the config and reload the balancer gracefully.

        Returns once new connections are served by the new config: new workers answer with
        the new generation, and the old workers have finished (they may linger up to
        OLD_WORKER_GRACE s while they drain open connections; that is the balancers' own
        graceful behaviour, and new connections no longer reach them).
        """
        assert self.balancer and self.layout
        self.layout.generation += 1
        config = self._write_config()
        master = self.balancer.main_pid
        old = wait.child_pids(master)
        command = self.adapter.reload_command(config, self.layout)
        if command:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                                  env=self._balancer_env())
            if done.returncode != 0:
                raise ClusterError(f"{self.adapter.kind} refused the reload of {config}:\n"
                                   f"{(done.stdout + done.stderr).strip()[-2000:]}")
        else:
            os.kill(master, self.adapter.reload_signal)
        running = lambda: self._check_running(self.balancer)  # noqa: E731
        if self.adapter.forks_workers:
            wait.until(lambda: bool(wait.child_pids(master) - old), START_TIMEOUT,
                       f"{self.adapter.kind} to start new workers after reload of {config}",
                       check=running)
            with contextlib.suppress(TimeoutError):
                wait.until(lambda: not wait.child_pids(master) & old, OLD_WORKER_GRACE,
                           "old workers to finish", check=running)
        self._wait_balancer_ready(generation=self.layout.generation)

    # ---- internals -------------------------------------------------------------------

    def _balancer_env(self) -> dict[str, str]:
        assert self.layout
        return {**os.environ, **self.adapter.environment(self.layout)}

    def _spawn(self, name: str, cmd: list[str], endpoint: Endpoint,
               guard: bool = False, env: dict[str, str] | None = None) -> Child:
        """Start `cmd` in its own process group, tracked by the reaper. With `guard`, it runs
        under reaper.GUARD, so its forked workers die with the harness too."""
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(reaper.guarded(cmd) if guard else cmd, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.workdir, start_new_session=True, env=env,
                                    preexec_fn=reaper.guard_setup if guard
                                    else reaper.child_setup)
        reaper.track_group(proc.pid)
        child = Child(name, proc, log, endpoint, main_pid=proc.pid)
        if guard:
            wait.until(lambda: bool(wait.child_pids(proc.pid)) or proc.poll() is not None,
                       START_TIMEOUT, f"{name} to start under its guard")
            child.main_pid = min(wait.child_pids(proc.pid), default=proc.pid)
        return child

    def _discard(self, child: Child) -> None:
        self._kill(child)

    def _kill(self, child: Child, grace: float = 0.0) -> None:
        """Stop a child and everything in its process group; SIGKILL after `grace` s."""
        if grace and child.proc.poll() is None:
            try:
                os.killpg(child.proc.pid, signal.SIGCONT)
                # The master stops its workers and reaps them; its guard then exits.
                os.kill(child.main_pid, signal.SIGTERM)
                child.proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        reaper.kill_group(child.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=5)
        reaper.untrack_group(child.proc.pid)

    def _start_store(self, port: int | None = None) -> None:
        endpoint = Endpoint(self.host, port or self._new_port())
        self.store = self._spawn(store.NAME, store.redis_command(
            endpoint.host, endpoint.port, self.workdir), endpoint)

        def answers() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(
                    (endpoint.host, endpoint.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
            return False

        try:
            wait.until(answers, START_TIMEOUT, f"redis-server on {endpoint.address}",
                       check=lambda: self._check_running(self.store))
        except TimeoutError as exc:
            raise ClusterError(str(exc)) from None

    def _new_port(self) -> int:
        """A port on the cluster's address never handed out before in this cluster: the
        balancer's is chosen before the replicas start, and a killed replica keeps its port
        for its restart."""
        port = net.free_port(self.host, taken=self._ports)
        self._ports.add(port)
        return port

    def _check_running(self, child: Child | None) -> None:
        if child and child.proc.poll() is not None:
            tail = child.log.read_text(errors="replace")[-2000:] if child.log.exists() else ""
            raise ClusterError(f"{child.name} exited with code {child.proc.returncode} "
                               f"during start-up; its log ({child.log}) ends with:\n{tail}")

    def _start_replica(self, rid: str, port: int | None = None) -> None:
        self._launch_replica(rid, port)()

    def _launch_replica(self, rid: str, port: int | None = None) -> Callable[[], None]:
        """Spawn replica `rid`; returns what waits until it answers /healthz."""
        assert self.layout
        endpoint = Endpoint(self.host, port or self._new_port())
        cmd = replica_command(
            self.topology, rid, host=endpoint.host, port=endpoint.port, python=sys.executable,
            store_url=store.url(self.store.endpoint.host, self.store.endpoint.port)
            if self.store else None)
        child = self._spawn(rid, cmd, endpoint)
        self.replicas[rid] = child
        self.layout.replicas[rid] = endpoint

        def ready() -> None:
            try:
                wait.until(lambda: wait.http_status(endpoint.host, endpoint.port,
                                                    "/healthz") == 200,
                           START_TIMEOUT, f"replica {rid} on {endpoint.address}",
                           check=lambda: self._check_running(child))
            except TimeoutError as exc:
                raise ClusterError(str(exc)) from None
        return ready

    def _write_config(self) -> Path:
        assert self.layout
        config = self.workdir / self.adapter.config_name_for(self.topology)
        candidate = config.with_name(f"{config.stem}.new{config.suffix}")  # the format stays
        candidate.write_text(self.adapter.render(self.topology, self.layout))
        check = subprocess.run(self.adapter.check_command(candidate, self.layout),
                               capture_output=True, text=True, timeout=30,
                               env=self._balancer_env())
        if check.returncode != 0:
            message = (check.stdout + check.stderr).strip()
            if self.topology.config is not None:
                from harness.configs import explain, rewrite

                message = explain(message, str(candidate),
                                  rewrite(self.topology.config, self.topology, self.layout))
            raise ClusterError(f"{self.adapter.kind} rejected the rendered config {candidate}:\n"
                               f"{message}")
        candidate.replace(config)
        return config

    def _start_balancer(self) -> None:
        assert self.layout
        config = self._write_config()
        self.balancer = self._spawn("balancer", self.adapter.command(config, self.layout),
                                    self.layout.balancer, guard=True,
                                    env=self._balancer_env())
        self._wait_balancer_ready()

    def _wait_balancer_ready(self, generation: int = 1) -> None:
        """Wait until a new connection gets an answer from config `generation`."""
        assert self.layout and self.balancer
        ep = self.layout.balancer

        def answers() -> bool:
            resp = wait.http_get(ep.host, ep.port, "/healthz", proxy_header=self.topology
                                 .client_ip.startswith("proxy-protocol"), tls=self.topology.tls)
            return resp is not None and resp.getheader("X-Stickler-Config") == str(generation)

        try:
            wait.until(answers, START_TIMEOUT,
                       f"{self.adapter.kind} on {ep.address} to serve config {generation}",
                       check=lambda: self._check_running(self.balancer))
        except TimeoutError as exc:
            raise ClusterError(str(exc)) from None
