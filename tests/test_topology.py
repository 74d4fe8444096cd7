"""Topology validation: good files load, bad ones name the file, line and key."""

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import InputError
from harness.topology import load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "fixtures" / "topologies").glob("*.yaml"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_samples_load(path):
    topology = load_topology(path)
    assert topology.name == path.stem
    assert len(topology.replicas) >= 2
    assert topology.expect == topology.mode


def test_defaults_and_options():
    t = parse_topology("balancer: {kind: haproxy, mode: cookie-insert, options: {cookie: ID}}\n"
                       "replicas: 2\n")
    assert t.replica_ids == ["r1", "r2"]
    assert t.options["cookie"] == "ID" and t.options["indirect"] is True
    assert t.health_check["enabled"] is False


def test_prefix_mode_makes_the_app_set_the_cookie():
    t = parse_topology("balancer: {kind: haproxy, mode: cookie-prefix}\nreplicas: 2\n")
    assert t.app.session_cookie == "JSESSIONID"
    r = parse_topology("balancer: {kind: haproxy, mode: cookie-rewrite}\nreplicas: 2\n")
    assert r.app.affinity_cookie == "SERVERID"


def test_replica_list_with_regions():
    t = parse_topology("balancer: {kind: nginx, mode: ip-hash}\n"
                       "replicas:\n  - {id: ams-1, region: ams}\n  - lhr-1\n")
    assert [(r.id, r.region) for r in t.replicas] == [("ams-1", "ams"), ("lhr-1", None)]


def test_as_claimed_uses_the_claimed_modes_options():
    t = parse_topology("balancer: {kind: haproxy, mode: roundrobin}\nreplicas: 2\n"
                       "expect: cookie-insert\n")
    assert "cookie" not in t.options
    assert t.as_claimed().options["cookie"] == "SRVID"


@pytest.mark.parametrize("text, line, key, words", [
    ("balancer:\n  kind: haproxy\n  mode: cookie-insrt\nreplicas: 3\n", 3, "balancer.mode",
     ["cookie-insert", "roundrobin"]),
    ("balancer:\n  kind: envoy\n  mode: x\nreplicas: 3\n", 2, "balancer.kind",
     ["haproxy", "nginx"]),
    ("balancer: {kind: nginx, mode: ip-hash}\nreplicas: 3\ncolour: red\n", 3, "colour",
     ["unknown key"]),
    ("balancer:\n  kind: nginx\n  mode: ip-hash\n  options:\n    cookie: x\nreplicas: 3\n", 5,
     "balancer.options.cookie", ["unknown option 'cookie'", "next_upstream"]),
    ("balancer:\n  kind: haproxy\n  mode: cookie-insert\n  options:\n    indirect: 'yes'\n"
     "replicas: 2\n", 5, "balancer.options.indirect", ["expected bool"]),
    ("balancer:\n  kind: haproxy\n  mode: cookie-insert\n  options:\n    cookie: 'a;b'\n"
     "replicas: 2\n", 5, "balancer.options.cookie", ["cookie or header name"]),
    ("balancer: {kind: nginx, mode: ip-hash}\nreplicas:\n  - r1\n  - R2\n", 4, "replicas[1].id",
     ["lower-case"]),
    ("balancer: {kind: nginx, mode: ip-hash}\nreplicas:\n  - r1\n  - r1\n", 4, "replicas[1].id",
     ["duplicate"]),
    ("balancer: {kind: nginx, mode: ip-hash}\nreplicas: 0\n", 2, "replicas", ["1 to 64"]),
    ("balancer: {kind: nginx, mode: ip-hash}\nreplicas: 2\napp:\n  session_store: memcached\n",
     4, "app.session_store", ["memory, redis", "'memcached'"]),
    ("balancer: {kind: nginx, mode: ip-hash}\n", 1, None, ["missing key 'replicas'"]),
    ("balancer: {kind: nginx, mode: ip-hash}\nreplicas: 2\nexpect: cookie-insert\n", 3,
     "expect", ["ip-hash"]),
    ("balancer: {kind: haproxy, mode: source}\nreplicas: 2\nreplicas: 3\n", 3, "replicas",
     ["duplicate key"]),
    ("balancer: {kind: haproxy, mode: [source\nreplicas: 2\n", 2, None, ["not valid YAML"]),
    ("balancer:\n  kind: haproxy\n  mode: cookie-insert\n  options:\n"
     "    on_marked_down: shutdown\nreplicas: 2\n", 5, "balancer.options.on_marked_down",
     ["expected one of", "shutdown-sessions"]),
    ("balancer:\n  kind: haproxy\n  mode: source\n  options:\n    persist: 1\n"
     "replicas: 2\n", 5, "balancer.options.persist", ["expected bool"]),
    ("balancer:\n  kind: haproxy\n  mode: source\n  options:\n    server_timeout_ms: -5\n"
     "replicas: 2\n", 5, "balancer.options.server_timeout_ms", ["non-negative"]),
    ("balancer:\n  kind: nginx\n  mode: ip-hash\n  options:\n    next_upstream:\n"
     "      - error\n      - http_555\nreplicas: 2\n", 7, "balancer.options.next_upstream[1]",
     ["expected one of", "non_idempotent"]),
    ("balancer:\n  kind: nginx\n  mode: ip-hash\n  options:\n    next_upstream: [off]\n"
     "replicas: 2\n", 5, "balancer.options.next_upstream[0]", ["quote it"]),
    ("balancer:\n  kind: nginx\n  mode: ip-hash\n  options:\n"
     "    next_upstream: [error, 'off']\nreplicas: 2\n", 5,
     "balancer.options.next_upstream[1]", ["cannot be combined"]),
    ("balancer:\n  kind: nginx\n  mode: ip-hash\n  options:\n    next_upstream: []\n"
     "replicas: 2\n", 5, "balancer.options.next_upstream", ["non-empty list"]),
    ("balancer: {kind: nginx, mode: ip-hash}\nreplicas: 2\nsuites: failover\n", 3, "suites",
     ["list of suite names"]),
])
def test_errors_name_file_line_and_key(text, line, key, words):
    with pytest.raises(InputError) as info:
        parse_topology(text, "bad.yaml")
    err = info.value
    assert err.file == "bad.yaml"
    assert err.line == line
    assert err.key == key
    message = str(err)
    assert message.startswith(f"bad.yaml:{line}:")
    for word in words:
        assert word in message
    assert err.exit_code == 2


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_topology(tmp_path / "absent.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        load_topology(empty)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 100) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["balancer", "kind", "mode", "replicas", "options",
                                       "id", "region", "expect", "app", "name", "cookie"]),
                      children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(yaml_values)
