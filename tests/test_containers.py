"""The containers runtime against a real Docker daemon: clusters start from the local image,
serve through a port published on 127.0.0.1, take faults (kill, pause, restart, network
disconnect), change membership, and leave no container or network behind however they end
(normally, by an exception, SIGTERM, or a SIGKILLed harness followed by `stickler clean`).

Without a daemon these tests are skipped locally and fail under CI=true (.ci/run starts one).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from harness.runtime import docker_env
from harness.runtime.containers import LABEL_RUN, ContainerCluster, clean
from harness.topology import parse_topology
from tests.procs import default_sigint

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]

if not docker_env.available():
    if os.environ.get("CI"):
        raise RuntimeError(f"no Docker daemon answers; {docker_env.HINT}")
    pytest.skip(f"no Docker daemon answers; {docker_env.HINT}", allow_module_level=True)


def topology(kind: str, mode: str = "roundrobin", replicas: int = 3, extra: str = ""):
    text = (f"name: itest-containers\nbalancer:\n  kind: {kind}\n  mode: {mode}\n{extra}"
            f"replicas: {replicas}\n")
    return parse_topology(text, "<itest-containers>")


@pytest.fixture(scope="module")
def docker_client():
    client = docker_env.client()
    yield client
    client.close()


def ours(client, run_id: str) -> tuple[list[str], list[str]]:
    """Names of the containers and networks labelled with this run id."""
    flt = {"label": f"{LABEL_RUN}={run_id}"}
    return ([c.name for c in client.containers.list(all=True, filters=flt)],
            [n.name for n in client.networks.list(filters=flt)])


def get(url: str, path: str = "/", timeout: float = 5.0) -> tuple[int, Any, dict]:
    host, port = url.removeprefix("http://").split(":")
    assert host.startswith("127."), host
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        data = json.loads(body) if resp.getheader("Content-Type", "").startswith(
            "application/json") else {}
        return resp.status, resp.headers, data
    finally:
        conn.close()


def served_by(cluster: ContainerCluster, n: int = 12) -> list[str | None]:
    out = []
    for _ in range(n):
        try:
            status, headers, _ = get(cluster.url)
            out.append(headers.get("X-Replica") if status == 200 else None)
        except OSError:
            out.append(None)
    return out


def connect_from_balancer(cluster: ContainerCluster, replica: str) -> str:
    """What a TCP connect from the balancer's container to the replica gets: "ok",
    "refused" (an RST) or "timeout" (1 s of silence)."""
    ep = cluster.layout.replicas[replica]
    probe = ("import socket, sys\n"
             "try:\n"
             f"    socket.create_connection(('{ep.host}', {ep.port}), 1).close(); print('ok')\n"
             "except ConnectionRefusedError: print('refused')\n"
             "except OSError as e: print('timeout' if isinstance(e, TimeoutError) else e)\n")
    _, out = cluster.balancer.docker.exec_run(["python3", "-c", probe])
    return out.decode().strip()


def reachable_from_balancer(cluster: ContainerCluster, replica: str) -> bool:
    """Whether the balancer's container can open a TCP connection to the replica."""
    return connect_from_balancer(cluster, replica) == "ok"


@pytest.mark.parametrize("kind", ["haproxy", "nginx", "reference"])
def test_cluster_serves_and_leaves_nothing(kind: str, docker_client) -> None:
    mode = "least-loaded" if kind == "reference" else "roundrobin"
    with ContainerCluster(topology(kind, mode)) as cluster:
        run_id = cluster.run_id
        containers, networks = ours(docker_client, run_id)
        # The balancer, and per replica a network holder and the app.
        assert len(containers) == 7 and networks == [f"stickler-{run_id}"]
        # Published on 127.0.0.1 only, never on all interfaces.
        ports = cluster.balancer.docker.attrs["NetworkSettings"]["Ports"]["8080/tcp"]
        assert [p["HostIp"] for p in ports] == ["127.0.0.1"]
        served = set(served_by(cluster, 9))
        # Round robin visits all; least loaded picks any idle one, but never fails.
        assert served == {"r1", "r2", "r3"} if mode == "roundrobin" else \
            served <= {"r1", "r2", "r3"} and served
        status, headers, _ = get(cluster.url, "/healthz")
        assert status == 200 and headers["X-Stickler-Config"] == "1"
        assert cluster.versions()[kind]
        assert "r1" in cluster.logs("r1")
    assert ours(docker_client, run_id) == ([], [])


