"""A user's own balancer config (harness/configs): what is found in it and how it is
rewritten onto a cluster. Pure parts, on files written here (the balancers' own checks,
`haproxy -c` and `nginx -t`, run in test_config_check.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.balancers.base import Endpoint, Layout
from harness.configs import Server, haproxy, nginx, replica_id
from harness.configs.topology import build
from harness.errors import InputError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "configs"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def layout_for(ids, tmp_path, extra=0) -> Layout:
    return Layout(Endpoint("127.0.0.7", 8000),
                  {rid: Endpoint("127.0.0.7", 9000 + i) for i, rid in enumerate(ids)},
                  tmp_path, extra=[Endpoint("127.0.0.7", 8100 + i) for i in range(extra)])


HAPROXY_BASIC = """\
    global
        daemon
        chroot /var/lib/haproxy
        maxconn 100
    defaults
        mode http
        timeout connect 2s
        timeout client 10s
        timeout server 10s
    frontend www
        bind :80
        bind :8080
        default_backend app
    backend app
        cookie SRV insert indirect nocache
        option redispatch
        server a 10.0.0.1:80 check cookie alpha
        server b 10.0.0.2:80 check cookie beta weight 3
        server c 10.0.0.3:80 check backup
    backend other
        server o 10.9.9.9:80
