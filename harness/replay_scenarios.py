"""Replay scenarios: a recorded trace (fixtures/traces/<trace>.jsonl) replayed through a
cluster, judged by which sessions broke and how (harness.analysis.replay).

They plug into the scenario registry (harness.scenarios.SCENARIOS), so expectations,
verdicts and reports treat them like the others; `suites/test_replay.py` runs them.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis import metrics as m
from harness.analysis.replay import broken_sessions, replay_summary
from harness.history import RequestRecord
from harness.outcome import SUMMARY_METRICS, DrivenScenario, Outcome
from harness.runtime.cluster import Cluster
from harness.topology import Topology

TRACES = Path(__file__).resolve().parents[1] / "fixtures" / "traces"
REPLAY_SUMMARY = ("sessions", "broken_sessions", "split_sessions", "state_lost_sessions",
                  "error_sessions", "cookie_sessions_split", "lag_p99_s")


@functools.lru_cache(maxsize=4)
def load_trace(name: str) -> tuple:
    from harness.trace.io import read_trace

    with read_trace(TRACES / f"{name}.jsonl") as reader:
        return tuple(reader)


@dataclass(frozen=True)
class ReplayScenario(DrivenScenario):

    def run(self, cluster: Cluster, topology: Topology, rng: random.Random,
            params: dict[str, Any], sink: Callable[[RequestRecord], None] | None = None,
            check: str = "") -> Outcome:
        from harness.trace.replay import Replayer, parse_speed
        from harness.trace.schedule import LagStats

        p = {**self.params, **params}
        trace = load_trace(p["trace"])

        def record(r: RequestRecord) -> None:
            r.check = check
            if sink:
                sink(r)

        result = Replayer(cluster.url, speed=parse_speed(str(p["speed"])),
                          concurrency=p["concurrency"], transport=topology.client_ip,
                          tls_ca=topology.tls_ca,
                          sink=record).run(list(trace))
        broken = broken_sessions(result.records)
        values = m.summarize(result.records, self.key)
        values.update(replay_summary(result.records, broken))
        values["cookie_sessions_split"] = sum(1 for b in broken
                                              if b.kind == "split" and not b.cookieless)
        values["lag_p99_s"] = LagStats(result.lags).percentile(99)
        evidence = [f"session {b.session} broke at request {b.seq + 1} of {b.requests} "
                    f"({b.kind}): {b.detail}" for b in broken[:3]]
        return Outcome(result.records, values, self.key, evidence)


REPLAY_SCENARIOS = (
    ReplayScenario("trace-replay",
                   "a recorded trace replayed at `speed` (max: as fast as possible) with "
                   "live cookie jars; judged by the sessions that broke",
                   {"trace": "shopping-day", "speed": "max", "concurrency": 32},
                   SUMMARY_METRICS + tuple(k for k in REPLAY_SUMMARY
                                           if k not in SUMMARY_METRICS)),
)
