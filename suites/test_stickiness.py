"""Stickiness: for each balancer and affinity mode, do sessions stay on one replica and keep
their state, do clients without the affinity key spread, and does the round-robin baseline
show the switches that prove the harness would see them?

The cases are the expectations in fixtures/expectations/<kind>.yaml whose suite is
`stickiness`, crossed with the selected topologies.
"""

from harness import suite


def pytest_generate_tests(metafunc):
    suite.generate_cases(metafunc, "stickiness")


def test_behaviour(case, cluster_pool, check_log, history_dir):
    suite.run_check(case, cluster_pool, check_log, history_dir)
