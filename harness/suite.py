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
from typing import NamedTuple

import pytest

from harness.analysis.verdicts import FAIL, PASS, judge
from harness.expectations import Expectation, expectations_for
from harness.history import HistoryWriter
from harness.report.checks import CheckLog, write_json_atomic
from harness.runtime import RUNTIMES, carries_client_address, runnable
from harness.scenarios import SCENARIOS
from harness.topology import Topology, load_topology

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY_DIR = ROOT / "fixtures" / "topologies"
LOG_KEY = pytest.StashKey[CheckLog]()


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
    group.addoption("--report-dir", default=None, metavar="DIR",
                    help="write report.json and histories here")


def selected_topologies(config: pytest.Config) -> list[Topology]:
    files = config.getoption("--topology") or sorted(str(p) for p in TOPOLOGY_DIR.glob("*.yaml"))
    topologies = [load_topology(f) for f in files]
    kinds = config.getoption("--balancer")
    return [t for t in topologies if not kinds or t.kind in kinds]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def configure(config: pytest.Config) -> None:
    # pytest records a SystemExit inside a test as a failure and goes on with the next one;
    # a KeyboardInterrupt stops the session and tears the cluster pool down. So SIGTERM
    # (CI cancelling a job) stops a conformance run the way Ctrl-C does.
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _interrupt)
    seed = config.getoption("--seed")
    if seed is None:
        seed = int(os.environ.get("STICKLER_SEED") or random.SystemRandom().randrange(2**31))
    config.stash[LOG_KEY] = CheckLog(seed=seed, runtime=config.getoption("--runtime"))


def report_header(config: pytest.Config) -> str:
    log = config.stash[LOG_KEY]
    return f"stickler: seed {log.seed} (rerun with --seed {log.seed}), runtime {log.runtime}"


def when_options(topology: Topology) -> dict:
    """What an expectation's `when` is matched against: the options, health_check.<key>,
    app.<key> and client_ip."""
    return {**topology.as_claimed().options,
            **{f"health_check.{k}": v for k, v in topology.health_check.items()},
            **{f"app.{k}": v for k, v in topology.app.__dict__.items()},
            "client_ip": topology.client_ip}


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


class Case(NamedTuple):
    """One check: a topology, an expectation, and the runtime to run it on."""

    topology: Topology
    expectation: Expectation
    runtime: str


def _cases(config: pytest.Config, suite: str) -> list[tuple[Topology, Expectation]]:
    cases = []
    explicit = bool(config.getoption("--topology"))
    for topology in selected_topologies(config):
        if not (explicit or topology.in_suite(suite)):
            continue  # a sample made for other suites; --topology FILE runs it anyway
        for exp in expectations_for(topology.kind, topology.expect, when_options(topology),
                                    suite):
            cases.append((topology, exp))
    return cases


class ClusterPool:
    """Keeps one live cluster at a time: checks of one topology share it."""

    def __init__(self, runtime: str, log: CheckLog):
        self.runtime = runtime
        self.log = log
        self.current: tuple[Topology, object] | None = None
        self._carried: dict[int, tuple[Topology, Topology]] = {}  # keeps the originals alive

    def get(self, topology: Topology, runtime: str | None = None):
        runtime = runtime or self.runtime
        if self.current and self.current[0] is topology and \
                self.current[1].runtime == runtime:
            return self.current[1]
        self.close()
        cluster = RUNTIMES[runtime](topology)
        cluster.__enter__()
        self.current = (topology, cluster)
        self.log.versions.update(cluster.versions())
        self.log.topologies[topology.name] = topology.to_dict()
        return cluster

    def with_proxy_protocol(self, topology: Topology) -> Topology:
        """The topology with client_ip proxy-protocol in place of source, the same object for
        the same topology (so that its checks share one cluster)."""
        key = id(topology)
        if key not in self._carried:
            self._carried[key] = (topology, runnable(topology, "containers"))
        return self._carried[key][1]

    def close(self) -> None:
        if self.current:
            _, cluster = self.current
            self.current = None
            cluster.__exit__(None, None, None)