def test_any_document_loads_or_gives_an_input_error(value):
    """Fuzz: whatever the YAML holds, the loader never fails with anything but InputError."""
    text = yaml.safe_dump(value)
    try:
        parse_topology(text, "fuzz.yaml")
    except InputError as err:
        assert str(err).startswith("fuzz.yaml")


def test_failover_options_and_suites():
    t = parse_topology("balancer:\n  kind: nginx\n  mode: ip-hash\n  options:\n"
                       "    next_upstream: [error, timeout, non_idempotent]\n"
                       "    read_timeout_ms: 1500\nreplicas: 2\nsuites: [failover]\n")
    assert t.options["next_upstream"] == ("error", "timeout", "non_idempotent")
    assert t.options["read_timeout_ms"] == 1500 and t.options["connect_timeout_ms"] == 0
    assert t.in_suite("failover") and not t.in_suite("stickiness")
    assert t.to_dict()["balancer"]["options"]["next_upstream"] == [
        "error", "timeout", "non_idempotent"]
    default = parse_topology("balancer: {kind: nginx, mode: roundrobin}\nreplicas: 2\n")
    assert default.options["next_upstream"] == ("error", "timeout")
    assert default.in_suite("stickiness") and default.in_suite("failover")
    h = parse_topology("balancer: {kind: haproxy, mode: source}\nreplicas: 2\n")
    assert h.options["on_marked_down"] == "" and h.options["persist"] is False
