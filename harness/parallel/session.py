"""The pytest side of a concurrent run (`--jobs N`, N > 1): takes over pytest's run loop for
the conformance checks, hands them to a WorkerPool, and reports each result through pytest's
own protocol, so junit, the terminal summary, -x and report.json work as in a serial run.

Items that are not conformance checks (the project's tests, regression tests) run first, in
this process and in their order, as pytest would run them. Then the checks run in workers;
each one's result is reported here in the order they finish, with its wall time as the
test's duration. pytest's own per-test output is held back meanwhile and replaced by the
live display (a terminal) or one plain line per check (a log).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.check import Case, CheckResult, case_key
from harness.parallel.cost import job_for
from harness.parallel.plan import Job, Scheduler, plan_groups
from harness.parallel.pool import WorkerPool
from harness.parallel.progress import LiveDisplay, Progress

RESULTS_KEY = pytest.StashKey[dict[str, CheckResult]]()
WALLS_KEY = pytest.StashKey[dict[str, float]]()
MAX_AUTO_JOBS = 16


def auto_jobs(cores: int | None = None) -> int:
    """Five workers per core, at most MAX_AUTO_JOBS: most checks wait on timers (a failover
    check uses a twentieth of the machine), and the weights, not the workers, keep the
    machine from being saturated."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, min(MAX_AUTO_JOBS, 5 * cores))


