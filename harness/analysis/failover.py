"""Failover metrics (pure): what a fault on the replica sessions are pinned to did to them.

The failover scenario drives each session in three phases, told apart by the suffix of the
records' scenario: `:before` (pin the sessions), `:during` (the target is dead or hung) and
`:back` (the target was restarted or resumed). Times are the records' own (seconds from the
scenario's start); the fault and recovery times come from the scenario.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from harness.analysis.metrics import group, names_replica, set_cookies_named, state_lost
from harness.history import RequestRecord

BEFORE, DURING, BACK = ":before", ":during", ":back"
STABLE_RUN = 2  # requests in a row on one new replica, to the end of the phase: re-pinned

FAILOVER_METRICS = (
    "affected_sessions", "unaffected_sessions", "during_requests", "failed_requests",
    "failed_share", "failed_per_session_max", "transport_errors", "status_502", "status_503",
    "status_504",
    "failed_gets", "failed_posts", "served_at_end_share", "failed_duration_max",
    "during_duration_max",
    "served_by_target_during", "repinned_share", "repin_requests_max", "repin_s_max",
    "new_cookie_share", "state_lost_share", "unaffected_moved", "unaffected_failed",
    "returned_share", "return_s_max", "back_failed", "back_state_loss_share",
)


@dataclass(frozen=True)
class FaultWindow:
    target: str  # the replica that was killed or paused, or the shared session store
    fault_t: float  # when the fault was complete
    recover_t: float  # when the restart or resume was complete
    shared: bool = False  # the target serves every session (the store): all are affected

    def affects(self, pinned_to: str) -> bool:
        return self.shared or pinned_to == self.target


def phase(records: Iterable[RequestRecord], suffix: str) -> list[RequestRecord]:
    return [r for r in records if r.scenario.endswith(suffix)]


def ok(r: RequestRecord) -> bool:
    """A 2xx answer from a replica: what the user wanted."""
    return r.error is None and r.replica is not None and 200 <= (r.status or 0) < 300


def pinned(before: Iterable[RequestRecord]) -> dict[str, str]:
    """Each session's replica: the one that served its last successful request."""
    out = {}
    for session, rs in group(before).items():
        served = [r for r in rs if ok(r)]
        if served:
            out[session] = served[-1].replica or ""
    return out


def choose_target(pins: dict[str, str]) -> str:
    """The replica with the most sessions pinned to it (the first by name on a tie)."""
    counts = Counter(pins.values())
    if not counts:
        raise ValueError("no session was served before the fault; nothing to fail over")
    return min(counts, key=lambda rid: (-counts[rid], rid))


def stable_start(rs: list[RequestRecord], target: str) -> int | None:
    """Index of the first request of the run that ends `rs` on one replica other than
    `target` (at least STABLE_RUN long, every answer 2xx), or None."""
    if not rs or not ok(rs[-1]) or rs[-1].replica == target:
        return None
    replica, i = rs[-1].replica, len(rs) - 1
    while i > 0 and ok(rs[i - 1]) and rs[i - 1].replica == replica:
        i -= 1
    return i if len(rs) - i >= min(STABLE_RUN, len(rs)) else None


