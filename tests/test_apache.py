"""The Apache httpd adapter: its config per mode (accepted by `apache2 -t`), its option
checks, and a real Apache cluster that pins by route cookie, reloads gracefully, drains,
reads PROXY headers, and leaves nothing behind."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path

import pytest

from harness.balancers import Endpoint, Layout, get_adapter
from harness.errors import InputError
from harness.proxy import proxy_protocol
from harness.runtime import ProcessCluster
from harness.topology import parse_topology
from tests.procs import processes

APACHE = get_adapter("apache")


def render(text: str, workdir: Path, draining: frozenset[str] = frozenset()) -> str:
    t = parse_topology(text)
    layout = Layout(Endpoint("127.9.8.1", 18080),
                    {r.id: Endpoint("127.9.8.1", 18081 + i) for i, r in enumerate(t.replicas)},
                    workdir, draining=set(draining))
    return APACHE.render(t, layout)


def apache_accepts(config: str, workdir: Path) -> subprocess.CompletedProcess:
    path = workdir / "apache.conf"
    path.write_text(config)
    return subprocess.run(APACHE.check_command(path, None), capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("balancer, expected", [
    ("{kind: apache, mode: cookie-route}",
     ['BalancerMember "http://127.9.8.1:18081" route=r1 retry=60\n',
      "ProxySet lbmethod=byrequests\n", "ProxySet stickysession=ROUTEID nofailover=Off\n",
      'Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/" '
      "env=BALANCER_ROUTE_CHANGED\n", "mod_lbmethod_byrequests.so"]),
    ("{kind: apache, mode: cookie-route, options: {cookie: SRV, nofailover: true, "
     "lbmethod: bybusyness, retry_s: 0, timeout_s: 5, connect_timeout_ms: 300}}",
     ['route=r2 retry=0 timeout=5 connectiontimeout=300ms\n',
      "ProxySet stickysession=SRV nofailover=On\n", "ProxySet lbmethod=bybusyness\n",
      '"SRV=.%{BALANCER_WORKER_ROUTE}e; path=/"', "mod_lbmethod_bybusyness.so"]),
    ("{kind: apache, mode: byrequests}", ["ProxySet lbmethod=byrequests\n"]),
    ("{kind: apache, mode: bybusyness}", ["ProxySet lbmethod=bybusyness\n"]),
    ("{kind: apache, mode: byrequests, client_ip: proxy-protocol}",
     ["RemoteIPProxyProtocol On\n"]),
    ("{kind: apache, mode: byrequests, client_ip: xff}",
     ["RemoteIPHeader X-Forwarded-For\n", "RemoteIPInternalProxy 127.0.0.0/8\n"]),
    ("{kind: apache, mode: cookie-route, health_check: {enabled: true, interval_s: 2, "
     "fails: 2, passes: 3}}",
     ["hcmethod=GET hcuri=/healthz hcinterval=2 hcfails=2 hcpasses=3\n",
      "mod_proxy_hcheck.so"]),
])
def test_modes_render_and_apache_accepts_them(balancer, expected, tmp_path):
    config = render(f"balancer: {balancer}\nreplicas: 2\n", tmp_path)
    for text in expected:
        assert text in config
    # Only the run's own directory and address; nothing from /etc/apache2.
    assert f"ServerRoot {tmp_path}\n" in config and f"PidFile {tmp_path}/apache.pid" in config
    directives = "\n".join(line for line in config.splitlines()
                           if not line.lstrip().startswith("#"))
    assert "Listen 127.9.8.1:18080\n" in config and "/etc/" not in directives
    assert "/var/" not in directives
    assert "Header always set X-Stickler-Config 1\n" in config
    if "cookie-route" not in balancer:
        assert "stickysession" not in config and " route=r" not in config
    if "health_check" not in balancer:
        assert "hcmethod" not in config
    checked = apache_accepts(config, tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_drained_member_gets_status_n(tmp_path):
    config = render("balancer: {kind: apache, mode: cookie-route}\nreplicas: 3\n", tmp_path,
                    draining=frozenset({"r2"}))
    assert 'route=r2 retry=60 status=+N\n' in config
    assert config.count("status=+N") == 1
    assert apache_accepts(config, tmp_path).returncode == 0


def test_a_broken_config_is_refused(tmp_path):
    config = render("balancer: {kind: apache, mode: byrequests}\nreplicas: 2\n", tmp_path)
    checked = apache_accepts(config.replace("ProxySet lbmethod=byrequests",
                                            "ProxySet lbmethod=nosuchmethod"), tmp_path)
    assert checked.returncode != 0 and "nosuchmethod" in checked.stdout + checked.stderr


@pytest.mark.parametrize("balancer, key", [
    ("{kind: apache, mode: cookie-route, options: {cookie: 'a b'}}", "balancer.options.cookie"),
    ("{kind: apache, mode: cookie-route, options: {lbmethod: roundrobin}}",
     "balancer.options.lbmethod"),
    ("{kind: apache, mode: cookie-route, options: {nofailover: 'On'}}",
     "balancer.options.nofailover"),
    ("{kind: apache, mode: byrequests, options: {retry_s: -1}}", "balancer.options.retry_s"),
    ("{kind: apache, mode: byrequests, options: {timeout_s: 86400}}",
     "balancer.options.timeout_s"),
    ("{kind: apache, mode: byrequests, options: {cookie: X}}", "balancer.options.cookie"),
    ("{kind: apache, mode: byrequests, health_check: {interval_s: 0}}",
     "balancer.health_check.interval_s"),
    ("{kind: apache, mode: byrequests, health_check: {fails: 0}}",
     "balancer.health_check.fails"),
    ("{kind: apache, mode: byrequests, health_check: {uri: healthz}}",
     "balancer.health_check.uri"),
    ("{kind: apache, mode: source-hash}", "balancer.mode"),
])
def test_bad_options_name_the_key(balancer, key):
    with pytest.raises(InputError) as info:
        parse_topology(f"name: t\nbalancer: {balancer}\nreplicas: 2\n", "t.yaml")
    assert info.value.key == key and info.value.file == "t.yaml" and info.value.line == 2
    assert "expected" in info.value.message or "unknown" in info.value.message


# ---- a real Apache --------------------------------------------------------------------


def get(cluster: ProcessCluster, cookie: str = "", proxy_from: str = "", version: int = 1,
        headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    ep = cluster.layout.balancer
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=5)
    if proxy_from:
        conn.connect()
        conn.sock.sendall(proxy_protocol.encode(version, proxy_from, ep.host, 40000, ep.port))
    conn.request("GET", "/cart", headers={**({"Cookie": cookie} if cookie else {}),
                                           **(headers or {})})
    resp = conn.getresponse()
    resp.body = resp.read()
    conn.close()
    return resp


def route_cookie(resp: http.client.HTTPResponse) -> str:
    values = [c.split(";")[0] for c in resp.headers.get_all("Set-Cookie") or []
              if c.startswith("ROUTEID=")]
    assert len(values) == 1 and values[0] == f"ROUTEID=.{resp.getheader('X-Replica')}", values
    return values[0]


def wait_gone(*markers: str) -> None:
    deadline = time.monotonic() + 10
    while any(processes(m) for m in markers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(processes(m) for m in markers), "Apache outlived its cluster"


@pytest.mark.integration
def test_route_cookie_reload_drain_and_no_leftovers():
    t = parse_topology("name: itest-apache\nbalancer: {kind: apache, mode: cookie-route}\n"
                       "replicas: 2\n")
    with ProcessCluster(t) as cluster:
        host, workdir = cluster.host, cluster.workdir
        master = cluster.balancer.main_pid
        assert processes(str(workdir)), "the scanner must see the live Apache"
        first = get(cluster)
        replica, cookie = first.getheader("X-Replica"), route_cookie(first)
        # With its route, the client stays and gets no new cookie (the route did not change).
        pinned = get(cluster, cookie)
        assert pinned.getheader("X-Replica") == replica
        assert not any(c.startswith("ROUTEID=") for c in pinned.headers.get_all("Set-Cookie") or [])
        assert json.loads(pinned.body)["cookies_seen"]["ROUTEID"] == f".{replica}"

        # A graceful restart (SIGUSR1): a new member, the new generation answers, same
        # master, and the pinned client stays.
        old_children = set(cluster_children(master))
        assert cluster.add_replica() == "r3"
        assert get(cluster).getheader("X-Stickler-Config") == "2"
        assert cluster.balancer.main_pid == master
        assert set(cluster_children(master)) - old_children, "no new children after reload"
        assert get(cluster, cookie).getheader("X-Replica") == replica
        assert get(cluster, "ROUTEID=.r3").getheader("X-Replica") == "r3"

        # Drained (status +N): its sessions stay, new ones never go there.
        cluster.drain("r3")
        assert {get(cluster).getheader("X-Replica") for _ in range(9)} <= {"r1", "r2"}
        assert get(cluster, "ROUTEID=.r3").getheader("X-Replica") == "r3"
        cluster.undrain("r3")

        # Its member removed, the client gets another member and a cookie naming it.
        cluster.remove_replica(replica)
        moved = get(cluster, cookie)
        assert moved.getheader("X-Replica") != replica and route_cookie(moved) != cookie
        # The children run as nobody when we are root; the run dir stays ours.
        assert all(p.ppid == master for pid, p in processes(str(workdir)).items()
                   if pid != master and p.cmdline.startswith(APACHE.which()))
    wait_gone(host, str(workdir))
    assert not workdir.exists()


def cluster_children(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["proxy-protocol", "proxy-protocol-v2", "xff"])
def test_client_address_transports_reach_the_app(transport):
    t = parse_topology("name: itest-apache-ip\nbalancer: {kind: apache, mode: byrequests, "
                       f"client_ip: {transport}}}\nreplicas: 2\n")
    with ProcessCluster(t) as cluster:
        host, workdir = cluster.host, cluster.workdir
        if transport == "xff":
            resp = get(cluster, headers={"X-Forwarded-For": "198.51.100.23"})
        else:
            resp = get(cluster, proxy_from="198.51.100.23",
                       version=2 if transport.endswith("v2") else 1)
        assert resp.status == 200
        # mod_remoteip took the address from the PROXY header or the trusted hop's
        # X-Forwarded-For (consumed), and mod_proxy_http told the app.
        assert json.loads(resp.body)["x_forwarded_for"] == "198.51.100.23"
    wait_gone(host, str(workdir))
