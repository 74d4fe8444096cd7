"""The glue between pytest and the pipeline: options, the cluster pool, checks and the report.

suites/conftest.py re-exports these hooks and fixtures. A check runs a scenario against a
live cluster, judges an expectation, records the verdict for report.json, and fails the test
with the evidence and the citation when the balancer does not do what its docs say.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from harness.analysis.verdicts import FAIL, PASS, judge
from harness.expectations import Expectation, expectations_for
from harness.history import HistoryWriter
from harness.report.checks import CheckLog, write_json_atomic
from harness.runtime import RUNTIMES
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
    group.addoption("--runtime", default="processes", choices=sorted(RUNTIMES),
                    help="how clusters are started")
    group.addoption("--seed", type=int, default=None,
                    help="seed for all traffic plans (default: random, printed and reported)")
    group.addoption("--report-dir", default=None, metavar="DIR",
                    help="write report.json and histories here")


def selected_topologies(config: pytest.Config) -> list[Topology]:
    files = config.getoption("--topology") or sorted(str(p) for p in TOPOLOGY_DIR.glob("*.yaml"))
    topologies = [load_topology(f) for f in files]
    kinds = config.getoption("--balancer")
    return [t for t in topologies if not kinds or t.kind in kinds]


def configure(config: pytest.Config) -> None:
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


def generate_cases(metafunc: pytest.Metafunc, suite: str) -> None:
    """Parametrize `case` with every (topology, expectation) pair of this suite."""
    if "case" not in metafunc.fixturenames:
        return
    cases, ids = [], []
    explicit = bool(metafunc.config.getoption("--topology"))
    for topology in selected_topologies(metafunc.config):
        if not (explicit or topology.in_suite(suite)):
            continue  # a sample made for other suites; --topology FILE runs it anyway
        for exp in expectations_for(topology.kind, topology.expect, when_options(topology),
                                    suite):
            cases.append((topology, exp))
            ids.append(f"{topology.name}:{exp.id}")
    metafunc.parametrize("case", cases, ids=ids)


class ClusterPool:
    """Keeps one live cluster at a time: checks of one topology share it."""

    def __init__(self, runtime: str, log: CheckLog):
        self.runtime = runtime
        self.log = log
        self.current: tuple[Topology, object] | None = None

    def get(self, topology: Topology):
        if self.current and self.current[0] is topology:
            return self.current[1]
        self.close()
        cluster = RUNTIMES[self.runtime](topology)
        cluster.__enter__()
        self.current = (topology, cluster)
        self.log.versions.update(cluster.versions())
        self.log.topologies[topology.name] = topology.to_dict()
        return cluster

    def close(self) -> None:
        if self.current:
            _, cluster = self.current
            self.current = None
            cluster.__exit__(None, None, None)


def run_check(case: tuple[Topology, Expectation], pool: ClusterPool, log: CheckLog,
              history_dir: Path) -> None:
    topology, exp = case
    cluster = pool.get(topology)
    scenario = SCENARIOS[exp.scenario]
    rng = random.Random(f"{log.seed}/{topology.name}/{exp.id}")
    history_dir.mkdir(parents=True, exist_ok=True)
    with HistoryWriter(history_dir / f"{topology.name}.jsonl") as history:
        outcome = scenario.run(cluster, topology.as_claimed(), rng, exp.params,
                               sink=history.write,
                               check=exp.id)
    verdict = judge(exp.conditions, outcome.metrics, exp.min_samples, exp.samples)
    log.record({
        "id": exp.id,
        "title": exp.title,
        "topology": topology.name,
        "balancer": topology.kind,
        "mode": topology.mode,
        "expected_mode": topology.expect,
        "runtime": cluster.runtime,
        "suite": exp.suite,
        "scenario": exp.scenario,
        "params": {**scenario.params, **exp.params},
        "verdict": verdict.verdict,
        "reason": verdict.reason,
        "samples": verdict.samples,
        "metrics": outcome.metrics,
        "threshold": [str(c) for c in exp.conditions],
        "source": exp.source,
        "citation": exp.citation,
        "evidence": outcome.evidence,
    })
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


def finish(session: pytest.Session, exitstatus: int) -> None:
    log = session.config.stash.get(LOG_KEY, None)
    report_dir = session.config.getoption("--report-dir", None)
    if log is not None and report_dir:
        report = log.to_report()
        report["complete"] = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
        write_json_atomic(Path(report_dir) / "report.json", report)