def capacity(cores: int | None = None) -> float:
    """Weights are shares of a 2-core machine: a machine with more cores holds more."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1.0, cores / 2)


def parse_jobs(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise pytest.UsageError(f"--jobs: expected a whole number of at least 1 or 'auto', "
                                f"got {value!r}")
    return jobs


def jobs_of(config: pytest.Config) -> int:
    value = config.getoption("--jobs", "1") or "1"
    jobs = parse_jobs(str(value))
    return auto_jobs() if jobs == "auto" else int(jobs)


def case_of(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec else None
    return case if isinstance(case, Case) else None


def runtestloop(session: pytest.Session) -> bool | None:
    config = session.config
    if config.option.collectonly or (session.testsfailed and
                                     not config.option.continue_on_collection_errors):
        return None
    jobs = jobs_of(config)
    checks = [i for i in session.items if case_of(i) is not None]
    if jobs <= 1 or len(checks) < 2:
        return None  # pytest's own loop: the serial run
    others = [i for i in session.items if case_of(i) is None]
    for i, item in enumerate(others):
        item.config.hook.pytest_runtest_protocol(
            item=item, nextitem=others[i + 1] if i + 1 < len(others) else None)
        _check_stop(session)
    _run_checks(session, checks, jobs)
    return True


def _check_stop(session: pytest.Session) -> None:
    if session.shouldfail:
        raise session.Failed(session.shouldfail)
    if session.shouldstop:
        raise session.Interrupted(session.shouldstop)


def _run_checks(session: pytest.Session, items: list[pytest.Item], jobs: int) -> None:
    from harness.suite import LOG_KEY, history_dir_of

    config = session.config
    log = config.stash[LOG_KEY]
    results = config.stash.setdefault(RESULTS_KEY, {})
    walls = config.stash.setdefault(WALLS_KEY, {})
    by_key: dict[str, pytest.Item] = {}
    jobs_list: list[Job] = []
    requests: dict[str, dict[str, Any]] = {}
    for order, item in enumerate(items):
        topology, exp, runtime = case_of(item)
        key = case_key(topology, exp, runtime)
        by_key[key] = item
        source = str(Path(topology.source).resolve()) if topology.source else ""
        jobs_list.append(job_for(key, exp.scenario, exp.params, f"{runtime}:{source}",
                                 runtime, order))
        requests[key] = {"key": key, "topology_file": source, "suite": exp.suite,
                         "expectation": exp.id, "runtime": runtime}
    estimates = {j.key: j.estimate_s for j in jobs_list}
    groups = plan_groups(jobs_list)
    scheduler = Scheduler(groups, jobs, capacity())
    progress = Progress(len(items), sum(j.estimate_s for j in jobs_list), jobs)
    reporter = _Reporter(config, progress, by_key, estimates)
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"stickler: {len(items)} checks in {len(groups)} groups on {jobs} "
                      f"workers (--jobs {jobs}; --jobs 1 runs them one by one)")

    log.schedule = {"jobs": jobs, "capacity": scheduler.capacity, "groups": []}

    def on_group(group, wall_s: float, cpu_s: float) -> None:
        log.schedule["groups"].append({
            "checks": [j.key for j in group.jobs], "weight": group.weight,
            "estimate_s": round(group.estimate_s, 2), "wall_s": round(wall_s, 3),
            "cpu_s": round(cpu_s, 3),
            "started_s": round(time.monotonic() - began - wall_s, 3)})

    began = time.monotonic()

    def on_result(result: CheckResult) -> None:
        results[result.key] = result
        walls[result.key] = result.wall_s
        reporter.finished(result)
        _check_stop(session)

    pool = WorkerPool(scheduler, requests, seed=log.seed, runtime=log.runtime,
                      history_dir=history_dir_of(config), on_start=reporter.started,
                      on_result=on_result, on_tick=reporter.tick, on_group=on_group)
    try:
        pool.run()
        reporter.flush()
    finally:
        reporter.close()
        # report.json lists the checks in the serial order, however they finished
        place = {key: i for i, key in enumerate(by_key)}
        log.checks.sort(key=lambda c: place.get(
            f"{c['suite']}/{c['runtime']}:{c['topology']}:{c['id']}", len(place)))


class _Reporter:
    """Runs each finished check through pytest's protocol (one behind, so that pytest knows
    the next item and keeps session fixtures up) and shows progress."""

    def __init__(self, config: pytest.Config, progress: Progress,
                 items: dict[str, pytest.Item], estimates: dict[str, float]):
        self.config = config
        self.progress = progress
        self.items = items
        self.estimates = estimates
        self.held: pytest.Item | None = None
        self.capman = config.pluginmanager.get_plugin("capturemanager")
        self.tr = config.pluginmanager.get_plugin("terminalreporter")
        self.live: LiveDisplay | None = None
        if _is_terminal() and self.tr is not None:
            with self._out():
                self.live = LiveDisplay(progress, sys.__stdout__)
        self._last_tick = 0.0

    @contextlib.contextmanager
    def _out(self):
        with (self.capman.global_and_fixture_disabled() if self.capman
              else contextlib.nullcontext()):
            yield

    def started(self, key: str) -> None:
        self.progress.start(key)
        self.tick(force=True)

    def finished(self, result: CheckResult) -> None:
        verdict = "error" if result.error is not None else result.entry["verdict"]
        self.progress.finish(result.key, verdict, self.estimates.get(result.key, 0.0))
        line = self.progress.line(result.key, verdict, result.wall_s)
        with self._out():
            if self.live:
                if verdict != "pass":
                    self.live.print(line, style="red")
                self.live.refresh()
            elif self.tr is not None:
                self.tr.write_line(line)
        self._report(self.items[result.key])

    def _report(self, item: pytest.Item | None) -> None:
        held, self.held = self.held, item
        if held is not None:
            self._protocol(held, item)

    def _protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        writer = getattr(self.tr, "_tw", None)
        file = getattr(writer, "_file", None)
        if writer is not None:
            writer._file = io.StringIO()  # the display above stands for pytest's letters
        try:
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        finally:
            if writer is not None:
                writer._file = file
            if hasattr(self.tr, "currentfspath"):
                # pytest began a line of letters in the swapped-out file: without this it
                # would end it in the real one, a blank line after each plain line.
                self.tr.currentfspath = None

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.live and (force or now - self._last_tick > 0.5):
            self._last_tick = now
            with self._out():
                self.live.refresh()

    def flush(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            self._protocol(held, None)

    def close(self) -> None:
        if self.live:
            with self._out():
                self.live.close()
            self.live = None
        if self.tr is not None:
            self.tr.write_line("")
            self.tr.write_line(self.progress.status())


def _is_terminal() -> bool:
    stream = sys.__stdout__
    return bool(stream and stream.isatty()) and os.environ.get("TERM") != "dumb" and \
        not os.environ.get("CI")


def set_duration(item: pytest.Item, report: pytest.TestReport) -> None:
    """A check run by a worker: its duration is the worker's wall time, not the report's."""
    case = case_of(item)
    walls = item.config.stash.get(WALLS_KEY, None)
    if case is None or not walls or report.when != "call":
        return
    key = case_key(*case)
    if key in walls:
        report.duration = walls[key]
