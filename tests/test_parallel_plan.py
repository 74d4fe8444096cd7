"""The concurrent run's plan and scheduler (pure): groups, chunks, capacity, starvation."""

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.parallel.plan import Group, Job, Scheduler, plan_groups, simulate
from harness.parallel.progress import Progress


def job(key, cluster="a", faults=False, estimate=1.0, weight=0.1, order=0):
    return Job(key, cluster, faults, estimate, weight, order, start_s=0.5)


def test_non_faulting_checks_of_a_cluster_share_a_group_in_serial_order():
    jobs = [job("c", order=2), job("a", order=0), job("b", order=1), job("x", "b", order=3)]
    groups = plan_groups(jobs)
    keys = sorted([j.key for j in g.jobs] for g in groups)
    assert keys == [["a", "b", "c"], ["x"]]


def test_a_faulting_check_gets_a_cluster_of_its_own():
    jobs = [job("a", order=0), job("kill", faults=True, order=1), job("b", order=2)]
    groups = plan_groups(jobs)
    assert sorted(tuple(j.key for j in g.jobs) for g in groups) == [("a", "b"), ("kill",)]


def test_a_long_shared_group_is_cut_into_chunks_and_weights_are_not_mixed():
    jobs = [job(f"load{i}", estimate=14, weight=0.2, order=i) for i in range(6)]
    jobs += [job(f"quick{i}", estimate=0.5, order=10 + i) for i in range(4)]
    groups = plan_groups(jobs, chunk_s=30)
    loads = [g for g in groups if g.weight == 0.2]
    assert len(loads) == 3 and all(len(g.jobs) == 2 for g in loads)
    assert [len(g.jobs) for g in groups if g.weight == 0.1] == [4]


def test_the_scheduler_keeps_within_workers_and_capacity():
    groups = [Group((job(f"g{i}", cluster=f"c{i}", weight=0.3, order=i),)) for i in range(7)]
    s = Scheduler(groups, workers=5, capacity=1.0)
    started = []
    while (g := s.take()) is not None:
        started.append(g)
    assert len(started) == 3 and abs(s.load() - 0.9) < 1e-9
    s.done(started[0])
    assert s.take() is not None and s.take() is None


def test_a_group_heavier_than_the_capacity_runs_alone():
    heavy = Group((job("heavy", weight=1.5),))
    s = Scheduler([heavy, Group((job("light", cluster="b"),))], workers=4)
    assert s.take() is heavy and s.take() is None
    s.done(heavy)
    assert s.take() is not None


def test_a_heavy_group_is_not_starved_by_light_ones():
    """Without a reservation, a stream of 0.2 groups would keep the room below 0.45."""
    lights = [Group((job(f"l{i}", cluster=f"l{i}", estimate=10, weight=0.2, order=i),))
              for i in range(40)]
    heavy = Group((job("replay", cluster="r", estimate=40, weight=0.45, order=99),))
    s = Scheduler([heavy, *lights], workers=10, capacity=1.0, patience=3)
    s.running = list(lights[:5])  # the machine full of light groups
    s.pending = [heavy, *lights[5:]]
    passes = 0
    while heavy in s.pending:
        group = s.take()
        if group is None:
            s.done(s.running[0])  # one light group ends
        else:
            passes += group is not heavy
        assert passes <= 3


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.floats(0.1, 20),
                          st.sampled_from([0.06, 0.17, 0.2, 0.45, 1.2])), min_size=1,
                max_size=40),
       st.integers(1, 10))
def test_every_job_runs_once_and_the_capacity_holds(specs, workers):
    jobs = [job(f"j{i}", f"c{c}", f, e, w, i) for i, (c, f, e, w) in enumerate(specs)]
    groups = plan_groups(jobs)
    assert sorted(j.key for g in groups for j in g.jobs) == sorted(j.key for j in jobs)
    s = Scheduler(groups, workers)
    seen = []
    while not s.finished:
        while (g := s.take()) is not None:
            seen.append(g)
            assert len(s.running) <= workers
            assert s.load() <= 1.0 + 1e-9 or len(s.running) == 1
        s.done(s.running[0])
    assert len(seen) == len(groups)
    serial = sum(g.estimate_s for g in groups)
    assert simulate(groups, 1) == serial or abs(simulate(groups, 1) - serial) < 1e-6
    assert simulate(groups, workers) <= serial + 1e-6


def test_progress_counts_eta_and_plain_lines():
    now = [0.0]
    p = Progress(total=4, estimate_s=40.0, workers=2, clock=lambda: now[0])
    p.start("a")
    now[0] = 10.0
    p.finish("a", "pass", 10.0)
    assert p.eta_s() == 30.0  # 10 s of estimates done in 10 s
    assert p.line("a", "pass", 9.5) == "[1/4]    10s  PASS      9.5s  a"
    for key in "bcd":
        p.finish(key, "fail" if key == "c" else "pass", 10.0)
    assert p.counts == {"pass": 3, "fail": 1, "unknown": 0, "error": 0} and p.eta_s() == 0.0
