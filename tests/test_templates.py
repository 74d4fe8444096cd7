"""Config rendering: each mode renders the directives it promises, and the real binaries
accept every rendered sample (haproxy -c, nginx -t, caddy validate, apache2 -t)."""

import os
import subprocess
from pathlib import Path

import pytest

from harness.balancers import Endpoint, Layout, get_adapter
from harness.topology import load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "fixtures" / "topologies").glob("*.yaml"))


def layout_for(topology, workdir: Path) -> Layout:
    return Layout(Endpoint("127.0.0.1", 18080),
                  {r.id: Endpoint("127.0.0.1", 18081 + i) for i, r in enumerate(topology.replicas)},
                  workdir)


def render(text: str, tmp_path: Path) -> str:
    t = parse_topology(text)
    return get_adapter(t.kind).render(t, layout_for(t, tmp_path))


@pytest.mark.parametrize("mode, options, expected", [
    ("roundrobin", "", ["balance roundrobin"]),
    ("cookie-insert", "", ["cookie SRVID insert indirect nocache",
                           "server r1 127.0.0.1:18081 cookie r1"]),
    ("cookie-insert", "{indirect: false, nocache: false}", ["cookie SRVID insert\n"]),
    ("cookie-prefix", "", ["cookie JSESSIONID prefix"]),
    ("cookie-rewrite", "{cookie: SID}", ["cookie SID rewrite"]),
    ("source", "", ["balance source", "hash-type map-based"]),
    ("source-consistent", "", ["balance source", "hash-type consistent"]),
    ("header", "{header: X-User}", ["balance hdr(X-User)"]),
    ("roundrobin", "{redispatch: true, retries: 1}", ["option redispatch", "retries 1"]),
    ("cookie-insert", "{persist: true, connect_timeout_ms: 500, server_timeout_ms: 5000}",
     ["    option persist", "    timeout connect 500ms", "    timeout server 5000ms"]),
    ("source", "{on_marked_down: shutdown-sessions}",
     ["server r2 127.0.0.1:18082 on-marked-down shutdown-sessions"]),
])
def test_haproxy_modes(mode, options, expected, tmp_path):
    opts = f", options: {options}" if options else ""
    config = render(f"balancer: {{kind: haproxy, mode: {mode}{opts}}}\nreplicas: 2\n", tmp_path)
    for line in expected:
        assert line in config
    assert "check" not in config.split("backend be_app")[1]


def test_haproxy_health_checks(tmp_path):
    config = render("balancer: {kind: haproxy, mode: roundrobin, health_check: "
                    "{enabled: true, interval_ms: 250, fall: 2, rise: 1}}\nreplicas: 2\n",
                    tmp_path)
    assert "option httpchk GET /healthz" in config
    assert "default-server inter 250ms fall 2 rise 1" in config
    assert "server r2 127.0.0.1:18082 check" in config


@pytest.mark.parametrize("mode, options, expected", [
    ("roundrobin", "", ["upstream app {\n        server"]),
    ("ip-hash", "", ["ip_hash;"]),
    ("cookie-hash", "{cookie: session-id}", ["hash $cookie_session_id consistent;"]),
    ("cookie-hash", "{consistent: false}", ["hash $cookie_sid;"]),
    ("header-hash", "", ["hash $http_x_session_id consistent;"]),
])
def test_nginx_modes(mode, options, expected, tmp_path):
    opts = f", options: {options}" if options else ""
    config = render(f"balancer: {{kind: nginx, mode: {mode}{opts}}}\nreplicas: 2\n", tmp_path)
    for line in expected:
        assert line in config
    # The balancing method must precede keepalive (nginx before 1.29.7 requires it).
    if mode != "roundrobin":
        assert config.index(expected[0]) < config.index("keepalive")


def test_haproxy_failover_options_off_by_default(tmp_path):
    config = render("balancer: {kind: haproxy, mode: cookie-insert}\nreplicas: 2\n", tmp_path)
    backend = config.split("backend be_app")[1]
    for absent in ("option persist", "timeout", "on-marked-down"):
        assert absent not in backend


@pytest.mark.parametrize("options, expected, absent", [
    ("", ["proxy_next_upstream error timeout;", "proxy_next_upstream_tries 0;",
          "proxy_next_upstream_timeout 0ms;"], ["proxy_read_timeout", "proxy_connect_timeout"]),
    ("{next_upstream: ['off']}", ["proxy_next_upstream off;"], []),
    ("{next_upstream: [error, timeout, non_idempotent], next_upstream_tries: 2, "
     "next_upstream_timeout_ms: 3000, connect_timeout_ms: 250, read_timeout_ms: 1500}",
     ["proxy_next_upstream error timeout non_idempotent;", "proxy_next_upstream_tries 2;",
      "proxy_next_upstream_timeout 3000ms;", "proxy_connect_timeout 250ms;",
      "proxy_read_timeout 1500ms;"], []),
])
def test_nginx_failover_options(options, expected, absent, tmp_path):
    opts = f", options: {options}" if options else ""
    config = render(f"balancer: {{kind: nginx, mode: ip-hash{opts}}}\nreplicas: 2\n",
                    tmp_path)
    for line in expected:
        assert line in config
    for line in absent:
        assert line not in config


def test_nginx_passive_health_checks(tmp_path):
    config = render("balancer: {kind: nginx, mode: ip-hash, health_check: "
                    "{max_fails: 2, fail_timeout_s: 3}}\nreplicas: 2\n", tmp_path)
    assert "max_fails=2 fail_timeout=3s" in config
    off = render("balancer: {kind: nginx, mode: ip-hash, health_check: {enabled: false}}\n"
                 "replicas: 2\n", tmp_path)
    assert "max_fails=0" in off


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_real_binary_accepts_rendered_sample(path, tmp_path):
    topology = load_topology(path)
    adapter = get_adapter(topology.kind)
    layout = layout_for(topology, tmp_path)
    (tmp_path / "nginx-tmp").mkdir()
    config = tmp_path / adapter.config_name
    config.write_text(adapter.render(topology, layout))
    result = subprocess.run(adapter.check_command(config, layout), capture_output=True,
                            text=True, timeout=30,
                            env={**os.environ, **adapter.environment(layout)})
    assert result.returncode == 0, result.stdout + result.stderr
