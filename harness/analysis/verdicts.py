"""Verdicts: an expectation's conditions judged against a scenario's metrics (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.expectations import Condition

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"


@dataclass
class Verdict:
    verdict: str
    samples: int
    failed: list[str] = field(default_factory=list)
    reason: str = ""


def judge(conditions: tuple[Condition, ...] | list[Condition], metrics: dict[str, float],
          min_samples: int, samples_metric: str = "judged_requests", *,
          addresses_carried: bool = True, key: str = "session",
          keyed_by_address: bool = False) -> Verdict:
    """`unknown` when the run has too few samples, or errors, to decide either way, or when
    the balancer saw other client addresses than the harness sent. `addresses_carried`
    False: the runtime could not get client addresses to the balancer at all, so address
    mismatches are expected, and a check grouped by address cannot be judged; nor can any
    check of a balancer that picks servers by the client address (`keyed_by_address`):
    every client looked alike to it."""
    samples = int(metrics.get(samples_metric, 0))
    if samples < min_samples:
        return Verdict(UNKNOWN, samples, reason=f"only {samples} samples ({samples_metric}); "
                       f"this check needs at least {min_samples} to decide")
    if metrics.get("errors", 0) > 0.05 * max(metrics.get("requests", 0), 1):
        return Verdict(UNKNOWN, samples, reason=f"{metrics['errors']:g} of "
                       f"{metrics['requests']:g} requests failed at the transport; the run "
                       f"cannot judge affinity")
    if not addresses_carried and key != "session":
        return Verdict(UNKNOWN, samples, reason=f"this check groups clients by {key}, and "
                       f"their addresses could not reach the balancer on this runtime")
    if not addresses_carried and keyed_by_address:
        return Verdict(UNKNOWN, samples, reason="the balancer picks servers by the client "
                       "address, and client addresses could not reach it on this runtime: "
                       "every client looked alike to it")
    if addresses_carried and metrics.get("client_ip_mismatches", 0) > 0:
        return Verdict(UNKNOWN, samples, reason=f"the balancer reported "
                       f"{metrics['client_ip_mismatches']:g} requests as coming from another "
                       f"address than the harness sent them from; address checks are void")
    failed = [f"{c} ({c.measured(metrics)})" for c in conditions
              if not c.holds(metrics)]
    if failed:
        return Verdict(FAIL, samples, failed, reason="; ".join(failed))
    return Verdict(PASS, samples)