"""


def test_haproxy_cookie_insert_found_with_servers_and_failover(tmp_path):
    config = haproxy.read(write(tmp_path, "haproxy.cfg", HAPROXY_BASIC), None, check=False)
    assert config.backend == "app"
    assert [s.name for s in config.servers] == ["a", "b", "c"]
    assert config.replica_ids == ["alpha", "beta", "c"]
    assert config.mode == "cookie-insert"
    assert config.options["cookie"] == "SRV"
    assert config.options["indirect"] and config.options["nocache"]
    assert config.options["redispatch"] is True
    assert config.options["connect_timeout_ms"] == 2000
    assert config.health_check["enabled"] is True
    assert config.listeners == 2
    assert any("c" in f.message and f.severity == "warning" for f in config.findings)


def test_haproxy_rewrite_replaces_servers_binds_and_isolation_only(tmp_path):
    config = haproxy.read(write(tmp_path, "haproxy.cfg", HAPROXY_BASIC), None, check=False)
    topology = build(config, name="t")
    result = haproxy.rewrite(config, topology, layout_for(topology.replica_ids, tmp_path, 1))
    text = result.text
    assert "10.0.0.1" not in text and "10.0.0.2" not in text
    assert "server a 127.0.0.7:9000 check cookie alpha" in text
    assert "server b 127.0.0.7:9001 check cookie beta weight 3" in text
    assert "server c 127.0.0.7:9002 check backup" in text
    assert "bind 127.0.0.7:8000" in text and "bind 127.0.0.7:8100" in text
    assert "server o 127.0.0.7:9" in text  # not under test: a closed port
    assert "daemon" not in text and "chroot" not in text
    assert "maxconn 100" in text  # left as the user wrote it
    assert f"default-path origin {tmp_path}" in text
    # A line of the rewrite maps back to the user's line.
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines, 1) if "cookie SRV insert" in ln)
    assert result.origin[at] == ("haproxy.cfg", 15)


def test_haproxy_scale_up_copies_first_server_with_own_cookie(tmp_path):
    config = haproxy.read(write(tmp_path, "haproxy.cfg", HAPROXY_BASIC), None, check=False)
    topology = build(config, name="t", replicas=4)
    assert topology.replica_ids == ["alpha", "beta", "c", "r1"]
    text = haproxy.rewrite(config, topology, layout_for(topology.replica_ids, tmp_path, 1)).text
    assert "server r1 127.0.0.7:9003 check cookie r1 weight 3" not in text
    assert "server r1 127.0.0.7:9003 check cookie r1" in text


def test_haproxy_stick_table_is_unjudged_with_why(tmp_path):
    path = write(tmp_path, "haproxy.cfg", """\
        defaults
            mode http
        frontend f
            bind :80
            default_backend app
        backend app
            stick-table type ip size 1m expire 30m
            stick on src
            server a 10.0.0.1:80
            server b 10.0.0.2:80
    """)
    config = haproxy.read(path, None, check=False)
    assert config.mode is None
    assert [f.severity for f in config.findings if f.severity == "unjudged"] == ["unjudged"]
    assert "stick" in config.mechanism


@pytest.mark.parametrize("text, message", [
    ("defaults\n mode tcp\nfrontend f\n bind :80\n default_backend app\nbackend app\n"
     " server a 10.0.0.1:80\n", "mode tcp"),
    ("defaults\n mode http\nfrontend f\n bind :80\n use_backend app if TRUE\nbackend app\n"
     " server a 10.0.0.1:80\n", "no frontend sends its requests to app by default"),
    ("defaults\n mode http\nfrontend f\n bind :80\n default_backend app\nbackend app\n"
     " server-template w 3 app.local:80\n", "server-template"),
    ("defaults\n mode http\nfrontend f\n bind :80\n default_backend app\nbackend app\n",
     "no backend or listen section has server lines"),
])
def test_haproxy_refusals_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path, "haproxy.cfg", text)
    with pytest.raises(InputError) as err:
        haproxy.read(path, None, check=False)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_haproxy_backend_must_be_named_when_several_are_defaults(tmp_path):
    path = write(tmp_path, "haproxy.cfg", """\
        defaults
            mode http
        frontend f
            bind :80
            default_backend one
        frontend g
            bind :81
            default_backend two
        backend one
            server a 10.0.0.1:80
        backend two
            server b 10.0.0.2:80
    """)
    with pytest.raises(InputError, match="backend"):
        haproxy.read(path, None, check=False)
    assert haproxy.read(path, "two", check=False).backend == "two"


NGINX_HASH = """\
    user www-data;
    pid /run/nginx.pid;
    events { worker_connections 64; }
    http {
        upstream app {
            hash $cookie_sid consistent;
            server 10.0.0.1:8080 max_fails=2 fail_timeout=5s;
            server 10.0.0.2:8080 max_fails=2 fail_timeout=5s;
            keepalive 8;
        }
        upstream api { server 10.0.1.1:9000; }
        server {
            listen 80;
            location / { proxy_pass http://app; proxy_next_upstream error timeout http_502; }
            location /api/ { proxy_pass http://api; }
            location /ext/ { proxy_pass http://203.0.113.5:80; }
        }
    }
"""


def test_nginx_cookie_hash_found(tmp_path):
    config = nginx.read(write(tmp_path, "nginx.conf", NGINX_HASH), None, check=False)
    assert config.backend == "app"
    assert config.mode == "cookie-hash"
    assert config.options["cookie"] == "sid" and config.options["consistent"] is True
    assert config.options["next_upstream"] == ("error", "timeout", "http_502")
    assert config.health_check == {"enabled": True, "max_fails": 2, "fail_timeout_s": 5}
    assert config.replica_ids == ["r1", "r2"]


def test_nginx_rewrite_keeps_upstream_options_and_closes_other_targets(tmp_path):
    config = nginx.read(write(tmp_path, "nginx.conf", NGINX_HASH), None, check=False)
    topology = build(config, name="t")
    text = nginx.rewrite(config, topology, layout_for(topology.replica_ids, tmp_path)).text
    assert "server 127.0.0.7:9000 max_fails=2 fail_timeout=5s;" in text
    assert "keepalive 8;" in text
    assert "listen 127.0.0.7:8000;" in text
    assert "server 127.0.0.7:9;" in text  # upstream api, not under test
    assert "proxy_pass http://127.0.0.7:9;" in text  # /ext/, not under test
    assert "203.0.113.5" not in text and "10.0." not in text
    assert "/run/nginx.pid" not in text and "www-data" not in text


def test_nginx_plain_hash_warns_about_scale_up(tmp_path):
    path = write(tmp_path, "nginx.conf", NGINX_HASH.replace(" consistent", ""))
    config = nginx.read(path, None, check=False)
    assert config.options["consistent"] is False
    assert any("consistent" in f.message and f.severity == "warning" for f in config.findings)


def test_nginx_upstream_not_reached_by_location_root_is_refused(tmp_path):
    path = write(tmp_path, "nginx.conf", NGINX_HASH.replace("location / {", "location /x/ {"))
    with pytest.raises(InputError, match="no `location /` passes"):
        nginx.read(path, "app", check=False)


def test_replica_ids_from_cookie_value_then_name():
    assert replica_id(Server("web_1", "x", ("cookie", "s1"), 1), 0) == "s1"
    assert replica_id(Server("Web_1", "x", ("cookie", "S 1"), 1), 0) == "web-1"
    assert replica_id(Server("10.0.0.1:80", "x", (), 1), 2) == "r3"


def test_fixture_configs_are_never_written(tmp_path):
    """Reading and rewriting leave the user's file byte for byte as it was."""
    import hashlib

    path = FIXTURES / "haproxy" / "acl-routing" / "haproxy.cfg"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    config = haproxy.read(path, None, check=False)
    topology = build(config, name="t")
    haproxy.rewrite(config, topology, layout_for(topology.replica_ids, tmp_path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


CADDY_DOC = {"apps": {"http": {"servers": {"srv0": {"listen": [":443"], "routes": [{
    "match": [{"host": ["shop.example.com"]}],
    "handle": [{"handler": "subroute", "routes": [
        {"group": "g", "match": [{"path": ["/api/*"]}], "handle": [
            {"handler": "reverse_proxy", "upstreams": [{"dial": "10.0.3.1:9000"}]}]},
        {"group": "g", "handle": [{"handler": "subroute", "routes": [{"handle": [
            {"handler": "reverse_proxy",
             "load_balancing": {"selection_policy": {"policy": "cookie", "name": "lb"},
                                "try_duration": 2000000000},
             "health_checks": {"active": {"uri": "/up", "interval": "1s"}},
             "upstreams": [{"dial": "10.0.1.1:80", "max_requests": 5},
                           {"dial": "10.0.1.2:80"}]}]}]}]}]}],
    "terminal": True}]}}}}}


def test_caddy_durations():
    from harness.configs.caddy import duration_ns

    assert duration_ns(2_000_000_000) == 2_000_000_000
    assert duration_ns("1m30s") == 90_000_000_000 and duration_ns("250ms") == 250_000_000
    assert duration_ns("soon") == 0


def test_caddy_finds_the_reverse_proxy_that_serves_root(tmp_path):
    from harness.configs import caddy

    config = caddy.detect(CADDY_DOC, tmp_path / "Caddyfile", None)
    assert config.backend == "#2" and config.mode == "cookie"
    assert [s.address for s in config.servers] == ["10.0.1.1:80", "10.0.1.2:80"]
    assert config.options["lb_try_duration_ms"] == 2000 and config.options["cookie"] == "lb"
    assert config.health_check["enabled"] and config.health_path == "/up"
    assert any("HTTPS" in f.message for f in config.findings)
    with pytest.raises(InputError, match="no reverse_proxy '7'.*#2 \\(reverse_proxy 10.0.1.1"):
        caddy.detect(CADDY_DOC, tmp_path / "Caddyfile", "7")


def test_caddy_rewrite_keeps_upstream_keys_lifts_host_and_turns_tls_off(tmp_path):
    import json

    from harness.configs import caddy

    config = caddy.detect(CADDY_DOC, tmp_path / "Caddyfile", None)
    topology = build(config, name="t")
    doc = json.loads(caddy.rewrite(config, topology,
                                   layout_for(topology.replica_ids, tmp_path)).text)
    srv = doc["apps"]["http"]["servers"]["srv0"]
    assert srv["listen"] == ["127.0.0.7:8000"] and srv["automatic_https"] == {"disable": True}
    assert srv["routes"][0]["handle"][0]["handler"] == "headers"
    assert "match" not in srv["routes"][1]  # the host matcher on the way is lifted
    text = json.dumps(doc)
    assert "10.0.1.1" not in text and "10.0.3.1" not in text and "127.0.0.7:9" in text
    assert '{"dial": "127.0.0.7:9000", "max_requests": 5}' in text.replace(
        '"max_requests": 5, "dial": "127.0.0.7:9000"', '"dial": "127.0.0.7:9000", '
        '"max_requests": 5')
    assert CADDY_DOC["apps"]["http"]["servers"]["srv0"]["listen"] == [":443"]  # not mutated


def test_apache_tree_joins_continuations_and_inlines_includes(tmp_path):
    from harness.configs import apache
    from harness.configs.apache_model import parse

    (tmp_path / "members.conf").write_text(
        'BalancerMember "http://10.0.0.1:80" route=one \\\n    retry=5\n'
        'BalancerMember http://10.0.0.2:80 route=two\n')
    path = write(tmp_path, "shop.conf", """\
        Listen 8080
        <VirtualHost *:8080>
            Header add Set-Cookie "R=.%{BALANCER_WORKER_ROUTE}e; path=/" env=BALANCER_ROUTE_CHANGED
            <Proxy "balancer://app">
                Include members.conf
                ProxySet stickysession=R nofailover=On
            </Proxy>
            ProxyPass "/" "balancer://app/"
        </VirtualHost>
    """)
    config = apache.detect(parse(path), path, None)
    assert config.backend == "app" and config.mode == "cookie-route"
    assert config.replica_ids == ["one", "two"]
    assert config.servers[0].line == 1 and config.servers[0].file.endswith("members.conf")
    assert config.options["cookie"] == "R" and config.options["nofailover"] is True
    assert config.options["retry_s"] == 5
    topology = build(config, name="t")
    text = apache.rewrite(config, topology, layout_for(topology.replica_ids, tmp_path)).text
    assert '<VirtualHost 127.0.0.7:8000>' in text and "Listen 127.0.0.7:8000" in text
    assert 'BalancerMember "http://127.0.0.7:9000" route=one retry=5' in text
    assert "10.0.0." not in text


def test_apache_stickysession_without_a_route_setter_is_unjudged(tmp_path):
    from harness.configs import apache
    from harness.configs.apache_model import parse

    path = write(tmp_path, "t.conf", """\
        <VirtualHost *:80>
            <Proxy balancer://t>
                BalancerMember http://10.0.0.1:80 route=a
            </Proxy>
            ProxyPass / balancer://t/ stickysession=JSESSIONID|jsessionid
        </VirtualHost>
    """)
    config = apache.detect(parse(path), path, None)
    assert config.mode is None
    assert any(f.severity == "unjudged" and "jvmRoute" in f.message for f in config.findings)


def test_apache_unclosed_section_names_its_line(tmp_path):
    from harness.configs.apache_model import parse

    path = write(tmp_path, "bad.conf", "<VirtualHost *:80>\n  ServerName x\n")
    with pytest.raises(InputError, match="never closed") as info:
        parse(path)
    assert info.value.line == 1


def test_a_tls_only_frontend_is_spoken_to_in_tls(tmp_path):
    path = write(tmp_path, "haproxy.cfg", """\
        defaults
            mode http
        frontend http-in
            bind :80
            http-request redirect scheme https
        frontend https-in
            bind :443 ssl crt certs/site.pem
            default_backend app
        backend app
            server a 10.0.0.1:80
    """)
    config = haproxy.read(path, None, check=False)
    assert config.tls is True and config.listeners == 2
    topology = build(config, name="t")
    assert topology.tls
    text = haproxy.rewrite(config, topology, layout_for(topology.replica_ids, tmp_path, 1)).text
    assert "bind 127.0.0.7:8000 ssl crt certs/site.pem" in text  # the URL's, TLS kept
    assert "bind 127.0.0.7:8100" in text


def test_a_plain_listen_is_preferred_to_a_tls_one(tmp_path):
    path = write(tmp_path, "nginx.conf", NGINX_HASH.replace(
        "listen 80;", "listen 443 ssl; listen 8080;"))
    config = nginx.read(path, None, check=False)
    assert config.tls is False
    only_tls = write(tmp_path, "tls.conf", NGINX_HASH.replace("listen 80;", "listen 443 ssl;"))
    assert nginx.read(only_tls, None, check=False).tls is True


def test_a_stick_table_keeps_its_local_peer_on_a_cluster_port(tmp_path):
    path = write(tmp_path, "haproxy.cfg", """\
        peers mesh
            peer lb1 10.0.0.9:10000
            peer lb2 10.0.0.10:10000
        defaults
            mode http
        frontend f
            bind :80
            default_backend app
        backend app
            stick-table type ip size 1m peers mesh
            stick on src
            server a 10.0.0.1:80
    """)
    config = haproxy.read(path, None, check=False)
    assert config.listeners == 2  # the frontend's bind and the local peer
    assert not any("without `peers`" in f.message for f in config.findings)
    topology = build(config, name="t")
    text = haproxy.rewrite(config, topology, layout_for(topology.replica_ids, tmp_path, 1)).text
    assert "peer lb1 127.0.0.7:8100" in text and "peer lb2 127.0.0.7:9" in text
    assert "localpeer lb1" in text  # the first peer: the user's host name is not ours


def test_peers_with_bind_and_a_local_server_line(tmp_path):
    path = write(tmp_path, "haproxy.cfg", """\
        peers mesh
            bind :10000
            server me
            server other 10.0.0.10:10000
        defaults
            mode http
        frontend f
            bind :80
            default_backend app
        backend app
            stick-table type ip size 1m peers mesh
            stick on src
            server a 10.0.0.1:80
    """)
    config = haproxy.read(path, None, check=False)
    topology = build(config, name="t")
    text = haproxy.rewrite(config, topology, layout_for(topology.replica_ids, tmp_path, 1)).text
    assert "bind 127.0.0.7:8100" in text.split("defaults")[0]
    assert "localpeer me" in text and "server other 127.0.0.7:9" in text


def test_a_failed_requirement_becomes_a_measured_finding_with_the_configs_cause():
    from harness.configs.findings import measured

    checks = [
        {"id": "requirement.dead-server-users-served", "verdict": "fail", "topology": "t",
         "metrics": {"failed_requests": 72, "during_requests": 72, "affected_sessions": 3,
                     "status_503": 72}},
        {"id": "requirement.sessions-kept", "verdict": "pass", "metrics": {}},
        {"id": "haproxy.cookie-insert.sticky", "verdict": "fail", "metrics": {}},
    ]
    config = {"failover": {"redispatch": "off"},
              "findings": [{"severity": "warning", "message": "no redispatch and no checks"},
                           {"severity": "note", "message": "a note"}]}
    (finding,) = measured(checks, config)
    assert finding["check"] == "requirement.dead-server-users-served"
    assert "72 of 72 requests of its 3 sessions failed (72 x 503)" in finding["finding"]
    assert "redispatch off" in finding["finding"]
    assert finding["config_says"] == ["no redispatch and no checks"]


def container_layout(ids, tmp_path) -> Layout:
    """As the containers runtime lays a cluster out: the balancer on 0.0.0.0 in its own
    namespace, replicas on the cluster network, Docker's gateway the trusted hop."""
    return Layout(Endpoint("0.0.0.0", 8080),
                  {rid: Endpoint(f"172.30.0.{10 + i}", 8080) for i, rid in enumerate(ids)},
                  tmp_path, trusted="172.30.0.1")


def as_proxy_protocol(topology):
    from harness.runtime import runnable

    return runnable(topology, "containers")


def test_source_clients_in_containers_are_read_from_proxy_headers(tmp_path):
    """Where the runtime cannot carry source addresses, the listener reads the same address
    from a PROXY header (and says so); targets not under test stay closed, on loopback."""
    from harness.configs import apache
    from harness.configs.apache_model import parse

    config = haproxy.read(write(tmp_path, "haproxy.cfg", HAPROXY_BASIC), None, check=False)
    topology = as_proxy_protocol(build(config, name="t"))
    result = haproxy.rewrite(config, topology, container_layout(topology.replica_ids, tmp_path))
    assert "bind 0.0.0.0:8080 accept-proxy" in result.text
    assert "server o 127.0.0.1:9" in result.text
    assert any("accept-proxy" in n and "PROXY" in n for n in result.notes)

    config = nginx.read(write(tmp_path, "nginx.conf", NGINX_HASH), None, check=False)
    topology = as_proxy_protocol(build(config, name="t"))
    text = nginx.rewrite(config, topology, container_layout(topology.replica_ids, tmp_path)).text
    assert "listen 0.0.0.0:8080 proxy_protocol;" in text
    assert "set_real_ip_from 172.30.0.1;" in text and "real_ip_header proxy_protocol;" in text

    path = write(tmp_path, "shop.conf", """\
        <VirtualHost *:80>
            <Proxy balancer://app>
                BalancerMember http://10.0.0.1:8080 route=a
                BalancerMember http://10.0.0.2:8080 route=b
                ProxySet stickysession=ROUTEID
            </Proxy>
            ProxyPass / balancer://app/
        </VirtualHost>
    """)
    config = apache.detect(parse(path), path, None)
    topology = as_proxy_protocol(build(config, name="t"))
    text = apache.rewrite(config, topology, container_layout(topology.replica_ids, tmp_path)).text
    assert "RemoteIPProxyProtocol On" in text


def test_clients_the_config_already_takes_by_proxy_header_are_left_alone(tmp_path):
    text = HAPROXY_BASIC.replace("bind :80\n", "bind :80 accept-proxy\n")
    config = haproxy.read(write(tmp_path, "haproxy.cfg", text), None, check=False)
    assert config.client_ip == "proxy-protocol"
    topology = build(config, name="t")
    result = haproxy.rewrite(config, topology, container_layout(topology.replica_ids, tmp_path))
    assert result.text.count("accept-proxy") == 1
    # On local processes `source` stays the source: nothing added.
    config = haproxy.read(write(tmp_path, "haproxy.cfg", HAPROXY_BASIC), None, check=False)
    topology = build(config, name="t")
    assert "accept-proxy" not in haproxy.rewrite(
        config, topology, layout_for(topology.replica_ids, tmp_path, 1)).text
