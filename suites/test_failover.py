"""Failover: when the replica a session is pinned to dies (kill) or hangs (pause), what
status do the next requests get, when is the session re-pinned, how much state is lost, and
does it return when the replica comes back? Per balancer option: HAProxy's health checks,
option redispatch, option persist, retries, on-marked-down; NGINX's max_fails,
fail_timeout, proxy_next_upstream and the proxy timeouts.

The cases are the expectations whose suite is `failover` (fixtures/expectations/).
"""

from harness import suite


def pytest_generate_tests(metafunc):
    suite.generate_cases(metafunc, "failover")


def test_behaviour(case, cluster_pool, check_log, history_dir):
    suite.run_check(case, cluster_pool, check_log, history_dir)
