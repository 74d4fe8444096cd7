"""Replay: recorded traffic (fixtures/traces/, made by the harness from a shopping day with
NAT groups, phones that change address, cookie droppers and a busy client) replayed through
each balancer; which sessions break, and how.

The cases are the expectations in fixtures/expectations/<kind>.yaml whose suite is `replay`.
"""

from harness import suite


def pytest_generate_tests(metafunc):
    suite.generate_cases(metafunc, "replay")


def test_behaviour(case, cluster_pool, check_log, history_dir):
    suite.run_check(case, cluster_pool, check_log, history_dir)
