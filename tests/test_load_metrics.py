"""Load metrics on hand-made histories: skew, failover of pinned sessions, scale-up."""

import pytest

from harness.analysis import load as lm
from harness.history import FaultRecord
from tests.test_metrics import req


def at(record, t):
    record.t = t
    return record


def test_cv_and_skew():
    assert lm.cv([10, 10, 10]) == 0
    assert lm.cv([0, 0, 30]) == pytest.approx(1.414, abs=1e-3)
    records = [req(f"s{i}", 0, "r1", ip="127.16.0.1") for i in range(6)]
    records += [req("t", 0, "r2", ip="127.16.1.1"), req("u", 0, "r3", ip="127.16.2.1")]
    s = lm.skew_metrics(records, ["r1", "r2", "r3"])
    assert s["busiest_replica_share"] == 0.75
    assert s["max_users_per_ip"] == 6
    assert s["load_max_over_mean"] == pytest.approx(6 / (8 / 3))
    assert s["load_cv"] > 0.5 and s["session_cv"] > 0.5


def test_cookie_keeping_drops_sessions_that_never_return_cookies():
    keeps = [req("a", 0, "r1"), req("a", 1, "r1", cookies={"sid": "x"})]
    drops = [req("b", 0, "r1"), req("b", 1, "r2")]
    assert lm.cookie_keeping(keeps + drops) == keeps


def test_fault_metrics_follow_sessions_pinned_to_the_target():
    fault = FaultRecord(t=5.0, op="kill", target="r1")
    pinned = [at(req("a", 0, "r1"), 1), at(req("a", 1, None, error="refused"), 5.5),
              at(req("a", 2, "r2", state="lost"), 6.0)]
    elsewhere = [at(req("b", 0, "r2"), 1), at(req("b", 1, "r2"), 6)]
    stranded = [at(req("c", 0, "r1"), 2), at(req("c", 1, None, error="refused"), 7)]
    out = lm.fault_metrics(pinned + elsewhere + stranded, fault)
    assert out["affected_sessions"] == 2
    assert out["affected_state_loss_share"] == 0.5
    assert out["repinned_share"] == 0.5
    assert out["repinned_state_loss_share"] == 1.0
    assert out["repin_p50_s"] == pytest.approx(1.001)
    assert out["errors_after_fault"] == 2


def test_share_over_time():
    records = [at(req("a", 0, "r1"), 0.5), at(req("a", 1, "r4"), 10.5),
               at(req("b", 0, "r2"), 11), at(req("c", 0, "r4"), 14.5)]
    assert lm.share_over_time(records, "r4", 10.0) == [0.5, 0.0, 1.0]


def test_scale_up_metrics():
    added = FaultRecord(t=10.0, op="add", target="r4")
    old = [at(req("a", 0, "r1"), 1), at(req("a", 1, "r1"), 11)]
    old_moved = [at(req("b", 0, "r2"), 2), at(req("b", 1, "r4"), 12)]
    new = [at(req("c", 0, "r4"), 11), at(req("d", 0, "r3"), 12)]
    out = lm.scale_up_metrics(old + old_moved + new, added)
    assert out["old_sessions_moved_to_new"] == 1
    assert out["new_sessions_after_add"] == 2
    assert out["new_sessions_on_new_share"] == 0.5
    assert out["new_replica_request_share_after"] == 0.5


def test_a_slow_fault_counts_from_when_it_began():
    """A container kill completes ~0.3 s after it began; a session re-pinned in between was
    still pinned to the target when the fault began, and counts as affected."""
    fault = FaultRecord(t=4.3, op="kill", target="r1", began=4.0)
    moved_early = [at(req("a", 0, "r1"), 3.9), at(req("a", 1, "r2", state="lost"), 4.1),
                   at(req("a", 2, "r2"), 5.0)]
    out = lm.fault_metrics(moved_early, fault)
    assert out["affected_sessions"] == 1 and out["repinned_share"] == 1
    assert out["repin_max_s"] == pytest.approx(0.1 + moved_early[1].duration)
    # Without `began` the same history shows nothing: the session had moved before t.
    assert lm.fault_metrics(moved_early, FaultRecord(t=4.3, op="kill", target="r1")
                            )["affected_sessions"] == 0