def _served_at_end(rs: list[RequestRecord]) -> bool:
    """Were the last third of a session's requests during the outage all answered 2xx (by
    whichever replica)? The user is being served again before the server returns."""
    tail = rs[-max(1, len(rs) // 3):]
    return bool(tail) and all(ok(r) for r in tail)


def replaced_cookie(rs: list[RequestRecord], cookie: str, new: str) -> bool:
    """Did the balancer hand the session a new affinity cookie? One that names the `new`
    replica (HAProxy, the reference proxy), or, where values are opaque (Caddy's HMAC of
    the upstream's address), any value other than the one the session held at the fault."""
    held = rs[0].cookies_sent.get(cookie) if rs else None
    return any(names_replica(v, new) or (held is not None and v != held)
               for r in rs for v in set_cookies_named(r, cookie))


def failover_metrics(records: Iterable[RequestRecord], window: FaultWindow,
                     cookie: str = "") -> dict[str, float]:
    """What the fault did to the sessions pinned to `window.target` (affected) and to the
    others (unaffected). `cookie` is the balancer's affinity cookie, if it sets one."""
    records = list(records)
    pins = pinned(phase(records, BEFORE))
    during = group(phase(records, DURING))
    back = group(phase(records, BACK))
    affected = [s for s, rid in pins.items() if window.affects(rid)]
    unaffected = [s for s, rid in pins.items() if not window.affects(rid)]
    hit = [r for s in affected for r in during.get(s, [])]
    failed = [r for r in hit if not ok(r)]
    repin_requests, repin_s, new_cookie = [], [], 0
    for s in affected:
        rs = during.get(s, [])
        start = stable_start(rs, window.target)
        if start is None:
            continue
        repin_requests.append(start)
        repin_s.append(rs[start].t + rs[start].duration - window.fault_t)
        new_cookie += bool(cookie) and replaced_cookie(rs, cookie, rs[start].replica or "")
    returned, return_s = 0, []
    for s in affected:
        rs = back.get(s, [])
        if rs and ok(rs[-1]) and rs[-1].replica == window.target:
            returned += 1
            first = next(r for r in rs if ok(r) and r.replica == window.target)
            return_s.append(first.t + first.duration - window.recover_t)
    others = [r for s in unaffected for r in during.get(s, []) + back.get(s, [])]
    n = len(affected)
    return {
        "affected_sessions": n,
        "unaffected_sessions": len(unaffected),
        "during_requests": len(hit),
        "failed_requests": len(failed),
        "failed_share": len(failed) / len(hit) if hit else 0.0,
        "failed_per_session_max": max((sum(1 for r in during.get(s, []) if not ok(r))
                                       for s in affected), default=0),
        "transport_errors": sum(1 for r in failed if r.error is not None),
        "status_502": sum(1 for r in failed if r.status == 502),
        "status_503": sum(1 for r in failed if r.status == 503),
        "status_504": sum(1 for r in failed if r.status == 504),
        "failed_gets": sum(1 for r in failed if r.method == "GET"),
        "failed_posts": sum(1 for r in failed if r.method == "POST"),
        "failed_duration_max": max((r.duration for r in failed), default=0.0),
        "during_duration_max": max((r.duration for r in hit), default=0.0),
        "served_by_target_during": sum(1 for r in hit if ok(r) and r.replica == window.target),
        "repinned_share": len(repin_requests) / n if n else 0.0,
        "served_at_end_share": sum(1 for s in affected if _served_at_end(during.get(s, [])))
        / n if n else 0.0,
        "repin_requests_max": max(repin_requests, default=-1),
        "repin_s_max": max(repin_s, default=-1.0),
        "new_cookie_share": new_cookie / len(repin_requests) if repin_requests else 0.0,
        "state_lost_share": sum(1 for s in affected
                                if any(state_lost(r) for r in during.get(s, []) if ok(r))) / n
        if n else 0.0,
        "unaffected_moved": sum(1 for s in unaffected
                                if any(ok(r) and r.replica != pins[s]
                                       for r in during.get(s, []) + back.get(s, []))),
        "unaffected_failed": sum(1 for r in others if not ok(r)),
        "returned_share": returned / n if n else 0.0,
        "return_s_max": max(return_s, default=-1.0),
        "back_failed": sum(1 for rs in back.values() for r in rs if not ok(r)),
        "back_state_loss_share": sum(1 for s in affected
                                     if any(state_lost(r) for r in back.get(s, []) if ok(r)))
        / n if n else 0.0,
    }


def session_paths(records: Iterable[RequestRecord], window: FaultWindow,
                  limit: int = 4) -> list[str]:
    """Evidence: each affected session's answers phase by phase, e.g.
    `s3: r2 r2 r2 | 503 r1 r1 r1 | r1 r1` (a replica id, or the status or error)."""
    records = list(records)
    pins = pinned(phase(records, BEFORE))
    out = []
    for s in [s for s, rid in pins.items() if window.affects(rid)][:limit]:
        parts = []
        for suffix in (BEFORE, DURING, BACK):
            rs = group(phase(records, suffix)).get(s, [])
            parts.append(" ".join(_answer(r) for r in rs))
        out.append(f"session {s} (pinned to {pins[s]}): {' | '.join(parts)}")
    return out


def _answer(r: RequestRecord) -> str:
    if r.error is not None:
        return "error"
    if ok(r):
        return (r.replica or "") + ("!" if state_lost(r) else "")
    return str(r.status)
