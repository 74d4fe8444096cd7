"""Scenarios: named, parameterised traffic patterns and the metrics they yield.

An expectation names a scenario and asserts on its metrics, so a check is data:
(topology, scenario + params, conditions, citation). Each scenario builds seeded session plans
(pure), has the driver send them to a cluster (I/O), and computes metrics (pure).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.analysis import metrics as m
from harness.failover_scenarios import FAILOVER_SCENARIOS
from harness.history import RequestRecord
from harness.load_scenarios import LOAD_SCENARIOS
from harness.outcome import SUMMARY_METRICS, Outcome
from harness.replay_scenarios import REPLAY_SCENARIOS
from harness.runtime.cluster import Cluster
from harness.topology import Topology
from harness.traffic import plans
from harness.traffic.scripted import Driver

COOKIE_METRICS = ("cookie_reissued", "cookie_set_responses", "cookie_set_unserved",
                  "cookie_distinct_values",
                  "cookie_reached_app",
                  "requests_with_cookie", "cookie_set_private_share", "cookie_set_no_cache",
                  "cookie_set_with_expiry",
                  "cookie_names_replica_share", "app_saw_server_prefix")
FIRST_METRICS = ("first_request_moved", "first_request_moved_share")
REPLAY_METRICS = ("replayed_requests", "cache_hits", "cache_hit_share", "hits_with_src",
                  "cache_misses", "cache_bypasses", "max_misses_per_session",
                  "replay_failed_deliveries", "preferred_unavailable", "post_on_leader_share",
                  "on_move_target_after_move", "stale_share_after_move",
                  "replayed_elsewhere_share", "region_share", "replays_refused_too_large")
DRAIN_METRICS = ("drained_sessions", "drained_kept_share", "new_sessions", "new_on_drained")
REMAP_METRICS = ("remap_keys", "remapped_share", "moved_to_new", "moved_between_old",
                 "new_replica_share")
DriveFn = Callable[[Cluster, list[plans.SessionPlan], Callable[[str], Driver]],
                   list[RequestRecord]]


def _drive_once(cluster: Cluster, session_plans: list[plans.SessionPlan],
                driver: Callable[[str], Driver]) -> list[RequestRecord]:
    return driver("").run(session_plans)


def _with_replica_down(drive: DriveFn, replica: str) -> DriveFn:
    """Run `drive` with `replica` killed, and bring it back (empty memory) afterwards."""
    def run(cluster: Cluster, session_plans, driver) -> list[RequestRecord]:
        cluster.kill(replica)
        try:
            return drive(cluster, session_plans, driver)
        finally:
            cluster.restart(replica)
    return run


def _drive_scale_up(cluster: Cluster, session_plans: list[plans.SessionPlan],
                    driver: Callable[[str], Driver]) -> list[RequestRecord]:
    """The same clients before and after a replica is added; the cluster is put back after."""
    before = driver(":before").run(session_plans)
    added = cluster.add_replica()
    try:
        after = driver(":after").run(session_plans)
    finally:
        cluster.remove_replica(added)
    return before + after


def _going_on(session_plans: list[plans.SessionPlan],
              before: list[RequestRecord]) -> list[plans.SessionPlan]:
    """The same sessions again, with the cookies and carts they ended `before` with."""
    jars = m.final_cookies(before)
    carts = {r.session: r.cart_seen or 0 for r in before}  # records are in session order
    return [dataclasses.replace(p, initial_cookies=jars.get(p.session, {}),
                                cart_before=carts.get(p.session, 0)) for p in session_plans]


def _phases(records: list[RequestRecord]) -> tuple[list[RequestRecord], list[RequestRecord]]:
    return ([r for r in records if r.scenario.endswith(":before")],
            [r for r in records if r.scenario.endswith(":after")])


def _drive_scale_up_sessions(cluster: Cluster, session_plans: list[plans.SessionPlan],
                             driver: Callable[[str], Driver]) -> list[RequestRecord]:
    """Sessions run; a replica is added; they go on with their cookies and carts; the
    replica is removed again afterwards."""
    before = driver(":before").run(session_plans)
    added = cluster.add_replica()
    try:
        after = driver(":after").run(_going_on(session_plans, before))
    finally:
        cluster.remove_replica(added)
    return before + after


def _drive_drain(cluster: Cluster, session_plans: list[plans.SessionPlan],
                 driver: Callable[[str], Driver]) -> list[RequestRecord]:
    """Half the sessions run; the replica most of them ended on is drained; they go on
    (with their cookies) beside the other half, new sessions; the replica is undrained."""
    half = len(session_plans) // 2
    old, new = session_plans[:half], session_plans[half:]
    before = driver(":before").run(old)
    target = m.drain_target(before)
    cluster.drain(target)
    try:
        after = driver(":after").run(_going_on(old, before) + new)
    finally:
        cluster.undrain(target)
    return before + after


def _drain_extra(records: list[RequestRecord], p: dict, t: Topology) -> dict[str, float]:
    before, after = _phases(records)
    return m.drain_metrics(before, after, m.drain_target(before))


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    params: dict[str, Any]
    metrics: tuple[str, ...]
    build: Callable[[random.Random, dict[str, Any], Topology], list[plans.SessionPlan]]
    key: str = "session"
    extra: Callable[[list[RequestRecord], dict[str, Any], Topology], dict[str, float]] | None \
        = None
    drive: DriveFn = _drive_once

    def run(self, cluster: Cluster, topology: Topology, rng: random.Random,
            params: dict[str, Any], sink: Callable[[RequestRecord], None] | None = None,
            check: str = "") -> Outcome:
        p = {**self.params, **params}
        session_plans = self.build(rng, p, topology)

        def driver(phase: str) -> Driver:
            return Driver(cluster.url, scenario=self.name + phase, check=check, sink=sink,
                          concurrency=p.get("concurrency", 8), transport=topology.client_ip,
                          tls_ca=topology.tls_ca)

        drive = _with_replica_down(self.drive, p["down"]) if p.get("down") else self.drive
        records = drive(cluster, session_plans, driver)
        values = m.summarize(records, self.key, skip_first=p.get("skip_first", 0))
        if self.extra:
            values.update(self.extra(records, p, topology))
        return Outcome(records, values, self.key, m.switch_examples(records, self.key))


def _lb_cookie(topology: Topology) -> str:
    return topology.options.get("cookie") or topology.app.session_cookie


def _cookie_extra(records: list[RequestRecord], p: dict, t: Topology) -> dict[str, float]:
    return {**m.cookie_metrics(records, _lb_cookie(t), t.replica_ids),
            **m.first_request_moved(records)}


def _seen(r: RequestRecord, name: str) -> str:
    """What the app reported the proxy sent it (the fixture app echoes X-Seen-<header>)."""
    return r.response_headers.get(f"x-seen-{name}", "")


def _replay_extra(records: list[RequestRecord], p: dict, t: Topology) -> dict[str, float]:
    ok = m.served(records)
    hits = [r for r in ok if _seen(r, "fly-replay-cache-status") == "hit"]
    misses = m.group(r for r in ok if _seen(r, "fly-replay-cache-status") == "miss")
    return {
        "replayed_requests": sum(1 for r in ok if _seen(r, "fly-replay-src")),
        "cache_hits": len(hits),
        "cache_hit_share": len(hits) / len(ok) if ok else 0.0,
        "hits_with_src": sum(1 for r in hits if _seen(r, "fly-replay-src")),
        "cache_misses": sum(len(rs) for rs in misses.values()),
        "cache_bypasses": sum(1 for r in ok if _seen(r, "fly-replay-cache-status") == "bypass"),
        "max_misses_per_session": max((len(rs) for rs in misses.values()), default=0),
        "replay_failed_deliveries": sum(1 for r in ok if _seen(r, "fly-replay-failed")),
        "preferred_unavailable": sum(1 for r in ok
                                     if _seen(r, "fly-preferred-instance-unavailable")),
        "post_on_leader_share": _leader_share(ok, t),
        "on_move_target_after_move": _after_move(ok, p),
        "stale_share_after_move": _stale_after_move(ok, p),
        "replayed_elsewhere_share": _replayed_elsewhere(ok),
        "region_share": _region_share(ok, p, t),
        # The proxy's own answers by reason (X-Stickler-Route), for requests no replica served.
        "replays_refused_too_large": sum(
            1 for r in records if r.status == 413
            and r.response_headers.get("x-stickler-route") == "replay-too-large"),
    }


def _replayed_elsewhere(ok: list[RequestRecord]) -> float:
    """Of the replayed requests, the share served by another replica than the one that
    asked for the replay (fly-replay-src names it)."""
    replayed = [(r, _seen(r, "fly-replay-src")) for r in ok if _seen(r, "fly-replay-src")]
    away = sum(1 for r, src in replayed if not src.startswith(f"instance={r.replica};"))
    return away / len(replayed) if replayed else 0.0


def _region_share(ok: list[RequestRecord], p: dict, t: Topology) -> float:
    """Share of served requests on replicas labelled with region `p["region"]`."""
    inside = {r.id for r in t.replicas if r.region == p.get("region")}
    return sum(1 for r in ok if r.replica in inside) / len(ok) if ok and inside else 0.0


def _stale_after_move(ok: list[RequestRecord], p: dict) -> float:
    """Of the sessions that really moved, the share whose next request still went first to
    the replica they had left (it replayed them on: fly-replay-src names it). A cache entry
    that survived the move sends every one there; without it they land anywhere."""
    if not p.get("move_to"):
        return 0.0
    moved = stale = 0
    for rs in m.group(ok).values():
        by_seq = {r.seq: r for r in rs}
        before, after = by_seq.get(p["move_at"] - 1), by_seq.get(p["move_at"] + 1)
        if before and after and before.replica != p["move_to"]:
            moved += 1
            stale += _seen(after, "fly-replay-src").startswith(f"instance={before.replica};")
    return stale / moved if moved else 0.0


def _after_move(ok: list[RequestRecord], p: dict) -> float:
    """Share of requests after a session's move (param move_at) served by move_to."""
    after = [r for r in ok if p.get("move_to") and r.seq > p["move_at"]]
    return sum(1 for r in after if r.replica == p["move_to"]) / len(after) if after else 0.0


