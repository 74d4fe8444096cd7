"""Metrics of a load run (pure): skew across replicas, what a fault did to the sessions
pinned to its target, and where sessions go after a scale-up."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from statistics import fmean, median, pstdev

from harness.analysis.metrics import group, served, state_lost
from harness.history import FaultRecord, RequestRecord


def cookie_keeping(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """Requests of sessions that return cookies (drop the users that never do)."""
    groups = group(records)
    return [r for rs in groups.values() if len(rs) < 2 or any(x.cookies_sent for x in rs[1:])
            for r in rs]


def cv(values: list[float]) -> float:
    """Coefficient of variation: 0 is perfectly even."""
    mean = fmean(values) if values else 0.0
    return pstdev(values) / mean if mean else 0.0


def skew_metrics(records: Iterable[RequestRecord], replicas: Iterable[str]) -> dict[str, float]:
    """How evenly requests and sessions spread over `replicas` (those present all along)."""
    ok = served(records)
    ids = list(replicas)
    requests = Counter(r.replica for r in ok)
    # A session belongs to the replica that served most of its requests.
    owners = Counter(Counter(r.replica for r in rs).most_common(1)[0][0]
                     for rs in group(ok).values())
    req = [requests.get(i, 0) for i in ids]
    ses = [owners.get(i, 0) for i in ids]
    per_ip = Counter(r.client_ip for r in ok)
    users_by_ip = _users_by_ip(ok)
    return {
        "load_cv": cv(req),
        "load_max_over_mean": max(req) / fmean(req) if ids and fmean(req) else 0.0,
        "session_cv": cv(ses),
        "busiest_replica_share": max(req) / sum(req) if sum(req) else 0.0,
        "max_users_per_ip": max((len(u) for u in users_by_ip.values()), default=0),
        "busiest_ip_share": max(per_ip.values()) / len(ok) if ok else 0.0,
    }


def _users_by_ip(records: list[RequestRecord]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in records:
        out.setdefault(r.client_ip, set()).add(r.user)
    return out


def fault_metrics(records: Iterable[RequestRecord], fault: FaultRecord) -> dict[str, float]:
    """What a kill or pause of `fault.target` did to the sessions pinned to it.

    Affected: sessions whose last served request before the fault was on the target and that
    sent requests after it. Re-pinned: later served (2xx) by another replica; the re-pin time
    runs from the fault to that first response. "The fault" starts when it began (a container
    kill takes a few hundred ms to complete, and requests in between are already re-pinned).
    """
    records = list(records)
    start = fault.t if fault.began is None else min(fault.began, fault.t)
    affected, lost, repin_times, repinned_lost = 0, 0, [], 0
    errors_after = sum(1 for r in records if r.t >= fault.t and (r.error or r.status is None
                                                                  or r.status >= 500))
    for rs in group(records).values():
        before = [r for r in rs if r.t < start and r.replica and not r.error]
        after = [r for r in rs if r.t >= start]
        if not before or not after or before[-1].replica != fault.target:
            continue
        affected += 1
        if any(state_lost(r) for r in after if r.replica):
            lost += 1
        moved = next((r for r in after if r.replica and r.replica != fault.target
                      and r.status is not None and 200 <= r.status < 300), None)
        if moved:
            repin_times.append(moved.t + moved.duration - start)
            repinned_lost += any(state_lost(r) for r in after if r.t >= moved.t and r.replica)
    return {
        "affected_sessions": affected,
        "affected_state_loss_share": lost / affected if affected else 0.0,
        "repinned_share": len(repin_times) / affected if affected else 0.0,
        # Of the sessions served elsewhere afterwards, the share that found their state gone.
        "repinned_state_loss_share": repinned_lost / len(repin_times) if repin_times else 0.0,
        "repin_p50_s": median(repin_times) if repin_times else -1.0,
        "repin_max_s": max(repin_times) if repin_times else -1.0,
        "errors_after_fault": errors_after,
    }


def share_over_time(records: Iterable[RequestRecord], replica: str, start: float,
                    window: float = 2.0) -> list[float]:
    """The share of requests `replica` served in consecutive windows from `start` on."""
    counts: dict[int, list[int]] = {}
    for r in served(records):
        if r.t >= start:
            slot = counts.setdefault(int((r.t - start) // window), [0, 0])
            slot[0] += r.replica == replica
            slot[1] += 1
    return [counts[i][0] / counts[i][1] if i in counts else 0.0
            for i in range(max(counts, default=-1) + 1)]


def scale_up_metrics(records: Iterable[RequestRecord], added: FaultRecord) -> dict[str, float]:
    """Where sessions go once `added.target` joins: existing sessions vs new ones.

    Old sessions got their first answer before the reload began; new ones started after it
    was complete; sessions that started during the reload count as neither.
    """
    began = added.began if added.began is not None else added.t
    old_moved, new_sessions, new_on_new = 0, 0, 0
    after = [r for r in served(records) if r.t >= added.t]
    for rs in group(served(records)).values():
        if rs[0].t + rs[0].duration < began:
            old_moved += any(r.replica == added.target for r in rs if r.t >= began)
        elif rs[0].t >= added.t:
            new_sessions += 1
            new_on_new += rs[0].replica == added.target
    return {
        "old_sessions_moved_to_new": old_moved,
        "new_sessions_after_add": new_sessions,
        "new_sessions_on_new_share": new_on_new / new_sessions if new_sessions else 0.0,
        "new_replica_request_share_after": (sum(1 for r in after if r.replica == added.target)
                                            / len(after) if after else 0.0),
    }
