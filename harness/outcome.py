"""What running a scenario yields, shared by the scripted and the load scenarios, and the
shape of a scenario that drives its traffic itself (load, replay, failover)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.history import RequestRecord

if TYPE_CHECKING:
    from harness.runtime.cluster import Cluster
    from harness.topology import Topology

# Metrics every scenario reports (harness.analysis.metrics.summarize).
SUMMARY_METRICS = ("requests", "served", "errors", "unserved", "non_2xx", "groups",
                   "judged_requests", "min_stickiness", "mean_stickiness", "groups_switched",
                   "switches", "state_losses", "groups_with_state_loss", "replicas_used",
                   "max_replicas_per_group", "max_load_share", "client_ip_mismatches",
                   "groups_never_served")


@dataclass
class Outcome:
    records: list[RequestRecord]
    metrics: dict[str, float]
    key: str  # what a "group" is in the metrics: session, client_ip or prefix24
    evidence: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DrivenScenario:
    """A scenario with its own way of driving traffic: a name, a summary, default `params`,
    the `metrics` it computes and what a group is (`key`). Subclasses implement `run`."""

    name: str
    summary: str
    params: dict[str, Any]
    metrics: tuple[str, ...]
    key: str = "session"

    def run(self, cluster: Cluster, topology: Topology, rng: random.Random,
            params: dict[str, Any], sink: Callable[[Any], None] | None = None,
            check: str = "") -> Outcome:
        raise NotImplementedError
