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


def test_config_client_ip_and_drain_are_validated(tmp_path):
    from harness.errors import InputError
    from harness.proxy.config import load_config

    config = tmp_path / "proxy.yaml"
    base = "listen: 127.0.0.1:9\nreplicas:\n  - {id: r1, address: 127.0.0.1:10%s}\n"
    for extra, key in (("\nclient_ip: carrier", "client_ip"),
                       ("\ntrusted_proxies: [bogus]", "trusted_proxies"),
                       ("\ntrusted_proxies: 127.0.0.1", "trusted_proxies")):
        config.write_text(base % "" + extra + "\n")
        with pytest.raises(InputError) as err:
            load_config(config)
        assert "proxy.yaml" in str(err.value) and key in str(err.value)
    config.write_text(base % ", drain: maybe")
    with pytest.raises(InputError, match=r"replicas\[0\].drain"):
        load_config(config)
    config.write_text(base % ", drain: true" + "client_ip: xff\n")
    loaded = load_config(config)
    assert loaded.replicas[0].drain and loaded.client_ip == "xff"


def test_proxy_protocol_is_required_when_configured():
    import socket

    from harness.proxy.proxy_protocol import encode_v1

    topology = parse_topology(PIN.replace("mode: least-loaded",
                                          "mode: hash-client-ip, client_ip: proxy-protocol"))
    with ProcessCluster(topology) as cluster:
        ep = cluster.layout.balancer
        with socket.create_connection((ep.host, ep.port), timeout=5) as sock:
            sock.sendall(b"GET /cart HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100) == b""  # closed without an answer
        with socket.create_connection((ep.host, ep.port), timeout=5) as sock:
            sock.sendall(encode_v1("198.51.100.77", ep.host, 4000, ep.port)
                         + b"GET /cart HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        assert b"198.51.100.77" in answer  # the app was told the PROXY address


def test_nginx_refuses_to_drain_with_a_reason():
    from harness.errors import ClusterError

    topology = parse_topology("balancer: {kind: nginx, mode: roundrobin}\nreplicas: 2\n")
    with ProcessCluster(topology) as cluster, pytest.raises(ClusterError, match="NGINX Plus"):
        cluster.drain("r1")
