"""Load and skew: realistic Locust populations (NAT groups, mobile users, hot clients)
through each balancer; how even the load stays, who stays sticky when their address changes,
and what a fault or a scale-up does to the sessions under load.

The cases are the expectations in fixtures/expectations/<kind>.yaml whose suite is `load`.
"""

from harness import suite


def pytest_generate_tests(metafunc):
    suite.generate_cases(metafunc, "load")


def test_behaviour(case, cluster_pool, check_log, history_dir):
    suite.run_check(case, cluster_pool, check_log, history_dir)