def _leader_share(ok: list[RequestRecord], t: Topology) -> float:
    posts = [r for r in ok if r.method == "POST"]
    leader = t.app.leader
    return sum(1 for r in posts if r.replica == leader) / len(posts) if posts and leader else 0.0


def _pinned_extra(records: list[RequestRecord], p: dict, t: Topology) -> dict[str, float]:
    """Share of served requests on the replica an `extra_header` (e.g. fly-force-instance-id:
    r2) asked for."""
    target = p["extra_header"].partition(":")[2].strip()
    ok = m.served(records)
    return {"target_share": sum(1 for r in ok if r.replica == target) / len(ok) if ok else 0.0,
            **_replay_extra(records, p, t)}


def _forged_extra(records: list[RequestRecord], p: dict, t: Topology) -> dict[str, float]:
    """Share of sessions whose forged cookie was replaced by one naming a real replica."""
    name = _lb_cookie(t)
    firsts = [rs[0] for rs in m.group(m.served(records)).values()]
    repinned = sum(1 for r in firsts
                   if any(m.names_replica(v, rid) for v in m.set_cookies_named(r, name)
                          for rid in t.replica_ids))
    # Replaced at all (by any other value: Caddy's cookie is an HMAC naming no replica id).
    replaced = sum(1 for r in firsts
                   if any(v != r.cookies_sent.get(name) for v in m.set_cookies_named(r, name)))
    return {**m.cookie_metrics(records, name, t.replica_ids),
            "forged_repinned_share": repinned / len(firsts) if firsts else 0.0,
            "forged_replaced_share": replaced / len(firsts) if firsts else 0.0}


