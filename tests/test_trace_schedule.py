"""The open-model replay schedule on virtual time: due times, speed, sessions in order,
bounded concurrency, and lag measured from the due time (no coordinated omission)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.trace.format import TraceRecord
from harness.trace.schedule import LagStats, ReplaySchedule, simulate

START = 1000.0


def rec(t: float, session: str) -> TraceRecord:
    return TraceRecord(t=t, session=session, method="GET", path=f"/{session}/{t}")


def run(records, service=0.0, **options):
    schedule = ReplaySchedule(records, start=START, **options)
    sent = simulate(schedule, service if callable(service) else lambda r: service)
    return sent, schedule


def test_recorded_timing_and_speed():
    records = [rec(0, "a"), rec(0.5, "b"), rec(2.0, "c")]
    sent, schedule = run(records)
    assert [d.sent - START for d in sent] == [0, 0.5, 2.0]
    assert schedule.lag.summary()["lag_max_s"] == 0
    sent, _ = run(records, speed=10)
    assert [d.sent - START for d in sent] == pytest.approx([0, 0.05, 0.2])
    sent, _ = run(records, speed=math.inf)
    assert [d.sent for d in sent] == [START] * 3


def test_a_session_waits_for_its_previous_response_but_others_do_not():
    sent, _ = run([rec(0, "a"), rec(0.05, "b"), rec(0.1, "a")], service=1.0)
    by_path = {d.record.path: d for d in sent}
    assert by_path["/b/0.05"].sent == START + 0.05  # not held up by session a
    second = by_path["/a/0.1"]
    assert (second.sent, second.lag) == (START + 1.0, pytest.approx(0.9))


def test_lag_grows_when_the_client_is_full_instead_of_stretching_the_schedule():
    # One slot, 0.2 s per request, one request due every 0.1 s: each waits 0.1 s longer.
    records = [rec(i * 0.1, f"s{i}") for i in range(10)]
    sent, schedule = run(records, service=0.2, max_in_flight=1)
    assert [round(d.lag, 6) for d in sent] == [round(0.1 * i, 6) for i in range(10)]
    assert [d.due - START for d in sent] == pytest.approx([0.1 * i for i in range(10)])
    assert schedule.lag.percentile(50) == pytest.approx(0.4)
    assert schedule.lag.percentile(99) == pytest.approx(0.9)


def test_bounded_concurrency_as_fast_as_possible():
    sent, _ = run([rec(0, f"s{i}") for i in range(6)], service=1.0, speed=math.inf,
                  max_in_flight=2)
    assert [d.sent - START for d in sent] == [0, 0, 1, 1, 2, 2]


def test_reads_the_trace_only_as_far_as_now():
    consumed = []

    def trace():
        for i in range(1000):
            consumed.append(i)
            yield rec(float(i), f"s{i}")

    schedule = ReplaySchedule(trace(), start=START)
    assert [d.record.t for d in schedule.due(START + 2.5)] == [0, 1, 2]
    assert len(consumed) == 4  # three due, one looked at
    assert schedule.next_wakeup() == START + 3


def test_out_of_order_log_lines_go_out_when_reached():
    # A log written at completion: the request at t=0.2 is after the one at t=1.0.
    sent, _ = run([rec(0, "a"), rec(1.0, "b"), rec(0.2, "c")])
    # Reached when b is due; the oldest due goes first.
    assert [(d.record.session, d.sent - START, round(d.lag, 6)) for d in sent] == [
        ("a", 0, 0), ("c", 1.0, 0.8), ("b", 1.0, 0)]


def test_bad_settings():
    for options in ({"speed": 0}, {"speed": -1}, {"max_in_flight": 0}):
        with pytest.raises(ValueError):
            ReplaySchedule([], start=0, **options)
    assert LagStats().summary() == {"requests": 0, "lag_p50_s": 0.0, "lag_p99_s": 0.0,
                                    "lag_max_s": 0.0}


traces = st.lists(st.tuples(st.floats(0, 5), st.sampled_from("abcdef")), max_size=40)


@settings(max_examples=200, deadline=None)
@given(trace=traces, services=st.lists(st.floats(0, 2), min_size=1, max_size=10),
       max_in_flight=st.integers(1, 5), speed=st.sampled_from([0.5, 1.0, 7.0, math.inf]))
def test_properties(trace, services, max_in_flight, speed):
    records = [rec(t, s) for t, s in trace]
    for i, r in enumerate(records):
        r.seq = i  # identifies each request

    def service(record):
        return services[record.seq % len(services)]

    in_flight = []  # (sent, finished) per dispatch, to check the bound
    schedule = ReplaySchedule(records, start=START, speed=speed, max_in_flight=max_in_flight)
    sent = simulate(schedule, service)
    assert sorted(d.record.seq for d in sent) == list(range(len(records)))
    for session in set(s for _, s in trace):
        mine = [d for d in sent if d.record.session == session]
        assert [d.record.seq for d in mine] == sorted(d.record.seq for d in mine)
        for before, after in zip(mine, mine[1:], strict=False):
            assert after.sent >= before.sent + service(before.record)  # one at a time
    for d in sent:
        assert d.lag >= 0
        in_flight.append((d.sent, d.sent + service(d.record)))
    for moment, _ in in_flight:
        assert sum(1 for a, b in in_flight if a <= moment < b) <= max_in_flight
    assert len(schedule.lag.lags) == len(records) and schedule.finished


@settings(max_examples=100, deadline=None)
@given(trace=traces)
def test_no_lag_without_contention(trace):
    records = [rec(t, f"{s}{i}") for i, (t, s) in enumerate(sorted(trace))]
    sent, schedule = run(records, service=0.0, max_in_flight=1000)
    assert schedule.lag.summary()["lag_max_s"] == 0
    assert [d.sent - START for d in sent] == pytest.approx([t for t, _ in sorted(trace)])
