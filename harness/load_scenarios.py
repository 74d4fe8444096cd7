"""Load scenarios: a Locust population (a profile) driven through a cluster for a while,
optionally with one fault, judged by skew, stickiness and failover metrics.

They plug into the same registry as the scripted scenarios (harness.scenarios.SCENARIOS),
so expectations, verdicts and reports treat them alike.
"""

from __future__ import annotations

import random
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis import load as lm
from harness.analysis import metrics as m
from harness.history import FaultRecord, RequestRecord
from harness.outcome import SUMMARY_METRICS, DrivenScenario, Outcome
from harness.runtime import reaper
from harness.runtime.cluster import Cluster
from harness.runtime.store import NAME as STORE
from harness.topology import Topology

PROFILES = Path(__file__).resolve().parents[1] / "fixtures" / "profiles"
SKEW_METRICS = ("load_cv", "load_max_over_mean", "session_cv", "busiest_replica_share",
                "max_users_per_ip", "busiest_ip_share")
FAULT_METRICS = ("affected_sessions", "affected_state_loss_share", "repinned_share",
                 "repinned_state_loss_share",
                 "repin_p50_s", "repin_max_s", "errors_after_fault")
SCALE_METRICS = ("old_sessions_moved_to_new", "new_sessions_after_add",
                 "new_sessions_on_new_share", "new_replica_request_share_after")
FAULT_OPS = ("", "kill", "pause", "add")


def _replica(topology: Topology, target: str) -> str:
    """`target` as a replica id; `r<n>` also names the n-th replica, for topologies whose
    ids are not r1, r2, ... (a user's config names its servers)."""
    ids = topology.replica_ids
    if target in ids or not re.fullmatch(r"r[1-9][0-9]?", target):
        return target
    n = int(target[1:])
    return ids[n - 1] if n <= len(ids) else target


@dataclass(frozen=True)
class LoadScenario(DrivenScenario):

    def run(self, cluster: Cluster, topology: Topology, rng: random.Random,
            params: dict[str, Any], sink: Callable[[RequestRecord], None] | None = None,
            check: str = "") -> Any:
        from harness.traffic.load import FaultStep, run_load
        from harness.traffic.profile import load_profile

        p = {**self.params, **params}
        if p["fault"] not in FAULT_OPS:
            raise ValueError(f"fault must be one of {FAULT_OPS}, got {p['fault']!r}")
        profile = load_profile(PROFILES / f"{p['profile']}.yaml")
        faults = []
        if p["fault"]:
            target = None if p["fault"] == "add" else _replica(topology, p["target"])
            faults.append(FaultStep(p["fault_at"], p["fault"], target))
        original = list(cluster.replica_ids)
        workdir = Path(tempfile.mkdtemp(prefix="stickler-load-"))
        reaper.claim_dir(workdir)  # swept by a later run if this one is SIGKILLed
        try:
            result = run_load(cluster, profile, duration=p["duration"],
                              seed=rng.randrange(2**31), workdir=workdir,
                              processes=p["processes"], faults=faults)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            reaper.untrack_dir(workdir)
            _restore(cluster, original)
        requests = [r for r in result.records if isinstance(r, RequestRecord)]
        for r in requests:
            r.check = check
            if sink:
                sink(r)
        values = load_metrics(result.records, original)
        values["users"] = result.users
        values["locust_rps"] = result.stats.get("rps", 0.0) if result.stats else 0.0
        evidence = m.switch_examples(lm.cookie_keeping(requests))
        for event in result.records:
            if isinstance(event, FaultRecord) and event.op == "add":
                shares = lm.share_over_time(requests, event.target, event.t)
                evidence.append(f"share of requests served by the new replica {event.target} "
                                f"in 2 s windows after it joined: "
                                f"{', '.join(f'{s:.2f}' for s in shares)}")
        return Outcome(requests, values, self.key, evidence)


def load_metrics(records: list, original_replicas: list[str]) -> dict[str, float]:
    """Every load metric of a merged history (requests and fault records). Fault and
    scale-up metrics are -1 when the run had no such event."""
    requests = [r for r in records if isinstance(r, RequestRecord)]
    # Affinity is judged on sessions that return cookies; load counts every request.
    kept = lm.cookie_keeping(requests)
    values: dict[str, float] = m.summarize(kept, "session")
    values.update(lm.skew_metrics(requests, original_replicas))
    values["total_requests"] = len(requests)  # droppers' requests too
    values.update(dict.fromkeys(FAULT_METRICS, -1.0) | dict.fromkeys(SCALE_METRICS, -1.0))
    for event in (r for r in records if isinstance(r, FaultRecord)):
        if event.op in ("kill", "pause"):
            values.update(lm.fault_metrics(kept, event))
        elif event.op == "add":
            values.update(lm.scale_up_metrics(kept, event))
    return values


def _restore(cluster: Cluster, original: list[str]) -> None:
    """Put the cluster back as it was, so later checks of the topology see what they expect."""
    for rid in list(cluster.replica_ids):
        if rid not in original:
            cluster.remove_replica(rid)
    store = getattr(cluster, "store", None)
    for rid in original + ([STORE] if store is not None else []):
        part = store if rid == STORE else getattr(cluster, "replicas", {}).get(rid)
        if hasattr(cluster, "alive") and not cluster.alive(rid):
            cluster.restart(rid)
        elif part is not None and part.paused:
            cluster.resume(rid)
        if not getattr(part, "connected", True):
            cluster.reconnect(rid)
        if rid in getattr(getattr(cluster, "layout", None), "draining", ()):
            cluster.undrain(rid)


_BASE = {"profile": "smoke", "duration": 12, "processes": 1, "fault": "", "fault_at": 5.0,
         "target": "r1"}
LOAD_METRICS = (SUMMARY_METRICS + SKEW_METRICS + FAULT_METRICS + SCALE_METRICS
            + ("users", "locust_rps", "total_requests"))


def _load(name: str, summary: str, **params: Any) -> LoadScenario:
    return LoadScenario(name, summary, {**_BASE, **params}, LOAD_METRICS)


LOAD_SCENARIOS = (
    _load("load", "a Locust population from fixtures/profiles/<profile>.yaml for `duration` "
          "seconds, with an optional fault (kill, pause or add) at `fault_at` seconds"),
)
