"""Concurrent conformance runs: a pure plan and scheduler (plan.py), worker processes that run
groups of checks (worker.py), and the pool that drives them from the pytest plugin (pool.py)."""
