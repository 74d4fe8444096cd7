"""The glue between pytest and the pipeline: options, the cluster pool, checks and the report.

suites/conftest.py re-exports these hooks and fixtures. A check runs a scenario against a
live cluster, judges an expectation, records the verdict for report.json, and fails the test
with the evidence and the citation when the balancer does not do what its docs say.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from pathlib import Path

import pytest

from harness.check import Case, CheckResult, ClusterPool, case_key, checks_for, execute_check
from harness.expectations import Expectation
from harness.parallel.session import RESULTS_KEY, parse_jobs, runtestloop, set_duration
from harness.report.checks import CheckLog, write_json_atomic
from harness.runtime import RUNTIMES
from harness.topology import Topology, load_topology

__all__ = ["RESULTS_KEY", "Case", "CheckLog", "ClusterPool", "generate_cases", "run_check",
           "runtestloop", "set_duration"]

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY_DIR = ROOT / "fixtures" / "topologies"
LOG_KEY = pytest.StashKey[CheckLog]()
HISTORY_KEY = pytest.StashKey[Path]()


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stickler", "Stickler conformance")
    group.addoption("--topology", action="append", default=[], metavar="FILE",
                    help="topology YAML to test (repeatable); default: fixtures/topologies/*.yaml")
    group.addoption("--balancer", action="append", default=[], metavar="KIND",
                    help="only topologies of this balancer kind (repeatable)")
    group.addoption("--runtime", default="processes", choices=[*sorted(RUNTIMES), "all"],
                    help="how clusters are started (all: every check on each runtime)")
    group.addoption("--seed", type=int, default=None,
                    help="seed for all traffic plans (default: random, printed and reported)")
    group.addoption("--jobs", default=os.environ.get("STICKLER_JOBS", "auto"), metavar="N",
                    help="checks run at once, in worker processes (default: auto, from the "
                         "cores; 1: one by one in this process, in order)")
    group.addoption("--report-dir", default=None, metavar="DIR",
                    help="write report.json and histories here")


def selected_topologies(config: pytest.Config) -> list[Topology]:
    files = config.getoption("--topology") or sorted(str(p) for p in TOPOLOGY_DIR.glob("*.yaml"))
    topologies = [load_topology(f) for f in files]
    kinds = config.getoption("--balancer")
    return [t for t in topologies if not kinds or t.kind in kinds]


# The signal that stopped the run, for the exit code (128 + it, as for every command).
STOPPED_BY: list[int] = []


def _interrupt(signum: int, frame: object) -> None:
    STOPPED_BY.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def configure(config: pytest.Config) -> None:
    # pytest records a SystemExit inside a test as a failure and goes on with the next one;
    # a KeyboardInterrupt stops the session and tears the cluster pool down. So SIGTERM
    # (CI cancelling a job) stops a conformance run the way Ctrl-C does.
    from harness.runtime import reaper

    if threading.current_thread() is threading.main_thread() and \
            reaper.default_handler(signal.getsignal(signal.SIGTERM)):
        signal.signal(signal.SIGTERM, _interrupt)
    parse_jobs(str(config.getoption("--jobs")))
    seed = config.getoption("--seed")
    if seed is None:
        seed = int(os.environ.get("STICKLER_SEED") or random.SystemRandom().randrange(2**31))
    config.stash[LOG_KEY] = CheckLog(seed=seed, runtime=config.getoption("--runtime"))


def report_header(config: pytest.Config) -> str:
    log = config.stash[LOG_KEY]
    return f"stickler: seed {log.seed} (rerun with --seed {log.seed}), runtime {log.runtime}"


def selected_runtimes(config: pytest.Config) -> list[str]:
    """The runtimes --runtime names: processes first for `all`."""
    runtime = config.getoption("--runtime")
    return sorted(RUNTIMES, reverse=True) if runtime == "all" else [runtime]


def generate_cases(metafunc: pytest.Metafunc, suite: str) -> None:
    """Parametrize `case` with every (topology, expectation) pair of this suite."""
    if "case" not in metafunc.fixturenames:
        return
    runtime = metafunc.config.getoption("--runtime")
    runtimes = selected_runtimes(metafunc.config)
    cases, ids = [], []
    for topology, exp in _cases(metafunc.config, suite):
        for rt in runtimes:  # runtime outermost below, so one cluster serves a topology's run
            if not exp.runs_on(rt):
                continue  # e.g. a network fault the processes runtime cannot inject
            cases.append(Case(topology, exp, rt))
            ids.append(f"{rt}:{topology.name}:{exp.id}" if runtime == "all"
                       else f"{topology.name}:{exp.id}")
    order = sorted(range(len(cases)), key=lambda i: runtimes.index(cases[i].runtime))
    metafunc.parametrize("case", [cases[i] for i in order], ids=[ids[i] for i in order])


def _cases(config: pytest.Config, suite: str) -> list[tuple[Topology, Expectation]]:
    cases = []
    explicit = bool(config.getoption("--topology"))
    for topology in selected_topologies(config):
        if not (explicit or topology.in_suite(suite)):
            continue  # a sample made for other suites; --topology FILE runs it anyway
        for exp in checks_for(topology, suite):
            cases.append((topology, exp))
    return cases


def run_check(case: Case | tuple[Topology, Expectation], pool: ClusterPool, log: CheckLog,
              history_dir: Path) -> None:
    """Report the check's verdict: run it here (a serial run), or take the result a worker
    sent (a concurrent run, harness.parallel.session)."""
    topology, exp = case[0], case[1]
    runtime = getattr(case, "runtime", None) or pool.runtime
    key = case_key(topology, exp, runtime)
    result = pool.results.pop(key, None)
    if result is None:
        result = execute_check(Case(topology, exp, runtime), pool, log.seed, history_dir)
    report_result(result, log)


def report_result(result: CheckResult, log: CheckLog) -> None:
    log.versions.update(result.versions)
    log.topologies.update(result.topologies)
    if result.error is not None:
        pytest.fail(f"{result.key} raised:\n{result.error}", pytrace=False)
    log.record(result.entry)
    if result.failure:
        pytest.fail(result.failure, pytrace=False)


def history_dir_of(config: pytest.Config) -> Path:
    """Where the run's histories go: <report-dir>/histories, or a temp dir of pytest's."""
    if HISTORY_KEY not in config.stash:
        report_dir = config.getoption("--report-dir")
        config.stash[HISTORY_KEY] = Path(report_dir) / "histories" if report_dir else \
            config._tmp_path_factory.mktemp("histories")
    return config.stash[HISTORY_KEY]


def finish(session: pytest.Session, exitstatus: int) -> None:
    log = session.config.stash.get(LOG_KEY, None)
    report_dir = session.config.getoption("--report-dir", None)
    if log is not None and report_dir:
        report = log.to_report()
        report["complete"] = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
        write_json_atomic(Path(report_dir) / "report.json", report)