def run_check(case: Case | tuple[Topology, Expectation], pool: ClusterPool, log: CheckLog,
              history_dir: Path) -> None:
    topology, exp = case[0], case[1]
    runtime = getattr(case, "runtime", None) or pool.runtime
    scenario = SCENARIOS[exp.scenario]
    carried = carries_client_address(runtime, topology)
    planned = topology
    if not carried:
        # `source` addresses cannot cross this runtime (Docker's port publishing): the same
        # clients travel as PROXY protocol labels instead, and the balancer is told so; a
        # balancer that reads no PROXY protocol (Caddy 2.6) keeps `source` and loses them.
        topology = pool.with_proxy_protocol(topology)
    lost = not carried and topology is planned
    cluster = pool.get(topology, runtime)
    rng = random.Random(f"{log.seed}/{topology.name}/{exp.id}")
    history_dir.mkdir(parents=True, exist_ok=True)
    name = topology.name if cluster.runtime == "processes" else \
        f"{topology.name}.{cluster.runtime}"
    with HistoryWriter(history_dir / f"{name}.jsonl") as history:
        outcome = scenario.run(cluster, topology.as_claimed(), rng, exp.params,
                               sink=history.write,
                               check=exp.id)
    verdict = judge(exp.conditions, outcome.metrics, exp.min_samples, exp.samples,
                    addresses_carried=not lost, key=outcome.key)
    if lost:
        outcome.evidence.append(f"client addresses did not reach {topology.kind}: the "
                                f"{runtime} runtime cannot carry `source` addresses and "
                                f"{topology.kind} reads no PROXY protocol (checks keyed on "
                                f"addresses name the processes runtime)")
    elif not carried:
        outcome.evidence.append(f"client addresses travelled as PROXY protocol v1 labels: the "
                                f"{runtime} runtime cannot carry `source` addresses")
    log.record(_entry(topology, exp, cluster.runtime, verdict.verdict, verdict.reason,
                      verdict.samples, outcome.metrics, outcome.evidence))
    if verdict.verdict != PASS:
        head = "FAILED" if verdict.verdict == FAIL else "UNKNOWN (the run could not decide)"
        lines = [f"{topology.name}: {exp.id} {head}: {exp.title}",
                 f"  {verdict.reason}",
                 f"  judged {verdict.samples} requests of {scenario.name} "
                 f"(groups by {outcome.key}: {outcome.metrics.get('groups', 0):g})"]
        lines += [f"  evidence: {e}" for e in outcome.evidence]
        lines.append(f"  expected because {exp.citation['document']}: "
                     f"\"{exp.citation['quote'].strip()}\"")
        pytest.fail("\n".join(lines), pytrace=False)


def _entry(topology: Topology, exp: Expectation, runtime: str, verdict: str, reason: str,
           samples: int, metrics: dict, evidence: list[str]) -> dict:
    scenario = SCENARIOS[exp.scenario]
    return {
        "id": exp.id,
        "title": exp.title,
        "topology": topology.name,
        "balancer": topology.kind,
        "mode": topology.mode,
        "expected_mode": topology.expect,
        "runtime": runtime,
        "suite": exp.suite,
        "scenario": exp.scenario,
        "params": {**scenario.params, **exp.params},
        "verdict": verdict,
        "reason": reason,
        "samples": samples,
        "metrics": metrics,
        "threshold": [str(c) for c in exp.conditions],
        "source": exp.source,
        "citation": exp.citation,
        "evidence": evidence,
    }


def finish(session: pytest.Session, exitstatus: int) -> None:
    log = session.config.stash.get(LOG_KEY, None)
    report_dir = session.config.getoption("--report-dir", None)
    if log is not None and report_dir:
        report = log.to_report()
        report["complete"] = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
        write_json_atomic(Path(report_dir) / "report.json", report)