def _remap_extra(key: str, settled: bool = False):
    """Remap metrics by `key` between the phases before and after a replica was added."""
    def extra(records: list[RequestRecord], p: dict, t: Topology) -> dict[str, float]:
        before, after = _phases(records)
        new = {r.replica for r in after} - {r.replica for r in before}
        return m.remap_metrics(before, after, key, new.pop() if len(new) == 1 else "",
                               settled=settled)
    return extra


def _sessions(**fixed: Any):
    def build(rng: random.Random, p: dict, t: Topology) -> list[plans.SessionPlan]:
        header = t.options.get("header") if p.get("send_header") else None
        cookies = {_lb_cookie(t): p["forge"]} if p.get("forge") else {}
        if p.get("forge_cookie"):  # "name=value": any cookie the first request carries
            name, _, value = p["forge_cookie"].partition("=")
            cookies[name.strip()] = value.strip()
        name, _, value = p["extra_header"].partition(":")
        extra = {name.strip(): value.strip()} if value else None
        return plans.sessions(rng, p["sessions"], p["requests"], connection=p["connection"],
                              keep_cookies=p["keep_cookies"], header=header,
                              initial_cookies=cookies, first=p["first"], extra_headers=extra,
                              pause=(p["pause_after"], p["pause_s"]),
                              move=(p["move_at"], p["move_to"]), body_bytes=p["body_bytes"],
                              stagger=p["stagger_s"], **fixed)
    return build


