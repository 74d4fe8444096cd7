"""Replay, diff and shrink: the pure parts without sockets, then a real replay and shrink."""

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.replay import broken_sessions, replay_summary
from harness.cli import main
from harness.history import RequestRecord
from harness.replay_cli import compare
from harness.trace.regression import test_source as regression_source
from harness.trace.replay import ClientMap, parse_speed
from harness.trace.shrink import ddmin, parse_property
from harness.traffic import identity

ROOT = Path(__file__).resolve().parents[1]


def rec(session, seq, replica, *, state="found", cookies=None, error=None, status=200, t=None):
    return RequestRecord(t=seq if t is None else t, duration=0.0, scenario="replay",
                         user=session, session=session, seq=seq, client_ip="127.16.0.1",
                         transport="source", connection="keepalive", method="GET",
                         path="/cart", status=None if error else status,
                         replica=None if error else replica, state=state,
                         cookies_sent={"sid": "x"} if cookies is None else cookies,
                         error=error)


def test_a_session_breaks_at_its_first_bad_request():
    records = [rec("ok", 0, "r1", state="new"), rec("ok", 1, "r1"),
               rec("split", 0, "r1", state="new"), rec("split", 1, "r2"),
               rec("lost", 0, "r1", state="new"), rec("lost", 1, "r2", state="lost"),
               rec("err", 0, "r1"), rec("err", 1, None, error="ConnectionResetError: x"),
               rec("fivexx", 0, "r1", status=503),
               rec("dropper", 0, "r1", cookies={}), rec("dropper", 1, "r3", cookies={})]
    broken = {b.session: b for b in broken_sessions(records)}
    assert set(broken) == {"split", "lost", "err", "fivexx", "dropper"}
    assert (broken["split"].seq, broken["split"].kind) == (1, "split")
    assert broken["lost"].kind == "state-lost" and "r1 before" in broken["lost"].detail
    assert broken["err"].kind == broken["fivexx"].kind == "error"
    assert broken["dropper"].cookieless and not broken["split"].cookieless
    summary = replay_summary(records, list(broken.values()))
    assert summary["sessions"] == 6 and summary["broken_sessions"] == 5
    assert summary["split_sessions"] == 2 and summary["state_lost_sessions"] == 1


def test_diff_counts_differences_in_kind_and_sets_coin_tosses_apart():
    def section(broken, share):
        return {"topology": {"name": "t"}, "summary": {"max_load_share": share},
                "broken": [{"session": s, "kind": k, "cookieless": c, "seq": 1}
                           for s, k, c in broken]}

    oracle = section([("d1", "split", True), ("a", "error", False)], 0.34)
    other = section([("d2", "split", True), ("m1", "state-lost", False),
                     ("m2", "state-lost", False), ("a", "error", False)], 0.62)
    c = compare(oracle, other)
    assert c["broken_here_only"] == 2 and c["broken_here_only_by_kind"] == {"state-lost": 2}
    assert c["broken_in_both"] == 1 and c["broken_in_oracle_only"] == 0
    assert c["cookieless_chance_splits"] == 2
    assert (c["max_load_share"], c["oracle_max_load_share"]) == (0.62, 0.34)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 60), st.sets(st.integers(0, 59), min_size=1, max_size=4))
def test_ddmin_finds_exactly_the_culprits(size, culprits):
    culprits = {c for c in culprits if c < size} or {0}
    calls = []

    def fails(items):
        calls.append(len(items))
        return culprits <= set(items)

    found = ddmin(list(range(size)), fails)
    assert set(found) == culprits  # 1-minimal: every culprit is needed, nothing else is
    assert found == sorted(found)  # order kept


def test_ddmin_keeps_an_input_that_is_already_minimal():
    assert ddmin(["only"], lambda items: True) == ["only"]
    assert ddmin(["a", "b"], lambda items: len(items) == 2) == ["a", "b"]


def test_properties_by_name_or_condition():
    assert str(parse_property("no session loses state")) == "state_lost_sessions == 0"
    assert str(parse_property("split_sessions <= 2")) == "split_sessions <= 2"
    with pytest.raises(ValueError, match="named property"):
        parse_property("carts_gone == 0")
    with pytest.raises(ValueError):
        parse_property("everything is fine")


def test_speeds():
    assert parse_speed("1") == 1 and parse_speed("10x") == 10 and parse_speed("0.5") == 0.5
    assert math.isinf(parse_speed("max"))
    for bad in ("0", "-2", "fast", "inf5"):
        with pytest.raises(ValueError):
            parse_speed(bad)


def test_client_map_keeps_slash_24s_together_on_every_transport():
    source = ClientMap("source")
    a, b = source("198.51.100.7", "s1"), source("198.51.100.200", "s2")
    c = source("203.0.113.7", "s3")
    assert identity.prefix24(a) == identity.prefix24(b) != identity.prefix24(c)
    assert a.startswith("127.") and a.endswith(".7")
    assert source("198.51.100.7", "other") == a  # the same recorded address, the same client
    assert source(None, "s9") != source(None, "s10")  # no address: a client per session
    proxied = ClientMap("proxy-protocol")
    assert proxied("198.51.100.7", "s1") == "198.51.100.7"  # a label travels as it is
    loop = proxied("127.16.0.9", "s1")  # a loopback recording becomes a label
    assert loop.startswith("100.64.")
    with pytest.raises(ValueError):
        ClientMap("carrier-pigeon")


