"""Failover metrics and plans (pure): hand-made histories in, numbers out; no sockets."""

import random

import pytest

from harness.analysis.failover import (
    BACK,
    BEFORE,
    DURING,
    FaultWindow,
    choose_target,
    failover_metrics,
    pinned,
    session_paths,
    stable_start,
)
from harness.failover_scenarios import phase_plans, phase_steps
from harness.history import RequestRecord
from harness.traffic.plans import PAUSE

WINDOW = FaultWindow(target="r1", fault_t=10.0, recover_t=20.0)


def rec(session, phase, seq, t, answer, *, method="GET", duration=0.1, state="found",
        set_cookies=()):
    """`answer` is a replica id (a 200 from it), an int (the balancer's own status), or
    'error' (no answer)."""
    r = RequestRecord(t=t, duration=duration, scenario=f"failover{phase}", user=session,
                      session=session, seq=seq, client_ip="127.16.0.1", transport="source",
                      connection="new", method=method, path="/cart",
                      set_cookies=list(set_cookies))
    if answer == "error":
        r.error = "TimeoutError: timed out"
    elif isinstance(answer, int):
        r.status = answer
    else:
        r.status, r.replica, r.state = 200, answer, state
    return r


def session(name, before, during, back, *, t0=0.0):
    """A session's answers per phase, 1 s apart from t0 (the fault is at 10, recovery at 20)."""
    out = []
    for i, a in enumerate(before):
        out.append(rec(name, BEFORE, i, t0 + i, a))
    for i, a in enumerate(during):
        out.append(rec(name, DURING, 10 + i, 10.5 + i, a))
    for i, a in enumerate(back):
        out.append(rec(name, BACK, 20 + i, 20.5 + i, a))
    return out


def test_pinned_and_target():
    records = session("a", ["r2", "r1"], [], []) + session("b", ["r1"], [], []) + \
        session("c", ["r2", 503], [], [])
    assert pinned(records) == {"a": "r1", "b": "r1", "c": "r2"}
    assert choose_target({"a": "r1", "b": "r1", "c": "r2"}) == "r1"
    assert choose_target({"a": "r3", "b": "r2"}) == "r2"  # a tie: the first by name
    with pytest.raises(ValueError):
        choose_target({})


@pytest.mark.parametrize("answers, start", [
    (["r2", "r2", "r2"], 0),
    ([503, 503, "r2", "r2"], 2),
    ([503, "r3", "r2", "r2"], 2),
    (["r2", "r2", 503], None),  # ends in an error
    ([503, 503, "r2"], None),  # one request on the new replica is not yet stable
    (["r1", "r1"], None),  # still on the target
    (["r2"], 0),  # a one-request phase is judged on that request
])
def test_stable_start(answers, start):
    rs = [rec("a", DURING, i, float(i), a) for i, a in enumerate(answers)]
    assert stable_start(rs, "r1") == start


def test_stuck_sessions_fail_every_request_and_return():
    records = (session("a", ["r1"] * 3, [503] * 4, ["r1"] * 2)
               + session("b", ["r2"] * 3, ["r2"] * 4, ["r2"] * 2))
    m = failover_metrics(records, WINDOW)
    assert m["affected_sessions"] == 1 and m["unaffected_sessions"] == 1
    assert m["during_requests"] == 4 and m["failed_requests"] == 4 and m["failed_share"] == 1
    assert m["failed_per_session_max"] == 4
    assert m["status_503"] == 4 and m["status_502"] == 0 and m["transport_errors"] == 0
    assert m["repinned_share"] == 0 and m["repin_requests_max"] == -1 and m["repin_s_max"] == -1
    assert m["returned_share"] == 1 and m["return_s_max"] == pytest.approx(0.6)
    assert m["unaffected_moved"] == 0 and m["unaffected_failed"] == 0


def test_repinned_with_a_new_cookie_and_lost_state():
    records = session("a", ["r1"] * 3, [503, "r2", "r2", "r2"], ["r2", "r2"])
    records[4].state = "lost"
    records[4].set_cookies = ["SRVID=r2; path=/"]
    m = failover_metrics(records, WINDOW, cookie="SRVID")
    assert m["repinned_share"] == 1 and m["repin_requests_max"] == 1
    # The first response of the stable run ended 11.5 + 0.1 s, 1.6 s after the fault.
    assert m["repin_s_max"] == pytest.approx(1.6)
    assert m["new_cookie_share"] == 1 and m["state_lost_share"] == 1
    assert m["returned_share"] == 0 and m["return_s_max"] == -1
    assert failover_metrics(records, WINDOW)["new_cookie_share"] == 0  # no cookie named


@pytest.mark.parametrize("set_value, new", [("9f2c", 1), ("41ab", 0), (None, 0)])
def test_an_opaque_affinity_cookie_is_new_when_its_value_changes(set_value, new):
    # Caddy's cookie is an HMAC of the upstream's address: it names no replica, so a new
    # cookie is one whose value differs from what the session held at the fault.
    records = session("a", ["r1"] * 3, [502, "r2", "r2"], ["r2"])
    for r in records[3:6]:
        r.cookies_sent = {"lb": "41ab"}
    if set_value:
        records[4].set_cookies = [f"lb={set_value}; Path=/"]
    assert failover_metrics(records, WINDOW, cookie="lb")["new_cookie_share"] == new


def test_failures_by_kind_method_and_duration():
    records = session("a", ["r1"], [504, "error", 502, "r2", "r2"], [])
    records[1].method, records[1].duration = "POST", 5.0
    records[2].duration = 10.0
    m = failover_metrics(records, WINDOW)
    assert (m["status_504"], m["status_502"], m["transport_errors"]) == (1, 1, 1)
    assert m["failed_posts"] == 1 and m["failed_gets"] == 2
    assert m["failed_duration_max"] == 10.0 and m["during_duration_max"] == 10.0


