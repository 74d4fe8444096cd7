"""The checker's metrics on hand-made histories (pure functions, no sockets)."""

import pytest

from harness.analysis import metrics as m
from harness.history import RequestRecord


def req(session, seq, replica, *, state="found", expected=None, seen=None, ip="127.16.0.1",
        cookies=None, set_cookies=(), app_cookies=None, error=None, cache=None, status=200):
    return RequestRecord(
        t=seq * 0.01, duration=0.001, scenario="t", user=session, session=session, seq=seq,
        client_ip=ip, transport="source", connection="new", method="GET", path="/cart",
        status=None if error else status, replica=None if error else replica,
        cookies_sent=cookies or {}, set_cookies=list(set_cookies),
        response_headers={"cache-control": cache} if cache else {}, state=state,
        cart_expected=expected, cart_seen=seen, app_cookies_seen=app_cookies or {}, error=error)


def test_stickiness_and_switches():
    assert m.stickiness(["a", "a", "b", "a"]) == 0.75
    assert m.stickiness([]) == 1.0
    assert m.switches(["a", "a", "b", "a"]) == 2
    assert m.switches(["a"]) == 0


def test_state_lost_from_app_or_cart():
    assert m.state_lost(req("s", 0, "a", state="lost"))
    assert m.state_lost(req("s", 0, "a", expected=2, seen=1))
    assert not m.state_lost(req("s", 0, "a", expected=2, seen=2))
    assert not m.state_lost(req("s", 0, "a", state="new"))


def test_a_failed_post_may_have_been_applied():
    """A replica killed after saving a POST and before answering: the client counted one
    item fewer than the cart holds. Not a loss while the failure explains it; more is."""
    one_failed = req("s", 1, "b", expected=19, seen=20)
    one_failed.cart_uncertain = 1
    assert not m.state_lost(one_failed)
    assert m.state_lost(req("s", 1, "b", expected=19, seen=20))  # nothing failed before
    one_failed.cart_seen = 21
    assert m.state_lost(one_failed)
    one_failed.cart_seen = 18
    assert m.state_lost(one_failed)


def test_summarize_sticky_and_switching_sessions():
    records = [req("s1", i, "r1", expected=i, seen=i) for i in range(4)]
    records += [req("s2", 0, "r2"), req("s2", 1, "r3", state="lost"), req("s2", 2, "r3"),
                req("s2", 3, "r2", error="ConnectionRefusedError")]
    s = m.summarize(records)
    assert s["requests"] == 8 and s["served"] == 7 and s["errors"] == 1 and s["unserved"] == 0
    assert s["groups"] == 2
    assert s["min_stickiness"] == pytest.approx(1 / 3)
    assert s["mean_stickiness"] == pytest.approx((1 + 1 / 3) / 2)
    assert s["groups_switched"] == 1 and s["switches"] == 1
    assert s["state_losses"] == 1 and s["groups_with_state_loss"] == 1
    assert s["replicas_used"] == 3
    assert s["max_replicas_per_group"] == 2
    assert s["max_load_share"] == pytest.approx(4 / 7)
    assert s["client_ip_mismatches"] == 0


def test_summarize_skip_first_judges_from_the_second_request():
    records = [req("s1", 0, "r1"), req("s1", 1, "r2"), req("s1", 2, "r2")]
    assert m.summarize(records)["min_stickiness"] == pytest.approx(1 / 3)
    assert m.summarize(records, skip_first=1)["min_stickiness"] == 1.0


def test_group_by_prefix24():
    records = [req(f"c{i}", 0, f"r{i % 2}", ip=f"127.16.5.{i + 1}") for i in range(4)]
    records.append(req("d", 0, "r9", ip="127.16.6.1"))
    s = m.summarize(records, key="prefix24")
    assert s["groups"] == 2
    assert s["max_replicas_per_group"] == 2


def test_switch_examples_name_session_replicas_and_position():
    records = [req("s7", 0, "r1", ip="127.16.0.7"), req("s7", 1, "r1"),
               req("s7", 2, "r2", state="lost"), req("s8", 0, "r3")]
    (example,) = m.switch_examples(records)
    assert example.startswith("session s7 (client 127.16.0.7): r1x2 -> r2")
    assert "first switch at request 2" in example
    assert "1 request(s) saw lost state" in example


