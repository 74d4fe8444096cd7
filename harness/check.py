"""One check, without pytest: run a scenario against a live cluster, judge the expectation,
and return the verdict as data (`CheckResult`) for whoever reports it: the pytest plugin in
a serial run, a worker process (harness.parallel.worker) in a concurrent one.

`ClusterPool` keeps one live cluster at a time, so that consecutive checks of one topology
share it.
"""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from harness.analysis.verdicts import FAIL, PASS, judge
from harness.expectations import Expectation, expectations_for, requirements_for
from harness.history import HistoryWriter
from harness.report.checks import CheckLog
from harness.runtime import RUNTIMES, carries_client_address, runnable
from harness.scenarios import SCENARIOS
from harness.topology import Topology


class Case(NamedTuple):
    """One check: a topology, an expectation, and the runtime to run it on."""

    topology: Topology
    expectation: Expectation
    runtime: str


def case_key(topology: Topology, exp: Expectation, runtime: str) -> str:
    return f"{exp.suite}/{runtime}:{topology.name}:{exp.id}"


@dataclass
class CheckResult:
    """What a check yields: the report entry (None if it raised), the failure message
    (None if it passed), or the traceback of what it raised."""

    key: str
    entry: dict[str, Any] | None
    failure: str | None = None
    error: str | None = None
    wall_s: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    topologies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(**data)


class ClusterPool:
    """Keeps one live cluster at a time: checks of one topology share it."""

    def __init__(self, runtime: str, log: CheckLog):
        self.runtime = runtime
        self.log = log
        self.current: tuple[Topology, object] | None = None
        self._carried: dict[int, tuple[Topology, Topology]] = {}  # keeps the originals alive
        self.results: dict[str, CheckResult] = {}  # checks run elsewhere, to be reported

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


def _mode_spec(topology: Topology):
    from harness.balancers import get_adapter

    return get_adapter(topology.kind).modes.get(topology.mode)


def checks_for(topology: Topology, suite: str | None = None) -> list[Expectation]:
    """The checks that judge a topology in `suite`: the expectations of the mode it is
    expected to behave as, and for a user's own config the requirements too."""
    options = when_options(topology)
    found = expectations_for(topology.kind, topology.expect, options, suite) \
        if topology.expect else []
    if topology.config is not None:
        found += requirements_for(options, suite)
    return found


def when_options(topology: Topology) -> dict:
    """What an expectation's `when` is matched against: the options, health_check.<key>,
    app.<key> and client_ip."""
    return {**topology.as_claimed().options,
            **{f"health_check.{k}": v for k, v in topology.health_check.items()},
            **{f"app.{k}": v for k, v in topology.app.__dict__.items()},
            "client_ip": topology.client_ip}


def execute_check(case: Case, pool: ClusterPool, seed: int, history_dir: Path,
                  catch: bool = False) -> CheckResult:
    """Run `case` on a cluster from `pool`; with `catch`, what it raises (but Ctrl-C) becomes
    the result's `error` instead of propagating."""
    topology, exp, runtime = case
    began = time.monotonic()
    key = case_key(topology, exp, runtime)
    try:
        entry, failure = _run(topology, exp, runtime, pool, seed, history_dir)
    except Exception:
        if not catch:
            raise
        return CheckResult(key, None, error=traceback.format_exc(),
                           wall_s=time.monotonic() - began,
                           versions=dict(pool.log.versions),
                           topologies=dict(pool.log.topologies))
    wall = time.monotonic() - began
    entry["wall_s"] = round(wall, 3)
    return CheckResult(key, entry, failure, wall_s=wall, versions=dict(pool.log.versions),
                       topologies=dict(pool.log.topologies))


def _run(topology: Topology, exp: Expectation, runtime: str, pool: ClusterPool, seed: int,
         history_dir: Path) -> tuple[dict[str, Any], str | None]:
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
    rng = random.Random(f"{seed}/{topology.name}/{exp.id}")
    history_dir.mkdir(parents=True, exist_ok=True)
    with HistoryWriter(history_dir / f"{history_name(topology.name, cluster.runtime)}") as h:
        outcome = scenario.run(cluster, topology.as_claimed(), rng, exp.params,
                               sink=h.write, check=exp.id)
    spec = _mode_spec(topology)
    verdict = judge(exp.conditions, outcome.metrics, exp.min_samples, exp.samples,
                    addresses_carried=not lost, key=outcome.key,
                    keyed_by_address=bool(spec and spec.keyed_by_address))
    errors = [r.error for r in outcome.records if getattr(r, "error", None)]
    if errors and verdict.verdict != PASS:
        # Why requests failed is what a user needs when a verdict rests on too few answers
        # (a TLS frontend refusing the CA, a balancer that closed connections).
        common = max(set(errors), key=errors.count)
        outcome.evidence.insert(0, f"{len(errors)} of {len(outcome.records)} requests failed "
                                   f"at the transport, most often: {common}")
    if lost:
        outcome.evidence.append(f"client addresses did not reach {topology.kind}: the "
                                f"{runtime} runtime cannot carry `source` addresses and "
                                f"{topology.kind} reads no PROXY protocol (checks keyed on "
                                f"addresses name the processes runtime)")
    elif not carried:
        outcome.evidence.append(f"client addresses travelled as PROXY protocol v1 labels: the "
                                f"{runtime} runtime cannot carry `source` addresses")
    entry = _entry(topology, exp, cluster.runtime, verdict.verdict, verdict.reason,
                   verdict.samples, outcome.metrics, outcome.evidence)
    failure = None
    if verdict.verdict != PASS:
        head = "FAILED" if verdict.verdict == FAIL else "UNKNOWN (the run could not decide)"
        lines = [f"{topology.name}: {exp.id} {head}: {exp.title}",
                 f"  {verdict.reason}",
                 f"  judged {verdict.samples} requests of {scenario.name} "
                 f"(groups by {outcome.key}: {outcome.metrics.get('groups', 0):g})"]
        lines += [f"  evidence: {e}" for e in outcome.evidence]
        lines.append(f"  expected because {exp.citation['document']}: "
                     f"\"{exp.citation['quote'].strip()}\"")
        failure = "\n".join(lines)
    return entry, failure


def history_name(topology: str, runtime: str) -> str:
    """The history file of a topology's checks: <topology>[.<runtime>].jsonl"""
    return f"{topology}.jsonl" if runtime == "processes" else f"{topology}.{runtime}.jsonl"


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
