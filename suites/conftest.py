"""pytest wiring for the conformance suites (the logic lives in harness.suite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import suite


def pytest_addoption(parser: pytest.Parser) -> None:
    suite.addoption(parser)


def pytest_configure(config: pytest.Config) -> None:
    suite.configure(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`runtime`: each runtime --runtime selects (regression tests take it)."""
    if "runtime" in metafunc.fixturenames:
        metafunc.parametrize("runtime", suite.selected_runtimes(metafunc.config))


def pytest_report_header(config: pytest.Config) -> str:
    return suite.report_header(config)


def pytest_runtestloop(session: pytest.Session):
    return suite.runtestloop(session)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    suite.set_duration(item, outcome.get_result())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    suite.finish(session, exitstatus)


@pytest.fixture(scope="session")
def check_log(request: pytest.FixtureRequest) -> suite.CheckLog:
    return request.config.stash[suite.LOG_KEY]


@pytest.fixture(scope="session")
def cluster_pool(request: pytest.FixtureRequest, check_log: suite.CheckLog):
    pool = suite.ClusterPool(request.config.getoption("--runtime"), check_log)
    pool.results = request.config.stash.setdefault(suite.RESULTS_KEY, {})
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def history_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return suite.history_dir_of(request.config)
