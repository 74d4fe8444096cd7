"""The processes runtime against real HAProxy, NGINX, Caddy and replicas: clusters start, serve,
take faults, change membership, and leave nothing behind however they end (normally, by an
exception, SIGTERM, Ctrl-C, or a SIGKILLed harness)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness.runtime import ProcessCluster, reaper
from harness.topology import parse_topology
from tests.procs import default_sigint, processes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
CLEANUP_DEADLINE = 10.0  # s for killed processes to disappear from /proc


# ---- helpers -------------------------------------------------------------------------


# The plain spreading mode of each kind (Apache's is its default lbmethod).
SPREAD = {"apache": "byrequests"}


def topology(kind: str, replicas: int = 3, name: str = "itest-runtime"):
    mode = SPREAD.get(kind, "roundrobin")
    text = f"name: {name}\nbalancer:\n  kind: {kind}\n  mode: {mode}\nreplicas: {replicas}\n"
    return parse_topology(text, f"<{name}>")



def leftovers(marker: str) -> list[str]:
    """Live processes mentioning `marker` (command line or cwd), described for messages."""
    return [f"{pid} {p.cmdline!r} (cwd {p.cwd})" for pid, p in processes(marker).items()]


def wait_gone(marker: str, timeout: float = CLEANUP_DEADLINE) -> list[str]:
    """Poll until no process mentions `marker`; the survivors if the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def request_once(host: str, port: int, path: str = "/", method: str = "GET",
                 timeout: float = 5.0, headers: dict | None = None
                 ) -> tuple[int, str | None, bytes]:
    """One request on a fresh connection: (status, X-Replica, body)."""
    assert host.startswith("127."), host
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-Replica"), resp.read()
    finally:
        conn.close()


def via_balancer(cluster: ProcessCluster, path: str = "/") -> tuple[int, str | None, bytes]:
    url = urlsplit(cluster.url)
    assert url.hostname == cluster.host
    return request_once(url.hostname, url.port, path)


def direct(cluster: ProcessCluster, replica: str, path: str = "/", method: str = "GET",
           timeout: float = 5.0, headers: dict | None = None) -> tuple[int, str | None, bytes]:
    ep = cluster.layout.replicas[replica]
    return request_once(ep.host, ep.port, path, method, timeout, headers)


def info(cluster: ProcessCluster, replica: str) -> dict:
    status, served_by, body = direct(cluster, replica)
    assert status == 200 and served_by == replica
    return json.loads(body)


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def assert_cleaned_up(host: str, workdir: Path) -> None:
    assert wait_gone(host) == [], f"processes of cluster {host} outlived it"
    assert wait_gone(str(workdir)) == [], f"processes in {workdir} outlived the cluster"
    assert not workdir.exists(), f"{workdir} was not removed"


# ---- lifecycle -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["haproxy", "nginx", "caddy", "apache"])
def test_cluster_serves_all_replicas_and_leaves_nothing(kind):
    with ProcessCluster(topology(kind)) as cluster:
        host, workdir = cluster.host, cluster.workdir
        assert host.startswith("127.") and host != "127.0.0.1"
        assert workdir.is_dir() and workdir.name.startswith("stickler-itest-runtime-")
        # The scanner must see the live cluster, or its empty answer later proves nothing.
        assert len(leftovers(host)) >= 3
        assert leftovers(str(workdir))
        seen: set[str] = set()
        for _ in range(30):
            status, served_by, body = via_balancer(cluster)
            assert status == 200, body
            assert served_by == json.loads(body)["replica"]
            seen.add(served_by)
            if seen == {"r1", "r2", "r3"}:
                break
        assert seen == {"r1", "r2", "r3"}
    assert_cleaned_up(host, workdir)


def test_exception_in_with_block_still_cleans_up():
    with pytest.raises(RuntimeError, match="boom"), \
            ProcessCluster(topology("haproxy", replicas=2)) as cluster:
        host, workdir = cluster.host, cluster.workdir
        assert via_balancer(cluster)[0] == 200
        assert leftovers(host)
        cluster.pause("r1")  # a stopped process must not survive the clean-up either
        raise RuntimeError("boom")
    assert_cleaned_up(host, workdir)


# ---- faults --------------------------------------------------------------------------


