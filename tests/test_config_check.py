"""The user's own configs end to end: every fixture under fixtures/configs/ judged by the
requirements, with the verdicts each is known to earn; `stickler check` and `stickler
inspect` on them; configs the balancer itself rejects refused with its own message; the
user's files never written."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from tests.test_cli import ROOT, stickler

pytestmark = pytest.mark.integration

CONFIGS = ROOT / "fixtures" / "configs"
REQUIREMENTS = ("sessions-kept", "sessions-spread", "dead-server-users-served",
                "scale-up-moves-only-to-new")
# fixture (topology name) -> the requirements it fails; every other one that applies passes.
EXPECTED_FAILURES = {
    "haproxy-acl-routing": set(),
    "haproxy-keepalive-source-consistent": set(),
    "haproxy-listen-cookie-prefix": set(),
    "haproxy-tls-termination": set(),
    "nginx-tls-termination": set(),
    "haproxy-cookie-collides": {"sessions-kept"},
    "haproxy-no-failover": {"dead-server-users-served"},
    "haproxy-source-map-based": {"scale-up-moves-only-to-new"},
    "haproxy-stick-table-no-peers": {"scale-up-moves-only-to-new"},
    # Observed on HAProxy 2.6.12: the local peer does not hand the table over on a reload
    # (see the fixture's comment for the evidence).
    "haproxy-stick-table-peers": {"scale-up-moves-only-to-new"},
    "nginx-cookie-hash-shared-sessions": set(),
    "nginx-roundrobin-keepalive-shared": set(),
    "nginx-cookie-hash-memory": {"sessions-kept"},
    "nginx-ip-hash-behind-cdn": {"sessions-spread"},
    "nginx-ip-hash-scale-up": {"scale-up-moves-only-to-new"},
    "nginx-next-upstream-off": {"dead-server-users-served"},
    "caddy-shop-cookie": set(),
    "caddy-ip-hash-health": set(),
    "caddy-roundrobin-shared": set(),
    "caddy-no-health-checks": {"dead-server-users-served"},
    "caddy-cookie-collides": {"sessions-kept"},
    "apache-route-cookie": set(),
    "apache-location-route": set(),
    "apache-httpd-full": set(),
    "apache-tls-termination": set(),
    "apache-jsessionid-no-route": {"sessions-kept", "scale-up-moves-only-to-new"},
    "apache-nofailover-on": {"dead-server-users-served"},
}
# With a shared session store a move costs nothing: the scale-up requirement does not apply.
SHARED_STORE = {"nginx-cookie-hash-shared-sessions", "nginx-roundrobin-keepalive-shared",
                "nginx-ip-hash-behind-cdn", "nginx-next-upstream-off", "caddy-roundrobin-shared",
                "apache-httpd-full", "nginx-tls-termination"}


# The containers runtime runs a sample of them: each kind, TLS frontends, further listeners
# (ACL routing, a stick table's peer), `source` clients carried as PROXY headers (HAProxy,
# NGINX, Apache) and lost (Caddy reads no PROXY protocol: unknown, never a verdict).
IN_CONTAINERS = ("haproxy-acl-routing", "haproxy-tls-termination", "haproxy-source-map-based",
                 "haproxy-stick-table-peers", "nginx-tls-termination", "nginx-ip-hash-scale-up",
                 "nginx-ip-hash-behind-cdn", "caddy-shop-cookie", "caddy-ip-hash-health",
                 "apache-tls-termination", "apache-route-cookie")
# Judged on no runtime but processes: their clients' addresses are what is under test.
ADDRESSES_LOST_IN_CONTAINERS = {"caddy-ip-hash-health"}


def topology_files(names: tuple[str, ...] | None = None) -> list[Path]:
    files = sorted(CONFIGS.glob("*/*/topology.yaml"))
    return [f for f in files if names is None or fixture_name(f) in names]


def fixture_name(topology_file: Path) -> str:
    return f"{topology_file.parent.parent.name}-{topology_file.parent.name}"


def user_files() -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(CONFIGS.rglob("*")) if p.is_file()}


def _needs_docker(runtime: str) -> None:
    from harness.runtime import docker_env

    if runtime == "containers" and not docker_env.available():
        if os.environ.get("CI"):
            raise RuntimeError(f"no Docker daemon answers; {docker_env.HINT}")
        pytest.skip(f"no Docker daemon answers; {docker_env.HINT}")


_JUDGED: dict[str, dict] = {}


@pytest.fixture(scope="module", params=["processes", "containers"])
def judged(request, tmp_path_factory) -> dict:
    return _judge(request.param, tmp_path_factory)


def _judge(runtime: str, tmp_path_factory) -> dict:
    """One conformance run of the requirements over the fixture configs (concurrently),
    every one on processes and IN_CONTAINERS in containers, with the fixture files'
    checksums before and after; once per runtime in a session."""
    if runtime in _JUDGED:
        return _JUDGED[runtime]
    _needs_docker(runtime)
    before = user_files()
    report_dir = tmp_path_factory.mktemp("configs") / "report"
    seed = int(os.environ.get("STICKLER_TEST_SEED") or random.SystemRandom().randrange(2**31))
    args = ["conformance", "-k", "requirement", "--report-dir", str(report_dir),
            "--seed", str(seed), "--runtime", runtime]
    for f in topology_files(IN_CONTAINERS if runtime == "containers" else None):
        args += ["--topology", str(f)]
    proc = stickler(*args, timeout=900)
    report = json.loads((report_dir / "report.json").read_text())
    _JUDGED[runtime] = {"proc": proc, "report": report, "before": before,
                        "after": user_files(), "seed": seed, "runtime": runtime}
    return _JUDGED[runtime]


def test_every_fixture_has_expected_verdicts():
    names = {fixture_name(f) for f in topology_files()}
    assert names == set(EXPECTED_FAILURES)
    assert set(IN_CONTAINERS) <= names
    misconfigured = [n for n, fails in EXPECTED_FAILURES.items() if fails]
    assert len(misconfigured) >= 6


@pytest.mark.parametrize("runtime,name", [
    *(("processes", n) for n in sorted(EXPECTED_FAILURES)),
    *(("containers", n) for n in IN_CONTAINERS)])
def test_fixture_verdicts(runtime, name, tmp_path_factory):
    judged = _judge(runtime, tmp_path_factory)
    checks = {c["id"].removeprefix("requirement."): c for c in judged["report"]["checks"]
              if c["topology"] == name}
    expected = set(REQUIREMENTS) - ({"scale-up-moves-only-to-new"} if name in SHARED_STORE
                                    else set())
    assert set(checks) == expected, f"seed {judged['seed']}: {sorted(checks)}"
    verdicts = {rid: c["verdict"] for rid, c in checks.items()}
    want = {rid: "fail" if rid in EXPECTED_FAILURES[name] else "pass" for rid in expected}
    if runtime == "containers" and name in ADDRESSES_LOST_IN_CONTAINERS:
        want = dict.fromkeys(expected, "unknown")
    assert verdicts == want, (f"seed {judged['seed']}: " + "; ".join(
        f"{rid}: {c['reason']}" for rid, c in checks.items() if c["verdict"] != want[rid]))


def test_user_files_never_written(judged):
    assert judged["before"] == judged["after"]
    assert judged["proc"].returncode == 1  # the misconfigured ones fail


def test_check_passes_a_good_config_and_keeps_the_rewrite(tmp_path):
    config = CONFIGS / "haproxy" / "listen-cookie-prefix" / "haproxy.cfg"
    proc = stickler("check", str(config), "-k", "requirement and sessions",
                    "--report-dir", str(tmp_path / "r"), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "affinity: cookie JSESSIONID prefix nocache with balance roundrobin" in proc.stdout
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["config"]["judged_as"] == "cookie-prefix"
    assert {c["verdict"] for c in report["checks"]} == {"pass"}
    rewritten = (tmp_path / "r" / "rewritten-haproxy.cfg").read_text()
    assert "10.2.0.1" not in rewritten and "cookie JSESSIONID prefix nocache" in rewritten
    assert "tomcat1" in (tmp_path / "r" / "rewrite-notes.txt").read_text()


def test_check_fails_a_misconfigured_one_naming_the_check(tmp_path):
    config = CONFIGS / "haproxy" / "cookie-collides" / "haproxy.cfg"
    proc = stickler("check", str(config), "-k", "sessions-kept",
                    "--report-dir", str(tmp_path / "r"), timeout=300)
    assert proc.returncode == 1
    assert "FAIL cookie-collides requirement.sessions-kept" in proc.stdout
    assert "also your app's session cookie" in proc.stdout  # the finding, before the run
    assert "FINDING requirement.sessions-kept: 24 of 24 shoppers lost their session" in \
        proc.stdout  # ...and after it, with what was measured
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [f["check"] for f in report["findings"]] == ["requirement.sessions-kept"]


def test_check_says_unknown_where_no_mechanism_applies(tmp_path):
    config = CONFIGS / "haproxy" / "stick-table-no-peers" / "haproxy.cfg"
    proc = stickler("check", str(config), "-k", "sessions-kept",
                    "--report-dir", str(tmp_path / "r"), timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "UNKNOWN stick-table-no-peers haproxy.conformance: stick" in proc.stdout
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["summary"]["unknown"] == 1 and report["summary"]["pass"] == 1


def test_inspect_json_names_mechanism_servers_and_checks():
    proc = stickler("inspect", str(CONFIGS / "nginx" / "ip-hash-scale-up" / "nginx.conf"),
                    "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["mechanism"] == "ip_hash" and data["judged_as"] == "ip-hash"
    assert [s["address"] for s in data["servers"]] == ["10.4.0.1:8080", "10.4.0.2:8080",
                                                       "10.4.0.3:8080"]
    ids = {c["id"] for c in data["checks"]["apply"]}
    assert "nginx.ip-hash.sticky-by-address" in ids
    assert "requirement.scale-up-moves-only-to-new" in ids
    assert data["checks"]["other_mechanisms"]["cookie-hash"] >= 1


@pytest.mark.parametrize("kind, name, text, message", [
    ("haproxy", "haproxy.cfg",
     "defaults\n    mode http\nfrontend f\n    bind :80\n    default_backend app\n"
     "backend app\n    balance nosuchalgo\n    server a 10.0.0.1:80\n",
     "haproxy.cfg:7"),
    ("nginx", "nginx.conf",
     "events {}\nhttp {\n    upstream app { server 10.0.0.1:80 max_fails=x; }\n"
     "    server { listen 80; location / { proxy_pass http://app; } }\n}\n",
     "nginx.conf:3"),
    ("apache", "shop.conf", "<VirtualHost *:80>\n    <Proxy balancer://app>\n"
     "        BalancerMember http://10.0.0.1:80 route=a\n        ProxySet lbmethod=byfun\n"
     "    </Proxy>\n    ProxyPass / balancer://app/\n</VirtualHost>\n", "shop.conf:4"),
    ("caddy", "Caddyfile", ":80 {\n\treverse_proxy 10.0.0.1:80 {\n\t\tlb_policy nosuch\n"
     "\t}\n}\n", "Caddyfile:3"),
])
def test_config_the_balancer_rejects_is_refused_with_its_message(tmp_path, kind, name, text,
                                                                 message):
    path = tmp_path / name
    path.write_text(text)
    proc = stickler("check", str(path), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()  # refused before anything was written
    assert path.read_text() == text


def test_unknown_backend_is_refused_naming_those_there(tmp_path):
    config = CONFIGS / "haproxy" / "acl-routing" / "haproxy.cfg"
    proc = stickler("inspect", str(config), "--backend", "nope")
    assert proc.returncode == 2
    assert "no backend or listen section 'nope'" in proc.stderr and "app" in proc.stderr


def test_a_tls_frontend_is_checked_against_a_ca_when_one_is_given(tmp_path):
    config = CONFIGS / "nginx" / "tls-termination" / "nginx.conf"
    own = config.parent / "certs" / "shop.crt"  # self-signed: its own CA
    ok = stickler("check", str(config), "--session-store", "redis", "--tls-ca", str(own),
                  "-k", "sessions-kept", "--report-dir", str(tmp_path / "ok"), timeout=300)
    assert ok.returncode == 0, ok.stdout[-2000:]
    wrong = stickler("check", str(config), "--session-store", "redis", "--tls-ca",
                     str(ROOT / "fixtures" / "certs" / "unrelated-ca.crt"), "-k",
                     "sessions-kept", "--report-dir", str(tmp_path / "wrong"), timeout=300)
    assert wrong.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in (tmp_path / "wrong" / "report.json").read_text() \
        or "CERTIFICATE_VERIFY_FAILED" in wrong.stdout


def test_diff_sets_a_misconfigured_config_apart_from_a_good_one(tmp_path):
    proc = stickler("diff", str(ROOT / "fixtures" / "traces" / "shopping-day.jsonl"),
                    "--speed", "max",
                    "--topology", str(CONFIGS / "nginx" / "cookie-hash-memory" / "topology.yaml"),
                    "--topology", str(CONFIGS / "apache" / "route-cookie" / "topology.yaml"),
                    "--report-dir", str(tmp_path / "d"), timeout=600)
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    broken = {c["topology"]: c["broken_here_only"] for c in report["comparisons"]}
    assert broken["apache-route-cookie"] == 0, proc.stdout[-2000:]
    # hash $cookie_sid: the first request of most sessions lands where its cart is not kept.
    assert broken["nginx-cookie-hash-memory"] > 100
    assert {c["topology"]: set(c["broken_here_only_by_kind"]) for c in
            report["comparisons"]}["nginx-cookie-hash-memory"] == {"state-lost"}
