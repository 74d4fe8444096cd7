"""The Caddy adapter: its Caddyfile per mode, its option checks, and a real Caddy 2.6
cluster that pins by cookie (HMAC of the upstream), reloads through its admin socket, and
leaves nothing behind."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import time
from pathlib import Path

import pytest

from harness.balancers import Endpoint, Layout, get_adapter
from harness.errors import ClusterError, InputError
from harness.runtime import ProcessCluster
from harness.topology import parse_topology
from tests.procs import processes


def render(text: str, workdir: Path) -> str:
    t = parse_topology(text)
    layout = Layout(Endpoint("127.9.8.1", 18080),
                    {r.id: Endpoint("127.9.8.1", 18081 + i) for i, r in enumerate(t.replicas)},
                    workdir)
    return get_adapter(t.kind).render(t, layout)


@pytest.mark.parametrize("mode, options, expected", [
    ("roundrobin", "", ["lb_policy round_robin"]),
    ("random", "", ["lb_policy random"]),
    ("first", "", ["lb_policy first"]),
    ("ip-hash", "", ["lb_policy ip_hash"]),
    ("cookie", "", ["lb_policy cookie lb\n"]),
    ("cookie", "{cookie: srv, secret: s3cret}", ["lb_policy cookie srv s3cret\n"]),
    ("header-hash", "{header: X-User}", ["lb_policy header X-User\n"]),
    ("roundrobin", "{lb_try_duration_ms: 2000, lb_try_interval_ms: 100}",
     ["lb_try_duration 2000ms", "lb_try_interval 100ms"]),
])
def test_modes_render_their_policy(mode, options, expected, tmp_path):
    opts = f", options: {options}" if options else ""
    config = render(f"balancer: {{kind: caddy, mode: {mode}{opts}}}\nreplicas: 2\n", tmp_path)
    for line in expected:
        assert line in config
    assert "to 127.9.8.1:18081\n" in config and "to 127.9.8.1:18082\n" in config
    # Only the run's own address and admin socket; never :2019, :80 or :443.
    assert f"admin unix/{tmp_path}/caddy-admin.sock" in config
    assert "auto_https off" in config
    assert "http://:18080 {" in config and "bind 127.9.8.1" in config
    directives = "\n".join(line for line in config.splitlines()
                           if not line.lstrip().startswith("#"))
    assert ":2019" not in directives and ":80 " not in directives and ":443" not in directives
    assert "header X-Stickler-Config 1" in config
    assert "health_uri" not in config and "fail_duration" not in config


def test_health_checks_render(tmp_path):
    config = render("balancer: {kind: caddy, mode: ip-hash, health_check: {enabled: true, "
                    "interval_ms: 250, timeout_ms: 200, fail_duration_s: 5, max_fails: 2}}\n"
                    "replicas: 2\n", tmp_path)
    for line in ("health_uri /healthz", "health_interval 250ms", "health_timeout 200ms",
                 "fail_duration 5s", "max_fails 2"):
        assert line in config


@pytest.mark.parametrize("balancer, key", [
    ("{kind: caddy, mode: cookie, options: {cookie: 'a b'}}", "balancer.options.cookie"),
    ("{kind: caddy, mode: cookie, options: {secret: 'x y'}}", "balancer.options.secret"),
    ("{kind: caddy, mode: header-hash, options: {header: 'X:Y'}}", "balancer.options.header"),
    ("{kind: caddy, mode: roundrobin, options: {lb_try_duration_ms: -1}}",
     "balancer.options.lb_try_duration_ms"),
    ("{kind: caddy, mode: ip-hash, health_check: {max_fails: 0}}",
     "balancer.health_check.max_fails"),
    ("{kind: caddy, mode: ip-hash, health_check: {interval_ms: 0}}",
     "balancer.health_check.interval_ms"),
    ("{kind: caddy, mode: ip-hash, health_check: {uri: healthz}}", "balancer.health_check.uri"),
    ("{kind: caddy, mode: ip-hash, client_ip: proxy-protocol}", "balancer.client_ip"),
])
def test_bad_options_name_the_key(balancer, key):
    with pytest.raises(InputError) as info:
        parse_topology(f"name: t\nbalancer: {balancer}\nreplicas: 2\n", "t.yaml")
    assert info.value.key == key and info.value.file == "t.yaml" and info.value.line == 2
    assert "expected" in info.value.message or "takes client addresses" in info.value.message


# ---- a real Caddy ---------------------------------------------------------------------


def get(cluster: ProcessCluster, cookie: str = "") -> http.client.HTTPResponse:
    ep = cluster.layout.balancer
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=5)
    conn.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def lb_cookie(resp: http.client.HTTPResponse) -> str:
    raw = resp.getheader("Set-Cookie") or ""
    assert raw.startswith("lb=") and "Path=/" in raw, raw
    return raw.split(";")[0].removeprefix("lb=")


@pytest.mark.integration
def test_cookie_is_hmac_of_upstream_reload_and_no_leftovers():
    t = parse_topology("name: itest-caddy\nbalancer: {kind: caddy, mode: cookie}\nreplicas: 2\n")
    with ProcessCluster(t) as cluster:
        host, workdir = cluster.host, cluster.workdir
        assert processes(str(workdir)), "the scanner must see the live Caddy"
        resp = get(cluster)
        replica, value = resp.getheader("X-Replica"), lb_cookie(resp)
        dial = cluster.layout.replicas[replica].address
        # The documented value: hex HMAC-SHA256 of the dial address, empty secret.
        assert value == hmac.new(b"", dial.encode(), hashlib.sha256).hexdigest()
        pinned = get(cluster, f"lb={value}")
        assert pinned.getheader("X-Replica") == replica and not pinned.getheader("Set-Cookie")

        # Reload through the admin socket: a new replica, the new generation answers, and
        # the pinned client stays (the cookie still matches its upstream).
        assert cluster.add_replica() == "r3"
        assert get(cluster).getheader("X-Stickler-Config") == "2"
        assert get(cluster, f"lb={value}").getheader("X-Replica") == replica
        new_dial = cluster.layout.replicas["r3"].address
        forced = get(cluster, "lb=" + hmac.new(b"", new_dial.encode(),
                                                hashlib.sha256).hexdigest())
        assert forced.getheader("X-Replica") == "r3"
        # Its replica removed, the client gets another server and a new cookie.
        cluster.remove_replica(replica)
        moved = get(cluster, f"lb={value}")
        assert moved.getheader("X-Replica") != replica and lb_cookie(moved) != value
        assert moved.getheader("X-Stickler-Config") == "3"
        with pytest.raises(ClusterError, match="no drain state"):
            cluster.drain("r3")
        # One Caddy process throughout: a reload starts no new one.
        binary = get_adapter("caddy").which()
        caddies = [p for p in processes(str(workdir)).values()
                   if p.cmdline.startswith(f"{binary} run ")]
        assert len(caddies) == 1, caddies
        # Caddy's autosave and PKI dirs went to the run's directory, not to $HOME.
        assert (workdir / "caddy" / "caddy" / "autosave.json").exists()
    deadline = time.monotonic() + 10
    while (processes(host) or processes(str(workdir))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes(host) and not processes(str(workdir)), "Caddy outlived its cluster"
    assert not workdir.exists()


def test_fault_after_check_waits_for_the_next_active_check():
    # The failover scenario's `fault_after_check`: it returns just after a health check
    # reached the replica (the replica's counter moved, and no other check comes for most of
    # an interval); without active checks it fails, naming the option.
    from harness.app import HEALTH_CHECKS_PATH
    from harness.failover_scenarios import await_health_check
    from harness.runtime import wait

    def checks(cluster, rid: str) -> int:
        ep = cluster.replica_endpoint(rid)
        return wait.http_json(ep.host, ep.port, HEALTH_CHECKS_PATH)["health_checks"]

    active = parse_topology("name: t\nbalancer: {kind: caddy, mode: cookie, health_check: "
                            "{enabled: true, interval_ms: 500}}\nreplicas: 2\n")
    with ProcessCluster(active) as cluster:
        before = checks(cluster, "r1")
        await_health_check(cluster, "r1")
        after = checks(cluster, "r1")
        assert after > before
        time.sleep(0.1)  # a fifth of the interval: the next check is not due yet
        assert checks(cluster, "r1") == after
    passive = parse_topology("name: t\nbalancer: {kind: caddy, mode: cookie}\nreplicas: 2\n")
    with (ProcessCluster(passive) as cluster,
          pytest.raises(ClusterError, match="fault_after_check.*health check of r1")):
        await_health_check(cluster, "r1", timeout=1.0)