def test_faults_kill_pause_resume_restart():
    events: list = []
    with ProcessCluster(topology("haproxy"), on_event=events.append) as cluster:
        r1 = cluster.layout.replicas["r1"]
        assert cluster.alive("r1") and not refused(r1.host, r1.port)
        cluster.kill("r1")
        assert cluster.alive("r1") is False
        assert eventually(lambda: refused(r1.host, r1.port), 5.0), \
            f"r1's port {r1.address} still accepts connections after kill"

        assert direct(cluster, "r2", "/healthz", timeout=2.0)[0] == 200
        cluster.pause("r2")
        with pytest.raises(TimeoutError):
            direct(cluster, "r2", "/healthz", timeout=0.5)
        cluster.resume("r2")
        assert eventually(lambda: direct(cluster, "r2", "/healthz")[0] == 200, 5.0)

        status, served_by, body = direct(cluster, "r3", "/cart?item=tea", method="POST")
        assert status == 200 and served_by == "r3" and json.loads(body)["cart"] == ["tea"]
        before = info(cluster, "r3")
        assert before["sessions"] == 1
        cluster.restart("r3")
        assert cluster.alive("r3")
        after = info(cluster, "r3")
        assert after["pid"] != before["pid"]
        assert after["sessions"] == 0
        assert eventually(lambda: not Path(f"/proc/{before['pid']}").exists(), 5.0)

    assert [(e.op, e.target) for e in events] == [
        ("kill", "r1"), ("pause", "r2"), ("resume", "r2"), ("restart", "r3")]
    assert all(e.type == "fault" for e in events)
    times = [e.t for e in events]
    assert times == sorted(times) and times[0] >= 0


def test_shared_store_is_a_fault_target_and_dies_with_the_cluster():
    text = ("name: itest-store\nbalancer: {kind: haproxy, mode: roundrobin}\n"
            "app: {session_store: redis}\nreplicas: 2\n")
    events: list = []
    with ProcessCluster(parse_topology(text), on_event=events.append) as cluster:
        host, workdir = cluster.host, cluster.workdir
        assert "redis" in cluster.versions()
        status, _, body = direct(cluster, "r1", "/cart?item=tea", method="POST")
        sid = json.loads(body)["session"]
        # r2 never saw the session, and finds its cart in the shared store.
        status, _, body = direct(cluster, "r2", "/cart", headers={"Cookie": f"sid={sid}"})
        assert status == 200 and json.loads(body)["cart"] == ["tea"]
        cluster.kill("store")
        assert cluster.alive("store") is False
        assert direct(cluster, "r2", "/cart", headers={"Cookie": f"sid={sid}"})[0] == 503
        cluster.restart("store")  # no persistence: an empty store
        status, _, body = direct(cluster, "r1", "/cart", headers={"Cookie": f"sid={sid}"})
        assert status == 200 and json.loads(body)["state"] == "lost"
        assert "Ready to accept connections" in cluster.logs("store")
        with pytest.raises(KeyError, match=r"have \['r1', 'r2', 'store'\]"):
            cluster.kill("r9")
    assert [(e.op, e.target) for e in events] == [("kill", "store"), ("restart", "store")]
    assert_cleaned_up(host, workdir)


def test_add_and_remove_replica():
    events: list = []
    with ProcessCluster(topology("haproxy"), on_event=events.append) as cluster:
        assert cluster.add_replica() == "r4"
        assert cluster.replica_ids == ["r1", "r2", "r3", "r4"] and cluster.alive("r4")
        served = []
        for _ in range(40):
            status, served_by, _body = via_balancer(cluster)
            assert status == 200
            served.append(served_by)
            if served_by == "r4":
                break
        assert "r4" in served, f"no request reached r4 in {len(served)}: {served}"

        r1_pid = cluster.replicas["r1"].proc.pid
        cluster.remove_replica("r1")
        assert "r1" not in cluster.replica_ids and "r1" not in cluster.layout.replicas
        assert cluster.alive("r1") is False
        config = (cluster.workdir / "haproxy.cfg").read_text()
        assert "server r1 " not in config and "server r4 " in config
        assert eventually(lambda: not Path(f"/proc/{r1_pid}").exists(), 5.0), \
            f"r1 (pid {r1_pid}) is still running"
        answers = [via_balancer(cluster)[:2] for _ in range(30)]
        # Without health checks a balancer that still had r1 would answer 503 for it.
        assert all(status == 200 for status, _ in answers), answers
        assert {served_by for _, served_by in answers} == {"r2", "r3", "r4"}, answers

    assert [(e.op, e.target) for e in events] == [("add", "r4"), ("remove", "r1")]


