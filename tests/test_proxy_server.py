"""The reference proxy as a process: what the pure tests cannot show."""

import http.client
import os
import signal
import subprocess
import sys

import pytest

from harness.runtime import ProcessCluster, wait
from harness.topology import parse_topology

pytestmark = pytest.mark.integration

PIN = """name: proxy-test
balancer: {kind: reference, mode: least-loaded}
replicas: 3
app: {replay_mode: pin-cookie}
"""


def request(cluster, method, path, headers=None, body=None):
    ep = cluster.layout.balancer
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_replays_over_one_megabyte_are_refused_clearly():
    with ProcessCluster(parse_topology(PIN)) as cluster:
        status, headers, _ = request(cluster, "GET", "/cart")
        here = headers["x-replica"]
        other = next(r for r in cluster.replica_ids if r != here)
        # Land on `here` (forced), whose app replays to `other`, the replica the cookie names.
        cookie = {"Cookie": f"fly-machine-id={other}", "fly-force-instance-id": here}
        small = request(cluster, "POST", "/cart?item=tea", cookie, b"x" * 1000)
        assert small[0] == 200 and small[1]["x-replica"] == other
        assert small[1]["x-stickler-route"].startswith("replayed")
        status, headers, body = request(cluster, "POST", "/cart?item=tea", cookie,
                                        b"x" * 1_000_001)
        assert status == 413
        assert headers["x-stickler-route"] == "replay-too-large"
        assert b"requests over 1 MB cannot be replayed" in body


def test_bad_config_is_rejected_with_file_and_line(tmp_path):
    config = tmp_path / "proxy.yaml"
    config.write_text("listen: 127.0.0.1:9\nmode: sticky\nreplicas: []\n")
    result = subprocess.run([sys.executable, "-m", "harness.proxy", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "proxy.yaml" in result.stderr and "mode" in result.stderr
    config.write_text("listen: 192.0.2.1:80\nreplicas: []\n")
    result = subprocess.run([sys.executable, "-m", "harness.proxy", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "loopback" in result.stderr


def test_reload_keeps_serving_the_old_config_when_the_new_one_is_bad():
    with ProcessCluster(parse_topology(PIN.replace("pin-cookie", "leader"))) as cluster:
        assert request(cluster, "GET", "/healthz")[1]["x-stickler-config"] == "1"
        config = cluster.workdir / "reference.yaml"
        config.write_text(config.read_text().replace("mode: least-loaded", "mode: nonsense"))
        os.kill(cluster.balancer.main_pid, signal.SIGHUP)
        wait.until(lambda: "reload failed" in cluster.logs("balancer"), 10,
                   "the proxy to log the failed reload")
        status, headers, _ = request(cluster, "GET", "/cart")
        assert status == 200 and headers["x-stickler-config"] == "1"
