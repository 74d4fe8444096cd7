"""Dynamic request routing (reference proxy): fly-force-instance-id, fly-prefer-instance-id,
fly-replay from the app (the blueprint's pinning middleware, a leader), and what happens when
the named replica is dead (no fallback, fallback with a header, fallback with
fly-replay-failed).

The cases are the expectations whose suite is `dynamic_routing` (fixtures/expectations/).
"""

from harness import suite


def pytest_generate_tests(metafunc):
    suite.generate_cases(metafunc, "dynamic_routing")


def test_behaviour(case, cluster_pool, check_log, history_dir):
    suite.run_check(case, cluster_pool, check_log, history_dir)
