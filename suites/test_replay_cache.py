"""Replay caching (reference proxy): the first request of a session consults the app and is
replayed; later ones go straight to the target, marked hit and without fly-replay-src.

The cases are the expectations whose suite is `replay_cache` (fixtures/expectations/).
"""

from harness import suite


def pytest_generate_tests(metafunc):
    suite.generate_cases(metafunc, "replay_cache")


def test_behaviour(case, cluster_pool, check_log, history_dir):
    suite.run_check(case, cluster_pool, check_log, history_dir)