def test_cookie_metrics():
    records = [
        req("s1", 0, "r1", set_cookies=["SRVID=r1; path=/"], cache="private"),
        req("s1", 1, "r1", cookies={"SRVID": "r1"}),
        req("s1", 2, "r1", cookies={"SRVID": "r1"}, set_cookies=["SRVID=r1; path=/"],
            app_cookies={"SRVID": "r1"}),
        req("s2", 0, "r2", cookies={"SRVID": "r3"}),
    ]
    c = m.cookie_metrics(records, "SRVID", ["r1", "r2", "r3"])
    assert c["cookie_reissued"] == 1
    assert c["cookie_set_responses"] == 2
    assert c["cookie_reached_app"] == 1
    assert c["requests_with_cookie"] == 3
    assert c["cookie_set_private_share"] == 0.5
    assert c["cookie_names_replica_share"] == pytest.approx(2 / 3)
    assert c["app_saw_server_prefix"] == 0
    assert c["cookie_set_with_expiry"] == 0  # session cookies
    later = "Wed, 01 Jan 2031 00:00:00 GMT"
    persistent = [req("s3", 0, "r1", set_cookies=["SRVID=r1; Max-Age=60; path=/",
                                                  f"sid=x; Expires={later}"]),
                  req("s4", 0, "r2", set_cookies=[f"SRVID=r2; expires={later}"])]
    assert m.cookie_metrics(persistent, "SRVID")["cookie_set_with_expiry"] == 2


def test_prefix_cookie_values():
    assert m.names_replica("r1~abc", "r1")
    assert not m.names_replica("r10~abc", "r1")
    assert m.names_replica("r1.0123abcd", "r1") and not m.names_replica("r10.0123", "r1")
    assert m.names_replica("r1|eVZbR", "r1") and not m.names_replica("r10|eVZbR", "r1")
    # Apache's route cookie: the route after the (last) dot, with or without a session id.
    assert m.names_replica(".r1", "r1") and m.names_replica("abc.r1", "r1")
    assert not m.names_replica(".r10", "r1") and not m.names_replica("abc.r11", "r1")
    records = [req("s", 0, "r1", app_cookies={"JSESSIONID": "r1~abc"})]
    assert m.cookie_metrics(records, "JSESSIONID", ["r1"])["app_saw_server_prefix"] == 1


def test_first_request_moved():
    records = [req("a", 0, "r1"), req("a", 1, "r2"), req("b", 0, "r3"), req("b", 1, "r3")]
    assert m.first_request_moved(records) == {"first_request_moved": 1,
                                              "first_request_moved_share": 0.5}


def test_remap_metrics():
    def clients(replicas):
        return [req(f"c{i}", 0, r, ip=f"127.16.{i}.1") for i, r in enumerate(replicas)]

    before = clients(["r1", "r2", "r3", "r1"])
    after = clients(["r1", "r4", "r1", "r1"])
    out = m.remap_metrics(before, after, "client_ip", "r4")
    assert out == {"remap_keys": 4, "remapped_share": 0.5, "moved_to_new": 1,
                   "moved_between_old": 1, "new_replica_share": 0.25}


def test_drain_metrics_and_target():
    before = [req("a", 0, "r1"), req("a", 1, "r2"), req("b", 0, "r2"), req("c", 0, "r3")]
    assert m.drain_target(before) == "r2"  # a and b ended on r2
    after = [req("a", 2, "r2"), req("b", 1, "r1"),  # b left the drained replica
             req("n1", 0, "r1"), req("n2", 0, "r2")]  # a new session landed on it
    assert m.drain_metrics(before, after, "r2") == {
        "drained_sessions": 2, "drained_kept_share": 0.5, "new_sessions": 2,
        "new_on_drained": 1}


def test_final_cookies_apply_the_last_set_cookie():
    records = [req("a", 0, "r1", set_cookies=["SRV=r1; Path=/"]),
               req("a", 1, "r1", cookies={"SRV": "r1"}, set_cookies=["sid=abc"])]
    assert m.final_cookies(records) == {"a": {"SRV": "r1", "sid": "abc"}}


def test_remap_settled_compares_where_a_session_ended():
    from harness.analysis.metrics import remap_metrics
    from harness.history import RequestRecord

    def r(session, seq, replica, scenario):
        rec = RequestRecord(t=seq, duration=0.1, scenario=scenario, user=session,
                            session=session, seq=seq, client_ip="127.16.0.1",
                            transport="source", connection="new", method="GET", path="/")
        rec.status, rec.replica = 200, replica
        return rec

    # s1's first request was placed elsewhere (no cookie yet), then it settled on r2.
    before = [r("s1", 0, "r1", "x:before"), r("s1", 1, "r2", "x:before"),
              r("s2", 0, "r3", "x:before")]
    after = [r("s1", 2, "r2", "x:after"), r("s2", 1, "r4", "x:after")]
    first = remap_metrics(before, after, "session", "r4")
    settled = remap_metrics(before, after, "session", "r4", settled=True)
    assert first["moved_between_old"] == 1 and settled["moved_between_old"] == 0
    assert settled["moved_to_new"] == 1