# ---- signals -------------------------------------------------------------------------

SCRIPT = textwrap.dedent("""\
    import json, sys, time
    from harness.runtime import ProcessCluster
    from harness.topology import parse_topology

    kind = sys.argv[1]
    mode = {"apache": "byrequests"}.get(kind, "roundrobin")
    text = f"name: itest-signal\\nbalancer:\\n  kind: {kind}\\n  mode: {mode}\\nreplicas: 2\\n"
    with ProcessCluster(parse_topology(text, "<itest-signal>")) as cluster:
        print(json.dumps({"host": cluster.host, "workdir": str(cluster.workdir)}), flush=True)
        while True:
            time.sleep(3600)
""")



def read_json_line(proc: subprocess.Popen, stderr: Path, timeout: float = 30.0) -> dict:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no line from the cluster script in {timeout:.0f}s; "
                        f"stderr:\n{stderr.read_text()}")
        if sel.select(min(remaining, 0.2)):
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(timeout=5)
                pytest.fail(f"cluster script exited with {proc.returncode} before starting; "
                            f"stderr:\n{stderr.read_text()}")
            buf += chunk
    sel.close()
    return json.loads(buf.split(b"\n", 1)[0])


class ClusterScript:
    """A subprocess that runs a ProcessCluster until signalled."""

    def __init__(self, tmp_path: Path, kind: str):
        script = tmp_path / "cluster_script.py"
        script.write_text(SCRIPT)
        self.stderr = tmp_path / "stderr.txt"
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(script), kind], cwd=ROOT,
                                         stdout=subprocess.PIPE, stderr=err,
                                         stdin=subprocess.DEVNULL, preexec_fn=default_sigint)
        self.host = ""
        self.workdir = Path()

    def start(self) -> None:
        started = read_json_line(self.proc, self.stderr)
        self.host, self.workdir = started["host"], Path(started["workdir"])
        assert self.host.startswith("127.") and self.workdir.is_dir()
        assert len(leftovers(self.host)) >= 2  # the replicas, seen by the scanner

    def close(self) -> None:
        """Whatever the test's outcome: nothing of this cluster may outlive the test."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        for marker in filter(None, (self.host, str(self.workdir) if self.host else "")):
            for line in leftovers(marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(line.split()[0]), signal.SIGKILL)
        if self.host and self.workdir.name.startswith("stickler-itest-signal-"):
            shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def cluster_script(tmp_path: Path):
    scripts: list[ClusterScript] = []

    def start(kind: str) -> ClusterScript:
        script = ClusterScript(tmp_path, kind)
        scripts.append(script)
        script.start()
        return script

    yield start
    for script in scripts:
        script.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cluster_and_cleans_up(cluster_script, signum):
    script = cluster_script("haproxy")
    script.proc.send_signal(signum)
    try:
        code = script.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the cluster script did not exit within 15 s of {signum.name}")
    assert code != 0
    if signum == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM  # the reaper turned SIGTERM into SystemExit
    assert_cleaned_up(script.host, script.workdir)


@pytest.mark.parametrize("kind", [
    "haproxy",
    "nginx",
    "caddy",
    "apache",
])
def test_sigkilled_harness_takes_its_children_with_it(cluster_script, kind):
    script = cluster_script(kind)
    script.proc.send_signal(signal.SIGKILL)
    assert script.proc.wait(timeout=10) == -signal.SIGKILL
    # Nobody is left to remove the workdir (ClusterScript.close does); the processes must go.
    assert wait_gone(script.host) == [], "replicas outlived a SIGKILLed harness"
    assert wait_gone(str(script.workdir)) == [], \
        f"{kind} processes outlived a SIGKILLed harness"


def test_stale_dirs_of_dead_runs_are_swept(tmp_path):
    """A SIGKILLed run cannot remove its temp dir; the next run does, but never a live one."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "stickler-dead-run"
    live = tmp_path / "stickler-live-run"
    for path, pid in ((stale, dead.pid), (live, os.getpid())):
        path.mkdir()
        (path / reaper.OWNER_FILE).write_text(str(pid))
    assert reaper.sweep_stale_dirs(tmp_path) == [stale]
    assert not stale.exists() and live.exists()