def test_source_addresses_are_lost_behind_the_gateway(docker_client) -> None:
    """Why the `source` transport's address checks are not run in containers: the address
    the app is told is Docker's gateway, not the 127.x address we sent from."""
    with ContainerCluster(topology("nginx", replicas=1)) as cluster:
        assert not ContainerCluster.carries_client_address(cluster.topology)
        _, _, body = get(cluster.url)
        seen = body["x_forwarded_for"].split(",")[-1].strip()
        assert not seen.startswith("127."), seen
        assert seen == cluster.gateway


def raw_get(url: str, preamble: bytes = b"", headers: str = "") -> dict:
    """GET / on a new connection, optionally opened with `preamble` (a PROXY header)."""
    host, port = url.removeprefix("http://").split(":")
    assert host.startswith("127."), host
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(preamble + f"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     f"{headers}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


@pytest.mark.parametrize("kind, transport", [
    ("nginx", "proxy-protocol"), ("haproxy", "proxy-protocol-v2"), ("haproxy", "xff"),
    ("reference", "proxy-protocol"), ("reference", "xff")])
def test_label_transports_carry_the_client_address(kind: str, transport: str,
                                                   docker_client) -> None:
    """PROXY protocol and X-Forwarded-For get the simulated address through Docker's
    gateway: the balancer believes the gateway (its trusted hop) and forwards the label."""
    from harness.proxy import proxy_protocol

    mode = {"nginx": "ip-hash", "haproxy": "source", "reference": "hash-client-ip"}[kind]
    label = "100.64.7.9"
    extra = f"  client_ip: {transport}\n"
    with ContainerCluster(topology(kind, mode, replicas=2, extra=extra)) as cluster:
        assert ContainerCluster.carries_client_address(cluster.topology)
        if transport == "xff":
            body = raw_get(cluster.url, headers=f"X-Forwarded-For: {label}\r\n")
        else:
            encode = proxy_protocol.encode_v1 if transport == "proxy-protocol" \
                else proxy_protocol.encode_v2
            body = raw_get(cluster.url, encode(label, "127.0.0.1", 40000, 8080))
        assert body["x_forwarded_for"].split(",")[-1].strip() == label, body


def test_faults_kill_restart_pause_disconnect(docker_client) -> None:
    events = []
    hc = "  health_check: {enabled: true, interval_ms: 200, fall: 1, rise: 1}\n"
    with ContainerCluster(topology("haproxy", extra=hc), on_event=events.append) as cluster:
        r1 = cluster.replicas["r1"].published
        # kill: the app stops; its address stays (the holder), so connects are refused at
        # once, as for a crashed process; the balancer stops sending to it (health check).
        cluster.kill("r1")
        assert not cluster.alive("r1")
        assert connect_from_balancer(cluster, "r1") == "refused"
        time.sleep(1.0)  # several check intervals: r1 is marked down
        assert "r1" not in served_by(cluster, 9)
        # restart: same address, the replica serves again (its state starts empty).
        cluster.restart("r1")
        assert cluster.alive("r1")
        assert _eventually(lambda: "r1" in served_by(cluster, 6))
        assert cluster.layout.replicas["r1"].host == cluster._addresses["r1"]
        # pause: the process is frozen; a direct request times out, resume answers again.
        r2 = cluster.replicas["r2"].published
        cluster.pause("r2")
        with pytest.raises(OSError):
            get(f"http://{r2.address}", "/healthz", timeout=1.0)
        cluster.resume("r2")
        assert get(f"http://{r2.address}", "/healthz")[0] == 200
        # disconnect: the balancer can no longer reach r3; reconnect restores it.
        assert reachable_from_balancer(cluster, "r3")
        cluster.disconnect("r3")
        assert connect_from_balancer(cluster, "r3") != "ok"  # silence: the host is gone
        cluster.reconnect("r3")
        assert reachable_from_balancer(cluster, "r3")
        assert _eventually(lambda: "r3" in served_by(cluster, 6))
    assert [(e.op, e.target) for e in events] == [
        ("kill", "r1"), ("restart", "r1"), ("pause", "r2"), ("resume", "r2"),
        ("disconnect", "r3"), ("reconnect", "r3")]
    assert r1.host == "127.0.0.1"


def _eventually(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("kind", ["haproxy", "nginx"])
def test_add_and_remove_replica_reload_gracefully(kind: str, docker_client) -> None:
    with ContainerCluster(topology(kind, replicas=2)) as cluster:
        added = cluster.add_replica()
        assert added == "r3"
        assert get(cluster.url, "/healthz")[1]["X-Stickler-Config"] == "2"
        assert "r3" in served_by(cluster, 6)
        cluster.remove_replica("r1")
        assert get(cluster.url, "/healthz")[1]["X-Stickler-Config"] == "3"
        assert set(served_by(cluster, 6)) == {"r2", "r3"}
        names, _ = ours(docker_client, cluster.run_id)
        assert not any(n.endswith("-r1") for n in names)


def test_bad_config_is_refused_and_the_old_one_keeps_serving(docker_client) -> None:
    with ContainerCluster(topology("haproxy", replicas=2)) as cluster:
        render = cluster._render
        cluster._render = lambda: render() + "\nthis is not haproxy syntax\n"
        with pytest.raises(Exception, match="rejected the rendered config"):
            cluster.reload()
        cluster._render = render
        assert set(served_by(cluster, 4)) == {"r1", "r2"}


SCRIPT = textwrap.dedent("""\
    import json, sys, time
    from harness.runtime import ContainerCluster
    from harness.topology import parse_topology

    text = "name: itest-signal\\nbalancer:\\n  kind: haproxy\\n  mode: roundrobin\\nreplicas: 2\\n"
    with ContainerCluster(parse_topology(text, "<itest-signal>")) as cluster:
        print(json.dumps({"run": cluster.run_id, "url": cluster.url}), flush=True)
        while True:
            time.sleep(3600)
""")


def start_script(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    script = tmp_path / "cluster_script.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=default_sigint)
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        pytest.fail(f"cluster script exited with {proc.returncode}: {proc.stderr.read()!r}")
    return proc, json.loads(line)["run"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_removes_containers_and_network(sig: int, tmp_path: Path, docker_client) -> None:
    proc, run_id = start_script(tmp_path)
    try:
        assert len(ours(docker_client, run_id)[0]) == 5  # balancer, 2 x (holder, app)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        assert ours(docker_client, run_id) == ([], [])
    finally:
        proc.kill()
        proc.wait()
        from harness.runtime.containers import remove_run

        remove_run(docker_client, run_id)


def test_clean_removes_what_a_killed_run_left(tmp_path: Path, docker_client, capsys) -> None:
    from harness.cli import main

    proc, run_id = start_script(tmp_path)
    try:
        proc.kill()  # SIGKILL: no handler runs, the containers stay
        proc.wait(timeout=10)
        containers, networks = ours(docker_client, run_id)
        assert len(containers) == 5 and len(networks) == 1  # balancer, 2 x (holder, app)
        assert main(["clean"]) == 0
        out = capsys.readouterr().out
        assert all(f"removed container {c}" in out for c in containers), out
        assert f"removed network {networks[0]}" in out
        assert ours(docker_client, run_id) == ([], [])
    finally:
        from harness.runtime.containers import remove_run

        remove_run(docker_client, run_id)


def test_clean_spares_live_runs(docker_client) -> None:
    with ContainerCluster(topology("nginx", replicas=1)) as cluster:
        clean(docker_client)
        assert len(ours(docker_client, cluster.run_id)[0]) == 3  # balancer, holder, app


def test_drain_and_undrain_by_reload(docker_client) -> None:
    with ContainerCluster(topology("haproxy", replicas=2)) as cluster:
        cluster.drain("r1")  # weight 0: no new sessions (round robin: no requests)
        assert set(served_by(cluster, 6)) == {"r2"}
        cluster.undrain("r1")
        assert set(served_by(cluster, 6)) == {"r1", "r2"}
    with ContainerCluster(topology("nginx", replicas=1)) as cluster, \
            pytest.raises(Exception, match="NGINX Plus"):
        cluster.drain("r1")


def test_conformance_runtime_all_writes_one_report_per_runtime(tmp_path) -> None:
    from harness.cli import main

    topo = ROOT / "fixtures" / "topologies" / "haproxy-cookie-insert.yaml"
    code = main(["conformance", "--runtime", "all", "--topology", str(topo), "--suite",
                 "stickiness", "-k", "cookie-insert.sticky-keepalive",
                 "--report-dir", str(tmp_path)])
    assert code == 0
    for runtime in ("processes", "containers"):
        report = json.loads((tmp_path / runtime / "report.json").read_text())
        assert report["runtime"] == runtime
        assert [c["verdict"] for c in report["checks"]] == ["pass"]


def test_sigterm_during_conformance_leaves_no_container(tmp_path, docker_client) -> None:
    stickler = Path(sys.executable).parent / "stickler"
    topo = ROOT / "fixtures" / "topologies" / "haproxy-cookie-insert.yaml"
    proc = subprocess.Popen([str(stickler), "conformance", "--runtime", "containers",
                             "--topology", str(topo), "--report-dir", str(tmp_path / "r")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, preexec_fn=default_sigint)
    mine = {"label": f"stickler.command={proc.pid}"}
    try:
        assert _eventually(lambda: len(docker_client.containers.list(filters=mine)) == 4, 60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert docker_client.containers.list(all=True, filters=mine) == []
        assert docker_client.networks.list(filters=mine) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in docker_client.containers.list(all=True, filters=mine):
            c.remove(force=True)
        for n in docker_client.networks.list(filters=mine):
            n.remove()


def test_load_in_containers_carries_source_clients_as_proxy_protocol(tmp_path) -> None:
    # `stickler load --runtime containers` with a `source` topology: the same clients travel
    # as PROXY protocol labels (the app sees each client's planned address), the report says
    # so; a host-gone fault can be scheduled. (Stickiness is below 1: the smoke profile has
    # phones that change address.)
    from harness.cli import main

    topo = ROOT / "fixtures" / "topologies" / "haproxy-source.yaml"
    code = main(["load", "--runtime", "containers", "--topology", str(topo), "--profile",
                 str(ROOT / "fixtures" / "profiles" / "smoke.yaml"), "--duration", "4",
                 "--seed", "3", "--fail-on", "client_ip_mismatches>0", "--report-dir",
                 str(tmp_path / "r"), "--fault", "disconnect:r1@1", "--fault", "reconnect:r1@2"])
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert code == 0, report["triggered"]
    assert report["runtime"] == "containers"
    assert report["topology"]["balancer"]["client_ip"] == "proxy-protocol"
    assert report["metrics"]["requests"] > 20 and report["metrics"]["mean_stickiness"] > 0.8
    records = [json.loads(line) for line in (tmp_path / "r" / "history.jsonl").open()]
    faults = [r for r in records if r["type"] == "fault"]
    assert [(f["op"], f["target"]) for f in faults] == [("disconnect", "r1"), ("reconnect", "r1")]


def test_shared_store_is_a_pod_and_a_fault_target(docker_client) -> None:
    text = ("name: itest-store\nbalancer: {kind: haproxy, mode: cookie-insert}\n"
            "app: {session_store: redis}\nreplicas: 2\n")
    with ContainerCluster(parse_topology(text)) as cluster:
        containers = ours(docker_client, cluster.run_id)[0]
        assert len(containers) == 7  # balancer, 2 x (holder, app), store (holder, redis)
        assert "redis" in cluster.versions()
        store = cluster.store
        probe = ("import socket\n"
                 "try:\n"
                 f"    socket.create_connection(('{store.endpoint.host}', "
                 f"{store.endpoint.port}), 1).close(); print('ok')\n"
                 "except ConnectionRefusedError: print('refused')\n"
                 "except OSError as e: print('timeout' if isinstance(e, TimeoutError) else e)\n")

        def from_replica() -> str:
            return cluster.replicas["r1"].docker.exec_run(["python3", "-c", probe])[1] \
                .decode().strip()

        assert from_replica() == "ok"
        cluster.kill("store")
        assert not cluster.alive("store")
        # Like a crashed process: the holder keeps the address, so connects are refused.
        assert from_replica() == "refused"
        assert get(cluster.url, "/cart")[0] == 503
        cluster.restart("store")
        assert cluster.alive("store") and from_replica() == "ok"
        assert get(cluster.url, "/cart")[0] == 200
        assert "Ready to accept connections" in cluster.logs("store")
        run_id = cluster.run_id
    assert ours(docker_client, run_id) == ([], [])