def test_generated_regression_tests_are_valid_python_with_both_directions():
    source = regression_source(
        trace_name="x.jsonl", prop="no session loses state",
        bad="fixtures/topologies/nginx-ip-hash.yaml", bad_name="nginx-ip-hash",
        fixed="fixtures/topologies/haproxy-cookie-insert.yaml",
        fixed_name="haproxy-cookie-insert", source="t.jsonl", original=5000, size=2,
        command="stickler shrink t.jsonl --topology a.yaml --property 'no session loses "
                "state' --fixed b.yaml --name a-very-long-name-that-has-to-wrap-somewhere")
    tree = ast.parse(source)
    names = [n.name for n in tree.body
             if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    assert names == ["test_the_failure_reproduces_on_nginx_ip_hash",
                     "test_the_property_holds_on_haproxy_cookie_insert"]
    assert max(len(line) for line in source.splitlines()) <= 100


def _write_trace(path, requests):
    header = {"format": "stickler-trace", "version": 1, "start": 0.0, "redacted": True,
              "session_key": "auto", "source": {}}
    path.write_text("\n".join([json.dumps(header)] + [json.dumps(
        {"type": "request", "t": i * 0.01, "session": s, "seq": n, "method": "GET",
         "path": "/cart", "client_ip": ip, **({"cookies_sent": {"sid": "x"}} if n else {})})
        for i, (s, n, ip) in enumerate(requests)]) + "\n")


@pytest.mark.integration
def test_replay_and_shrink_through_real_balancers(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    # Two phones that change /24 mid-session, and steady users.
    steady = [(f"s{i}", n, f"198.51.{i}.9") for n in range(3) for i in range(6)]
    phones = [("p1", 0, "203.0.113.5"), ("p1", 1, "192.0.2.5"), ("p1", 2, "192.0.2.5"),
              ("p2", 0, "100.64.9.1"), ("p2", 1, "100.65.9.1")]
    _write_trace(trace, steady + phones)
    topologies = "fixtures/topologies"
    code = main(["replay", str(trace), "--topology", f"{topologies}/nginx-ip-hash.yaml",
                 "--speed", "max", "--report-dir", str(tmp_path / "r1")])
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert code == 1 and report["verdict"] == "fail"
    lost = {b["session"] for b in report["broken"] if b["kind"] == "state-lost"}
    assert lost <= {"p1", "p2"} and lost  # only phones can lose their cart under ip_hash
    assert main(["replay", str(trace), "--topology", f"{topologies}/haproxy-cookie-insert.yaml",
                 "--speed", "max", "--report-dir", str(tmp_path / "r2")]) == 0
    out = tmp_path / "regressions"
    assert main(["shrink", str(trace), "--topology", f"{topologies}/nginx-ip-hash.yaml",
                 "--property", "no session loses state", "--name", "phones",
                 "--out-dir", str(out)]) == 0
    minimal = (out / "phones.jsonl").read_text().splitlines()[1:]
    assert 2 <= len(minimal) <= 3 and all('"session":"p' in line for line in minimal)
    assert (out / "test_phones.py").exists()
    # The written test runs on its own, outside suites/ (its runtime fixture: processes).
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(out / "test_phones.py")], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout + run.stderr
    # The property holds on the whole trace under cookies: nothing to shrink, its own exit
    # code (not 1, a failure that could not be made a regression).
    assert main(["shrink", str(trace), "--topology",
                 f"{topologies}/haproxy-cookie-insert.yaml", "--property",
                 "no session loses state", "--out-dir", str(tmp_path / "none")]) == 4
    assert not (tmp_path / "none").exists()
    # Bad input: exit 2 and nothing written.
    assert main(["shrink", str(trace), "--topology", f"{topologies}/nginx-ip-hash.yaml",
                 "--property", "carts_gone == 0", "--out-dir", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
    assert "--property" in capsys.readouterr().err
    _write_trace(trace, [])
    trace.write_text(trace.read_text() + '{"type": "request", "t": 0\n')
    assert main(["replay", str(trace), "--topology", f"{topologies}/nginx-ip-hash.yaml"]) == 2


def test_history_imports_as_a_trace(tmp_path):
    from harness.errors import InputError
    from harness.history import FaultRecord, to_json
    from harness.trace.importers import ImportOptions, import_to_file
    from harness.trace.io import read_trace

    history = tmp_path / "history.jsonl"
    history.write_text("\n".join([
        to_json(rec("u1-s0", 0, "r1", cookies={})),
        to_json(FaultRecord(t=0.5, op="kill", target="r1")),
        to_json(rec("u1-s0", 1, "r2", t=1.0)),
    ]) + "\n")
    header, stats = import_to_file("history", history, tmp_path / "t.jsonl", ImportOptions())
    assert (stats.records, stats.skipped) == (2, 1)
    assert "a fault record" in stats.examples[0][1]
    with read_trace(tmp_path / "t.jsonl") as reader:
        records = list(reader)
    assert [r.session for r in records] == ["history:u1-s0"] * 2
    assert [r.replica for r in records] == ["r1", "r2"] and records[1].t == 1.0
    assert records[1].cookies_sent == {"sid": "REDACTED"}  # secrets redacted by default
    history.write_text(history.read_text() + "{not json\n")
    with pytest.raises(InputError) as err:
        import_to_file("history", history, tmp_path / "u.jsonl", ImportOptions())
    assert err.value.line == 4 and not (tmp_path / "u.jsonl").exists()


@pytest.mark.integration
@pytest.mark.parametrize("fmt, sample, extra", [
    ("har", "chromium-haproxy.har", []),
    ("haproxy", "haproxy-access.log", []),
    ("nginx", "nginx-access.log", []),
])
def test_recorded_samples_import_and_replay(tmp_path, fmt, sample, extra):
    """A real browser's HAR and the logs of the harness's own balancers replay cleanly."""
    from harness.trace.io import read_trace

    trace = tmp_path / "t.jsonl"
    assert main(["trace", "import", fmt, f"fixtures/traces/samples/{sample}", "-o",
                 str(trace), *extra]) == 0
    with read_trace(trace) as reader:
        assert len(list(reader)) >= 5
    code = main(["replay", str(trace), "--topology",
                 "fixtures/topologies/haproxy-cookie-insert.yaml", "--speed", "max",
                 "--report-dir", str(tmp_path / "r")])
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["summary"]["errors"] == 0, report["broken"]
    assert report["summary"]["state_lost_sessions"] == 0, report["broken"]
    # Only sessions that never sent a cookie (a health check, a bare GET) may split.
    assert all(b["cookieless"] for b in report["broken"]), report["broken"]
    assert code == (1 if report["broken"] else 0)


@pytest.mark.integration
@pytest.mark.parametrize("topology_file, cookie, replicas", [
    ("fixtures/topologies/haproxy-cookie-insert.yaml", "SRVID", {"r1", "r2", "r3"}),
    # a user's own config (ACL routing to three backends; the app backend's cookie SRV)
    ("fixtures/configs/haproxy/acl-routing/topology.yaml", "SRV", {"web1", "web2", "web3"}),
])
def test_record_between_clients_and_a_balancer_then_replay(tmp_path, topology_file, cookie,
                                                           replicas):
    import random
    import signal
    import subprocess
    import sys

    from harness.runtime import ProcessCluster, wait
    from harness.runtime.net import free_port
    from harness.topology import load_topology
    from harness.trace.io import read_trace
    from harness.traffic.plans import sessions
    from harness.traffic.scripted import Driver

    out = tmp_path / "recorded.jsonl"
    topology = load_topology(topology_file)
    with ProcessCluster(topology) as cluster:
        port = free_port("127.0.0.1")
        recorder = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "record", "--upstream",
             cluster.layout.balancer.address, "--listen", f"127.0.0.1:{port}", "-o", str(out),
             "--keep-cookie", cookie],
            stderr=subprocess.PIPE, text=True)
        try:
            wait.until(lambda: wait.http_status("127.0.0.1", port, "/healthz") == 200, 15,
                       "the recorder to answer")
            plans = sessions(random.Random(3), 5, 4, connection="keepalive")
            sent = Driver(f"http://127.0.0.1:{port}", scenario="rec").run(plans)
            assert all(r.status == 200 for r in sent)
        finally:
            recorder.send_signal(signal.SIGTERM)
            _, err = recorder.communicate(timeout=30)
    assert recorder.returncode == 0, err
    with read_trace(out) as reader:
        records = [r for r in reader if r.path != "/healthz"]
    assert len(records) == 20
    by_session: dict[str, list] = {}
    for r in records:
        by_session.setdefault(r.session, []).append(r)
    assert len(by_session) == 5  # the first request of each joined its session (Set-Cookie)
    assert all([r.seq for r in rs] == [0, 1, 2, 3] for rs in by_session.values())
    assert {r.replica for r in records} <= replicas
    assert all(r.cookies_sent.get("sid", "REDACTED") == "REDACTED" for r in records)
    assert any(r.cookies_sent.get(cookie) in replicas for r in records)
    code = main(["replay", str(out), "--topology", topology_file, "--speed", "max",
                 "--report-dir", str(tmp_path / "r")])
    assert code == 0


@pytest.mark.parametrize("failed, reruns, runs", [(10, 10, 4), (9, 10, 6), (6, 10, 14),
                                                  (1, 10, 50), (0, 10, 50), (4, 3, 3)])
def test_a_regression_replays_until_a_flaky_failure_would_show(failed, reruns, runs):
    from harness.trace.regression import runs_needed

    assert runs_needed(failed, reruns) == runs
