"""The Locust load driver against a real HAProxy cluster: it records every request, keeps
cookie sessions sticky, applies a fault schedule, runs several workers, and leaves no Locust
process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

from harness.history import FaultRecord, RequestRecord
from harness.runtime import ProcessCluster
from harness.topology import load_topology
from harness.traffic.load import FaultStep, LoadResult, run_load
from harness.traffic.profile import load_profile

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "fixtures/topologies/haproxy-cookie-insert.yaml"
SMOKE = ROOT / "fixtures/profiles/smoke.yaml"


@pytest.fixture
def cluster():
    with ProcessCluster(load_topology(TOPOLOGY)) as c:
        yield c


def processes_in(workdir: Path) -> list[str]:
    """Live processes working in `workdir` (every Locust process does)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")) == workdir:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append((entry / "cmdline").read_bytes().decode(errors="replace"))
        except OSError:
            continue
    return found


def run(cluster, tmp_path: Path, duration: float, **kwargs) -> LoadResult:
    workdir = (tmp_path / "load").resolve()
    result = run_load(cluster, load_profile(SMOKE), duration=duration, seed=11,
                      workdir=workdir, **kwargs)
    assert processes_in(workdir) == []
    assert result.locust_exit_code in (0, 1)
    return result


def requests_of(result: LoadResult) -> list[RequestRecord]:
    return [r for r in result.records if isinstance(r, RequestRecord)]


def kinds(result: LoadResult) -> dict[str, str]:
    data = json.loads((result.history.parent / "population.json").read_text())
    return {u["id"]: u["kind"] for u in data["users"]}


def test_load_is_recorded_and_cookie_sessions_stick(cluster, tmp_path):
    ticks = []
    result = run(cluster, tmp_path, 8, progress=lambda t, n: ticks.append((t, n)))
    records = requests_of(result)
    assert len(records) >= 100
    assert [r.t for r in result.records] == sorted(r.t for r in result.records)
    assert len(result.history.read_text().splitlines()) == len(result.records)
    served = [r for r in records if r.replica]
    assert len(served) >= 0.95 * len(records)
    assert {r.replica for r in served} <= set(cluster.replica_ids)
    assert abs(result.stats["requests"] - len(records)) <= result.users
    assert len(ticks) >= 6 and ticks[-1][1] == len(records)

    kind = kinds(result)
    replicas = defaultdict(set)
    for r in served:
        replicas[r.user, r.session].add(r.replica)
    moved = {kind[user] for (user, _), seen in replicas.items() if len(seen) > 1}
    # Cookie insert keeps every cookie-returning session on one replica; clients that drop
    # cookies are spread by round robin, which shows the harness would see a switch.
    assert moved == {"dropper"}
    assert {r.path.split("?")[0] for r in records} == {"/cart", "/checkout"}
    assert all(r.cart_seen == r.cart_expected for r in served if kind[r.user] != "dropper")
    # Each request left from its user's bound source address (HAProxy reports the peer).
    direct = [r for r in served if "X-Forwarded-For" not in r.headers_sent]
    assert all(r.app_saw_client == r.client_ip for r in direct)
    mobile = [r for r in records if kind[r.user] == "mobile"]
    assert len({r.client_ip for r in mobile}) > len({r.user for r in mobile})



def test_a_mobile_users_switch_uses_the_new_address(cluster, tmp_path):
    result = run(cluster, tmp_path, 5)
    users = json.loads((result.history.parent / "population.json").read_text())["users"]
    mobile = {u["id"]: u for u in users if u["kind"] == "mobile"}
    assert mobile
    switches = 0
    for user, spec in mobile.items():
        mine = sorted((r for r in requests_of(result) if r.user == user), key=lambda r: r.t)
        addresses, every = spec["addresses"], spec["switch_every"]
        assert len(mine) >= 2 * every * len(addresses)  # a full rotation and more
        # The n-th request leaves from the address the rotation gives it ...
        assert [r.client_ip for r in mine] == [
            addresses[(n // every) % len(addresses)] for n in range(len(mine))]
        # ... and the balancer saw it come from there: no request rode an old connection.
        assert all(r.error is None and r.app_saw_client == r.client_ip for r in mine)
        switches += sum(a.client_ip != b.client_ip for a, b in pairwise(mine))
    assert switches >= 2 * len(mobile)


def test_fault_schedule_kills_a_replica(cluster, tmp_path):
    result = run(cluster, tmp_path, 6, faults=[FaultStep(3, "kill", "r1")])
    faults = [r for r in result.records if isinstance(r, FaultRecord)]
    assert [(f.op, f.target) for f in faults] == [("kill", "r1")]
    assert 3.0 <= faults[0].began <= faults[0].t < 4.0
    after = [r for r in requests_of(result) if r.t > faults[0].t]
    assert len(after) >= 50
    assert all(r.replica != "r1" for r in after)
    assert any(r.replica == "r1" for r in requests_of(result) if r.t < faults[0].t)


def test_two_worker_processes(cluster, tmp_path):
    result = run(cluster, tmp_path, 5, processes=2)
    files = sorted(result.history.parent.glob("history-*.jsonl"))
    assert len(files) == 2 and all(f.stat().st_size > 0 for f in files)
    records = requests_of(result)
    keys = [(r.user, r.session, r.seq) for r in records]
    assert len(keys) == len(set(keys)) >= 100
    assert {r.user for r in records} == set(kinds(result))


def test_a_failing_fault_stops_locust(cluster, tmp_path):
    workdir = (tmp_path / "load").resolve()
    with pytest.raises(KeyError, match="r9"):
        run_load(cluster, load_profile(SMOKE), duration=20, seed=1, workdir=workdir,
                 faults=[FaultStep(1, "kill", "r9")])
    assert processes_in(workdir) == []


def test_sigterm_leaves_no_locust_behind(tmp_path):
    workdir = (tmp_path / "load").resolve()
    script = (f"from pathlib import Path\n"
              f"from harness.runtime import ProcessCluster\n"
              f"from harness.topology import load_topology\n"
              f"from harness.traffic.load import run_load\n"
              f"from harness.traffic.profile import load_profile\n"
              f"with ProcessCluster(load_topology({str(TOPOLOGY)!r})) as c:\n"
              f"    run_load(c, load_profile({str(SMOKE)!r}), duration=30, seed=1,\n"
              f"             workdir=Path({str(workdir)!r}))\n")
    harness = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while not list(workdir.glob("history-*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_in(workdir), "Locust did not start"
        harness.send_signal(signal.SIGTERM)
        assert harness.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        harness.kill()
    assert processes_in(workdir) == []