def test_unaffected_sessions_that_move_or_fail_are_counted():
    records = (session("a", ["r1"], ["r2", "r2"], ["r1"])
               + session("b", ["r2"], ["r3", "r3"], [503, "r2"])
               + session("c", ["r3"], ["r3", "r3"], ["r3"]))
    m = failover_metrics(records, WINDOW)
    assert m["unaffected_sessions"] == 2 and m["unaffected_moved"] == 1
    assert m["unaffected_failed"] == 1 and m["back_failed"] == 1


def test_back_state_loss_and_served_by_target():
    records = session("a", ["r1"], ["r1", "r2", "r2"], ["r1", "r1"])
    records[-2].state = "lost"
    m = failover_metrics(records, WINDOW)
    assert m["served_by_target_during"] == 1
    assert m["back_state_loss_share"] == 1 and m["returned_share"] == 1


def test_no_affected_sessions_gives_zeros_not_errors():
    m = failover_metrics(session("b", ["r2"], ["r2"], ["r2"]), WINDOW)
    assert m["affected_sessions"] == 0 and m["repinned_share"] == 0 and m["failed_share"] == 0


def test_session_paths_show_each_phase():
    records = session("a", ["r1", "r1"], [503, "r2", "r2"], ["r2"])
    records[3].state = "lost"
    assert session_paths(records, WINDOW) == [
        "session a (pinned to r1): r1 r1 | 503 r2! r2 | r2"]


def test_phase_steps_space_requests_and_fix_the_first():
    steps = phase_steps(random.Random(1), 3, 0.25, first="POST")
    assert [s.method for s in steps][::2] == ["POST", steps[2].method, steps[4].method]
    assert [s.method for s in steps][1::2] == [PAUSE, PAUSE] and steps[1].path == "0.25"
    assert [s.method for s in phase_steps(random.Random(1), 2, 0, first="GET")][0] == "GET"
    with pytest.raises(ValueError):
        phase_steps(random.Random(1), 2, 0.1, first="PUT")


def test_phase_plans_keep_users_and_addresses_across_phases():
    p = {"sessions": 4, "before": 2, "during": 3, "back": 1, "interval_s": 0.1,
         "first_during": "GET", "connection": "keepalive"}
    plans = phase_plans(random.Random(7), p)
    users = [(x.user, x.client_ip) for x in plans[BEFORE]]
    assert len(set(users)) == 4
    for phase in (DURING, BACK):
        assert [(x.user, x.client_ip) for x in plans[phase]] == users
        assert all(x.connection == "keepalive" for x in plans[phase])
    assert all(x.steps[0].method == "POST" for x in plans[BEFORE])
    assert all(x.steps[0].method == "GET" for x in plans[DURING])
    assert phase_plans(random.Random(7), p) == plans  # seeded


def test_driver_carries_cookies_cart_and_seq_across_phases():
    """Two phases of one session against a real fixture app on loopback: the second phase
    sends the first phase's cookie and finds its cart; seq numbers continue."""
    from harness.app.server import make_app
    from harness.traffic.plans import SessionPlan, Step
    from harness.traffic.scripted import Driver, SessionCarry
    from tests.app_server import serving

    with serving(make_app("r1")) as base:
        def plan(*steps):
            return SessionPlan(user="u", session="u", client_ip="127.16.0.1",
                               steps=tuple(Step(m, p) for m, p in steps))

        carry: dict[str, SessionCarry] = {}
        first = Driver(base, scenario="x:before").run(
            [plan(("POST", "/cart?item=tea"), ("POST", "/cart?item=jam"))], carry)
        second = Driver(base, scenario="x:back").run([plan(("GET", "/cart"))], carry)
    assert [r.seq for r in first + second] == [0, 1, 2]
    assert not first[0].cookies_sent  # a new session: no cookie yet
    assert second[0].cookies_sent["sid"] == first[1].cookies_sent["sid"]
    assert second[0].state == "found" and second[0].cart_seen == 2
    assert second[0].cart_expected == 2 and carry["u"].next_seq == 3


def test_every_failover_check_and_sample_topology_meet():
    """A `when` that matches no sample would silently drop a check; a failover-only sample
    that no check selects would be dead weight."""
    from pathlib import Path

    from harness.check import when_options
    from harness.expectations import EXPECTATIONS_DIR, expectations_for, load_expectations
    from harness.topology import load_topology

    topologies = Path(__file__).resolve().parents[1] / "fixtures" / "topologies"
    used: set[str] = set()
    for t in (load_topology(p) for p in sorted(topologies.glob("*.yaml"))):
        if t.in_suite("failover"):
            checks = expectations_for(t.kind, t.expect, when_options(t), "failover")
            assert checks or not t.suites, f"no failover check selects {t.name}"
            used.update(e.id for e in checks)
    for kind in ("haproxy", "nginx"):
        ids = {e.id for e in load_expectations(EXPECTATIONS_DIR / f"{kind}.yaml")
               if e.suite == "failover"}
        assert ids and ids <= used, f"checks that select no sample: {sorted(ids - used)}"


@pytest.mark.parametrize("during, share", [
    ([503, 503, "r2", "r3", "r2", "r3"], 1.0),  # served again (round robin) before the end
    ([503, "r2", "r2", "r2", "r2", 503], 0.0),  # still failing at the end of the outage
    ([503] * 6, 0.0),
])
def test_served_at_end_is_the_last_third_answered_by_anyone(during, share):
    m = failover_metrics(session("a", ["r1"] * 3, during, ["r1"]), WINDOW)
    assert m["served_at_end_share"] == share
