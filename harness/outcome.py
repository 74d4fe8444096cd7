"""What running a scenario yields, shared by the scripted and the load scenarios."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.history import RequestRecord

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