def _same_prefix(rng: random.Random, p: dict, t: Topology) -> list[plans.SessionPlan]:
    out = []
    for g in range(p["groups"]):
        out += plans.sessions(rng, p["hosts"], p["requests"], prefix=f"g{g}h",
                              keep_cookies=False, same_prefix_group=1000 + g * 7)
    return out


_BASE = {"sessions": 24, "requests": 12, "connection": "new", "keep_cookies": True,
         "send_header": False, "forge": "", "first": "POST", "extra_header": "",
         "skip_first": 0, "concurrency": 8, "down": "", "forge_cookie": "",
         "pause_after": 0, "pause_s": 0.0, "move_at": 0, "move_to": "", "region": "",
         "body_bytes": 0, "stagger_s": 0.0}

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("cookie-sessions",
             "shoppers that keep their cookies; the cart is built from the first request",
             dict(_BASE), SUMMARY_METRICS + COOKIE_METRICS + FIRST_METRICS, _sessions(),
             extra=_cookie_extra),
    Scenario("cookieless-clients",
             "clients that never return cookies (nor send affinity headers)",
             {**_BASE, "keep_cookies": False}, SUMMARY_METRICS, _sessions()),
    Scenario("forged-cookie",
             "sessions whose first request carries an affinity cookie naming no replica",
             {**_BASE, "requests": 6, "forge": "forged-by-client"},
             SUMMARY_METRICS + COOKIE_METRICS + ("forged_repinned_share",
                                                 "forged_replaced_share"), _sessions(),
             extra=_forged_extra),
    Scenario("header-sessions",
             "sessions that carry the topology's affinity header on every request",
             {**_BASE, "send_header": True}, SUMMARY_METRICS, _sessions()),
    Scenario("address-clients",
             "clients each from its own /24, judged per client address",
             {**_BASE, "sessions": 30, "requests": 8}, SUMMARY_METRICS, _sessions(),
             key="client_ip"),
    Scenario("instance-header-sessions",
             "sessions that name a replica in a request header (`extra_header`, e.g. "
             "'fly-force-instance-id: r2') on every request",
             {**_BASE, "extra_header": "fly-force-instance-id: r2"},
             SUMMARY_METRICS + ("target_share",) + REPLAY_METRICS, _sessions(),
             extra=_pinned_extra),
    Scenario("replay-sessions",
             "shoppers that keep their cookies, through a proxy whose app answers fly-replay "
             "(pin-cookie, hash or leader); judged with what the app saw of the replays",
             dict(_BASE), SUMMARY_METRICS + REPLAY_METRICS, _sessions(), extra=_replay_extra),
    Scenario("scale-up-remap",
             "60 clients (own /24 each, header too if the mode hashes one) before and after "
             "a fourth replica is added; the replica is removed again afterwards",
             {**_BASE, "sessions": 60, "requests": 2, "send_header": True},
             SUMMARY_METRICS + REMAP_METRICS, _sessions(), key="client_ip",
             extra=_remap_extra("client_ip"), drive=_drive_scale_up),
    Scenario("scale-up-sessions",
             "shoppers that keep their cookies; a replica is added while they shop, and they "
             "go on with their cookies and carts; the replica is removed afterwards",
             {**_BASE, "sessions": 36, "requests": 4},
             SUMMARY_METRICS + REMAP_METRICS, _sessions(),
             extra=_remap_extra("session", settled=True),
             drive=_drive_scale_up_sessions),
    Scenario("drain-sessions",
             "cookie-keeping sessions; the replica most of them are on is drained; they go on "
             "beside as many new sessions; the replica is undrained afterwards",
             {**_BASE, "sessions": 48, "requests": 6},
             SUMMARY_METRICS + DRAIN_METRICS, _sessions(), extra=_drain_extra,
             drive=_drive_drain),
    Scenario("same-prefix-clients",
             "cookie-less clients in a few /24s, varying only the last octet; judged per /24",
             {"groups": 6, "hosts": 10, "requests": 4, "concurrency": 8},
             SUMMARY_METRICS, _same_prefix, key="prefix24"),
)}

SCENARIOS.update({s.name: s for s in LOAD_SCENARIOS})
SCENARIOS.update({s.name: s for s in FAILOVER_SCENARIOS})
SCENARIOS.update({s.name: s for s in REPLAY_SCENARIOS})
